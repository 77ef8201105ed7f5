#include "efadra/sysfstree/topology.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <optional>
#include <set>

namespace efadra::sysfstree {
namespace {

// Minors 192..223 of major 231 are the fixed uverbs numbers; the kernel hands out a dynamic
// major for the 33rd device on (IB_UVERBS_NUM_FIXED_MINOR, efa-hardware.md §A6). 240 stands in
// for whatever alloc_chrdev_region returns; discovery must read it, never assume it.
constexpr uint32_t kUverbsMajor = 231;
constexpr uint32_t kUverbsBaseMinor = 192;
constexpr int kUverbsFixedMinors = 32;
constexpr uint32_t kDynamicUverbsMajor = 240;

struct KindInfo {
  DeviceKind kind;
  std::string_view name;
  std::string_view driver;
  uint32_t pci_class;
};

// Class codes per kind (efa-hardware.md §A1); "other" names map to their own codes below.
constexpr KindInfo kKinds[] = {
    {DeviceKind::kEfa, "efa", "efa", 0x020000},
    {DeviceKind::kEna, "ena", "ena", 0x020000},
    {DeviceKind::kGpu, "gpu", "nvidia", 0x030200},
    {DeviceKind::kNvme, "nvme", "nvme", 0x010802},
    {DeviceKind::kNvswitch, "nvswitch", "nvidia", 0x068000},
    {DeviceKind::kBridge, "bridge", "pcieport", 0x060400},
    {DeviceKind::kNeuron, "neuron", "neuron-driver", 0x088000},
    {DeviceKind::kMlx5, "mlx5", "mlx5_core", 0x020700},
};

constexpr std::pair<std::string_view, uint32_t> kOtherClasses[] = {
    {"host-bridge", 0x060000}, {"isa", 0x060100},    {"acpi", 0x068000},
    {"vga", 0x030000},         {"serial", 0x070002},
};

bool IsHex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isxdigit(c) != 0 && !std::isupper(c);
  });
}

bool ValidBdf(std::string_view bdf) {
  return bdf.size() == 12 && IsHex(bdf.substr(0, 4)) && bdf[4] == ':' && IsHex(bdf.substr(5, 2)) &&
         bdf[7] == ':' && IsHex(bdf.substr(8, 2)) && bdf[10] == '.' && IsHex(bdf.substr(11, 1));
}

unsigned HexValue(std::string_view s) {
  unsigned value = 0;
  std::from_chars(s.data(), s.data() + s.size(), value, 16);
  return value;
}

struct Bdf {
  unsigned domain, bus, dev, fn;
};

Bdf SplitBdf(std::string_view bdf) {
  return {HexValue(bdf.substr(0, 4)), HexValue(bdf.substr(5, 2)), HexValue(bdf.substr(8, 2)),
          HexValue(bdf.substr(11, 1))};
}

std::string Format(const char* format, unsigned a, unsigned b, unsigned c = 0, unsigned d = 0,
                   unsigned e = 0, unsigned f = 0) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, a, b, c, d, e, f);
  return buffer;
}

// A MAC that depends only on the BDF and on `kind_byte`, so trees are reproducible and the ENA
// MACs (0x0a) never collide with the synthetic GID MACs of efa-only devices (0x0f). 0x0e sets the
// locally-administered bit, as ENI MACs are not vendor-assigned either.
std::string MacFromBdf(std::string_view bdf, unsigned kind_byte) {
  const Bdf b = SplitBdf(bdf);
  return Format("0e:%02x:%02x:%02x:%02x:%02x", kind_byte, b.domain >> 8, b.domain & 0xff, b.bus,
                (b.dev << 3) | b.fn);
}

// "rdmap<bus>s<dev>[f<fn>]" as rdma_rename's NAME_FALLBACK prints it (efa-hardware.md §A3).
std::string RdmaName(std::string_view prefix, std::string_view bdf, bool always_function) {
  const Bdf b = SplitBdf(bdf);
  std::string name = std::string(prefix) + Format("p%us%u", b.bus, b.dev);
  if (always_function || b.fn > 0) name += "f" + std::to_string(b.fn);
  return name;
}

