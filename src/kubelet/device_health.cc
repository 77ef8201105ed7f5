#include "efadra/kubelet/device_health.h"

#include <set>

#include <spdlog/spdlog.h>

#include "efadra/slices/device_condition.h"
#include "efadra/slices/resource_slices.h"

namespace efadra::kubelet {
namespace {

using Health = DeviceHealthReport::Health;

// Health and reason of one present device.
std::pair<Health, std::string> Judge(const discovery::EfaDevice& device) {
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

void DeviceHealthTracker::Update(const discovery::Inventory& inventory, int64_t now_unix) {
  std::lock_guard<std::mutex> lock(mu_);
  bool changed = false;
  auto set = [&](const std::string& name, const std::string& rdma, Health health,
                 const std::string& message) {
    auto [it, inserted] = devices_.try_emplace(name);
    DeviceHealthReport& report = it->second;
    if (!inserted && report.health == health && report.message == message) return;
    if (!inserted || health != Health::kHealthy) {
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
    changed = true;
  };
  std::set<std::string> present;
  for (const auto& device : inventory.devices) {
    const std::string name = slices::DeviceName(device.pci_address);
    present.insert(name);
    auto [health, message] = Judge(device);
    set(name, device.rdma_device, health, message);
  }
  for (auto& [name, report] : devices_) {
    if (present.count(name) == 0 && report.health != Health::kUnhealthy) {
      set(name, "gone", Health::kUnhealthy, "the device disappeared from the node");
    }
  }
  if (changed) {
    ++version_;
    changed_.notify_all();
  }
}

std::vector<DeviceHealthReport> DeviceHealthTracker::Snapshot(uint64_t* version) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (version != nullptr) *version = version_;
  std::vector<DeviceHealthReport> out;
  out.reserve(devices_.size());
  for (const auto& [name, report] : devices_) out.push_back(report);
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
  for (const auto& [name, report] : devices_) out[name] = report.health;
  return out;
}

}  // namespace efadra::kubelet
