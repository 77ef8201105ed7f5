// What the v1 and v1beta1 DRA services share: the preparer, the optional cross-process
// serialisation of a rolling-update pair, request limits and the per-call record.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "efadra/claims/claim_preparer.h"
#include "efadra/kubelet/plugin.h"

namespace efadra::kubelet {

class ClaimCalls {
 public:
  ClaimCalls(claims::ClaimPreparer& preparer, size_t max_claims)
      : preparer_(preparer), max_claims_(max_claims) {}
  ~ClaimCalls();

  // Rolling-update mode: every call holds an flock on this file (shared with the twin pod)
  // and re-reads the checkpoints first.
  Status EnableSharedLock(const std::string& lock_path);
  void OnCall(std::function<void(const CallRecord&)> callback) { on_call_ = std::move(callback); }
  // Before serving: while `reason` returns non-empty text, every claim of a prepare fails with
  // it (unprepare always proceeds).
  void RefusePreparesWhile(std::function<std::string()> reason) { refusal_ = std::move(reason); }

  // INVALID_ARGUMENT for requests no kubelet sends (too many claims, a claim without UID);
  // everything else is answered per claim.
  grpc::Status Check(const std::vector<claims::ClaimRef>& claims) const;

  std::map<std::string, claims::PrepareResult> Prepare(const std::vector<claims::ClaimRef>& claims);
  std::map<std::string, Status> Unprepare(const std::vector<claims::ClaimRef>& claims);

  void Record(const CallRecord& record) const {
    if (on_call_) on_call_(record);
  }

 private:
  // Holds the in-process mutex and the flock for the scope (a no-op without a shared lock).
  class SharedLock;

  claims::ClaimPreparer& preparer_;
  const size_t max_claims_;
  std::function<void(const CallRecord&)> on_call_;
  std::function<std::string()> refusal_;
  int lock_fd_ = -1;
  std::mutex lock_mu_;  // flock is per open file, so threads of this process queue here first
};

}  // namespace efadra::kubelet