// efa3+ node GUID layout (efa-hardware.md §A8): low 4 MAC bytes, domain, bus, function index.
std::string NodeGuid(std::string_view mac, std::string_view bdf) {
  unsigned bytes[6] = {};
  std::sscanf(std::string(mac).c_str(), "%x:%x:%x:%x:%x:%x", &bytes[0], &bytes[1], &bytes[2],
              &bytes[3], &bytes[4], &bytes[5]);
  const Bdf b = SplitBdf(bdf);
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%02x%02x:%02x%02x:%04x:%02x%02x", bytes[2], bytes[3],
                bytes[4], bytes[5], b.domain, b.bus, (b.dev << 3) | b.fn);
  return buffer;
}

// yaml-cpp throws on type queries of a missing key's node; these do not.
bool IsMap(const YAML::Node& node) { return node.IsDefined() && node.IsMap(); }
bool IsSequence(const YAML::Node& node) { return node.IsDefined() && node.IsSequence(); }

class Parser {
 public:
  Result<Topology> Parse(std::string_view yaml_text) {
    YAML::Node doc;
    try {
      doc = YAML::Load(std::string(yaml_text));
    } catch (const YAML::Exception& e) {
      return InvalidArgumentError(std::string("topology YAML: ") + e.what());
    }
    try {
      return ParseDocument(doc);
    } catch (const YAML::Exception& e) {
      return InvalidArgumentError("topology " + topology_.instance_type + ": " + e.what());
    }
  }

 private:
  static std::optional<std::string> Str(const YAML::Node& node, const char* key) {
    const YAML::Node value = node[key];
    if (!value.IsDefined()) return std::nullopt;
    if (value.IsNull()) return std::string();
    return value.as<std::string>();
  }

  Status Error(std::string_view where, std::string_view what) const {
    return InvalidArgumentError("topology " + topology_.instance_type + ": " + std::string(where) +
                                ": " + std::string(what));
  }

  // "1d0f:efa1" -> vendor, device.
  static bool ParseId(std::string_view id, uint16_t& vendor, uint16_t& device) {
    if (id.size() != 9 || id[4] != ':') return false;
    std::string lower(id);
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    if (!IsHex(std::string_view(lower).substr(0, 4)) || !IsHex(std::string_view(lower).substr(5))) {
      return false;
    }
    vendor = static_cast<uint16_t>(HexValue(std::string_view(lower).substr(0, 4)));
    device = static_cast<uint16_t>(HexValue(std::string_view(lower).substr(5)));
    return true;
  }

  Result<Topology> ParseDocument(const YAML::Node& doc) {
    if (!IsMap(doc)) return InvalidArgumentError("topology YAML: not a mapping");
    topology_.instance_type = Str(doc, "instance").value_or("");
    if (topology_.instance_type.empty()) return Error("instance", "missing");
    const std::string schema = Str(doc, "schema").value_or("");
    if (schema != "efa-topo/v1") return Error("schema", "want efa-topo/v1, got \"" + schema + "\"");
    const YAML::Node platform = doc["platform"];
    if (IsMap(platform) && IsMap(platform["cpulist"])) {
      for (const auto& entry : platform["cpulist"]) {
        topology_.cpulist[entry.first.as<int>()] = entry.second.as<std::string>();
      }
    }
    if (const YAML::Node efa = doc["efa"]; IsMap(efa)) {
      efa_rate_ = Str(efa, "rate").value_or(efa_rate_);
      if (efa["rdma_write"].IsDefined()) topology_.rdma_write = efa["rdma_write"].as<bool>();
    }
    const YAML::Node roots = doc["roots"];
    if (!IsSequence(roots)) return Error("roots", "missing or not a list");
    for (const auto& root : roots) EFADRA_RETURN_IF_ERROR(ParseRoot(root));
    EFADRA_RETURN_IF_ERROR(AddBridges());
    std::sort(topology_.functions.begin(), topology_.functions.end(),
              [](const PciFunction& a, const PciFunction& b) { return a.bdf < b.bdf; });
    for (size_t i = 1; i < topology_.functions.size(); ++i) {
      if (topology_.functions[i].bdf == topology_.functions[i - 1].bdf) {
        return Error(topology_.functions[i].bdf, "listed twice");
      }
    }
    EFADRA_RETURN_IF_ERROR(AssignUverbs());
    PairNetdevs();
    return std::move(topology_);
  }

