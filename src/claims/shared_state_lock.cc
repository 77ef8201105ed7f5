#include "shared_state_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>

namespace efadra::claims {
namespace {

// flock has no timed wait; a few milliseconds between tries keeps the wait cheap while the
// section it waits for (one checkpoint and one spec write) takes about as long.
constexpr std::chrono::milliseconds kFirstRetry{1};
constexpr std::chrono::milliseconds kLongestRetry{20};

}  // namespace

SharedStateLock::~SharedStateLock() {
  if (fd_ >= 0) ::close(fd_);
}

bool SharedStateLock::StillCurrent() const {
  struct stat open_file {};
  struct stat named {};
  if (::fstat(fd_, &open_file) != 0 || ::stat(path_.c_str(), &named) != 0) return false;
  return open_file.st_dev == named.st_dev && open_file.st_ino == named.st_ino;
}

Status SharedStateLock::OpenCurrent() {
  if (fd_ >= 0 && StillCurrent()) return Status::Ok();
  if (fd_ >= 0) ::close(fd_);
  // A wipe can take the directory too; its owner re-creates it at the next write anyway.
  std::error_code ignored;
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ignored);
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) return UnavailableError("open lock file " + path_ + ": " + strerror(errno));
  return Status::Ok();
}

Status SharedStateLock::Lock(std::chrono::steady_clock::time_point deadline) {
  auto expired = [&] {
    return DeadlineExceededError("lock file " + path_ +
                                 " is held by the other driver instance past the deadline");
  };
  // No deadline: a plain lock, never a timed wait on the largest time point the clock has.
  if (deadline == std::chrono::steady_clock::time_point::max()) {
    mu_.lock();
  } else if (!mu_.try_lock_until(deadline)) {
    return expired();
  }
  std::chrono::milliseconds retry = kFirstRetry;
  while (true) {
    if (Status opened = OpenCurrent(); !opened.ok()) {
      mu_.unlock();
      return opened;
    }
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) {
      // The file may have been unlinked (and perhaps re-created by the twin) while we
      // waited: a lock on a file nobody else can open excludes nobody.
      if (StillCurrent()) return Status::Ok();
      ::flock(fd_, LOCK_UN);
      continue;
    }
    if (errno != EWOULDBLOCK && errno != EINTR) {
      const std::string error = strerror(errno);
      mu_.unlock();
      return UnavailableError("lock " + path_ + ": " + error);
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      mu_.unlock();
      return expired();
    }
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(retry, deadline - now));
    retry = std::min(retry * 2, kLongestRetry);
  }
}

bool SharedStateLock::TryLock() {
  return Lock(std::chrono::steady_clock::time_point::min()).ok();
}

void SharedStateLock::Unlock() {
  ::flock(fd_, LOCK_UN);
  mu_.unlock();
}

}  // namespace efadra::claims
