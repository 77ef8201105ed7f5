#include "efadra/kubelet/device_health.h"

#include <set>
#include <tuple>

#include <spdlog/spdlog.h>

#include "efadra/slices/device_condition.h"
#include "efadra/slices/resource_slices.h"

namespace efadra::kubelet {
namespace {

using Health = DeviceHealthReport::Health;

// Health and reason of one present device.
std::pair<Health, std::string> Assess(const discovery::EfaDevice& device) {
  const slices::DeviceCondition condition = slices::AssessDevice(device);
  switch (condition.state) {
    case slices::DeviceCondition::State::kHealthy:
      return {Health::kHealthy, ""};
    case slices::DeviceCondition::State::kUnhealthy:
      return {Health::kUnhealthy, condition.message};
    case slices::DeviceCondition::State::kUnknown:
      break;
  }
  return {Health::kUnknown, condition.message};
}

}  // namespace

std::string_view HealthName(Health health) {
  switch (health) {
    case Health::kHealthy:
      return "healthy";
    case Health::kUnhealthy:
      return "unhealthy";
    case Health::kUnknown:
      break;
  }
  return "unknown";
}

bool DeviceHealthTracker::Judge(const std::string& name, DeviceState& state, int64_t now_unix) {
  Health health = Health::kUnhealthy;
  std::string message = "the device disappeared from the node";
  if (state.present) {
    std::tie(health, message) = Assess(state.device);
    // What scans cannot see. The worst first: a fatal device needs a reset whatever its port.
    if (health != Health::kUnhealthy) {
      const std::string* problem = nullptr;
      const std::string fatal = "the device reported a fatal error (IBV_EVENT_DEVICE_FATAL)";
      const std::string port_error = "port 1 reported an error (IBV_EVENT_PORT_ERR)";
      if (state.verbs_fatal) {
        problem = &fatal;
      } else if (!state.counter_problem.empty()) {
        problem = &state.counter_problem;
      } else if (!state.dev_node_problem.empty()) {
        problem = &state.dev_node_problem;
      } else if (state.verbs_port_error) {
        problem = &port_error;
      }
      if (problem != nullptr) {
        health = Health::kUnhealthy;
        message = *problem;
      }
    }
  }
  DeviceHealthReport& report = state.report;
  if (state.reported && report.health == health && report.message == message) return false;
  const std::string rdma = state.present ? state.device.rdma_device : "gone";
  if (state.reported || health != Health::kHealthy) {
    if (health == Health::kUnhealthy) {
      spdlog::warn("EFA {} ({}) is unhealthy: {}", name, rdma, message);
    } else {
      spdlog::info("EFA {} ({}) is {}{}{}", name, rdma, HealthName(health),
                   message.empty() ? "" : ": ", message);
    }
  }
  report.pool_name = pool_name_;
  report.device_name = name;
  report.health = health;
  report.message = message;
  report.last_updated_unix = now_unix;
  state.reported = true;
  return true;
}

void DeviceHealthTracker::Changed() {
  ++version_;
  changed_.notify_all();
}

void DeviceHealthTracker::Update(const discovery::Inventory& inventory, int64_t now_unix) {
  std::lock_guard<std::mutex> lock(mu_);
  bool changed = false;
  std::set<std::string> present;
  for (const auto& device : inventory.devices) {
    const std::string name = slices::DeviceName(device.pci_address);
    present.insert(name);
    DeviceState& state = devices_[name];
    // A re-probed device (new RDMA name or uverbs node) starts without the old one's events.
    if (!state.present || state.device.rdma_device != device.rdma_device ||
        state.device.uverbs_index != device.uverbs_index) {
      state.verbs_port_error = false;
      state.verbs_fatal = false;
    }
    state.device = device;
    state.present = true;
    changed = Judge(name, state, now_unix) || changed;
  }
  for (auto& [name, state] : devices_) {
    if (present.count(name) != 0 || !state.present) continue;
    DeviceState gone;
    gone.report = state.report;
    gone.reported = state.reported;
    state = std::move(gone);
    changed = Judge(name, state, now_unix) || changed;
  }
  if (changed) Changed();
}

DeviceHealthTracker::PollOutcome DeviceHealthTracker::UpdatePolled(
    const std::vector<discovery::HealthReading>& readings, int64_t now_unix) {
  std::lock_guard<std::mutex> lock(mu_);
  PollOutcome outcome;
  for (const auto& reading : readings) {
    const std::string name = slices::DeviceName(reading.pci_address);
    auto it = devices_.find(name);
    if (it == devices_.end() || !it->second.present) continue;
    DeviceState& state = it->second;
    discovery::PortInfo& port = state.device.port;
    if (port.state != reading.port_state || port.phys_state != reading.phys_state) {
      port.state = reading.port_state;
      port.phys_state = reading.phys_state;
      outcome.port_changed = true;
    }
    state.dev_node_problem = reading.dev_node_problem;
    state.counter_problem = reading.counter_problem;
    outcome.health_changed = Judge(name, state, now_unix) || outcome.health_changed;
  }
  if (outcome.health_changed) Changed();
  return outcome;
}

void DeviceHealthTracker::OnVerbsEvent(const std::string& rdma_device,
                                       discovery::VerbsHealthEvent event, int64_t now_unix) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [name, state] : devices_) {
    if (!state.present || state.device.rdma_device != rdma_device) continue;
    switch (event) {
      case discovery::VerbsHealthEvent::kPortDown:
        state.verbs_port_error = true;
        break;
      case discovery::VerbsHealthEvent::kPortUp:
        // No judgement yet: the re-check poll that follows judges with the port state read
        // then, so the stream never shows a HEALTHY that the next read takes back.
        state.verbs_port_error = false;
        continue;
      case discovery::VerbsHealthEvent::kDeviceFatal:
        state.verbs_fatal = true;
        break;
      case discovery::VerbsHealthEvent::kIgnored:
        break;
    }
    if (Judge(name, state, now_unix)) Changed();
  }
}

std::vector<DeviceHealthReport> DeviceHealthTracker::Snapshot(uint64_t* version) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (version != nullptr) *version = version_;
  std::vector<DeviceHealthReport> out;
  out.reserve(devices_.size());
  for (const auto& [name, state] : devices_) out.push_back(state.report);
  return out;
}

uint64_t DeviceHealthTracker::WaitForChange(uint64_t seen,
                                            std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait_for(lock, timeout, [&] { return version_ != seen; });
  return version_;
}

std::map<std::string, Health> DeviceHealthTracker::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, Health> out;
  for (const auto& [name, state] : devices_) out[name] = state.report.health;
  return out;
}

}  // namespace efadra::kubelet
