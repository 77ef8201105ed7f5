// ApiRequestObserver: feeds kube::Client requests into efa_dra_api_requests_total and
// efa_dra_api_request_duration_seconds (driver_metrics.h).
//
//   observe::ApiRequestObserver api_observer(*driver_metrics);
//   client->SetObserver(&api_observer);   // must outlive the client
//
// Only kube/client.h's pure RequestObserver interface is used; observe does not link efadra_kube.
// Thread safety: OnRequest may be called from any number of threads at once.
#pragma once

#include <chrono>
#include <string_view>

#include "efadra/kube/client.h"
#include "efadra/observe/driver_metrics.h"

namespace efadra::observe {

class ApiRequestObserver final : public kube::RequestObserver {
 public:
  // `metrics` is not owned and must outlive this observer.
  explicit ApiRequestObserver(DriverMetrics& metrics) : metrics_(metrics) {}

  void OnRequest(std::string_view verb, int code, std::chrono::microseconds latency) override;

 private:
  DriverMetrics& metrics_;
};

}  // namespace efadra::observe
