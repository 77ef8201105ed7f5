// Checkpoint of one prepared claim: what identifies its allocation, which NodeUnprepareResources
// and a restarted driver need, since the kubelet sends only namespace/name/UID and the claim
// object may be gone.
//
// One file per claim (<state-dir>/checkpoints/<claimUID>.json), written atomically and durably
// BEFORE the CDI spec (design.md §7): after a crash at any point, either no checkpoint exists
// (nothing was promised to the kubelet; it retries) or the checkpoint holds the complete answer
// and the CDI spec is rebuilt from it. That is why a single phase suffices: the checkpoint is
// never written before the answer is known.
//
// The file holds identities only: the claim, and per allocated device its name, PCI address,
// pool, request names, share id and admin access. Never device numbers and never the CDI spec:
// the kernel can number uverbs nodes and the rdma_cm minor differently after a reboot or a
// module reload, so the spec is built from the current inventory whenever it is written.
// Schema 1 files also stored the spec; they are still read (the identity fields are taken, the
// stored spec and CDI ids are ignored) and are rewritten in the current schema when next written.
//
// A claim prepared in one NodePrepareResources call with other claims (the claims of one pod)
// also records their UIDs ("peerClaimUids"): its CDI spec's FI_EFA_IFACE names their RDMA
// devices too (cdi_spec.h says why), and a restarted driver must build the same list. The
// field is written only when there are peers and is covered by the checksum; a schema 2 file
// without it (every file an older driver wrote) has no peers and the same checksum as before.
// A driver older than the field reads a file that has it as corrupt.
//
// The file carries a schema version, the node's boot id (a reboot wipes /var/run/cdi, so specs
// are rewritten when it changes) and a SHA-256 checksum of its content. Pure functions; the
// preparer does the I/O.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "efadra/claims/claim_preparer.h"
#include "efadra/core/status.h"

namespace efadra::claims {

inline constexpr int kCheckpointSchemaVersion = 2;

// One allocation result of the claim, by identity.
struct CheckpointDevice {
  std::vector<std::string> request_names;  // base names ("efa" for "efa/sub")
  std::string pool_name;
  std::string device_name;  // "pci-0000-10-1b-0"
  std::string pci_address;  // "0000:10:1b.0"; "" in a file migrated from schema 1
  std::optional<std::string> share_id;
  bool admin_access = false;  // schema 1 did not record it: false there
};

struct ClaimCheckpoint {
  ClaimRef claim;
  std::string boot_id;
  std::vector<CheckpointDevice> devices;
  // The other claims of the prepare call that prepared this one, in request order.
  std::vector<std::string> peer_claim_uids;
  // The schema the content was read in (SerializeCheckpoint always writes the current one).
  int schema_version = kCheckpointSchemaVersion;
};

// The file content (JSON with schemaVersion and checksum), in the current schema.
std::string SerializeCheckpoint(const ClaimCheckpoint& checkpoint);

// kDataLoss for malformed JSON, a missing or mistyped field or a checksum mismatch;
// kUnimplemented for a schema version newer than this build understands. Reads schema 1 and 2.
// `source` names the file in messages. The caller checks that the claim UID matches the file
// name.
Result<ClaimCheckpoint> ParseCheckpoint(std::string_view content, std::string_view source);

}  // namespace efadra::claims