  Status ParseRoot(const YAML::Node& root) {
    const std::string id = Str(root, "id").value_or("");
    if (id.size() != 10 || id.rfind("pci", 0) != 0 || !IsHex(id.substr(3, 4)) || id[7] != ':' ||
        !IsHex(id.substr(8))) {
      return Error("root \"" + id + "\"", "id must look like pci0000:44");
    }
    topology_.roots.push_back(id);
    const int numa = root["numa"].IsDefined() ? root["numa"].as<int>() : -1;
    root_numa_[id] = numa;

    // Root port and switch upstream port of the root_port+switch shape (p5 and later).
    std::vector<std::string> chain;
    for (const char* key : {"root_port", "switch_up"}) {
      const YAML::Node bridge = root[key];
      if (!IsMap(bridge)) continue;
      PciFunction function;
      function.bdf = Str(bridge, "bdf").value_or("");
      if (!ValidBdf(function.bdf)) return Error(id + " " + key, "bad bdf \"" + function.bdf + "\"");
      function.kind = DeviceKind::kBridge;
      function.class_name = "bridge";
      EFADRA_RETURN_IF_ERROR(ApplyIdsAndClass(bridge, id + " " + function.bdf, function));
      chain.push_back(function.bdf);
      function.path = {id};
      function.path.insert(function.path.end(), chain.begin(), chain.end());
      function.numa_node = numa;
      topology_.functions.push_back(std::move(function));
    }
    root_chain_[id] = chain;
    // Empty hotplug ports of the switch: port i = <bus>:<i/8>.<i%8> (efa-hardware.md §A7).
    if (const YAML::Node downstream = root["downstream"]; IsMap(downstream) && !chain.empty()) {
      const std::string bus = Str(downstream, "bus").value_or("");
      const int ports = downstream["ports"].IsDefined() ? downstream["ports"].as<int>() : 0;
      if (!IsHex(bus) || bus.size() != 2) return Error(id + " downstream", "bad bus");
      for (int i = 0; i < ports; ++i) {
        const std::string bdf =
            id.substr(3, 4) + ":" + bus + ":" +
            Format("%02x.%x", static_cast<unsigned>(i / 8), static_cast<unsigned>(i % 8));
        std::vector<std::string> path = {id};
        path.insert(path.end(), chain.begin(), chain.end());
        path.push_back(bdf);
        wanted_bridges_[bdf] = {path, numa};
      }
    }
    const YAML::Node devices = root["devices"];
    if (!devices.IsDefined()) return Status::Ok();
    if (!IsSequence(devices)) return Error(id + " devices", "not a list");
    for (const auto& device : devices) EFADRA_RETURN_IF_ERROR(ParseDevice(id, numa, device));
    return Status::Ok();
  }

