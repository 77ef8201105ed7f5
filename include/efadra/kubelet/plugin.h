// The kubelet side of the driver: the DRA gRPC services (v1 and v1beta1, plus the device-health
// stream when a HealthSource is given) on <plugin-dir>/dra.sock and the plugin-registration
// service on <registrar-dir>/<driver>-reg.sock (contracts.md §1, §2, §4.1).
//
// Start() serves the DRA socket first and the registration socket second, because the kubelet
// may call the DRA endpoint as soon as it sees the registration socket. Stale sockets of a
// crashed instance are replaced; directories are created. While running, a watcher re-creates
// a socket whose file vanished (the kubelet's restart recreates its plugin directories), which
// makes the kubelet register the driver again without a driver restart. Stop() lets in-flight
// calls finish (bounded), stops serving and removes both sockets.
//
// With a pod UID (rolling-update mode) the sockets are <driver>-<podUID>-reg.sock and
// dra-<podUID>.sock so an old and a new pod can overlap; the preparer then serialises its
// writes with the twin through an flock on SharedLockPath(plugin dir) and re-reads the shared
// checkpoints first (claim_preparer.h), so the two pods never disagree about what is
// prepared. While serving, the plugin keeps its instance marker (coexistence.h) in the plugin
// directory, which tells its twin apart from another program registered under the same driver
// name; the watcher writes it again when the directory was wiped. The kubelet's deadline of
// each call reaches the preparer, which fails a claim rather than answer after it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "efadra/claims/claim_preparer.h"
#include "efadra/claims/device_status_writer.h"
#include "efadra/core/status.h"
#include "efadra/kubelet/health_source.h"

namespace efadra::kubelet {

// The strings the kubelet matches (contracts.md §1.2, §2.1, §3).
inline constexpr char kPluginType[] = "DRAPlugin";
inline constexpr char kDraV1Service[] = "v1.DRAPlugin";
inline constexpr char kDraV1beta1Service[] = "v1beta1.DRAPlugin";
// Both health versions are advertised, GA first (a kubelet takes the first one it knows); a
// kubelet that knows neither ignores them and still uses the DRAPlugin service.
inline constexpr char kHealthV1Service[] = "v1.DRAResourceHealth";
inline constexpr char kHealthService[] = "v1alpha1.DRAResourceHealth";

// The lock file a rolling-update pair shares: claims::PreparerOptions::shared_lock_path.
inline std::string SharedLockPath(const std::string& plugin_dir) {
  return plugin_dir + "/serialize.lock";
}

struct PluginOptions {
  std::string driver_name = "dra.net";
  std::string registrar_dir = "/var/lib/kubelet/plugins_registry";
  std::string plugin_dir;  // e.g. /var/lib/kubelet/plugins/dra.net
  std::string pod_uid;     // non-empty: rolling-update socket and marker names
  // How often the watcher checks that both socket files are still ours.
  std::chrono::milliseconds socket_check_period{1000};
  // After the kubelet rejects the registration, re-offer it (re-create the socket) this late.
  std::chrono::milliseconds rejected_retry{30'000};
  // Stop() waits this long for in-flight calls before cancelling them.
  std::chrono::milliseconds shutdown_grace{5'000};
  // Largest accepted request (bytes) and claims per request; both far above what a kubelet sends.
  int max_request_bytes = 4 << 20;
  size_t max_claims_per_request = 1024;
};

// What the kubelet last said through NotifyRegistrationStatus.
struct RegistrationState {
  enum class Phase { kNotServing, kWaitingForKubelet, kRegistered, kRejected };
  Phase phase = Phase::kNotServing;
  std::string error;     // the kubelet's text when rejected
  int registrations = 0;  // successful registrations since Start (re-registrations count)
};
std::string_view PhaseName(RegistrationState::Phase phase);

// Seen by the metrics: one finished prepare or unprepare call.
struct CallRecord {
  std::string_view method;       // "NodePrepareResources" | "NodeUnprepareResources"
  std::string_view api_version;  // "v1" | "v1beta1"
  size_t claims = 0;
  size_t failed_claims = 0;
  std::chrono::nanoseconds duration{0};
};

class Plugin {
 public:
  // `preparer` (and `health`, when given) must outlive the plugin.
  Plugin(PluginOptions options, claims::ClaimPreparer& preparer, HealthSource* health = nullptr);
  ~Plugin();
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  // Called after every successful (re-)registration, on a gRPC thread; keep it short.
  void OnRegistered(std::function<void()> callback);
  // Called after every prepare/unprepare RPC, on a gRPC thread.
  void OnCall(std::function<void(const CallRecord&)> callback);
  // Before Start(): while `reason` returns non-empty text (another driver also hands out these
  // devices), prepares fail per claim with that text; unprepares go on. Called per RPC.
  void RefusePreparesWhile(std::function<std::string()> reason);
  // Before serving; optional, not owned, must outlive the plugin: every successful prepare and
  // unprepare is handed to it (status.devices of the claim), without waiting for its write.
  void WriteDeviceStatusWith(claims::DeviceStatusWriter* writer);

  Status Start();
  void Stop();

  std::string RegistrationSocketPath() const;
  std::string DraSocketPath() const;
  RegistrationState Registration() const;
  // True while both sockets are served (for /healthz).
  bool Serving() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace efadra::kubelet
