// `efa-dra-driver discover`: prints what this node has (design.md §5). Reads --sysfs-root and
// --dev-root (or a bundled fixture built into a temp dir), prints a table for people or JSON /
// YAML for tools, and with --slices the ResourceSlices `run` would publish. Needs no cluster.
// Exit codes: 0 devices found or none, 1 bad input (sysfs root missing, unknown fixture), 2 usage.
#include <stdlib.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
#include "efadra/core/filesystem.h"
#include "efadra/core/text_table.h"
#include "efadra/discovery/accelerators.h"
#include "efadra/discovery/discoverer.h"
#include "efadra/discovery/verbs_provider.h"
#include "efadra/neuron/device_groups.h"
#include "efadra/slices/resource_slices.h"
#include "efadra/sysfstree/bundled.h"
#include "efadra/sysfstree/tree_builder.h"

namespace efadra::cmd {
namespace {

using discovery::Accelerator;
using discovery::EfaDevice;
using discovery::Inventory;
// Insertion-ordered so the output reads in the order fields are written (name first).
using json = nlohmann::ordered_json;

struct DiscoverFlags {
  std::string sysfs_root = "/sys";
  std::string dev_root = "/dev";
  std::string output;  // "" = table, or yaml with --slices
  std::string fixture;
  bool slices = false;
  std::string node_name;
  std::string driver_name = "dra.net";
  bool numa_node_list = false;
  SharingFlags sharing;
  LoggingFlags logging;
};

std::string Hex16(uint16_t value) {
  char buffer[8];
  std::snprintf(buffer, sizeof(buffer), "0x%04x", value);
  return buffer;
}

json NullIfEmpty(const std::string& value) { return value.empty() ? json(nullptr) : json(value); }

json DeviceJson(const EfaDevice& d) {
  json out = {
      {"name", slices::DeviceName(d.pci_address)},
      {"pciAddress", d.pci_address},
      {"vendorId", Hex16(d.vendor_id)},
      {"deviceId", Hex16(d.device_id)},
      {"subsystemVendorId", Hex16(d.subsystem_vendor_id)},
      {"subsystemDeviceId", Hex16(d.subsystem_device_id)},
      {"efaGeneration", d.generation},
      {"driver", d.driver},
      {"rdmaDevice", d.rdma_device},
      {"uverbs", d.UverbsName()},
      {"uverbsIndex", d.uverbs_index},
      {"charDevice", std::to_string(d.uverbs_dev.major) + ":" + std::to_string(d.uverbs_dev.minor)},
      {"devicePath", "/dev/infiniband/" + d.UverbsName()},
      {"pcieRoot", NullIfEmpty(d.pcie_root)},
      {"numaNode", d.numa_node < 0 ? json(nullptr) : json(d.numa_node)},
      {"localCpuList", NullIfEmpty(d.local_cpulist)},
      {"port",
       {{"state", d.port.state},
        {"physState", d.port.phys_state},
        {"rate", d.port.rate},
        {"rateGbps", d.port.rate_gbps}}},
      {"nodeGuid", d.node_guid},
      {"fwVersion", d.fw_version},
      {"interfaceType", d.netdev ? "efa" : "efa-only"},
      {"netdev", nullptr},
      {"verbs", nullptr},
      {"deviceGroups", json::object()},
  };
  if (d.netdev) {
    out["netdev"] = {{"name", d.netdev->name},
                     {"mac", d.netdev->mac},
                     {"mtu", d.netdev->mtu},
                     {"state", d.netdev->operstate}};
  }
  if (d.verbs) {
    out["verbs"] = {
        {"rdmaRead", d.verbs->rdma_read},        {"rdmaWrite", d.verbs->rdma_write},
        {"maxRdmaSize", d.verbs->max_rdma_size}, {"maxSqWr", d.verbs->max_sq_wr},
        {"maxRqWr", d.verbs->max_rq_wr},         {"maxSqSge", d.verbs->max_sq_sge},
        {"maxRqSge", d.verbs->max_rq_sge},       {"inlineBufSize", d.verbs->inline_buf_size}};
  }
  for (const auto& [key, value] : d.device_groups) out["deviceGroups"][key] = value;
  return out;
}

// What `discover` shows besides the EFAs: the accelerators they pair with.
struct Pairing {
  std::vector<discovery::PcieRootGroup> roots;
  std::vector<discovery::NeuronGroup> neuron_groups;
};

// Walks the PCI functions for GPUs and Neuron devices (warnings to stderr) and groups them
// with the EFAs.
Pairing PairDevices(const Inventory& inventory, const core::Filesystem& sysfs) {
  auto accelerators = discovery::FindAccelerators(sysfs);
  for (const auto& warning : accelerators.warnings) std::cerr << "warning: " << warning << "\n";
  return {discovery::GroupByPcieRoot(inventory.devices, accelerators.devices),
          discovery::GroupByNeuronDeviceGroup(inventory.devices,
                                              neuron::NeuronEfaTable(inventory.instance_type))};
}

json AcceleratorJson(const Accelerator& device) {
  json out = {{"pciAddress", device.pci_address},
              {"vendorId", Hex16(device.vendor_id)},
              {"deviceId", Hex16(device.device_id)},
              {"driver", NullIfEmpty(device.driver)}};
  if (device.kind == discovery::AcceleratorKind::kNvidiaGpu) out["index"] = device.index;
  return out;
}

json EfaNames(const std::vector<EfaDevice>& efas) {
  json names = json::array();
  for (const auto& efa : efas) names.push_back(slices::DeviceName(efa.pci_address));
  return names;
}

// Adds pcieRoots and neuronDeviceGroups to `out`.
void AddPairingJson(const Pairing& pairing, json& out) {
  json roots = json::array();
  for (const auto& group : pairing.roots) {
    json gpus = json::array();
    json neurons = json::array();
    for (const auto& gpu : group.gpus) gpus.push_back(AcceleratorJson(gpu));
    for (const auto& device : group.neuron_devices) neurons.push_back(AcceleratorJson(device));
    roots.push_back({{"root", NullIfEmpty(group.root)},
                     {"numaNode", group.numa_node < 0 ? json(nullptr) : json(group.numa_node)},
                     {"gpus", gpus},
                     {"neuronDevices", neurons},
                     {"efas", EfaNames(group.efas)}});
  }
  json groups = json::array();
  for (const auto& group : pairing.neuron_groups) {
    groups.push_back({{"devicegroup4Id", group.devicegroup4_id},
                      {"neuronIndexes", group.neuron_indexes},
                      {"efas", EfaNames(group.efas)}});
  }
  out["pcieRoots"] = std::move(roots);
  out["neuronDeviceGroups"] = std::move(groups);
}

json InventoryJson(const Inventory& inventory, const Pairing& pairing) {
  json devices = json::array();
  for (const auto& device : inventory.devices) devices.push_back(DeviceJson(device));
  json out = {{"instanceType", NullIfEmpty(inventory.instance_type)}, {"devices", devices}};
  AddPairingJson(pairing, out);
  return out;
}

// A plain YAML scalar that a YAML 1.1/1.2 reader would take for something other than a string
// ("true", "1", "null", "0x10", "") is double-quoted so it round-trips as a string.
bool NeedsQuotes(const std::string& text) {
  if (text.empty()) return true;
  static const std::set<std::string> kWords = {
      "true", "false", "yes", "no", "on",   "off",  "null", "~",  "y",  "n",   "True", "False",
      "TRUE", "FALSE", "Yes", "No", "Null", "NULL", "YES",  "NO", "On", "Off", "ON",   "OFF"};
  if (kWords.count(text) > 0) return true;
  char* end = nullptr;
  std::strtod(text.c_str(), &end);
  if (end != nullptr && *end == '\0') return true;
  if (text.rfind("0x", 0) == 0 || text.rfind("0o", 0) == 0) return true;
  // YAML 1.1 sexagesimal numbers ("12:34:56") and other digit-and-punctuation runs.
  return text.find_first_not_of("0123456789:._+-") == std::string::npos;
}

void EmitYaml(YAML::Emitter& out, const json& value) {
  switch (value.type()) {
    case json::value_t::object:
      if (value.empty()) out << YAML::Flow;
      out << YAML::BeginMap;
      for (const auto& [key, item] : value.items()) {
        out << YAML::Key << key << YAML::Value;
        EmitYaml(out, item);
      }
      out << YAML::EndMap;
      break;
    case json::value_t::array:
      if (value.empty()) out << YAML::Flow;
      out << YAML::BeginSeq;
      for (const auto& item : value) EmitYaml(out, item);
      out << YAML::EndSeq;
      break;
    case json::value_t::string: {
      const auto& text = value.get_ref<const std::string&>();
      if (NeedsQuotes(text)) out << YAML::DoubleQuoted;
      out << text;
      break;
    }
    case json::value_t::boolean:
      out << (value.get<bool>() ? "true" : "false");
      break;
    case json::value_t::null:
      out << YAML::Null;
      break;
    default:  // numbers
      out << value.dump();
      break;
  }
}

std::string ToYaml(const json& value) {
  YAML::Emitter out;
  EmitYaml(out, value);
  return std::string(out.c_str()) + "\n";
}

// One device a row, grouped by NUMA node then pcieRoot: the group columns are printed only when
// they change, so the devices that share a root (and its GPU) read as one block.
std::string Table(const Inventory& inventory) {
  std::vector<const EfaDevice*> rows;
  for (const auto& device : inventory.devices) rows.push_back(&device);
  auto numa_key = [](const EfaDevice* d) { return d->numa_node < 0 ? INT32_MAX : d->numa_node; };
  std::stable_sort(rows.begin(), rows.end(), [&](const EfaDevice* a, const EfaDevice* b) {
    if (numa_key(a) != numa_key(b)) return numa_key(a) < numa_key(b);
    if (a->pcie_root != b->pcie_root) return a->pcie_root < b->pcie_root;
    return a->pci_address < b->pci_address;
  });
  std::vector<std::vector<std::string>> cells = {{"NUMA", "PCIE ROOT", "DEVICE", "PCI ADDRESS",
                                                  "RDMA DEVICE", "UVERBS", "DEV", "GEN", "PORT",
                                                  "RATE", "NETDEV"}};
  std::string last_numa = "\x01";
  std::string last_root = "\x01";
  for (const EfaDevice* d : rows) {
    const std::string numa = d->numa_node < 0 ? "?" : std::to_string(d->numa_node);
    const std::string root = d->pcie_root.empty() ? "?" : d->pcie_root;
    const bool new_numa = numa != last_numa;
    const bool new_root = new_numa || root != last_root;
    last_numa = numa;
    last_root = root;
    cells.push_back(
        {new_numa ? numa : "", new_root ? root : "", slices::DeviceName(d->pci_address),
         d->pci_address, d->rdma_device, d->UverbsName(),
         std::to_string(d->uverbs_dev.major) + ":" + std::to_string(d->uverbs_dev.minor),
         "v" + std::to_string(d->generation), d->port.state.empty() ? "?" : d->port.state,
         d->port.rate_gbps > 0 ? std::to_string(d->port.rate_gbps) + "G" : "?",
         d->netdev ? d->netdev->name : "-"});
  }
  return core::FormatColumns(cells);
}

std::string JoinRdmaDevices(const std::vector<EfaDevice>& efas) {
  std::string joined;
  for (const auto& efa : efas) joined += (joined.empty() ? "" : ",") + efa.rdma_device;
  return joined.empty() ? "-" : joined;
}

// Per PCIe root, what an aligned claim gets together: the GPUs or Neuron devices and the EFAs.
std::string PairingTable(const Pairing& pairing) {
  std::vector<std::vector<std::string>> cells = {
      {"NUMA", "PCIE ROOT", "GPU (INDEX PCI ADDRESS)", "NEURON (PCI ADDRESS)", "EFAS", "RDMA DEVICES"}};
  for (const auto& group : pairing.roots) {
    std::string gpus;
    for (const auto& gpu : group.gpus) {
      gpus += (gpus.empty() ? "" : ",") + std::to_string(gpu.index) + " " + gpu.pci_address;
    }
    std::string neurons;
    for (const auto& device : group.neuron_devices) {
      neurons += (neurons.empty() ? "" : ",") + device.pci_address;
    }
    cells.push_back({group.numa_node < 0 ? "?" : std::to_string(group.numa_node),
                     group.root.empty() ? "?" : group.root, gpus.empty() ? "-" : gpus,
                     neurons.empty() ? "-" : neurons, std::to_string(group.efas.size()),
                     JoinRdmaDevices(group.efas)});
  }
  std::string out = core::FormatColumns(cells);
  if (!pairing.neuron_groups.empty()) {
    std::vector<std::vector<std::string>> groups = {
        {"NEURON GROUP (devicegroup4_id)", "NEURON INDEXES (/dev/neuronN)", "EFAS", "RDMA DEVICES"}};
    for (const auto& group : pairing.neuron_groups) {
      std::string indexes;
      for (int index : group.neuron_indexes) {
        indexes += (indexes.empty() ? "" : ",") + std::to_string(index);
      }
      groups.push_back({group.devicegroup4_id, indexes.empty() ? "-" : indexes,
                        std::to_string(group.efas.size()), JoinRdmaDevices(group.efas)});
    }
    out += "\n" + core::FormatColumns(groups);
  }
  return out;
}

std::string Summary(const Inventory& inventory) {
  std::set<std::string> roots;
  std::set<int> numa;
  size_t with_netdev = 0;
  for (const auto& d : inventory.devices) {
    if (!d.pcie_root.empty()) roots.insert(d.pcie_root);
    if (d.numa_node >= 0) numa.insert(d.numa_node);
    if (d.netdev) ++with_netdev;
  }
  std::ostringstream out;
  out << inventory.devices.size() << " EFA device" << (inventory.devices.size() == 1 ? "" : "s");
  if (!inventory.instance_type.empty()) out << " on " << inventory.instance_type;
  out << " (" << numa.size() << " NUMA node" << (numa.size() == 1 ? "" : "s") << ", "
      << roots.size() << " PCIe root" << (roots.size() == 1 ? "" : "s") << ", " << with_netdev
      << " with an ENA netdev, " << inventory.devices.size() - with_netdev << " efa-only)";
  if (!inventory.warnings.empty()) {
    out << "; " << inventory.warnings.size() << " warning"
        << (inventory.warnings.size() == 1 ? "" : "s") << " on stderr";
  }
  return out.str();
}

// A temp dir removed on scope exit (fixture mode).
class ScratchDir {
 public:
  ScratchDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/efa-dra-discover-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

int RunDiscover(const DiscoverFlags& flags) {
  if (!ApplyLoggingFlags(flags.logging)) return 2;
  const std::string output = !flags.output.empty() ? flags.output : flags.slices ? "yaml" : "table";
  if (output == "table" && flags.slices) {
    std::cerr << "efa-dra-driver discover: --slices prints objects; use -o json or -o yaml\n";
    return 2;
  }

  std::string sysfs_root = flags.sysfs_root;
  std::string dev_root = flags.dev_root;
  ScratchDir scratch;
  if (!flags.fixture.empty()) {
    auto yaml = sysfstree::BundledTopology(flags.fixture);
    if (!yaml) {
      std::string known;
      for (auto name : sysfstree::BundledInstanceTypes()) known += " " + std::string(name);
      std::cerr << "efa-dra-driver discover: no bundled fixture \"" << flags.fixture
                << "\" (bundled:" << known << ")\n";
      return 1;
    }
    auto topology = sysfstree::ParseTopology(*yaml);
    Status built = topology.ok() ? Status::Ok() : topology.status();
    if (built.ok() && scratch.path().empty()) built = InternalError("cannot create a temp dir");
    if (built.ok()) {
      sysfs_root = scratch.path() + "/sys";
      dev_root = scratch.path() + "/dev";
      built = sysfstree::BuildSysfsTree(*topology, sysfs_root, dev_root);
    }
    if (!built.ok()) {
      std::cerr << "efa-dra-driver discover: fixture " << flags.fixture << ": " << built.message()
                << "\n";
      return 1;
    }
  }

  auto sysfs = core::NewPosixFilesystem(sysfs_root);
  auto devfs = core::NewPosixFilesystem(dev_root);
  // libibverbs only knows this host's devices, so it can only describe the host's own /sys.
  std::unique_ptr<discovery::VerbsProvider> verbs;
  if (flags.fixture.empty() && core::CleanPath(sysfs_root) == "/sys") {
    verbs = discovery::NewIbverbsProvider();
  }
  auto inventory = discovery::Discoverer(*sysfs, *devfs, verbs.get()).Discover();
  if (!inventory.ok()) {
    std::cerr << "efa-dra-driver discover: " << inventory.status().message() << "\n";
    return 1;
  }
  for (const auto& warning : inventory->warnings) {
    std::cerr << "warning: " << warning << "\n";
  }

  json document;
  if (flags.slices) {
    slices::SliceOptions options;
    options.driver_name = flags.driver_name;
    options.numa_node_list = flags.numa_node_list;
    options.shares_per_device = flags.sharing.SharesPerDevice();
    options.node_name = flags.node_name.empty() ? DefaultNodeName() : flags.node_name;
    std::vector<std::string> slice_warnings;
    auto objects = slices::DesiredSlices(*inventory, options, &slice_warnings);
    for (const auto& warning : slice_warnings) std::cerr << "warning: " << warning << "\n";
    if (objects.size() == 1) {
      document = json(objects.front());
    } else {
      json items = json::array();
      for (const auto& object : objects) items.push_back(json(object));
      document = {{"apiVersion", "v1"}, {"kind", "List"}, {"items", items}};
    }
  } else if (output != "table") {
    document = InventoryJson(*inventory, PairDevices(*inventory, *sysfs));
  }

  if (output == "json") {
    std::cout << document.dump(2) << "\n";
  } else if (output == "yaml") {
    std::cout << ToYaml(document);
  } else {
    if (!inventory->devices.empty()) std::cout << Table(*inventory) << "\n";
    const Pairing pairing = PairDevices(*inventory, *sysfs);
    if (!pairing.roots.empty()) std::cout << PairingTable(pairing) << "\n";
    std::cout << Summary(*inventory) << "\n";
  }
  return 0;
}

}  // namespace

void AddDiscoverCommand(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<DiscoverFlags>();
  auto* command = app.add_subcommand(
      "discover",
      "Print this node's EFA devices (and with --slices the ResourceSlices `run` "
      "would publish); needs no cluster");
  command->add_option("--sysfs-root", flags->sysfs_root, "Root of the sysfs tree to read")
      ->envname("EFA_DRA_SYSFS_ROOT")
      ->capture_default_str();
  command->add_option("--dev-root", flags->dev_root, "Root of the /dev tree (uverbs nodes)")
      ->envname("EFA_DRA_DEV_ROOT")
      ->capture_default_str();
  command
      ->add_option("-o,--output", flags->output,
                   "Output format: table, json or yaml (default: table; yaml with --slices)")
      ->envname("EFA_DRA_OUTPUT")
      ->check(CLI::IsMember({"table", "json", "yaml"}));
  std::string bundled;
  for (auto name : sysfstree::BundledInstanceTypes()) bundled += " " + std::string(name);
  command
      ->add_option("--fixture", flags->fixture,
                   "Discover a bundled topology built into a temp dir instead of this node "
                   "(one of:" +
                       bundled + ")")
      ->envname("EFA_DRA_FIXTURE");
  command->add_flag("--slices", flags->slices, "Print the ResourceSlice objects instead")
      ->envname("EFA_DRA_SLICES");
  command
      ->add_option("--node-name", flags->node_name,
                   "Node (and pool) name for --slices (default: $NODE_NAME, else the hostname)")
      ->envname("EFA_DRA_NODE_NAME");
  command->add_option("--driver-name", flags->driver_name, "DRA driver name for --slices")
      ->envname("EFA_DRA_DRIVER_NAME")
      ->capture_default_str();
  command
      ->add_flag("--numa-node-list", flags->numa_node_list,
                 "With --slices: resource.kubernetes.io/numaNode as a list, as `run` publishes "
                 "it with the same flag")
      ->envname("EFA_DRA_NUMA_NODE_LIST");
  AddSharingFlags(*command, flags->sharing);
  AddLoggingFlags(*command, flags->logging);
  command->callback([flags, &exit_code] { exit_code = RunDiscover(*flags); });
}

}  // namespace efadra::cmd