  Status ApplyIdsAndClass(const YAML::Node& node, const std::string& where, PciFunction& function) {
    const std::string id = Str(node, "id").value_or("1d0f:0200");
    if (!ParseId(id, function.vendor_id, function.device_id)) {
      return Error(where, "bad id \"" + id + "\" (want vvvv:dddd)");
    }
    const std::string subsys = Str(node, "subsys").value_or(id);
    if (!ParseId(subsys, function.subsystem_vendor_id, function.subsystem_device_id)) {
      return Error(where, "bad subsys \"" + subsys + "\"");
    }
    function.pci_class = 0;
    for (const KindInfo& info : kKinds) {
      if (info.kind == function.kind) {
        function.pci_class = info.pci_class;
        function.driver = std::string(info.driver);
      }
    }
    for (const auto& [name, code] : kOtherClasses) {
      if (name == function.class_name) function.pci_class = code;
    }
    if (const auto pci_class = Str(node, "pci_class"); pci_class && !pci_class->empty()) {
      std::string_view text = *pci_class;
      if (text.rfind("0x", 0) == 0) text.remove_prefix(2);
      if (!IsHex(text)) return Error(where, "bad pci_class");
      function.pci_class = HexValue(text);
    } else if (const auto cls = Str(node, "class"); cls && cls->rfind("0x", 0) == 0) {
      function.pci_class = HexValue(std::string_view(*cls).substr(2));
    }
    // An explicit `driver:` (possibly empty = unbound) wins over the kind's default.
    if (const auto driver = Str(node, "driver")) function.driver = *driver;
    return Status::Ok();
  }

  Status ParseDevice(const std::string& root_id, int root_numa, const YAML::Node& node) {
    PciFunction function;
    function.bdf = Str(node, "bdf").value_or("");
    const std::string where = root_id + " device \"" + function.bdf + "\"";
    if (!ValidBdf(function.bdf)) return Error(where, "bad bdf (want dddd:bb:dd.f, lowercase)");
    function.class_name = Str(node, "class").value_or("");
    function.kind = DeviceKind::kOther;
    for (const KindInfo& info : kKinds) {
      if (info.name == function.class_name) function.kind = info.kind;
    }
    EFADRA_RETURN_IF_ERROR(ApplyIdsAndClass(node, where, function));
    function.numa_node = node["numa"].IsDefined() ? node["numa"].as<int>() : root_numa;

    if (const auto path = Str(node, "path"); path && !path->empty()) {
      std::string_view text = *path;
      constexpr std::string_view kPrefix = "/sys/devices/";
      if (text.rfind(kPrefix, 0) != 0) return Error(where, "path must start with /sys/devices/");
      text.remove_prefix(kPrefix.size());
      size_t pos = 0;
      while (pos <= text.size()) {
        size_t next = text.find('/', pos);
        if (next == std::string_view::npos) next = text.size();
        if (next > pos) function.path.emplace_back(text.substr(pos, next - pos));
        pos = next + 1;
      }
    } else {
      function.path = {root_id};
      const auto& chain = root_chain_[root_id];
      function.path.insert(function.path.end(), chain.begin(), chain.end());
      if (const auto port = Str(node, "port"); port && !port->empty()) {
        function.path.push_back(*port);
      }
      function.path.push_back(function.bdf);
    }
    if (function.path.size() < 2 || function.path.front() != root_id ||
        function.path.back() != function.bdf) {
      return Error(where, "path must be /sys/devices/" + root_id + "/.../" + function.bdf);
    }
    for (size_t i = 1; i + 1 < function.path.size(); ++i) {
      if (!ValidBdf(function.path[i])) return Error(where, "path component is not a BDF");
      std::vector<std::string> bridge_path(function.path.begin(),
                                           function.path.begin() + static_cast<long>(i) + 1);
      wanted_bridges_.emplace(function.path[i], WantedBridge{bridge_path, root_numa});
    }

    // Only a bound driver registers an RDMA device or a netdev.
    const bool bound = function.driver == (function.kind == DeviceKind::kEfa   ? "efa"
                                           : function.kind == DeviceKind::kEna ? "ena"
                                                                               : "mlx5_core");
    if ((function.kind == DeviceKind::kEfa || function.kind == DeviceKind::kMlx5) && bound) {
      function.ibdev = Str(node, "ibdev").value_or("");
      if (function.ibdev.empty()) {
        function.ibdev = function.kind == DeviceKind::kEfa ? RdmaName("rdma", function.bdf, false)
                                                           : RdmaName("ib", function.bdf, true);
      }
      if (node["uverbs"].IsDefined()) function.uverbs = node["uverbs"].as<int>();
      if (const auto dev = Str(node, "uverbs_dev"); dev && !dev->empty()) {
        unsigned major = 0;
        unsigned minor = 0;
        if (std::sscanf(dev->c_str(), "%u:%u", &major, &minor) != 2) {
          return Error(where, "bad uverbs_dev (want major:minor)");
        }
        function.uverbs_major = major;
        function.uverbs_minor = minor;
      }
      function.rate =
          Str(node, "rate")
              .value_or(function.kind == DeviceKind::kEfa ? efa_rate_ : "100 Gb/sec (2X HDR)");
      function.node_guid = Str(node, "node_guid").value_or("");
    }
    if ((function.kind == DeviceKind::kEna || function.kind == DeviceKind::kMlx5) && bound) {
      function.netdev = Str(node, "netdev").value_or("");
      if (function.netdev.empty() && function.kind == DeviceKind::kEna) {
        function.netdev = RdmaName("en", function.bdf, false);
      }
      function.mac = Str(node, "mac").value_or("");
      std::transform(function.mac.begin(), function.mac.end(), function.mac.begin(), ::tolower);
      if (function.mac.empty()) function.mac = MacFromBdf(function.bdf, 0xa0);
      function.mtu = node["mtu"].IsDefined() ? node["mtu"].as<int>()
                                             : (function.kind == DeviceKind::kEna ? 9001 : 4092);
    }
    topology_.functions.push_back(std::move(function));
    return Status::Ok();
  }

