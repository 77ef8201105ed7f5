// SharedStateLock: the exclusive section around every change to the checkpoint and CDI
// directories when a rolling-update twin (a second driver process on this node) shares them.
// It is an flock on one lock file, plus an in-process mutex because an flock is per open file
// and does not exclude the threads of this process from each other.
//
// Lock() waits until `deadline` and then gives up with kDeadlineExceeded, so a kubelet call
// never outlives the kubelet's own deadline behind a stuck twin. The lock file may be removed
// while held (a wipe of the plugin directory): after acquiring, Lock() checks that the path
// still names the file it locked and otherwise re-creates the file and locks it again, so both
// processes always meet on the same file. Used by the ClaimPreparer; thread-safe.
#pragma once

#include <chrono>
#include <mutex>
#include <string>

#include "efadra/core/status.h"

namespace efadra::claims {

class SharedStateLock {
 public:
  explicit SharedStateLock(std::string path) : path_(std::move(path)) {}
  ~SharedStateLock();
  SharedStateLock(const SharedStateLock&) = delete;
  SharedStateLock& operator=(const SharedStateLock&) = delete;

  // kDeadlineExceeded naming the lock file when it is still held by someone else at
  // `deadline`; kUnavailable when the file cannot be created. Not re-entrant.
  Status Lock(std::chrono::steady_clock::time_point deadline);
  // Like Lock() with a deadline that has passed already: never waits.
  bool TryLock();
  void Unlock();

  const std::string& path() const { return path_; }

 private:
  // Opens (creating) the lock file unless the open one is still the file at path_.
  // Requires mu_.
  Status OpenCurrent();
  // True when fd_ is the file that path_ names now. Requires mu_.
  bool StillCurrent() const;

  const std::string path_;
  std::timed_mutex mu_;
  int fd_ = -1;  // guarded by mu_
};

}  // namespace efadra::claims
