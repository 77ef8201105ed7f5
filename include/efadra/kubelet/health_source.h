// Where the kubelet's device-health stream (DRAResourceHealth v1alpha1, contracts.md §3) gets
// its data. The stream sends the complete list on every change and re-sends it periodically.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace efadra::kubelet {

struct DeviceHealthReport {
  enum class Health { kUnknown, kHealthy, kUnhealthy };
  std::string pool_name;
  std::string device_name;
  Health health = Health::kUnknown;
  int64_t last_updated_unix = 0;  // seconds
  std::string message;            // why, for the pod status (empty when healthy)
};

class HealthSource {
 public:
  virtual ~HealthSource() = default;
  // The current health of every device of this driver on this node, and its version (increases
  // on every change).
  virtual std::vector<DeviceHealthReport> Snapshot(uint64_t* version) const = 0;
  // Blocks until the version differs from `seen` or `timeout` passes; returns the version.
  virtual uint64_t WaitForChange(uint64_t seen, std::chrono::milliseconds timeout) const = 0;
};

}  // namespace efadra::kubelet
