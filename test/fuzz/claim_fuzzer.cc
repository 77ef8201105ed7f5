// Fuzzes claims::OurAllocationResults and CheckOpaqueConfig: the ResourceClaim JSON comes from the API server, and a
// wrong type anywhere (a number where a string belongs, results that are an object) must give a
// Status, never an exception or a crash. Inputs that are not JSON are skipped: the client parses
// without exceptions and rejects them before this point.
//
// Seeds: corpus/claim_fuzzer/ (allocated claims: one device, several drivers and pools,
// adminAccess, a firstAvailable sub-request, shareID, config-only, not allocated).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "efadra/claims/allocation.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const nlohmann::json claim = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (claim.is_discarded()) return 0;
  const std::string what = "claim default/fuzz (uid 0000)";
  auto results = efadra::claims::OurAllocationResults(claim, what, "dra.net",
                                                      "ip-10-0-1-23.ec2.internal");
  if (results.ok()) {
    for (const efadra::claims::AllocationResult& r : *results) {
      if (r.request.empty() || r.device.empty()) std::abort();  // promised non-empty
      const std::string base = efadra::claims::BaseRequestName(r.request);
      if (base.find('/') != std::string::npos) std::abort();
    }
    // The opaque config of the same claim, whatever its shape, gives a Status too.
    const efadra::Status config = efadra::claims::CheckOpaqueConfig(claim, what, "dra.net", *results);
    if (!config.ok() && config.message().rfind(what, 0) != 0) std::abort();
  } else if (results.status().message().rfind(what, 0) != 0) {
    std::abort();  // `what` starts every message
  }
  return 0;
}