  // Every BDF on a device path that the YAML does not list becomes a Nitro PCIe bridge
  // (1d0f:0200, efa-hardware.md §A1), bound to pcieport.
  Status AddBridges() {
    std::set<std::string> listed;
    for (const auto& function : topology_.functions) listed.insert(function.bdf);
    for (const auto& [bdf, wanted] : wanted_bridges_) {
      if (listed.count(bdf) > 0) continue;
      PciFunction bridge;
      bridge.bdf = bdf;
      bridge.kind = DeviceKind::kBridge;
      bridge.class_name = "bridge";
      bridge.vendor_id = bridge.subsystem_vendor_id = 0x1d0f;
      bridge.device_id = bridge.subsystem_device_id = 0x0200;
      bridge.pci_class = 0x060400;
      bridge.driver = "pcieport";
      bridge.path = wanted.path;
      bridge.numa_node = wanted.numa;
      topology_.functions.push_back(std::move(bridge));
    }
    return Status::Ok();
  }

  // Unlisted uverbs indices follow BDF order (probe order), skipping indices already taken.
  Status AssignUverbs() {
    std::set<int> used;
    for (const auto& function : topology_.functions) {
      if (function.uverbs < 0) continue;
      if (!used.insert(function.uverbs).second) {
        return Error(function.bdf, "uverbs " + std::to_string(function.uverbs) + " used twice");
      }
    }
    int next = 0;
    for (auto& function : topology_.functions) {
      if (function.ibdev.empty()) continue;
      if (function.uverbs < 0) {
        while (used.count(next) > 0) ++next;
        function.uverbs = next;
        used.insert(next);
      }
      if (function.uverbs_major == 0) {
        if (function.uverbs < kUverbsFixedMinors) {
          function.uverbs_major = kUverbsMajor;
          function.uverbs_minor = kUverbsBaseMinor + static_cast<uint32_t>(function.uverbs);
        } else {
          function.uverbs_major = kDynamicUverbsMajor;
          function.uverbs_minor = static_cast<uint32_t>(function.uverbs - kUverbsFixedMinors);
        }
      }
    }
    return Status::Ok();
  }

