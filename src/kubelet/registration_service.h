// pluginregistration.Registration: tells the kubelet who we are and hears whether it accepted
// us (contracts.md §1). GetInfo answers from memory, far inside the kubelet's 1 s deadline.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "efadra/kubelet/plugin.h"
#include "pluginregistration/v1/api.grpc.pb.h"

namespace efadra::kubelet {

class RegistrationService final : public pluginregistration::Registration::Service {
 public:
  RegistrationService(std::string driver_name, std::string endpoint,
                      std::vector<std::string> supported_versions)
      : driver_name_(std::move(driver_name)),
        endpoint_(std::move(endpoint)),
        supported_versions_(std::move(supported_versions)) {}

  void OnRegistered(std::function<void()> callback) { on_registered_ = std::move(callback); }

  grpc::Status GetInfo(grpc::ServerContext* context, const pluginregistration::InfoRequest* request,
                       pluginregistration::PluginInfo* info) override;
  grpc::Status NotifyRegistrationStatus(grpc::ServerContext* context,
                                        const pluginregistration::RegistrationStatus* status,
                                        pluginregistration::RegistrationStatusResponse* response)
      override;

  RegistrationState State() const;
  // The registration socket was (re-)created: wait for the kubelet again.
  void Reset();
  // When the kubelet last rejected us (steady clock); nullopt unless rejected now.
  std::optional<std::chrono::steady_clock::time_point> RejectedAt() const;

 private:
  const std::string driver_name_;
  const std::string endpoint_;
  const std::vector<std::string> supported_versions_;
  std::function<void()> on_registered_;

  mutable std::mutex mu_;
  RegistrationState state_;  // guarded by mu_
  std::chrono::steady_clock::time_point rejected_at_;  // guarded by mu_
};

}  // namespace efadra::kubelet
