// PublishLock: which of two driver instances on one node writes the node's ResourceSlices.
// During a rolling update (--pod-uid, maxSurge 1) the old and the new pod run side by side;
// both publishing the same pool would rewrite each other's slices. The lock is an flock(2)
// on a file in the plugin directory both pods mount: the kernel drops it when its holder's
// process exits, however it exits, so the survivor can always take over.
//
// Thread safety: one owner thread (the publisher's sync thread); Held() from any thread.
#pragma once

#include <atomic>
#include <string>

#include "efadra/core/status.h"

namespace efadra::slices {

class PublishLock {
 public:
  explicit PublishLock(std::string path);
  ~PublishLock();  // Release()
  PublishLock(const PublishLock&) = delete;
  PublishLock& operator=(const PublishLock&) = delete;

  // Takes the lock without waiting: true when held (now or already), false when another
  // instance holds it; an error when the file cannot be opened (it names the path). A held
  // lock whose file the path no longer names (removed or replaced) is dropped and taken again
  // on the current file, so two instances never hold "the" lock on two different files.
  // Call it before every write.
  Result<bool> TryAcquire();
  void Release();
  bool Held() const { return fd_.load() >= 0; }
  const std::string& path() const { return path_; }

 private:
  bool PathNamesHeldFile() const;

  const std::string path_;
  std::atomic<int> fd_{-1};
};

}  // namespace efadra::slices
