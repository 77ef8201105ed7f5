#include "efadra/slices/publish_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace efadra::slices {

PublishLock::PublishLock(std::string path) : path_(std::move(path)) {}

PublishLock::~PublishLock() { Release(); }

Result<bool> PublishLock::TryAcquire() {
  if (Held()) return true;
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
