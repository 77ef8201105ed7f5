// Device-group ids for EFAs on Trainium nodes, computed exactly as CDM's lookup.go does (see
// shared/docs/neuron-devicegroups.md §1): the values must be byte-identical to what the Neuron
// DRA driver publishes for the Neuron devices, or matchAttribute never matches across drivers.
#include "efadra/neuron/device_groups.h"

#include <algorithm>
#include <array>
#include <vector>

#include <openssl/evp.h>

namespace efadra::neuron {
namespace {

// Group sizes after devicegroup1_id (which is the address itself).
constexpr std::array<int, 3> kGroupSizes = {4, 8, 16};
// CDM keeps the first 16 hex characters (64 bits) of the SHA-256.
constexpr size_t kHashChars = 16;

std::string_view TrimSpace(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\r\v\f";
  size_t begin = s.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  size_t end = s.find_last_not_of(kSpace);
  return s.substr(begin, end - begin + 1);
}

// The table for `instance_type`, or nullptr with `why` saying what is missing. CDM's gate: the
// type must be listed as EFA-enabled; its family is the text before the first '.'.
const FamilyTable* FindTable(const DeviceGroupTables& tables, std::string_view instance_type,
                             std::string* why) {
  std::string_view type = TrimSpace(instance_type);
  if (type.empty()) {
    *why = "instance type unknown: no Neuron device-group attributes";
    return nullptr;
  }
  std::string prefix = "instance type " + std::string(type) + ": ";
  if (!tables.efa_enabled_instance_types.contains(type)) {
    *why = prefix + "not an EFA-enabled Neuron instance type; no Neuron device-group attributes";
    return nullptr;
  }
  std::string_view family = type.substr(0, type.find('.'));
  auto mapped = tables.table_by_family.find(family);
  if (mapped == tables.table_by_family.end()) {
    *why = prefix + "family " + std::string(family) +
           " has no table mapping; no Neuron device-group attributes";
    return nullptr;
  }
  auto table = tables.tables.find(mapped->second);
  if (table == tables.tables.end()) {
    *why = prefix + "table " + mapped->second +
           " is not bundled with this driver; no Neuron device-group attributes";
    return nullptr;
  }
  const FamilyTable& found = table->second;
  std::vector<std::string> efas;
  for (const auto& [id, efa] : found.efa_by_neuron_id) efas.push_back(efa);
  std::sort(efas.begin(), efas.end());
  efas.erase(std::unique(efas.begin(), efas.end()), efas.end());
  *why = prefix + "Neuron device groups from table " + found.name + " (" +
         std::to_string(found.efa_by_neuron_id.size()) + " Neuron devices, " +
         std::to_string(efas.size()) + " EFAs)";
  return &table->second;
}

}  // namespace

std::string Sha256Hex(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  // EVP_Digest only fails on allocation failure inside OpenSSL; an empty string is then an id
  // that matches nothing, which is the safe outcome for an attribute.
  if (EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1) {
    return {};
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0x0f]);
  }
  return hex;
}

std::map<std::string, std::string> ComputeDeviceGroupIds(const FamilyTable& table,
                                                         std::string_view efa_pci_address) {
  // Reverse lookup. On trn1 two Neuron ids (2k, 2k+1) share one EFA; either gives the same
  // blocks of 4 and more, so the first one is as good as CDM's map-order choice.
  int neuron_id = -1;
  for (const auto& [id, efa] : table.efa_by_neuron_id) {
    if (efa == efa_pci_address) {
      neuron_id = id;
      break;
    }
  }
  if (neuron_id < 0) return {};

  std::map<std::string, std::string> ids;
  ids[kDeviceGroupKeys[0]] = std::string(efa_pci_address);
  for (size_t k = 0; k < kGroupSizes.size(); ++k) {
    int size = kGroupSizes[k];
    int first = (neuron_id / size) * size;
    std::vector<std::string> members;
    for (int id = first; id < first + size; ++id) {
      auto it = table.efa_by_neuron_id.find(id);
      if (it != table.efa_by_neuron_id.end()) members.push_back(it->second);
    }
    // std::string compares through char_traits<char>, i.e. as unsigned bytes: Go's sort.Strings.
    std::sort(members.begin(), members.end());
    members.erase(std::unique(members.begin(), members.end()), members.end());
    std::string joined;
    for (const std::string& member : members) {
      if (!joined.empty()) joined.push_back(',');
      joined += member;
    }
    // members always holds this EFA, so the value is never CDM's "" for an empty group.
    ids[kDeviceGroupKeys[k + 1]] = Sha256Hex(joined).substr(0, kHashChars);
  }
  return ids;
}

std::map<std::string, std::string> DeviceGroupIds(const DeviceGroupTables& tables,
                                                  std::string_view instance_type,
                                                  std::string_view pci_address) {
  std::string why;
  const FamilyTable* table = FindTable(tables, instance_type, &why);
  if (table == nullptr) return {};
  return ComputeDeviceGroupIds(*table, pci_address);
}

bool HasDeviceGroups(const DeviceGroupTables& tables, std::string_view instance_type) {
  std::string why;
  return FindTable(tables, instance_type, &why) != nullptr;
}

std::string DeviceGroupsNote(const DeviceGroupTables& tables, std::string_view instance_type) {
  std::string why;
  FindTable(tables, instance_type, &why);
  return why;
}

std::map<std::string, std::string> DeviceGroupIds(std::string_view instance_type,
                                                  std::string_view pci_address) {
  return DeviceGroupIds(BuiltinDeviceGroupTables(), instance_type, pci_address);
}

bool HasDeviceGroups(std::string_view instance_type) {
  return HasDeviceGroups(BuiltinDeviceGroupTables(), instance_type);
}

std::string DeviceGroupsNote(std::string_view instance_type) {
  return DeviceGroupsNote(BuiltinDeviceGroupTables(), instance_type);
}

std::map<int, std::string> NeuronEfaTable(std::string_view instance_type) {
  std::string why;
  const FamilyTable* table = FindTable(BuiltinDeviceGroupTables(), instance_type, &why);
  return table == nullptr ? std::map<int, std::string>{} : table->efa_by_neuron_id;
}

}  // namespace efadra::neuron
