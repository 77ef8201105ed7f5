#include "efadra/slices/publish_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace efadra::slices {

PublishLock::PublishLock(std::string path) : path_(std::move(path)) {}

PublishLock::~PublishLock() { Release(); }

bool PublishLock::PathNamesHeldFile() const {
  struct stat held {};
  struct stat named {};
  const int fd = fd_.load();
  return fd >= 0 && ::fstat(fd, &held) == 0 && ::stat(path_.c_str(), &named) == 0 &&
         held.st_dev == named.st_dev && held.st_ino == named.st_ino;
}

Result<bool> PublishLock::TryAcquire() {
  if (Held()) {
    if (PathNamesHeldFile()) return true;
    // The file was removed or replaced (a kubelet restart can empty the plugin directory): a
    // twin would lock the new file and publish too, so the lock moves to whatever the path
    // names now, and is lost if the twin got there first.
    Release();
  }
  // A file of its own, never the kubelet-plugin's locks: flock is per open file, and an
  // unrelated close elsewhere must not drop it.
  const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return UnavailableError("open publish lock " + path_ + ": " + std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    ::close(fd);
    if (error == EWOULDBLOCK) return false;
    return UnavailableError("flock " + path_ + ": " + std::strerror(error));
  }
  fd_ = fd;
  return true;
}

void PublishLock::Release() {
  const int fd = fd_.exchange(-1);
  if (fd >= 0) ::close(fd);  // closing the only descriptor drops the flock
}

}  // namespace efadra::slices
