// The CDI spec of one prepared claim (design.md §6, contracts.md §7): pure functions, no I/O.
//
// One spec file per claim, kind "<driver>/efa", one CDI device per allocated EFA named
// "<claimUID>-<deviceName>". Each device injects its uverbs node with the host's major:minor
// (path = the container path /dev/infiniband/uverbsN, hostPath = the node under --dev-root).
// The spec-level edits, applied whenever any device of the claim is injected, add
// /dev/infiniband/rdma_cm and /dev/gdrdrv (each only when given: the host has it, and for
// gdrdrv the operator asked for it) and FI_EFA_IFACE listing every RDMA
// device of the claim: a container that gets a subset of the claim's devices sees the other
// names in the list but not their uverbs nodes, and libibverbs hides devices without a node,
// so the list only ever narrows libfabric to devices the container was given.
//
// One container with two claims: the runtime applies the edits of every CDI device it injects
// in order, and for env a later value of a variable replaces an earlier one, so the container
// sees the FI_EFA_IFACE of whichever claim's device came last. If each claim named only its
// own devices, libfabric would then ignore the EFAs of the other claims. So the list also names
// the RDMA devices of the claim's peers, the other claims the kubelet sent in the same
// NodePrepareResources call (one call per pod and driver, holding all of the pod's claims of
// this driver not prepared yet): whichever claim's value wins, it names every EFA of the pod.
// A name whose uverbs node the container lacks is harmless: libibverbs lists only devices whose
// /dev/infiniband/uverbsN exists in the container (rdma-core's device scan stat()s each node
// and skips the device when that fails), and libfabric matches FI_EFA_IFACE only against the
// devices libibverbs lists, so each container still uses only the EFAs it got.
// Order: the claim's own devices (allocation order), then the peers' (request order), each name
// once. The peers are recorded in the checkpoint, so a restarted driver rebuilds the list from
// those still prepared; a peer unprepared later leaves its names behind (the pod is going away,
// the names are harmless). A claim the kubelet retries alone after it failed in its pod's call
// joins the lists of the claims that recorded it (the preparer treats peers as symmetric).
// Limitation: a claim prepared earlier for another pod (a shared claim) is not in the new pod's
// call, so it keeps its own list and the new pod's claims do not name its devices: a container
// holding it and a claim of its own may see only one claim's EFAs in FI_EFA_IFACE.
// cdiVersion is "0.5.0": the lowest version that allows hostPath and device names starting with
// a digit (claim UIDs often do), so runtimes with older CDI libraries still load it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "efadra/discovery/efa_device.h"

namespace efadra::claims {

inline constexpr char kCdiVersion[] = "0.5.0";
inline constexpr char kCdiClass[] = "efa";

// A char device node on the host (rdma_cm's minor is dynamic, so is gdrdrv's major).
struct HostCharDevice {
  uint32_t major = 0;
  uint32_t minor = 0;
};

// "<driver>/efa".
std::string CdiKind(std::string_view driver);
// "<claimUID>-<deviceName>", plus "-<shareID>" for a share of a device that allows multiple
// allocations: two shares of one EFA in one claim (two requests) then get two CDI devices.
std::string CdiDeviceName(std::string_view claim_uid, std::string_view device_name,
                          const std::optional<std::string>& share_id = std::nullopt);
// Fully qualified: "<driver>/efa=<claimUID>-<deviceName>[-<shareID>]".
std::string CdiDeviceId(std::string_view driver, std::string_view claim_uid,
                        std::string_view device_name,
                        const std::optional<std::string>& share_id = std::nullopt);
// "<driver>-efa_<claimUID>.json" (the CDI library's transient spec naming).
std::string CdiSpecFileName(std::string_view driver, std::string_view claim_uid);

struct CdiDeviceInput {
  std::string device_name;  // "pci-0000-10-1b-0"
  const discovery::EfaDevice* device = nullptr;
  std::optional<std::string> share_id;  // the allocation's shareID, when a share
};

// The spec for `devices` (in allocation order). `dev_root` is --dev-root ("/dev");
// rdma_cm is the host's /dev/infiniband/rdma_cm when present; gdrdrv is GDRCopy's /dev/gdrdrv
// when it is to be injected (its container path is /dev/gdrdrv, its hostPath below dev_root).
// `peer_rdma_devices` are the RDMA devices of the claim's peers (see above), appended to
// FI_EFA_IFACE after the claim's own.
nlohmann::json BuildCdiSpec(std::string_view driver, std::string_view claim_uid,
                            const std::vector<CdiDeviceInput>& devices, std::string_view dev_root,
                            const std::optional<HostCharDevice>& rdma_cm,
                            const std::optional<HostCharDevice>& gdrdrv = std::nullopt,
                            const std::vector<std::string>& peer_rdma_devices = {});

}  // namespace efadra::claims
