#include "efadra/kubelet/plugin.h"

#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "claim_calls.h"
#include "efadra/kubelet/coexistence.h"
#include "dra_service.h"
#include "grpc_server.h"
#include "health_service.h"
#include "registration_service.h"

namespace efadra::kubelet {

std::string_view PhaseName(RegistrationState::Phase phase) {
  switch (phase) {
    case RegistrationState::Phase::kNotServing:
      return "not serving";
    case RegistrationState::Phase::kWaitingForKubelet:
      return "waiting for the kubelet";
    case RegistrationState::Phase::kRegistered:
      return "registered";
    case RegistrationState::Phase::kRejected:
      return "rejected";
  }
  return "unknown";
}

namespace {

std::string RegistrationSocketName(const PluginOptions& options) {
  if (options.pod_uid.empty()) return options.driver_name + "-reg.sock";
  return options.driver_name + "-" + options.pod_uid + "-reg.sock";
}

std::string DraSocketName(const PluginOptions& options) {
  if (options.pod_uid.empty()) return "dra.sock";
  return "dra-" + options.pod_uid + ".sock";
}

std::vector<std::string> SupportedVersions(bool health) {
  std::vector<std::string> versions = {kDraV1Service, kDraV1beta1Service};
  if (health) {
    versions.push_back(kHealthV1Service);
    versions.push_back(kHealthService);
  }
  return versions;
}

}  // namespace

class Plugin::Impl {
 public:
  Impl(PluginOptions options, claims::ClaimPreparer& preparer, HealthSource* health)
      : options_(std::move(options)),
        calls_(preparer, options_.max_claims_per_request),
        v1_(calls_),
        v1beta1_(calls_),
        registration_(options_.driver_name, DraSocketPath(),
                      SupportedVersions(health != nullptr)) {
    std::vector<grpc::Service*> dra_services = {&v1_, &v1beta1_};
    if (health != nullptr) {
      health_ = std::make_unique<HealthStreams>(*health);
      health_v1_ = std::make_unique<HealthServiceV1>(*health_);
      health_v1alpha1_ = std::make_unique<HealthServiceV1alpha1>(*health_);
      dra_services.push_back(health_v1_.get());
      dra_services.push_back(health_v1alpha1_.get());
    }
    dra_server_ = std::make_unique<UnixSocketServer>(DraSocketPath(), dra_services,
                                                     options_.max_request_bytes);
    registration_server_ = std::make_unique<UnixSocketServer>(
        RegistrationSocketPath(), std::vector<grpc::Service*>{&registration_},
        options_.max_request_bytes);
  }

  ~Impl() { Stop(); }

  std::string RegistrationSocketPath() const {
    return options_.registrar_dir + "/" + RegistrationSocketName(options_);
  }
  std::string DraSocketPath() const {
    return options_.plugin_dir + "/" + DraSocketName(options_);
  }

