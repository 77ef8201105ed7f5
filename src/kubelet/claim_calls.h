// What the v1 and v1beta1 DRA services share: the preparer, the refusal while a conflict
// lasts, request limits and the per-call record. The serialisation of a rolling-update pair is
// the preparer's (PreparerOptions::shared_lock_path): it holds the shared lock only around its
// check-and-write, never across an API request.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "efadra/claims/claim_preparer.h"
#include "efadra/claims/device_status_writer.h"
#include "efadra/kubelet/plugin.h"

namespace efadra::kubelet {

class ClaimCalls {
 public:
  ClaimCalls(claims::ClaimPreparer& preparer, size_t max_claims)
      : preparer_(preparer), max_claims_(max_claims) {}

  void OnCall(std::function<void(const CallRecord&)> callback) { on_call_ = std::move(callback); }
  // Before serving: while `reason` returns non-empty text, every claim of a prepare fails with
  // it (unprepare always proceeds).
  void RefusePreparesWhile(std::function<std::string()> reason) { refusal_ = std::move(reason); }

  // INVALID_ARGUMENT for requests no kubelet sends (too many claims, a claim without UID);
  // everything else is answered per claim.
  grpc::Status Check(const std::vector<claims::ClaimRef>& claims) const;

  // `deadline` is the kubelet's (the gRPC call's); claims that would wait past it fail.
  std::map<std::string, claims::PrepareResult> Prepare(
      const std::vector<claims::ClaimRef>& claims, std::chrono::steady_clock::time_point deadline);
  std::map<std::string, Status> Unprepare(const std::vector<claims::ClaimRef>& claims,
                                          std::chrono::steady_clock::time_point deadline);

  // Optional, not owned: told about every successful prepare and unprepare, after the
  // preparer answered (it only queues; the kubelet's answer never waits for the API write).
  void WriteDeviceStatusWith(claims::DeviceStatusWriter* writer) { status_writer_ = writer; }

  void Record(const CallRecord& record) const {
    if (on_call_) on_call_(record);
  }

 private:
  claims::ClaimPreparer& preparer_;
  const size_t max_claims_;
  std::function<void(const CallRecord&)> on_call_;
  std::function<std::string()> refusal_;
  claims::DeviceStatusWriter* status_writer_ = nullptr;
};

}  // namespace efadra::kubelet
