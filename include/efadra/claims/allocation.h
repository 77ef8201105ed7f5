// Reading a ResourceClaim's allocation: which of its results are this driver's, on this node.
// Pure (no I/O); the ClaimPreparer and the fuzz target use it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "efadra/core/status.h"

namespace efadra::claims {

// One allocation result of our driver and pool.
struct AllocationResult {
  std::string request;  // as allocated: "efa" or "efa/sub" (a firstAvailable sub-request)
  std::string device;
  bool admin_access = false;
  std::optional<std::string> share_id;
};

// The results of `claim` (a resource.k8s.io/v1 ResourceClaim object) whose driver is `driver`
// and whose pool is `pool`, in order. kFailedPrecondition when the claim is not allocated;
// kInvalidArgument when the allocation is malformed. `what` ("claim ns/name (uid u)") starts
// every message. An allocation without device results (a config-only claim) is empty, not an
// error.
Result<std::vector<AllocationResult>> OurAllocationResults(const nlohmann::json& claim,
                                                           const std::string& what,
                                                           const std::string& driver,
                                                           const std::string& pool);

// Opaque device configuration for `driver` that applies to any of `ours` (its `requests` name
// one of them, by full or base name, or are empty: every request) must carry no parameters:
// this driver takes none. DRANET's interface, routes and ethtool settings, which it rejects for
// RDMA-only devices, mean nothing for an EFA either. kInvalidArgument naming the claim, the
// entry (index, source, requests) and the parameters' fields; OK when there is none.
Status CheckOpaqueConfig(const nlohmann::json& claim, const std::string& what,
                         const std::string& driver, const std::vector<AllocationResult>& ours);

// "a/b" (a firstAvailable sub-request) -> "a": the kubelet matches containers by base name.
std::string BaseRequestName(const std::string& request);

}  // namespace efadra::claims
