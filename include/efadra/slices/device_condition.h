// Whether an EFA can carry traffic, judged from what discovery read. One rule for every place
// that reports health: the kubelet's health stream, the device_healthy metric and, with
// --taint-unhealthy, the NoSchedule taint in the ResourceSlice.
//   healthy    port ACTIVE and a uverbs node exists
//   unhealthy  no uverbs node (nothing to hand to a container) or port not ACTIVE
//   unknown    the kernel did not report the port state
#pragma once

#include <string>

#include "efadra/discovery/efa_device.h"

namespace efadra::slices {

struct DeviceCondition {
  enum class State { kHealthy, kUnhealthy, kUnknown };
  State state = State::kUnknown;
  std::string reason;   // label-value form for taints: "PortDown", "NoUverbsDevice"; "" healthy
  std::string message;  // one sentence for people: "port 1 is DOWN (physical state Disabled)"
};

DeviceCondition AssessDevice(const discovery::EfaDevice& device);

}  // namespace efadra::slices
