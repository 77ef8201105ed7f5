#include "claim_calls.h"

namespace efadra::kubelet {

grpc::Status ClaimCalls::Check(const std::vector<claims::ClaimRef>& claims) const {
  if (claims.size() > max_claims_) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "request has " + std::to_string(claims.size()) + " claims; at most " +
                std::to_string(max_claims_) + " are accepted"};
  }
  for (size_t i = 0; i < claims.size(); ++i) {
    if (claims[i].uid.empty()) {
      // The response is keyed by UID, so such a claim cannot even get its own error.
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "claim " + std::to_string(i) + " (" + claims[i].namespace_name + "/" +
                  claims[i].name + ") has an empty UID"};
    }
  }
  return grpc::Status::OK;
}

std::map<std::string, claims::PrepareResult> ClaimCalls::Prepare(
    const std::vector<claims::ClaimRef>& claims, std::chrono::steady_clock::time_point deadline) {
  if (const std::string reason = refusal_ ? refusal_() : std::string(); !reason.empty()) {
    std::map<std::string, claims::PrepareResult> refused;
    for (const auto& claim : claims) {
      refused[claim.uid].status =
          FailedPreconditionError("claim " + claim.namespace_name + "/" + claim.name +
                                  " not prepared: " + reason);
    }
    return refused;
  }
  std::map<std::string, claims::PrepareResult> results = preparer_.Prepare(claims, deadline);
  if (status_writer_ != nullptr) {
    for (const auto& claim : claims) {
      auto it = results.find(claim.uid);
      if (it != results.end() && it->second.status.ok()) {
        status_writer_->Prepared(claim, it->second.devices);
      }
    }
  }
  return results;
}

std::map<std::string, Status> ClaimCalls::Unprepare(
    const std::vector<claims::ClaimRef>& claims, std::chrono::steady_clock::time_point deadline) {
  std::map<std::string, Status> results = preparer_.Unprepare(claims, deadline);
  if (status_writer_ != nullptr) {
    for (const auto& claim : claims) {
      auto it = results.find(claim.uid);
      if (it != results.end() && it->second.ok()) status_writer_->Unprepared(claim);
    }
  }
  return results;
}

}  // namespace efadra::kubelet
