#include "registration_service.h"

#include <spdlog/spdlog.h>

namespace efadra::kubelet {

grpc::Status RegistrationService::GetInfo(grpc::ServerContext* /*context*/,
                                          const pluginregistration::InfoRequest* /*request*/,
                                          pluginregistration::PluginInfo* info) {
  info->set_type(kPluginType);
  info->set_name(driver_name_);
  info->set_endpoint(endpoint_);
  for (const auto& version : supported_versions_) info->add_supported_versions(version);
  return grpc::Status::OK;
}

grpc::Status RegistrationService::NotifyRegistrationStatus(
    grpc::ServerContext* /*context*/, const pluginregistration::RegistrationStatus* status,
    pluginregistration::RegistrationStatusResponse* /*response*/) {
  if (status->plugin_registered()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      state_.phase = RegistrationState::Phase::kRegistered;
      state_.error.clear();
      ++state_.registrations;
    }
    spdlog::info("registered with the kubelet as DRA driver {} (endpoint {})", driver_name_,
                 endpoint_);
    if (on_registered_) on_registered_();
    return grpc::Status::OK;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    state_.phase = RegistrationState::Phase::kRejected;
    state_.error = status->error();
    rejected_at_ = std::chrono::steady_clock::now();
  }
  spdlog::error("the kubelet rejected DRA driver {}: {}", driver_name_, status->error());
  // As the Go helper does: the failure is answered with an error (the kubelet only logs it).
  return {grpc::StatusCode::UNAVAILABLE, "registration failed: " + status->error()};
}

RegistrationState RegistrationService::State() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

void RegistrationService::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  state_.phase = RegistrationState::Phase::kWaitingForKubelet;
  state_.error.clear();
}

std::optional<std::chrono::steady_clock::time_point> RegistrationService::RejectedAt() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_.phase != RegistrationState::Phase::kRejected) return std::nullopt;
  return rejected_at_;
}

}  // namespace efadra::kubelet
