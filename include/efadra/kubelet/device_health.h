// DeviceHealthTracker: the health of every EFA of this node, served to the kubelet's health
// stream and the metrics. Three inputs feed it:
//   * each discovery scan (periodic and on kernel RDMA/link events): which devices exist, and
//     their port state;
//   * each health poll between scans (discovery/health_poller.h): the port state read then
//     replaces the scan's (whichever read last wins: both read the same sysfs file), plus the
//     /dev node and hw_counters problems, which only polls set and clear;
//   * verbs async events: port error (until a port-active event), device fatal (until the
//     device is re-probed or disappears).
// A device is
//   healthy    when its port is ACTIVE, it has a uverbs node and no poll or event says otherwise,
//   unhealthy  when its port is not ACTIVE, it lost its uverbs node, a poll or event found a
//              problem, or it disappeared from the node after having been seen (it stays
//              reported so pods using it learn why),
//   unknown    when the kernel did not tell its port state.
// Each transition is logged once. Thread-safe.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "efadra/discovery/efa_device.h"
#include "efadra/discovery/health_poller.h"
#include "efadra/discovery/verbs_events.h"
#include "efadra/kubelet/health_source.h"

namespace efadra::kubelet {

class DeviceHealthTracker final : public HealthSource {
 public:
  explicit DeviceHealthTracker(std::string pool_name) : pool_name_(std::move(pool_name)) {}

  // Feeds one scan. `now_unix` stamps the devices whose health changed.
  void Update(const discovery::Inventory& inventory, int64_t now_unix);

  // What one poll changed.
  struct PollOutcome {
    bool health_changed = false;  // some device's reported health or message
    // Some device's port state differs from what was known: the caller then rescans, so the
    // ResourceSlice, which is built from scans, follows.
    bool port_changed = false;
  };
  // Feeds one health poll. Readings for devices no scan has reported are ignored.
  PollOutcome UpdatePolled(const std::vector<discovery::HealthReading>& readings,
                           int64_t now_unix);

  // Feeds one verbs async event for the RDMA device `rdma_device` (unknown names are ignored).
  // kPortUp only clears the port error: the caller re-polls, and that poll judges.
  void OnVerbsEvent(const std::string& rdma_device, discovery::VerbsHealthEvent event,
                    int64_t now_unix);

  std::vector<DeviceHealthReport> Snapshot(uint64_t* version) const override;
  uint64_t WaitForChange(uint64_t seen, std::chrono::milliseconds timeout) const override;

  // Device name -> health, for metrics and slice taints.
  std::map<std::string, DeviceHealthReport::Health> Current() const;

 private:
  // Everything known of one device, and the health last reported for it.
  struct DeviceState {
    discovery::EfaDevice device;  // from the latest scan, its port from the latest poll
    bool present = false;         // in the latest scan
    std::string dev_node_problem;  // from the latest poll
    std::string counter_problem;   // from the latest poll
    bool verbs_port_error = false;
    bool verbs_fatal = false;
    DeviceHealthReport report;
    bool reported = false;  // report holds a judgement
  };

  // Re-judges `state` and records a change (logged, stamped `now_unix`). True if it changed.
  bool Judge(const std::string& name, DeviceState& state, int64_t now_unix);
  void Changed();

  const std::string pool_name_;
  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  std::map<std::string, DeviceState> devices_;  // by device name; guarded by mu_
  uint64_t version_ = 0;                               // guarded by mu_
};

std::string_view HealthName(DeviceHealthReport::Health health);

}  // namespace efadra::kubelet
