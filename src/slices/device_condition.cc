#include "efadra/slices/device_condition.h"

namespace efadra::slices {

DeviceCondition AssessDevice(const discovery::EfaDevice& device) {
  using State = DeviceCondition::State;
  if (device.uverbs_index < 0) {
    return {State::kUnhealthy, "NoUverbsDevice",
            "no uverbs device node (the efa driver did not create one)"};
  }
  if (device.port.state.empty()) {
    return {State::kUnknown, "", "port state not reported by the kernel"};
  }
  if (device.port.state != "ACTIVE") {
    std::string message = "port 1 is " + device.port.state;
    if (!device.port.phys_state.empty()) {
      message += " (physical state " + device.port.phys_state + ")";
    }
    return {State::kUnhealthy, "PortNotActive", message};
  }
  return {State::kHealthy, "", ""};
}

}  // namespace efadra::slices
