// HealthMonitor: keeps DeviceHealthTracker current between full rescans. Its thread runs a
// discovery::HealthPoller every `poll_interval` (0 = no polling) over the devices of the latest
// scan, and a discovery::VerbsEventWatcher over those libibverbs can open (none without EFA
// hardware: that is logged once and the poll carries on alone). A port-active event polls at
// once. When a poll sees a port change, `on_port_change` runs (the daemon asks the publisher to
// rescan, so the ResourceSlice follows); problems only polls and events see (the /dev node,
// hw_counters, verbs events) reach the health stream and metrics, not the slice.
//
// Thread safety: Start()/Stop() from one owning thread; Track()
// and PollNow() from any thread. Callbacks run on the monitor's threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "efadra/core/filesystem.h"
#include "efadra/core/status.h"
#include "efadra/discovery/efa_device.h"
#include "efadra/discovery/health_poller.h"
#include "efadra/discovery/verbs_events.h"
#include "efadra/kubelet/device_health.h"

namespace efadra::kubelet {

struct HealthMonitorOptions {
  std::chrono::milliseconds poll_interval{2000};  // 0: no polling
  std::function<void()> on_port_change;           // may be empty
  // Called when a poll or an event changed the tracker's health (metrics); may be empty.
  std::function<void()> on_health_change;
};

class HealthMonitor {
 public:
  // `verbs` may be null (no async events: fixtures, or sysfs other than the host's).
  // `sysfs`, `dev` and `tracker` must outlive the monitor.
  HealthMonitor(const core::Filesystem& sysfs, const core::Filesystem& dev,
                DeviceHealthTracker& tracker, std::unique_ptr<discovery::VerbsEventSource> verbs,
                HealthMonitorOptions options);
  ~HealthMonitor();  // Stop()s
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  // The devices of the latest successful scan. The next poll uses them; the verbs watcher
  // reopens when their RDMA names changed.
  void Track(const discovery::Inventory& inventory);

  // Starts the thread. kFailedPrecondition if already started.
  Status Start();
  // Stops the threads; idempotent.
  void Stop();
  // Polls now instead of at the next interval.
  void PollNow();

 private:
  void Loop();
  void RestartVerbsWatcher(const std::vector<std::string>& rdma_devices);

  discovery::HealthPoller poller_;
  DeviceHealthTracker& tracker_;
  HealthMonitorOptions options_;
  std::unique_ptr<discovery::VerbsEventWatcher> verbs_;  // null without a source
  bool verbs_unavailable_logged_ = false;                // monitor thread only

  std::mutex mu_;
  std::condition_variable wake_;
  std::optional<std::vector<discovery::EfaDevice>> pending_;  // guarded by mu_
  bool poll_now_ = false;                                      // guarded by mu_
  bool stopping_ = false;                                      // guarded by mu_
  std::thread thread_;
};

}  // namespace efadra::kubelet
