// Neuron device-group attributes (resource.aws.com/devicegroup{1,4,8,16}_id) for EFAs on
// Trainium nodes, byte-identical to DRANET and the Neuron DRA driver
// (shared/docs/neuron-devicegroups.md). Pure lookups over tables compiled into the binary.
// Thread-safe.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "efadra/neuron/device_group_tables.h"

namespace efadra::neuron {

// For an EFA at `pci_address` ("0000:c9:00.0") on `instance_type` ("trn2.48xlarge"):
// {"devicegroup1_id": ..., "devicegroup4_id": ..., "devicegroup8_id": ...,
//  "devicegroup16_id": ...}. Empty when the instance type is not EFA-enabled Neuron, or the
// EFA is not in the family's table.
std::map<std::string, std::string> DeviceGroupIds(std::string_view instance_type,
                                                  std::string_view pci_address);

// True when `instance_type` gets device-group attributes at all.
bool HasDeviceGroups(std::string_view instance_type);

// The family table for `instance_type` (Neuron index N of /dev/neuronN -> EFA PCI address);
// empty when the type gets no device-group attributes. `discover` shows the groups with it.
std::map<int, std::string> NeuronEfaTable(std::string_view instance_type);

// Unqualified attribute keys, in the order above; the slice builder qualifies them with
// kAttributeDomain ("resource.aws.com/devicegroup4_id").
inline constexpr char kAttributeDomain[] = "resource.aws.com";
inline constexpr const char* kDeviceGroupKeys[] = {"devicegroup1_id", "devicegroup4_id",
                                                   "devicegroup8_id", "devicegroup16_id"};

// One sentence for the log saying whether and why this node gets device-group attributes, e.g.
// "instance type trn2.48xlarge: Neuron device groups from table trn2 (16 Neuron devices,
// 16 EFAs)" or "instance type unknown: no Neuron device-group attributes". Discovery logs it once.
std::string DeviceGroupsNote(std::string_view instance_type);

// The same lookups against explicit tables (tests, tools). `instance_type` is compared exactly
// after trimming surrounding whitespace (DMI product_name ends in a newline); `pci_address`
// exactly (the tables are lowercase, so "0000:C9:00.0" gets nothing, as in DRANET).
std::map<std::string, std::string> DeviceGroupIds(const DeviceGroupTables& tables,
                                                  std::string_view instance_type,
                                                  std::string_view pci_address);
bool HasDeviceGroups(const DeviceGroupTables& tables, std::string_view instance_type);
std::string DeviceGroupsNote(const DeviceGroupTables& tables, std::string_view instance_type);

// The four values for `efa_pci_address` from one family table; empty when the address is not in
// it. devicegroup1_id is the address; devicegroupN_id is the first 16 hex characters of SHA-256
// over the comma-joined, byte-sorted, de-duplicated EFA addresses of Neuron ids
// floor(n/N)*N .. floor(n/N)*N+N-1 of the table (n = the Neuron id of this EFA). Computed from
// the whole table, not from the EFAs present on the node.
std::map<std::string, std::string> ComputeDeviceGroupIds(const FamilyTable& table,
                                                         std::string_view efa_pci_address);

// Lowercase hex SHA-256 of `data` (64 characters).
std::string Sha256Hex(std::string_view data);

}  // namespace efadra::neuron
