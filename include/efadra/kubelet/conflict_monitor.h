// ConflictMonitor: keeps the list of reasons this node's EFAs may be handed out by someone
// else as well (the EFA device plugin, a second dra.net driver, ResourceSlices of our pool
// written by another program). While any reason stands the driver refuses prepares (a device
// given twice can reach two containers), /readyz fails with the reasons, and every new reason
// is logged and reported once through the event sink (an Event on the Node).
//
// Sources are polled every `period` on the monitor's own thread, and at once by CheckNow().
// Thread-safe; sources must be cheap and thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace efadra::kubelet {

class ConflictMonitor {
 public:
  // One reason per conflicting thing, as a sentence that says what to do; empty: none.
  using Source = std::function<std::vector<std::string>()>;
  // Called once for each reason when it first appears, on the monitor's thread.
  using EventSink = std::function<void(const std::string& reason)>;

  explicit ConflictMonitor(std::chrono::milliseconds period = std::chrono::seconds(2),
                           EventSink sink = nullptr)
      : period_(period), sink_(std::move(sink)) {}
  ~ConflictMonitor() { Stop(); }
  ConflictMonitor(const ConflictMonitor&) = delete;
  ConflictMonitor& operator=(const ConflictMonitor&) = delete;

  // Before Start().
  void AddSource(Source source) { sources_.push_back(std::move(source)); }

  void Start();
  void Stop();
  // Polls every source now (the caller's thread).
  void CheckNow();

  // The current reasons, sorted; empty when there is no conflict.
  std::vector<std::string> Reasons() const;
  // "" when there is no conflict; else every reason, joined with "; ".
  std::string Summary() const;

 private:
  void Loop();

  const std::chrono::milliseconds period_;
  const EventSink sink_;
  std::vector<Source> sources_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::set<std::string> reasons_;  // guarded by mu_
  bool stopping_ = false;          // guarded by mu_
  std::thread thread_;
  std::mutex check_mu_;  // one CheckNow at a time, so each new reason is reported once
};

}  // namespace efadra::kubelet
