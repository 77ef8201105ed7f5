#include "efadra/kubelet/conflict_monitor.h"

#include <spdlog/spdlog.h>

namespace efadra::kubelet {

void ConflictMonitor::Start() {
  CheckNow();
  std::lock_guard<std::mutex> lock(mu_);
  stopping_ = false;
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
}

void ConflictMonitor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ConflictMonitor::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!wake_.wait_for(lock, period_, [this] { return stopping_; })) {
    lock.unlock();
    CheckNow();
    lock.lock();
  }
}

void ConflictMonitor::CheckNow() {
  std::lock_guard<std::mutex> check_lock(check_mu_);
  std::set<std::string> now;
  for (const auto& source : sources_) {
    for (auto& reason : source()) now.insert(std::move(reason));
  }
  std::set<std::string> before;
  {
    std::lock_guard<std::mutex> lock(mu_);
    before = reasons_;
    reasons_ = now;
  }
  for (const auto& reason : now) {
    if (before.count(reason) > 0) continue;
    spdlog::error("refusing prepares: {}", reason);
    if (sink_) sink_(reason);
  }
  for (const auto& reason : before) {
    if (now.count(reason) == 0) spdlog::info("conflict resolved: {}", reason);
  }
}

std::vector<std::string> ConflictMonitor::Reasons() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {reasons_.begin(), reasons_.end()};
}

std::string ConflictMonitor::Summary() const {
  std::string summary;
  for (const auto& reason : Reasons()) summary += (summary.empty() ? "" : "; ") + reason;
  return summary;
}

}  // namespace efadra::kubelet
