// DriverMetrics: the driver's whole metric set, defined in one place so every module records
// into the same names and labels (and the docs/dashboards have one list to follow).
//
//   efa_dra_prepare_total{api_version,result}          counter   claims prepared
//   efa_dra_prepare_duration_seconds{api_version}      histogram time to prepare one claim
//   efa_dra_unprepare_total{api_version,result}        counter   claims unprepared
//   efa_dra_unprepare_duration_seconds{api_version}    histogram time to unprepare one claim
//   efa_dra_published_devices                          gauge     devices in our ResourceSlices
//   efa_dra_published_slices                           gauge     ResourceSlices we own
//   efa_dra_api_requests_total{verb,code}              counter   API server requests
//   efa_dra_api_request_duration_seconds{verb}         histogram API server request latency
//   efa_dra_discovery_duration_seconds                 histogram one discovery pass
//   efa_dra_device_healthy{device}                     gauge     1 healthy, 0 not
//   efa_dra_prepared_claims                            gauge     claims currently prepared
//   efa_dra_device_plugin_conflict                     gauge     1 when an EFA device plugin
//                                                                 also serves this node
//   efa_dra_build_info{version,git_commit}             gauge     always 1
// api_version is "v1" or "v1beta1" (the DRA gRPC service served); result is "ok" or "error";
// verb is GET, LIST, WATCH, POST, PUT, DELETE; code is the HTTP status ("0" when the request
// never got one).
//
// Ownership: main() creates it on its Registry (which must outlive it) and passes
// `DriverMetrics*` (or the Registry) to modules; a null pointer means "not recording".
// Thread safety: every method may be called from any thread. Record* on the prepare path is
// lock-free for the predeclared api_version/result pairs.
#pragma once

#include <array>
#include <chrono>
#include <memory>
#include <string_view>

#include "efadra/core/status.h"
#include "efadra/observe/metrics.h"

namespace efadra::observe {

inline constexpr char kResultOk[] = "ok";
inline constexpr char kResultError[] = "error";

// Registers `name`{version,git_commit} = 1, the usual way to expose build identity.
Status RegisterBuildInfo(Registry& registry, std::string_view name, std::string_view version,
                         std::string_view git_commit);

class DriverMetrics {
 public:
  // Registers the set above, build_info with efadra::kVersion and efadra::kGitCommit, and
  // zero-valued children for api_version {v1, v1beta1} x result {ok, error} so rates exist
  // from the first scrape. Fails only if a name is already registered differently.
  static Result<std::unique_ptr<DriverMetrics>> Create(Registry& registry);

  // One claim through NodePrepareResources / NodeUnprepareResources.
  void RecordPrepare(std::string_view api_version, bool ok, std::chrono::nanoseconds latency);
  void RecordUnprepare(std::string_view api_version, bool ok, std::chrono::nanoseconds latency);
  // One API server request (the kube::RequestObserver adapter calls this).
  void RecordApiRequest(std::string_view verb, int code, std::chrono::nanoseconds latency);
  // One discovery pass (sysfs walk + enrichment).
  void RecordDiscovery(std::chrono::nanoseconds duration);

  // Health of one device (by its device name in the slice, e.g. "pci-0000-10-1c-0").
  void SetDeviceHealthy(std::string_view device, bool healthy);
  // Stops exporting a device that is gone from the node.
  void ForgetDevice(std::string_view device);

  // Plain gauges: Set() them, or SetFunction() to compute at scrape time.
  Gauge& published_devices() { return *published_devices_; }
  Gauge& published_slices() { return *published_slices_; }
  Gauge& prepared_claims() { return *prepared_claims_; }
  Gauge& device_plugin_conflict() { return *device_plugin_conflict_; }

  // The families, for anything the helpers above do not cover.
  CounterFamily& prepare_total() { return *prepare_total_; }
  HistogramFamily& prepare_duration() { return *prepare_duration_; }
  CounterFamily& unprepare_total() { return *unprepare_total_; }
  HistogramFamily& unprepare_duration() { return *unprepare_duration_; }
  CounterFamily& api_requests_total() { return *api_requests_total_; }
  HistogramFamily& api_request_duration() { return *api_request_duration_; }
  HistogramFamily& discovery_duration() { return *discovery_duration_; }
  CounterFamily& claim_status_failures_total() { return *claim_status_failures_total_; }
  GaugeFamily& device_healthy() { return *device_healthy_; }

 private:
  DriverMetrics() = default;

  // Cached children for the two served API versions, so the prepare path skips the lookup.
  struct PerVersion {
    Counter* ok = nullptr;
    Counter* error = nullptr;
    Histogram* duration = nullptr;
  };
  static constexpr std::array<std::string_view, 2> kApiVersions = {"v1", "v1beta1"};
  static void Record(CounterFamily& total, HistogramFamily& duration,
                     const std::array<PerVersion, 2>& cached, std::string_view api_version, bool ok,
                     std::chrono::nanoseconds latency);

  CounterFamily* prepare_total_ = nullptr;
  HistogramFamily* prepare_duration_ = nullptr;
  CounterFamily* unprepare_total_ = nullptr;
  HistogramFamily* unprepare_duration_ = nullptr;
  CounterFamily* api_requests_total_ = nullptr;
  HistogramFamily* api_request_duration_ = nullptr;
  HistogramFamily* discovery_duration_ = nullptr;
  CounterFamily* claim_status_failures_total_ = nullptr;
  GaugeFamily* device_healthy_ = nullptr;
  Gauge* published_devices_ = nullptr;
  Gauge* published_slices_ = nullptr;
  Gauge* prepared_claims_ = nullptr;
  Gauge* device_plugin_conflict_ = nullptr;
  std::array<PerVersion, 2> prepare_{};
  std::array<PerVersion, 2> unprepare_{};
};

}  // namespace efadra::observe