  void PairNetdevs() {
    std::map<std::string, std::vector<PciFunction*>> enas;
    std::map<std::string, std::vector<PciFunction*>> efas;
    int ifindex = 2;  // 1 is lo
    for (auto& function : topology_.functions) {
      if (!function.netdev.empty()) function.ifindex = ifindex++;
      if (function.kind == DeviceKind::kEna && !function.netdev.empty()) {
        enas[function.root()].push_back(&function);
      }
      if (function.kind == DeviceKind::kEfa && !function.ibdev.empty()) {
        efas[function.root()].push_back(&function);
      }
    }
    for (auto& [root, list] : efas) {
      const auto& root_enas = enas[root];
      for (size_t i = 0; i < list.size(); ++i) {
        PciFunction& efa = *list[i];
        efa.gid_mac = i < root_enas.size() ? root_enas[i]->mac : MacFromBdf(efa.bdf, 0xf0);
        if (efa.node_guid.empty()) efa.node_guid = NodeGuid(efa.gid_mac, efa.bdf);
      }
    }
    for (auto& function : topology_.functions) {
      if (function.kind == DeviceKind::kMlx5 && function.node_guid.empty()) {
        function.node_guid = NodeGuid(MacFromBdf(function.bdf, 0xc0), function.bdf);
      }
    }
  }

  struct WantedBridge {
    std::vector<std::string> path;
    int numa = -1;
  };

  Topology topology_;
  std::string efa_rate_ = "100 Gb/sec (4X EDR)";
  std::map<std::string, int> root_numa_;
  std::map<std::string, std::vector<std::string>> root_chain_;
  std::map<std::string, WantedBridge> wanted_bridges_;
};

}  // namespace

std::string_view DeviceKindName(DeviceKind kind) {
  for (const KindInfo& info : kKinds) {
    if (info.kind == kind) return info.name;
  }
  return "other";
}

std::vector<const PciFunction*> Topology::OfKind(DeviceKind kind) const {
  std::vector<const PciFunction*> out;
  for (const auto& function : functions) {
    if (function.kind == kind) out.push_back(&function);
  }
  return out;
}

Result<Topology> ParseTopology(std::string_view yaml_text) { return Parser().Parse(yaml_text); }

std::string Eui64GidFromMac(std::string_view mac) {
  unsigned b[6] = {};
  std::sscanf(std::string(mac).c_str(), "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4],
              &b[5]);
  return "fe80:0000:0000:0000:" +
         Format("%02x%02x:%02xff:fe%02x:%02x%02x", b[0] ^ 0x02, b[1], b[2], b[3], b[4], b[5]);
}

Result<std::string> MacFromEui64Gid(std::string_view gid) {
  // fe80:0000:0000:0000:AABB:CCff:feDD:EEFF (%pI6: 8 groups of 4 hex digits).
  std::string text(gid);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  std::transform(text.begin(), text.end(), text.begin(), ::tolower);
  if (text.size() != 39 || text.rfind("fe80:0000:0000:0000:", 0) != 0) {
    return InvalidArgumentError("GID \"" + text + "\" is not an fe80::/64 link-local address");
  }
  for (size_t i = 0; i < text.size(); ++i) {
    const bool colon = i % 5 == 4;
    if (colon ? text[i] != ':' : std::isxdigit(static_cast<unsigned char>(text[i])) == 0) {
      return InvalidArgumentError("GID \"" + text + "\" is not in %pI6 form");
    }
  }
  const std::string_view v(text);
  if (v.substr(27, 2) != "ff" || v.substr(30, 2) != "fe") {
    return InvalidArgumentError("GID \"" + text + "\" has no EUI-64 ff:fe marker");
  }
  const unsigned b0 = HexValue(v.substr(20, 2)) ^ 0x02;
  return Format("%02x:%02x:%02x:%02x:%02x:%02x", b0, HexValue(v.substr(22, 2)),
                HexValue(v.substr(25, 2)), HexValue(v.substr(32, 2)), HexValue(v.substr(35, 2)),
                HexValue(v.substr(37, 2)));
}

}  // namespace efadra::sysfstree
