#include "health_service.h"

#include <algorithm>

namespace efadra::kubelet {
namespace {

template <typename Api>
typename Api::HealthStatus ToProto(DeviceHealthReport::Health health) {
  switch (health) {
    case DeviceHealthReport::Health::kHealthy:
      return Api::kHealthy;
    case DeviceHealthReport::Health::kUnhealthy:
      return Api::kUnhealthy;
    case DeviceHealthReport::Health::kUnknown:
      break;
  }
  return Api::kUnknown;
}

// The kubelet cuts longer messages itself; sending less keeps the stream small.
constexpr size_t kMaxMessage = 1024;

}  // namespace

template <typename Api>
grpc::Status HealthStreams::Watch(
    grpc::ServerContext* context,
    grpc::ServerWriter<typename Api::NodeWatchResourcesResponse>* writer) {
  // Wake up at least this often to notice a cancelled stream or a stopping server.
  constexpr std::chrono::milliseconds kPoll(500);
  uint64_t sent_version = 0;
  bool first = true;
  auto last_sent = std::chrono::steady_clock::now();
  while (!stopping_ && !context->IsCancelled()) {
    uint64_t version = 0;
    const auto now = std::chrono::steady_clock::now();
    std::vector<DeviceHealthReport> reports = source_.Snapshot(&version);
    if (first || version != sent_version || now - last_sent >= resend_) {
      typename Api::NodeWatchResourcesResponse response;
      for (const DeviceHealthReport& report : reports) {
        auto* device = response.add_devices();
        device->mutable_device()->set_pool_name(report.pool_name);
        device->mutable_device()->set_device_name(report.device_name);
        device->set_health(ToProto<Api>(report.health));
        device->set_last_updated_time(report.last_updated_unix);
        device->set_message(report.message.substr(0, kMaxMessage));
      }
      if (!writer->Write(response)) break;  // the kubelet went away
      first = false;
      sent_version = version;
      last_sent = now;
    }
    const auto until_resend = std::chrono::duration_cast<std::chrono::milliseconds>(
        resend_ - (std::chrono::steady_clock::now() - last_sent));
    source_.WaitForChange(sent_version,
                          std::clamp(until_resend, std::chrono::milliseconds(1), kPoll));
  }
  return grpc::Status::OK;
}

template grpc::Status HealthStreams::Watch<HealthV1alpha1>(
    grpc::ServerContext*, grpc::ServerWriter<HealthV1alpha1::NodeWatchResourcesResponse>*);
template grpc::Status HealthStreams::Watch<HealthV1>(
    grpc::ServerContext*, grpc::ServerWriter<HealthV1::NodeWatchResourcesResponse>*);

}  // namespace efadra::kubelet
