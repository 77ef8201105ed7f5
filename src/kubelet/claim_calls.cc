#include "claim_calls.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

namespace efadra::kubelet {

class ClaimCalls::SharedLock {
 public:
  explicit SharedLock(ClaimCalls& calls) : calls_(calls) {
    if (calls_.lock_fd_ < 0) return;
    calls_.lock_mu_.lock();
    while (::flock(calls_.lock_fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
    std::vector<std::string> warnings;
    Status synced = calls_.preparer_.SyncWithDisk(&warnings);
    if (!synced.ok()) spdlog::error("re-read shared checkpoints: {}", synced.message());
  }
  ~SharedLock() {
    if (calls_.lock_fd_ < 0) return;
    ::flock(calls_.lock_fd_, LOCK_UN);
    calls_.lock_mu_.unlock();
  }
  SharedLock(const SharedLock&) = delete;
  SharedLock& operator=(const SharedLock&) = delete;

 private:
  ClaimCalls& calls_;
};

ClaimCalls::~ClaimCalls() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Status ClaimCalls::EnableSharedLock(const std::string& lock_path) {
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return UnavailableError("open lock file " + lock_path + ": " + strerror(errno));
  lock_fd_ = fd;
  return Status::Ok();
}

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
    const std::vector<claims::ClaimRef>& claims) {
  if (const std::string reason = refusal_ ? refusal_() : std::string(); !reason.empty()) {
    std::map<std::string, claims::PrepareResult> refused;
    for (const auto& claim : claims) {
      refused[claim.uid].status =
          FailedPreconditionError("claim " + claim.namespace_name + "/" + claim.name +
                                  " not prepared: " + reason);
    }
    return refused;
  }
  SharedLock lock(*this);
  return preparer_.Prepare(claims);
}

std::map<std::string, Status> ClaimCalls::Unprepare(const std::vector<claims::ClaimRef>& claims) {
  SharedLock lock(*this);
  return preparer_.Unprepare(claims);
}

}  // namespace efadra::kubelet
