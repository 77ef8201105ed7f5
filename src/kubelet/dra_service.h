// The kubelet's DRAPlugin service, once for each API version. v1 and v1beta1 have the same
// RPCs and messages (v1 adds Device.share_id), so one template serves both and the answers
// are identical except for that field.
#pragma once

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "claim_calls.h"
#include "dra/v1/api.grpc.pb.h"
#include "dra/v1beta1/api.grpc.pb.h"

namespace efadra::kubelet {

struct DraV1 {
  using Service = k8s::io::kubelet::pkg::apis::dra::v1::DRAPlugin::Service;
  using Api = k8s::io::kubelet::pkg::apis::dra::v1::DRAPlugin;
  using PrepareRequest = k8s::io::kubelet::pkg::apis::dra::v1::NodePrepareResourcesRequest;
  using PrepareResponse = k8s::io::kubelet::pkg::apis::dra::v1::NodePrepareResourcesResponse;
  using UnprepareRequest = k8s::io::kubelet::pkg::apis::dra::v1::NodeUnprepareResourcesRequest;
  using UnprepareResponse = k8s::io::kubelet::pkg::apis::dra::v1::NodeUnprepareResourcesResponse;
  static constexpr char kVersion[] = "v1";
  static constexpr bool kHasShareId = true;
};

struct DraV1beta1 {
  using Service = k8s::io::kubelet::pkg::apis::dra::v1beta1::DRAPlugin::Service;
  using Api = k8s::io::kubelet::pkg::apis::dra::v1beta1::DRAPlugin;
  using PrepareRequest = k8s::io::kubelet::pkg::apis::dra::v1beta1::NodePrepareResourcesRequest;
  using PrepareResponse = k8s::io::kubelet::pkg::apis::dra::v1beta1::NodePrepareResourcesResponse;
  using UnprepareRequest = k8s::io::kubelet::pkg::apis::dra::v1beta1::NodeUnprepareResourcesRequest;
  using UnprepareResponse =
      k8s::io::kubelet::pkg::apis::dra::v1beta1::NodeUnprepareResourcesResponse;
  static constexpr char kVersion[] = "v1beta1";
  static constexpr bool kHasShareId = false;
};

template <typename Version>
class DraService final : public Version::Service {
 public:
  explicit DraService(ClaimCalls& calls) : calls_(calls) {}

  grpc::Status NodePrepareResources(grpc::ServerContext* context,
                                    const typename Version::PrepareRequest* request,
                                    typename Version::PrepareResponse* response) override {
    const auto start = std::chrono::steady_clock::now();
    const std::vector<claims::ClaimRef> refs = Refs(*request);
    if (grpc::Status valid = calls_.Check(refs); !valid.ok()) {
      spdlog::error("NodePrepareResources ({}): {}", Version::kVersion, valid.error_message());
      return valid;
    }
    size_t failed = 0;
    for (auto& [uid, result] : calls_.Prepare(refs, Deadline(*context))) {
      auto& entry = (*response->mutable_claims())[uid];
      if (!result.status.ok()) {
        ++failed;
        entry.set_error(result.status.message());
        spdlog::error("NodePrepareResources ({}): {}", Version::kVersion, result.status.message());
        continue;
      }
      for (const claims::PreparedDevice& device : result.devices) {
        auto* out = entry.add_devices();
        for (const auto& name : device.request_names) out->add_request_names(name);
        out->set_pool_name(device.pool_name);
        out->set_device_name(device.device_name);
        for (const auto& id : device.cdi_device_ids) out->add_cdi_device_ids(id);
        if constexpr (Version::kHasShareId) {
          if (device.share_id.has_value()) out->set_share_id(*device.share_id);
        }
      }
    }
    calls_.Record({"NodePrepareResources", Version::kVersion, refs.size(), failed,
                   std::chrono::steady_clock::now() - start});
    return grpc::Status::OK;
  }

  grpc::Status NodeUnprepareResources(grpc::ServerContext* context,
                                      const typename Version::UnprepareRequest* request,
                                      typename Version::UnprepareResponse* response) override {
    const auto start = std::chrono::steady_clock::now();
    const std::vector<claims::ClaimRef> refs = Refs(*request);
    if (grpc::Status valid = calls_.Check(refs); !valid.ok()) {
      spdlog::error("NodeUnprepareResources ({}): {}", Version::kVersion, valid.error_message());
      return valid;
    }
    size_t failed = 0;
    for (auto& [uid, status] : calls_.Unprepare(refs, Deadline(*context))) {
      auto& entry = (*response->mutable_claims())[uid];
      if (!status.ok()) {
        ++failed;
        entry.set_error(status.message());
        spdlog::error("NodeUnprepareResources ({}): {}", Version::kVersion, status.message());
      }
    }
    calls_.Record({"NodeUnprepareResources", Version::kVersion, refs.size(), failed,
                   std::chrono::steady_clock::now() - start});
    return grpc::Status::OK;
  }

 private:
  // The kubelet's deadline for this call (45 s per DRA call, contracts.md §2.4), on the steady
  // clock the preparer waits with, less a tenth (at most a second) so that a claim that gives
  // up still gets its error to the kubelet in time. A call without a deadline (gRPC's infinite
  // future) waits freely.
  static std::chrono::steady_clock::time_point Deadline(const grpc::ServerContext& context) {
    const auto remaining = context.deadline() - std::chrono::system_clock::now();
    if (remaining > std::chrono::hours(24 * 365)) return claims::kNoDeadline;
    const auto margin = std::min<std::chrono::system_clock::duration>(remaining / 10,
                                                                      std::chrono::seconds(1));
    return std::chrono::steady_clock::now() +
           std::chrono::duration_cast<std::chrono::steady_clock::duration>(remaining - margin);
  }

  template <typename Request>
  static std::vector<claims::ClaimRef> Refs(const Request& request) {
    std::vector<claims::ClaimRef> refs;
    refs.reserve(static_cast<size_t>(request.claims_size()));
    for (const auto& claim : request.claims()) {
      refs.push_back({claim.namespace_(), claim.name(), claim.uid()});
    }
    return refs;
  }

  ClaimCalls& calls_;
};

}  // namespace efadra::kubelet
