// The desired ResourceSlices of a node: a pure function of the inventory, the node and the
// driver (design.md §3). No I/O. The publisher (publisher.h) converges the API server to it.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "efadra/discovery/efa_device.h"

namespace efadra::slices {

struct SliceOptions {
  std::string driver_name = "dra.net";
  std::string node_name;  // also the pool name
  std::string node_uid;   // owner reference; omitted when empty (discover --slices offline)
  int64_t pool_generation = 1;
  // Per-slice device limit (contracts.md §0: 128, or 64 when any device has taints).
  int max_devices_per_slice = 128;
  // --taint-unhealthy: a device AssessDevice() finds unhealthy gets the NoSchedule taint
  // UnhealthyTaintKey(driver)=<reason> (needs the DRADeviceTaints feature, on by default from
  // Kubernetes 1.36); slices then hold at most 64 devices.
  bool taint_unhealthy = false;
  // --numa-node-list: resource.kubernetes.io/numaNode as a list (the device's node, then the
  // nodes equally local to it), as DRANET main does with DRAListTypeAttributes. Needs that
  // feature gate on the API server and scheduler: without it the API server drops the value.
  bool numa_node_list = false;
  // --allow-multiple-allocations: 0 publishes every EFA for one claim at a time (as DRANET
  // does). N > 0 publishes each with allowMultipleAllocations: true (KEP-5075, the
  // DRAConsumableCapacity feature; the API server drops the field while the gate is off) and
  // the consumable capacity <driver>/shares of N, of which a request takes 1 unless it asks
  // for more (requestPolicy: default 1, range 1..N step 1). Without a capacity the scheduler
  // would stack every claim on the first EFA; with it at most N claims share one EFA and its
  // bandwidth, and a claim can ask for a bigger part of it.
  int shares_per_device = 0;
};

// "<driver>/shares": the consumable capacity of a device that allows multiple allocations.
std::string SharesCapacityName(std::string_view driver);

// "<driver>/unhealthy": the key of the taint on unhealthy devices.
std::string UnhealthyTaintKey(std::string_view driver);

// Device name of an EFA in the slice: "pci-" + PCI address with ':' and '.' turned into '-'
// ("pci-0000-10-1b-0"), exactly as DRANET names it.
std::string DeviceName(const std::string& pci_address);

// Complete resource.k8s.io/v1 ResourceSlice objects (apiVersion, kind, metadata.generateName,
// ownerReferences when node_uid is set, spec). At least one slice, empty when the inventory has
// no devices ("empty pool" is not "no pool"). Values that would break API limits are dropped
// or truncated, each with a sentence appended to `warnings` naming the device and attribute.
std::vector<nlohmann::json> DesiredSlices(const discovery::Inventory& inventory,
                                          const SliceOptions& options,
                                          std::vector<std::string>* warnings = nullptr);

// Attribute policy:
//  * Names in the driver's own domain are written fully qualified ("dra.net/pciAddress"),
//    exactly as DRANET writes them; the API server stores keys as sent and tools read them
//    literally.
//  * No netdev attribute (ifName, mac, mtu, state) on an EFA: they belong to its ENA sibling's
//    PCI function, and DRANET's own RDMA-only test is !has(...ifName).
//  * <driver>/numaNode only on hosts that do not have exactly one NUMA node (where DRANET
//    publishes it); resource.kubernetes.io/numaNode wherever the node is known (an addition;
//    a list with SliceOptions::numa_node_list).
//  * Unknown values are omitted, never sent as placeholders: numa_node -1 drops both numaNode
//    attributes, an empty pcie_root drops resource.kubernetes.io/pcieRoot, an empty port
//    state drops portState, rate 0 drops linkSpeedGbps, no uverbs node drops uverbs,
//    generation 0 (unknown PCI id) drops efaGeneration and the generation-derived rdmaRead/
//    rdmaWrite. A pool without a device's attribute never matches a constraint on it, which is
//    the safe outcome; a made-up value could match wrongly.
//  * Strings longer than 64 bytes and invalid names are dropped, never truncated: a truncated
//    identifier could equal another device's value and satisfy a matchAttribute falsely.
//  * At most 32 attributes per device, kept in AttributePriority() order so the DRANET
//    compatibility attributes are never the ones dropped.
//  * A device whose name would not be a DNS label (malformed PCI address) is left out.

// Attribute names from most to least important, the driver's own without its domain
// ("pciAddress" for "dra.net/pciAddress"). Device-group attributes are listed in group-size
// order; names not in the list sort after it.
const std::vector<std::string>& AttributePriority();

// One Device object ({"name", "attributes"}) for `device` of `inventory` (which says how
// many NUMA nodes the host has), or nullopt when the device cannot be published (its name is
// not a DNS label). Dropped attributes add a warning each.
std::optional<nlohmann::json> BuildDevice(const discovery::Inventory& inventory,
                                          const discovery::EfaDevice& device,
                                          const SliceOptions& options,
                                          std::vector<std::string>* warnings = nullptr);

// metadata.generateName of slice `index` of a pool, the Kubernetes 1.36+ helper's form:
// "<index as lowercase hex, zero-padded to 5>-<driver>-<node>-". Chosen over the 1.34/1.35
// form ("<node>-<driver>-") because the index survives the API server's truncation of long
// prefixes (it comes first), name order equals slice order (the 1.36 scheduler's first-fit
// order), and a restarted publisher can match slices to desired indexes by name.
std::string SliceGenerateName(int index, std::string_view driver, std::string_view node);

// The index encoded by SliceGenerateName in a slice's metadata.name; nullopt when the name
// does not start with at least 5 lowercase hex digits and a '-' (e.g. slices named by the
// 1.34/1.35 helper or by DRANET).
std::optional<int> SliceIndexFromName(std::string_view name);

}  // namespace efadra::slices
