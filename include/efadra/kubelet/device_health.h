// DeviceHealthTracker: the health of every EFA of this node, derived from each discovery scan
// (periodic and on kernel RDMA/link events), served to the kubelet's health stream and the
// metrics. A device is
//   healthy    when its port is ACTIVE and it has a uverbs node,
//   unhealthy  when its port is not ACTIVE, it lost its uverbs node, or it disappeared from the
//              node after having been seen (it stays reported so pods using it learn why),
//   unknown    when the kernel did not tell its port state.
// Each transition is logged once. Thread-safe.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "efadra/discovery/efa_device.h"
#include "efadra/kubelet/health_source.h"

namespace efadra::kubelet {

class DeviceHealthTracker final : public HealthSource {
 public:
  explicit DeviceHealthTracker(std::string pool_name) : pool_name_(std::move(pool_name)) {}

  // Feeds one scan. `now_unix` stamps the devices whose health changed.
  void Update(const discovery::Inventory& inventory, int64_t now_unix);

  std::vector<DeviceHealthReport> Snapshot(uint64_t* version) const override;
  uint64_t WaitForChange(uint64_t seen, std::chrono::milliseconds timeout) const override;

  // Device name -> health, for metrics and slice taints.
  std::map<std::string, DeviceHealthReport::Health> Current() const;

 private:
  const std::string pool_name_;
  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  std::map<std::string, DeviceHealthReport> devices_;  // by device name; guarded by mu_
  uint64_t version_ = 0;                               // guarded by mu_
};

std::string_view HealthName(DeviceHealthReport::Health health);

}  // namespace efadra::kubelet
