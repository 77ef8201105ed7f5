#include "efadra/observe/driver_metrics.h"

#include <string>

#include "efadra/core/version.h"

namespace efadra::observe {
namespace {

Gauge* Unlabelled(GaugeFamily* family) { return &family->WithLabels(LabelValues{}); }

}  // namespace

Status RegisterBuildInfo(Registry& registry, std::string_view name, std::string_view version,
                         std::string_view git_commit) {
  EFADRA_ASSIGN_OR_RETURN(GaugeFamily * family,
                          registry.Gauge(name, "Build identity of the running binary (always 1).",
                                         {"version", "git_commit"}));
  family->WithLabels({version, git_commit}).Set(1);
  return Status::Ok();
}

Result<std::unique_ptr<DriverMetrics>> DriverMetrics::Create(Registry& registry) {
  std::unique_ptr<DriverMetrics> m(new DriverMetrics());
  EFADRA_ASSIGN_OR_RETURN(
      m->prepare_total_,
      registry.Counter("efa_dra_prepare_total",
                       "Claims handled by NodePrepareResources, by DRA API version and result.",
                       {"api_version", "result"}));
  EFADRA_ASSIGN_OR_RETURN(
      m->prepare_duration_,
      registry.Histogram("efa_dra_prepare_duration_seconds",
                         "Time to prepare one claim (checkpoint and CDI spec written).",
                         {"api_version"}));
  EFADRA_ASSIGN_OR_RETURN(
      m->unprepare_total_,
      registry.Counter("efa_dra_unprepare_total",
                       "Claims handled by NodeUnprepareResources, by DRA API version and result.",
                       {"api_version", "result"}));
  EFADRA_ASSIGN_OR_RETURN(m->unprepare_duration_,
                          registry.Histogram("efa_dra_unprepare_duration_seconds",
                                             "Time to unprepare one claim.", {"api_version"}));
  EFADRA_ASSIGN_OR_RETURN(
      m->api_requests_total_,
      registry.Counter("efa_dra_api_requests_total",
                       "Requests to the Kubernetes API server, by verb and HTTP status code "
                       "(0: no response).",
                       {"verb", "code"}));
  EFADRA_ASSIGN_OR_RETURN(
      m->api_request_duration_,
      registry.Histogram("efa_dra_api_request_duration_seconds",
                         "Latency of Kubernetes API server requests (watches: until the stream "
                         "ends).",
                         {"verb"}));
  EFADRA_ASSIGN_OR_RETURN(
      m->claim_status_failures_total_,
      registry.Counter("efa_dra_claim_status_failures_total",
                       "Writes of ResourceClaim status.devices that were given up, by reason "
                       "(forbidden, invalid, unsupported, gave_up, queue_full); prepares are "
                       "unaffected.",
                       {"reason"}));
  EFADRA_ASSIGN_OR_RETURN(
      m->discovery_duration_,
      registry.Histogram("efa_dra_discovery_duration_seconds",
                         "Time of one discovery pass over sysfs and the verbs devices."));
  EFADRA_ASSIGN_OR_RETURN(m->device_healthy_,
                          registry.Gauge("efa_dra_device_healthy",
                                         "1 if the EFA device is healthy, 0 if not.", {"device"}));
  EFADRA_ASSIGN_OR_RETURN(
      GaugeFamily * published_devices,
      registry.Gauge("efa_dra_published_devices",
                     "Devices in the ResourceSlices this driver publishes for its node."));
  EFADRA_ASSIGN_OR_RETURN(GaugeFamily * published_slices,
                          registry.Gauge("efa_dra_published_slices",
                                         "ResourceSlices this driver publishes for its node."));
  EFADRA_ASSIGN_OR_RETURN(
      GaugeFamily * prepared_claims,
      registry.Gauge("efa_dra_prepared_claims", "Claims currently prepared on this node."));
  EFADRA_ASSIGN_OR_RETURN(
      GaugeFamily * conflict,
      registry.Gauge("efa_dra_device_plugin_conflict",
                     "1 if an EFA device plugin also advertises this node's devices "
                     "(double allocation risk), else 0."));
  m->published_devices_ = Unlabelled(published_devices);
  m->published_slices_ = Unlabelled(published_slices);
  m->prepared_claims_ = Unlabelled(prepared_claims);
  m->device_plugin_conflict_ = Unlabelled(conflict);
  EFADRA_RETURN_IF_ERROR(
      RegisterBuildInfo(registry, "efa_dra_build_info", efadra::kVersion, efadra::kGitCommit));

  for (size_t i = 0; i < kApiVersions.size(); ++i) {
    std::string_view v = kApiVersions[i];
    m->prepare_[i] = {&m->prepare_total_->WithLabels({v, kResultOk}),
                      &m->prepare_total_->WithLabels({v, kResultError}),
                      &m->prepare_duration_->WithLabels({v})};
    m->unprepare_[i] = {&m->unprepare_total_->WithLabels({v, kResultOk}),
                        &m->unprepare_total_->WithLabels({v, kResultError}),
                        &m->unprepare_duration_->WithLabels({v})};
  }
  return m;
}

void DriverMetrics::Record(CounterFamily& total, HistogramFamily& duration,
                           const std::array<PerVersion, 2>& cached, std::string_view api_version,
                           bool ok, std::chrono::nanoseconds latency) {
  for (size_t i = 0; i < kApiVersions.size(); ++i) {
    if (kApiVersions[i] == api_version) {
      (ok ? cached[i].ok : cached[i].error)->Inc();
      cached[i].duration->ObserveDuration(latency);
      return;
    }
  }
  total.WithLabels({api_version, ok ? kResultOk : kResultError}).Inc();
  duration.WithLabels({api_version}).ObserveDuration(latency);
}

void DriverMetrics::RecordPrepare(std::string_view api_version, bool ok,
                                  std::chrono::nanoseconds latency) {
  Record(*prepare_total_, *prepare_duration_, prepare_, api_version, ok, latency);
}

void DriverMetrics::RecordUnprepare(std::string_view api_version, bool ok,
                                    std::chrono::nanoseconds latency) {
  Record(*unprepare_total_, *unprepare_duration_, unprepare_, api_version, ok, latency);
}

void DriverMetrics::RecordApiRequest(std::string_view verb, int code,
                                     std::chrono::nanoseconds latency) {
  const std::string code_text = std::to_string(code);
  api_requests_total_->WithLabels({verb, code_text}).Inc();
  api_request_duration_->WithLabels({verb}).ObserveDuration(latency);
}

void DriverMetrics::RecordDiscovery(std::chrono::nanoseconds duration) {
  discovery_duration_->WithLabels(LabelValues{}).ObserveDuration(duration);
}

void DriverMetrics::SetDeviceHealthy(std::string_view device, bool healthy) {
  device_healthy_->WithLabels({device}).SetBool(healthy);
}

void DriverMetrics::ForgetDevice(std::string_view device) {
  device_healthy_->Remove(LabelValues{std::string(device)});
}

}  // namespace efadra::observe
