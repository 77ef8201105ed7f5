#include "efadra/slices/resource_slices.h"

#include "efadra/slices/device_condition.h"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <utility>

#include "efadra/slices/api_limits.h"

namespace efadra::slices {
namespace {

using nlohmann::json;

// DRANET's display strings (pci.ids names). Every EFA PCI id gets the same pciDevice string,
// including ids pci.ids does not know yet (efa3, efa4): DeviceClass selectors written for
// DRANET compare against this exact text.
constexpr char kPciVendorAmazon[] = "Amazon.com, Inc.";
constexpr char kPciDeviceEfa[] = "Elastic Fabric Adapter (EFA)";

constexpr char kStandardDomain[] = "resource.kubernetes.io/";
constexpr char kNeuronDomain[] = "resource.aws.com/";

struct Attribute {
  std::string name;
  json value;  // {"string": ...} | {"int": ...} | {"bool": ...}
};

json String(const std::string& value) { return json{{"string", value}}; }
json Int(int64_t value) { return json{{"int", value}}; }
json Bool(bool value) { return json{{"bool", value}}; }

void Warn(std::vector<std::string>* warnings, std::string message) {
  if (warnings != nullptr) warnings->push_back(std::move(message));
}

// The size N of "devicegroupN_id", for ordering; large when it does not parse.
int DeviceGroupSize(const std::string& key) {
  constexpr std::string_view kPrefix = "devicegroup";
  int size = 1 << 20;
  if (key.rfind(kPrefix, 0) == 0) {
    const char* begin = key.data() + kPrefix.size();
    std::from_chars(begin, key.data() + key.size(), size);
  }
  return size;
}

// Every attribute the device can have, named as written in the slice: in the driver's own
// domain fully qualified ("dra.net/pciAddress"), as DRANET writes them, because tools read the
// literal key (the scheduler treats "pciAddress" and "dra.net/pciAddress" alike, jq and AWS's
// EFA-metrics-to-pod correlation do not).
std::vector<Attribute> CandidateAttributes(const discovery::Inventory& inventory,
                                           const discovery::EfaDevice& device,
                                           const SliceOptions& options) {
  const std::string own = options.driver_name + "/";
  std::vector<Attribute> out;
  // DRANET compatibility attributes (design.md §2). No netdev attribute (ifName, mac, mtu,
  // state): DRANET puts those only on the PCI function that owns the netdev, which for an EFA
  // is its ENA sibling, and selectors rely on their absence to pick RDMA-only devices.
  out.push_back({own + "pciAddress", String(device.pci_address)});
  out.push_back({own + "pciVendor", String(kPciVendorAmazon)});
  out.push_back({own + "pciDevice", String(kPciDeviceEfa)});
  out.push_back({own + "pciSubsystem", String(fmt::format("{:04x}", device.subsystem_device_id))});
  // DRANET's PCI library reports a NUMA node only on a NUMA host (not exactly one node).
  if (device.numa_node >= 0 && inventory.numa_node_count != 1) {
    out.push_back({own + "numaNode", Int(device.numa_node)});
  }
  out.push_back({own + "rdma", Bool(true)});
  if (!device.rdma_device.empty()) out.push_back({own + "rdmaDevice", String(device.rdma_device)});
  if (!device.pcie_root.empty()) {
    out.push_back({std::string(kStandardDomain) + "pcieRoot", String(device.pcie_root)});
  }
  // The standard PCI address attribute (KEP-4381) the GPU drivers publish too, so one CEL
  // expression or tool can name a PCI function across drivers; lower case, as the kernel and
  // the upstream helper write it.
  if (!device.pci_address.empty()) {
    std::string bus_id = device.pci_address;
    std::transform(bus_id.begin(), bus_id.end(), bus_id.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    out.push_back({std::string(kStandardDomain) + "pciBusID", String(std::move(bus_id))});
  }
  if (device.numa_node >= 0) {
    const auto local = inventory.numa_local_nodes.find(device.numa_node);
    json value = Int(device.numa_node);
    if (options.numa_node_list) {
      value = json{{"ints", local != inventory.numa_local_nodes.end()
                                ? json(local->second)
                                : json::array({device.numa_node})}};
    }
    out.push_back({std::string(kStandardDomain) + "numaNode", std::move(value)});
  }
  std::vector<std::pair<std::string, std::string>> groups(device.device_groups.begin(),
                                                          device.device_groups.end());
  std::stable_sort(groups.begin(), groups.end(), [](const auto& a, const auto& b) {
    return DeviceGroupSize(a.first) < DeviceGroupSize(b.first);
  });
  for (const auto& [key, value] : groups) {
    out.push_back({std::string(kNeuronDomain) + key, String(value)});
  }
  // EFA attributes this driver adds.
  if (device.generation > 0) out.push_back({own + "efaGeneration", Int(device.generation)});
  out.push_back({own + "interfaceType", String(device.netdev.has_value() ? "efa" : "efa-only")});
  if (device.verbs.has_value()) {
    out.push_back({own + "rdmaRead", Bool(device.verbs->rdma_read)});
    out.push_back({own + "rdmaWrite", Bool(device.verbs->rdma_write)});
  } else if (device.generation > 0) {
    // Without efadv (no hardware access): efa0 (generation 1, p4d) reads only; efa1 and later
    // read and write (efa-hardware.md §A1).
    out.push_back({own + "rdmaRead", Bool(true)});
    out.push_back({own + "rdmaWrite", Bool(device.generation >= 2)});
  }
  if (!device.port.state.empty()) out.push_back({own + "portState", String(device.port.state)});
  if (device.port.rate_gbps > 0) out.push_back({own + "linkSpeedGbps", Int(device.port.rate_gbps)});
  if (device.uverbs_index >= 0) out.push_back({own + "uverbs", Int(device.uverbs_index)});
  return out;
}

// The attribute's rank in AttributePriority(), whose driver-domain names are unqualified.
int PriorityOf(const std::string& name, const std::string& driver) {
  const auto& order = AttributePriority();
  const std::string own = driver + "/";
  const std::string key = name.rfind(own, 0) == 0 ? name.substr(own.size()) : name;
  const auto it = std::find(order.begin(), order.end(), key);
  return it == order.end() ? static_cast<int>(order.size()) : static_cast<int>(it - order.begin());
}

}  // namespace

std::string DeviceName(const std::string& pci_address) {
  std::string name = "pci-";
  name.reserve(4 + pci_address.size());
  for (char c : pci_address) {
    name.push_back(c == ':' || c == '.'
                       ? '-'
                       : static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return name;
}

const std::vector<std::string>& AttributePriority() {
  // DRANET compatibility first (claims written for DRANET select on these), then the
  // cross-driver alignment attributes, then our EFA extras. Names in the driver's domain are
  // listed without it.
  static const std::vector<std::string>* const kOrder = new std::vector<std::string>{
      "pciAddress",
      "pciVendor",
      "pciDevice",
      "pciSubsystem",
      "numaNode",
      "rdma",
      "rdmaDevice",
      "resource.kubernetes.io/pcieRoot",
      "resource.kubernetes.io/numaNode",
      "resource.kubernetes.io/pciBusID",
      "resource.aws.com/devicegroup1_id",
      "resource.aws.com/devicegroup4_id",
      "resource.aws.com/devicegroup8_id",
      "resource.aws.com/devicegroup16_id",
      "efaGeneration",
      "interfaceType",
      "rdmaRead",
      "rdmaWrite",
      "portState",
      "linkSpeedGbps",
      "uverbs",
  };
  return *kOrder;
}

std::optional<json> BuildDevice(const discovery::Inventory& inventory,
                                const discovery::EfaDevice& device, const SliceOptions& options,
                                std::vector<std::string>* warnings) {
  const std::string name = DeviceName(device.pci_address);
  if (!IsDnsLabel(name)) {
    Warn(warnings, fmt::format("device with PCI address \"{}\" not published: its name \"{}\" is "
                               "not a DNS label",
                               device.pci_address, name));
    return std::nullopt;
  }
  std::vector<Attribute> candidates = CandidateAttributes(inventory, device, options);
  std::stable_sort(candidates.begin(), candidates.end(), [&](const auto& a, const auto& b) {
    return PriorityOf(a.name, options.driver_name) < PriorityOf(b.name, options.driver_name);
  });
  // The API limit counts attributes and capacities together.
  const int attribute_limit = kMaxAttributesPerDevice - (options.shares_per_device > 0 ? 1 : 0);
  json attributes = json::object();
  int kept = 0;
  for (auto& attribute : candidates) {
    if (!IsQualifiedAttributeName(attribute.name)) {
      Warn(warnings, fmt::format("device {}: attribute \"{}\" dropped: not a valid attribute name "
                                 "(C identifier of at most 32 characters, optional DNS domain)",
                                 name, attribute.name));
      continue;
    }
    if (attributes.contains(attribute.name)) continue;
    const auto string_value = attribute.value.find("string");
    if (string_value != attribute.value.end() &&
        string_value->get_ref<const std::string&>().size() > kMaxStringAttributeBytes) {
      Warn(warnings,
           fmt::format("device {}: attribute {} dropped: value of {} bytes exceeds the "
                       "API limit of {} bytes",
                       name, attribute.name, string_value->get_ref<const std::string&>().size(),
                       kMaxStringAttributeBytes));
      continue;
    }
    if (kept >= attribute_limit) {
      Warn(warnings, fmt::format("device {}: attribute {} dropped: the API allows at most {} "
                                 "attributes and capacities per device",
                                 name, attribute.name, kMaxAttributesPerDevice));
      continue;
    }
    attributes[attribute.name] = std::move(attribute.value);
    ++kept;
  }
  json built = {{"name", name}, {"attributes", std::move(attributes)}};
  if (options.shares_per_device > 0) {
    const std::string shares = std::to_string(options.shares_per_device);
    built["allowMultipleAllocations"] = true;
    built["capacity"] = {
        {SharesCapacityName(options.driver_name),
         {{"value", shares},
          {"requestPolicy",
           {{"default", "1"}, {"validRange", {{"min", "1"}, {"max", shares}, {"step", "1"}}}}}}}};
  }
  return built;
}

std::string SliceGenerateName(int index, std::string_view driver, std::string_view node) {
  return fmt::format("{:05x}-{}-{}-", index, driver, node);
}

std::string SharesCapacityName(std::string_view driver) {
  return std::string(driver) + "/shares";
}

std::string UnhealthyTaintKey(std::string_view driver) {
  return std::string(driver) + "/unhealthy";
}

std::optional<int> SliceIndexFromName(std::string_view name) {
  const size_t dash = name.find('-');
  if (dash == std::string_view::npos || dash < 5 || dash > 8) return std::nullopt;
  int index = 0;
  for (size_t i = 0; i < dash; ++i) {
    const char c = name[i];
    int digit = 0;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    index = index * 16 + digit;
  }
  return index;
}

std::vector<json> DesiredSlices(const discovery::Inventory& inventory, const SliceOptions& options,
                                std::vector<std::string>* warnings) {
  std::vector<json> devices;
  devices.reserve(inventory.devices.size());
  for (const auto& device : inventory.devices) {
    auto built = BuildDevice(inventory, device, options, warnings);
    if (!built.has_value()) continue;
    const bool duplicate = std::any_of(devices.begin(), devices.end(), [&](const json& d) {
      return d["name"] == (*built)["name"];
    });
    if (duplicate) {
      // Names must be unique in a pool; a second device with the same PCI address can only
      // come from a broken inventory.
      Warn(warnings, fmt::format("device {} listed twice; publishing the first",
                                 (*built)["name"].get<std::string>()));
      continue;
    }
    if (options.taint_unhealthy) {
      const DeviceCondition condition = AssessDevice(device);
      if (condition.state == DeviceCondition::State::kUnhealthy) {
        (*built)["taints"] = json::array({json{{"key", UnhealthyTaintKey(options.driver_name)},
                                               {"value", condition.reason},
                                               {"effect", "NoSchedule"}}});
      }
    }
    devices.push_back(std::move(*built));
  }
  // Stable slice contents across scans: by name (the inventory is sorted by PCI address
  // already, but a sort here keeps the function pure over any input order).
  std::sort(devices.begin(), devices.end(), [](const json& a, const json& b) {
    return a["name"].get_ref<const std::string&>() < b["name"].get_ref<const std::string&>();
  });

  // With taints the API allows fewer devices per slice. Tainting may start at any rescan, so
  // the lower limit applies whenever the option is on: the layout then never changes with health.
  const int limit = options.taint_unhealthy ? kMaxDevicesPerSliceWithTaints : kMaxDevicesPerSlice;
  const size_t per_slice = static_cast<size_t>(std::clamp(options.max_devices_per_slice, 1, limit));
  const size_t slice_count = std::max<size_t>(1, (devices.size() + per_slice - 1) / per_slice);
  std::vector<json> slices;
  slices.reserve(slice_count);
  for (size_t i = 0; i < slice_count; ++i) {
    json metadata = {{"generateName", SliceGenerateName(static_cast<int>(i), options.driver_name,
                                                        options.node_name)}};
    if (!options.node_uid.empty()) {
      metadata["ownerReferences"] = json::array({json{{"apiVersion", "v1"},
                                                      {"kind", "Node"},
                                                      {"name", options.node_name},
                                                      {"uid", options.node_uid},
                                                      {"controller", true}}});
    }
    json slice_devices = json::array();
    const size_t begin = i * per_slice;
    const size_t end = std::min(devices.size(), begin + per_slice);
    for (size_t d = begin; d < end; ++d) slice_devices.push_back(devices[d]);
    slices.push_back(json{
        {"apiVersion", "resource.k8s.io/v1"},
        {"kind", "ResourceSlice"},
        {"metadata", std::move(metadata)},
        {"spec",
         {{"driver", options.driver_name},
          {"nodeName", options.node_name},
          {"pool",
           {{"name", options.node_name},
            {"generation", options.pool_generation},
            {"resourceSliceCount", static_cast<int64_t>(slice_count)}}},
          {"devices", std::move(slice_devices)}}},
    });
  }
  return slices;
}

}  // namespace efadra::slices
