// Finds NVIDIA GPUs and Neuron devices among the PCI functions and groups them with the EFAs
// (accelerators.h). Reads only what every kernel exposes for a PCI function (vendor, device,
// class, numa_node, the driver link), so it works the same on a generated tree.
#include "efadra/discovery/accelerators.h"

#include <algorithm>
#include <climits>

#include "efadra/discovery/sysfs_values.h"

namespace efadra::discovery {
namespace {

constexpr uint16_t kNvidiaVendor = 0x10de;
constexpr uint16_t kAmazonVendor = 0x1d0f;
// Neuron PCI device ids (inf1, trn1, inf2, trn2); see neuron-devicegroups.md §3.
constexpr uint16_t kNeuronDeviceIds[] = {0x7064, 0x7164, 0x7264, 0x7364};
constexpr char kNeuronDriver[] = "neuron-driver";

class Scanner {
 public:
  explicit Scanner(const core::Filesystem& sysfs) : sysfs_(sysfs) {}

  AcceleratorScan Scan() {
    auto functions = sysfs_.ListDir("/bus/pci/devices");
    if (!functions.ok()) return std::move(scan_);
    for (const auto& bdf : *functions) Inspect(bdf);
    std::sort(scan_.devices.begin(), scan_.devices.end(),
              [](const Accelerator& a, const Accelerator& b) {
                return a.pci_address < b.pci_address;
              });
    int gpu_index = 0;
    for (auto& device : scan_.devices) {
      if (device.kind == AcceleratorKind::kNvidiaGpu) device.index = gpu_index++;
    }
    return std::move(scan_);
  }

 private:
  void Inspect(const std::string& bdf) {
    if (!IsValidPciAddress(bdf)) return;
    const std::string dir = "/bus/pci/devices/" + bdf;
    auto vendor = ReadId(dir + "/vendor");
    if (!vendor) return;
    if (*vendor != kNvidiaVendor && *vendor != kAmazonVendor) return;
    auto device_id = ReadId(dir + "/device");
    if (!device_id) return;
    Accelerator found;
    found.pci_address = bdf;
    found.vendor_id = *vendor;
    found.device_id = *device_id;
    found.driver = DriverName(dir);
    if (*vendor == kNvidiaVendor) {
      auto pci_class = ReadText(dir + "/class");
      if (!pci_class) return;
      // "0x030200": the base class and subclass are the first four hex digits.
      const std::string value(TrimValue(*pci_class));
      const std::string base_sub = value.size() >= 6 ? value.substr(2, 4) : "";
      if (base_sub != "0300" && base_sub != "0302") return;
      found.kind = AcceleratorKind::kNvidiaGpu;
    } else {
      const bool neuron_id = std::find(std::begin(kNeuronDeviceIds), std::end(kNeuronDeviceIds),
                                       *device_id) != std::end(kNeuronDeviceIds);
      if (!neuron_id && found.driver != kNeuronDriver) return;
      found.kind = AcceleratorKind::kNeuron;
    }
    if (auto link = sysfs_.ReadLink(dir); link.ok()) {
      if (auto root = PcieRootFromLink(bdf, *link); root.ok()) found.pcie_root = *root;
    }
    if (auto numa = ReadText(dir + "/numa_node")) {
      if (auto node = ParseNumaNode(*numa); node.ok()) found.numa_node = *node;
    }
    scan_.devices.push_back(std::move(found));
  }

  std::optional<std::string> ReadText(const std::string& path) {
    auto text = sysfs_.ReadFile(path, 4096);
    if (!text.ok()) {
      scan_.warnings.push_back(sysfs_.HostPath(path) + ": " + text.status().message());
      return std::nullopt;
    }
    return *text;
  }

  std::optional<uint16_t> ReadId(const std::string& path) {
    auto text = ReadText(path);
    if (!text) return std::nullopt;
    auto id = ParsePciId(*text);
    if (!id.ok()) {
      scan_.warnings.push_back(sysfs_.HostPath(path) + ": " + id.status().message());
      return std::nullopt;
    }
    return *id;
  }

