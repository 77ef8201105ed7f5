#include "efadra/kubelet/health_monitor.h"

#include <spdlog/spdlog.h>

#include <ctime>

namespace efadra::kubelet {
namespace {

int64_t NowUnix() { return static_cast<int64_t>(std::time(nullptr)); }

std::vector<std::string> RdmaNames(const std::vector<discovery::EfaDevice>& devices) {
  std::vector<std::string> names;
  names.reserve(devices.size());
  for (const auto& device : devices) names.push_back(device.rdma_device);
  return names;
}

}  // namespace

HealthMonitor::HealthMonitor(const core::Filesystem& sysfs, const core::Filesystem& dev,
                             DeviceHealthTracker& tracker,
                             std::unique_ptr<discovery::VerbsEventSource> verbs,
                             HealthMonitorOptions options)
    : poller_(sysfs, dev), tracker_(tracker), options_(std::move(options)) {
  if (verbs != nullptr) {
    verbs_ = std::make_unique<discovery::VerbsEventWatcher>(
        std::move(verbs), [this](const std::string& rdma_device, discovery::VerbsHealthEvent event) {
          tracker_.OnVerbsEvent(rdma_device, event, NowUnix());
          if (options_.on_health_change) options_.on_health_change();
          // PORT_ACTIVE says the port is back; the sysfs state tells what it is now.
          if (event == discovery::VerbsHealthEvent::kPortUp) PollNow();
        });
  }
}

HealthMonitor::~HealthMonitor() { Stop(); }

void HealthMonitor::Track(const discovery::Inventory& inventory) {
  std::lock_guard<std::mutex> lock(mu_);
  pending_ = inventory.devices;
  wake_.notify_all();
}

Status HealthMonitor::Start() {
  if (thread_.joinable()) return FailedPreconditionError("health monitor already started");
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void HealthMonitor::Stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    wake_.notify_all();
  }
  thread_.join();
  if (verbs_ != nullptr) verbs_->Stop();
}

void HealthMonitor::PollNow() {
  std::lock_guard<std::mutex> lock(mu_);
  poll_now_ = true;
  wake_.notify_all();
}

void HealthMonitor::RestartVerbsWatcher(const std::vector<std::string>& rdma_devices) {
  if (verbs_ == nullptr) return;
  if (rdma_devices.empty()) {
    verbs_->Stop();
    return;
  }
  const Status status = verbs_->Start(rdma_devices);
  if (!status.ok() && !verbs_unavailable_logged_) {
    verbs_unavailable_logged_ = true;
    spdlog::info("no verbs async events ({}); device health comes from sysfs polls and rescans",
                 status.message());
  }
}

void HealthMonitor::Loop() {
  const bool polling = options_.poll_interval.count() > 0;
  std::vector<std::string> watched;
  auto next_poll = std::chrono::steady_clock::now() + options_.poll_interval;
  while (true) {
    std::optional<std::vector<discovery::EfaDevice>> devices;
    bool poll = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto woken = [&] { return stopping_ || pending_.has_value() || poll_now_; };
      if (polling) {
        wake_.wait_until(lock, next_poll, woken);
      } else {
        wake_.wait(lock, woken);
      }
      if (stopping_) return;
      devices.swap(pending_);
      poll = poll_now_ || (polling && std::chrono::steady_clock::now() >= next_poll);
      poll_now_ = false;
    }
    if (devices.has_value()) {
      poller_.Track(*devices);
      std::vector<std::string> names = RdmaNames(*devices);
      if (names != watched) {
        RestartVerbsWatcher(names);
        watched = std::move(names);
      }
    }
    if (!poll) continue;
    if (polling) next_poll = std::chrono::steady_clock::now() + options_.poll_interval;
    const auto outcome = tracker_.UpdatePolled(poller_.Poll(), NowUnix());
    if (outcome.health_changed && options_.on_health_change) options_.on_health_change();
    if (outcome.port_changed && options_.on_port_change) options_.on_port_change();
  }
}

}  // namespace efadra::kubelet
