// v1alpha1.DRAResourceHealth: a server stream of the complete device-health list, sent at
// once, on every change and every `resend` (the kubelet marks devices it has not heard about
// for 30 s as Unknown; contracts.md §3).
#pragma once

#include <atomic>
#include <chrono>

#include "drahealth/v1alpha1/api.grpc.pb.h"
#include "efadra/kubelet/health_source.h"

namespace efadra::kubelet {

class HealthService final : public v1alpha1::DRAResourceHealth::Service {
 public:
  explicit HealthService(const HealthSource& source,
                         std::chrono::milliseconds resend = std::chrono::seconds(10))
      : source_(source), resend_(resend) {}

  grpc::Status NodeWatchResources(
      grpc::ServerContext* context, const v1alpha1::NodeWatchResourcesRequest* request,
      grpc::ServerWriter<v1alpha1::NodeWatchResourcesResponse>* writer) override;

  // Ends every open stream soon (before the server shuts down).
  void Stop() { stopping_ = true; }

 private:
  const HealthSource& source_;
  const std::chrono::milliseconds resend_;
  std::atomic<bool> stopping_{false};
};

}  // namespace efadra::kubelet