  std::string DriverName(const std::string& dir) {
    auto link = sysfs_.ReadLink(dir + "/driver");
    return link.ok() ? std::string(core::BaseName(*link)) : std::string();
  }

  const core::Filesystem& sysfs_;
  AcceleratorScan scan_;
};

int NumaKey(int numa_node) { return numa_node < 0 ? INT_MAX : numa_node; }

}  // namespace

AcceleratorScan FindAccelerators(const core::Filesystem& sysfs) { return Scanner(sysfs).Scan(); }

std::vector<PcieRootGroup> GroupByPcieRoot(const std::vector<EfaDevice>& efas,
                                           const std::vector<Accelerator>& accelerators) {
  std::map<std::string, PcieRootGroup> by_root;
  auto group_for = [&](const std::string& root, int numa_node) -> PcieRootGroup& {
    PcieRootGroup& group = by_root[root];
    group.root = root;
    if (group.numa_node < 0) group.numa_node = numa_node;
    return group;
  };
  for (const auto& efa : efas) group_for(efa.pcie_root, efa.numa_node).efas.push_back(efa);
  for (const auto& device : accelerators) {
    PcieRootGroup& group = group_for(device.pcie_root, device.numa_node);
    (device.kind == AcceleratorKind::kNvidiaGpu ? group.gpus : group.neuron_devices)
        .push_back(device);
  }
  std::vector<PcieRootGroup> groups;
  for (auto& [root, group] : by_root) {
    std::sort(group.efas.begin(), group.efas.end(), [](const EfaDevice& a, const EfaDevice& b) {
      return a.pci_address < b.pci_address;
    });
    groups.push_back(std::move(group));
  }
  std::stable_sort(groups.begin(), groups.end(),
                   [](const PcieRootGroup& a, const PcieRootGroup& b) {
                     if (NumaKey(a.numa_node) != NumaKey(b.numa_node)) {
                       return NumaKey(a.numa_node) < NumaKey(b.numa_node);
                     }
                     // Unknown roots last.
                     if (a.root.empty() != b.root.empty()) return b.root.empty();
                     return a.root < b.root;
                   });
  return groups;
}

std::vector<NeuronGroup> GroupByNeuronDeviceGroup(
    const std::vector<EfaDevice>& efas, const std::map<int, std::string>& neuron_efa_by_index) {
  constexpr char kKey[] = "devicegroup4_id";
  std::map<std::string, NeuronGroup> by_id;
  std::map<std::string, std::string> id_by_efa;
  for (const auto& efa : efas) {
    auto id = efa.device_groups.find(kKey);
    if (id == efa.device_groups.end() || id->second.empty()) continue;
    NeuronGroup& group = by_id[id->second];
    group.devicegroup4_id = id->second;
    group.efas.push_back(efa);
    id_by_efa[efa.pci_address] = id->second;
  }
  // A Neuron index belongs to the group of its table EFA; when that EFA is absent from this
  // node, to the group of another index in its block of 4 (the block is what the id hashes).
  std::map<int, std::string> id_by_block;
  for (const auto& [index, efa_address] : neuron_efa_by_index) {
    auto id = id_by_efa.find(efa_address);
    if (id != id_by_efa.end()) id_by_block.emplace(index / 4, id->second);
  }
  for (const auto& [index, efa_address] : neuron_efa_by_index) {
    auto id = id_by_block.find(index / 4);
    if (id != id_by_block.end()) by_id[id->second].neuron_indexes.push_back(index);
  }
  std::vector<NeuronGroup> groups;
  for (auto& [id, group] : by_id) groups.push_back(std::move(group));
  auto lowest = [](const NeuronGroup& g) {
    return g.neuron_indexes.empty() ? INT_MAX : g.neuron_indexes.front();
  };
  std::stable_sort(groups.begin(), groups.end(), [&](const NeuronGroup& a, const NeuronGroup& b) {
    return lowest(a) < lowest(b);
  });
  for (auto& group : groups) {
    std::sort(group.efas.begin(), group.efas.end(), [](const EfaDevice& a, const EfaDevice& b) {
      return a.pci_address < b.pci_address;
    });
  }
  return groups;
}

}  // namespace efadra::discovery