  Status Start() {
    if (options_.plugin_dir.empty()) return InvalidArgumentError("kubelet plugin: no plugin dir");
    std::error_code error;
    std::filesystem::create_directories(options_.plugin_dir, error);
    EFADRA_RETURN_IF_ERROR(WriteInstanceMarker());
    // DRA first: the kubelet may call it the moment the registration socket appears.
    EFADRA_RETURN_IF_ERROR(dra_server_->Start().WithContext("DRA service"));
    registration_.Reset();
    Status registration = registration_server_->Start();
    if (!registration.ok()) {
      dra_server_->Stop(std::chrono::milliseconds(0));
      return registration.WithContext("registration service");
    }
    spdlog::info("serving the kubelet: registration {}, DRA {} ({})", RegistrationSocketPath(),
                 DraSocketPath(), options_.pod_uid.empty() ? "single instance" : "rolling-update mode");
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = false;
      serving_ = true;
    }
    watcher_ = std::thread([this] { WatchSockets(); });
    return Status::Ok();
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!serving_) return;
      stopping_ = true;
      serving_ = false;
    }
    wake_.notify_all();
    if (watcher_.joinable()) watcher_.join();
    // Registration first, so the kubelet stops routing new calls to us; then let in-flight
    // prepares finish within the grace period.
    registration_server_->Stop(std::chrono::milliseconds(0));
    if (health_) health_->Stop();
    dra_server_->Stop(options_.shutdown_grace);
    std::error_code error;
    std::filesystem::remove(InstanceMarkerPath(options_.plugin_dir, options_.pod_uid), error);
    spdlog::info("stopped serving the kubelet; sockets removed");
  }

  // The marker holds our pid, for a person reading the directory.
  Status WriteInstanceMarker() const {
    const std::string path = InstanceMarkerPath(options_.plugin_dir, options_.pod_uid);
    std::ofstream out(path, std::ios::trunc);
    out << ::getpid() << "\n";
    if (!out.good()) return UnavailableError("write instance marker " + path);
    return Status::Ok();
  }

  RegistrationState Registration() const {
    std::lock_guard<std::mutex> lock(mu_);
    if (!serving_) return {};
    return registration_.State();
  }

  bool Serving() const {
    std::lock_guard<std::mutex> lock(mu_);
    return serving_ && dra_server_->SocketIntact() && registration_server_->SocketIntact();
  }

  void OnRegistered(std::function<void()> callback) {
    registration_.OnRegistered(std::move(callback));
  }
  void WriteDeviceStatusWith(claims::DeviceStatusWriter* writer) {
    calls_.WriteDeviceStatusWith(writer);
  }
  void RefusePreparesWhile(std::function<std::string()> reason) {
    calls_.RefusePreparesWhile(std::move(reason));
  }
  void OnCall(std::function<void(const CallRecord&)> callback) {
    calls_.OnCall(std::move(callback));
  }

 private:
  // Re-creates a socket or the instance marker whose file vanished (the kubelet restarted and
  // recreated its directories, or someone cleaned up) and re-offers a rejected registration
  // after a while.
  void WatchSockets() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      wake_.wait_for(lock, options_.socket_check_period, [this] { return stopping_; });
      if (stopping_) break;
      lock.unlock();
      // Without the marker the twin would take this instance for a foreign driver and
      // refuse its prepares.
      const std::string marker = InstanceMarkerPath(options_.plugin_dir, options_.pod_uid);
      if (std::error_code error; !std::filesystem::exists(marker, error)) {
        spdlog::warn("instance marker {} is gone; writing it again", marker);
        std::filesystem::create_directories(options_.plugin_dir, error);
        if (Status written = WriteInstanceMarker(); !written.ok()) {
          spdlog::error("{} (will retry)", written.message());
        }
      }
      if (!dra_server_->SocketIntact()) {
        spdlog::warn("DRA socket {} is gone; serving it again", DraSocketPath());
        Restart(*dra_server_, "DRA service");
      }
      const auto rejected_at = registration_.RejectedAt();
      const bool retry_rejected =
          rejected_at && std::chrono::steady_clock::now() - *rejected_at >= options_.rejected_retry;
      if (!registration_server_->SocketIntact() || retry_rejected) {
        spdlog::warn("registration socket {} {}; offering the registration again",
                     RegistrationSocketPath(),
                     retry_rejected ? "was rejected" : "is gone (kubelet restart?)");
        Restart(*registration_server_, "registration service", [this] { registration_.Reset(); });
      }
      lock.lock();
    }
  }

  // `between` runs after the old socket is gone and before the new one exists, so no kubelet
  // call can see its intermediate state.
  static void Restart(UnixSocketServer& server, std::string_view what,
                      const std::function<void()>& between = {}) {
    server.Stop(std::chrono::milliseconds(0));
    if (between) between();
    Status started = server.Start();
    if (!started.ok()) spdlog::error("{}: {} (will retry)", what, started.message());
  }

  const PluginOptions options_;
  ClaimCalls calls_;
  DraService<DraV1> v1_;
  DraService<DraV1beta1> v1beta1_;
  RegistrationService registration_;
  std::unique_ptr<HealthStreams> health_;
  std::unique_ptr<HealthServiceV1> health_v1_;
  std::unique_ptr<HealthServiceV1alpha1> health_v1alpha1_;
  std::unique_ptr<UnixSocketServer> dra_server_;
  std::unique_ptr<UnixSocketServer> registration_server_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool serving_ = false;   // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::thread watcher_;
};

Plugin::Plugin(PluginOptions options, claims::ClaimPreparer& preparer, HealthSource* health)
    : impl_(std::make_unique<Impl>(std::move(options), preparer, health)) {}
Plugin::~Plugin() = default;
void Plugin::OnRegistered(std::function<void()> callback) {
  impl_->OnRegistered(std::move(callback));
}
void Plugin::OnCall(std::function<void(const CallRecord&)> callback) {
  impl_->OnCall(std::move(callback));
}
void Plugin::WriteDeviceStatusWith(claims::DeviceStatusWriter* writer) {
  impl_->WriteDeviceStatusWith(writer);
}

void Plugin::RefusePreparesWhile(std::function<std::string()> reason) {
  impl_->RefusePreparesWhile(std::move(reason));
}
Status Plugin::Start() { return impl_->Start(); }
void Plugin::Stop() { impl_->Stop(); }
std::string Plugin::RegistrationSocketPath() const { return impl_->RegistrationSocketPath(); }
std::string Plugin::DraSocketPath() const { return impl_->DraSocketPath(); }
RegistrationState Plugin::Registration() const { return impl_->Registration(); }
bool Plugin::Serving() const { return impl_->Serving(); }

}  // namespace efadra::kubelet
