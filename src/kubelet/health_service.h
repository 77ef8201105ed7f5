// v1alpha1.DRAResourceHealth and v1.DRAResourceHealth (same messages, different package): a
// server stream of the complete device-health list, sent at
// once, on every change and every `resend` (the kubelet marks devices it has not heard about
// for 30 s as Unknown; contracts.md §3).
#pragma once

#include <atomic>
#include <chrono>

#include "drahealth/v1/api.grpc.pb.h"
#include "drahealth/v1alpha1/api.grpc.pb.h"
#include "efadra/kubelet/health_source.h"

namespace efadra::kubelet {

// Both versions are served side by side from one source, so a kubelet that picks either one
// sees the same list; `Stop()` is shared so both end their streams together.
class HealthStreams {
 public:
  explicit HealthStreams(const HealthSource& source,
                         std::chrono::milliseconds resend = std::chrono::seconds(10))
      : source_(source), resend_(resend) {}

  // Streams `Api`'s response type until the client goes away or Stop() is called.
  template <typename Api>
  grpc::Status Watch(grpc::ServerContext* context,
                     grpc::ServerWriter<typename Api::NodeWatchResourcesResponse>* writer);

  void Stop() { stopping_ = true; }

 private:
  const HealthSource& source_;
  const std::chrono::milliseconds resend_;
  std::atomic<bool> stopping_{false};
};

// Marks the proto namespace of one health API version for HealthStreams::Watch.
struct HealthV1alpha1 {
  using NodeWatchResourcesResponse = v1alpha1::NodeWatchResourcesResponse;
  using HealthStatus = v1alpha1::HealthStatus;
  static constexpr HealthStatus kUnknown = v1alpha1::UNKNOWN;
  static constexpr HealthStatus kHealthy = v1alpha1::HEALTHY;
  static constexpr HealthStatus kUnhealthy = v1alpha1::UNHEALTHY;
};
struct HealthV1 {
  using NodeWatchResourcesResponse = ::v1::NodeWatchResourcesResponse;
  using HealthStatus = ::v1::HealthStatus;
  static constexpr HealthStatus kUnknown = ::v1::UNKNOWN;
  static constexpr HealthStatus kHealthy = ::v1::HEALTHY;
  static constexpr HealthStatus kUnhealthy = ::v1::UNHEALTHY;
};

class HealthServiceV1alpha1 final : public v1alpha1::DRAResourceHealth::Service {
 public:
  explicit HealthServiceV1alpha1(HealthStreams& streams) : streams_(streams) {}
  grpc::Status NodeWatchResources(
      grpc::ServerContext* context, const v1alpha1::NodeWatchResourcesRequest* /*request*/,
      grpc::ServerWriter<v1alpha1::NodeWatchResourcesResponse>* writer) override {
    return streams_.Watch<HealthV1alpha1>(context, writer);
  }

 private:
  HealthStreams& streams_;
};

class HealthServiceV1 final : public ::v1::DRAResourceHealth::Service {
 public:
  explicit HealthServiceV1(HealthStreams& streams) : streams_(streams) {}
  grpc::Status NodeWatchResources(
      grpc::ServerContext* context, const ::v1::NodeWatchResourcesRequest* /*request*/,
      grpc::ServerWriter<::v1::NodeWatchResourcesResponse>* writer) override {
    return streams_.Watch<HealthV1>(context, writer);
  }

 private:
  HealthStreams& streams_;
};

}  // namespace efadra::kubelet
