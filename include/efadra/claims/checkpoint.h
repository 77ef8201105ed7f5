// Checkpoint of one prepared claim: what NodeUnprepareResources and a restarted driver need,
// since the kubelet sends only namespace/name/UID and the claim object may be gone.
//
// One file per claim (<state-dir>/checkpoints/<claimUID>.json), written atomically and durably
// BEFORE the CDI spec (design.md §7): after a crash at any point, either no checkpoint exists
// (nothing was promised to the kubelet; it retries) or the checkpoint holds the complete answer
// and the CDI spec is rebuilt from it. That is why a single phase suffices: the checkpoint is
// never written before the answer is known.
//
// The file carries a schema version, the node's boot id (a reboot wipes /var/run/cdi, so specs
// are rewritten when it changes) and a SHA-256 checksum of its content. Pure functions; the
// preparer does the I/O.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "efadra/claims/claim_preparer.h"
#include "efadra/core/status.h"

namespace efadra::claims {

inline constexpr int kCheckpointSchemaVersion = 1;

struct ClaimCheckpoint {
  ClaimRef claim;
  std::string boot_id;
  std::vector<PreparedDevice> devices;
  // The CDI spec file content; null when the claim has no devices of ours (no spec written).
  nlohmann::json cdi_spec;
};

// The file content (JSON with schemaVersion and checksum).
std::string SerializeCheckpoint(const ClaimCheckpoint& checkpoint);

// kDataLoss for malformed JSON, a missing field or a checksum mismatch; kUnimplemented for a
// schema version newer than this build understands. `source` names the file in messages.
Result<ClaimCheckpoint> ParseCheckpoint(std::string_view content, std::string_view source);

}  // namespace efadra::claims
