#include "efadra/sysfstree/tree_builder.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

namespace efadra::sysfstree {
namespace {

namespace fs = std::filesystem;

// The ucma misc device has a dynamic minor; any fixed value serves a fixture.
constexpr uint32_t kMiscMajor = 10;
constexpr uint32_t kRdmaCmMinor = 120;

// EFA counters (efa-hardware.md §A5, newest driver set). Discovery must enumerate, not assume.
constexpr const char* kDeviceCounters[] = {"submitted_cmds",     "completed_cmds",  "cmds_err",
                                           "no_completion_cmds", "keep_alive_rcvd", "alloc_pd_err",
                                           "create_qp_err",      "create_cq_err",   "reg_mr_err",
                                           "alloc_ucontext_err", "create_ah_err",   "mmap_err"};
constexpr const char* kPortCounters[] = {"tx_bytes",
                                         "tx_pkts",
                                         "rx_bytes",
                                         "rx_pkts",
                                         "rx_drops",
                                         "send_bytes",
                                         "send_wrs",
                                         "recv_bytes",
                                         "recv_wrs",
                                         "rdma_read_wrs",
                                         "rdma_read_bytes",
                                         "rdma_read_wr_err",
                                         "rdma_read_resp_bytes",
                                         "retrans_bytes",
                                         "retrans_pkts",
                                         "retrans_timeout_events",
                                         "unresponsive_remote_events",
                                         "impaired_remote_conn_events"};
constexpr const char* kRdmaWriteCounters[] = {"rdma_write_wrs", "rdma_write_bytes",
                                              "rdma_write_wr_err", "rdma_write_recv_bytes"};

std::vector<std::string_view> Split(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string_view::npos) next = path.size();
    if (next > pos) parts.push_back(path.substr(pos, next - pos));
    pos = next + 1;
  }
  return parts;
}

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& part : parts) {
    if (!out.empty()) out.push_back('/');
    out += part;
  }
  return out;
}

std::string Hex(const char* format, unsigned value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), format, value);
  return buffer;
}

// CPU list "0-23,48-71" -> sorted CPU numbers.
std::vector<int> ExpandCpuList(std::string_view list) {
  std::vector<int> cpus;
  size_t pos = 0;
  while (pos < list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    const std::string item(list.substr(pos, comma - pos));
    int first = 0;
    int last = 0;
    if (std::sscanf(item.c_str(), "%d-%d", &first, &last) == 2) {
      for (int cpu = first; cpu <= last; ++cpu) cpus.push_back(cpu);
    } else if (std::sscanf(item.c_str(), "%d", &first) == 1) {
      cpus.push_back(first);
    }
    pos = comma + 1;
  }
  std::sort(cpus.begin(), cpus.end());
  return cpus;
}

std::string CompressCpuList(const std::vector<int>& cpus) {
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out.push_back(',');
    out += std::to_string(cpus[i]);
    if (j > i) out += "-" + std::to_string(cpus[j]);
    i = j + 1;
  }
  return out;
}

// local_cpus: a bitmap of nr_cpu_ids bits in comma-separated 32-bit groups, most significant
// group first (the kernel's %*pb).
std::string CpuMask(const std::vector<int>& cpus, int nr_cpus) {
  const int groups = std::max(1, (nr_cpus + 31) / 32);
  std::vector<uint32_t> words(static_cast<size_t>(groups), 0);
  for (int cpu : cpus) {
    if (cpu < nr_cpus) words[static_cast<size_t>(cpu / 32)] |= 1u << (cpu % 32);
  }
  std::string out;
  for (int g = groups - 1; g >= 0; --g) {
    if (!out.empty()) out.push_back(',');
    out += Hex("%08x", words[static_cast<size_t>(g)]);
  }
  return out;
}

class Writer {
 public:
  explicit Writer(std::string root) : root_(std::move(root)) {}

  Status Dir(const std::string& rel) {
    std::error_code ec;
    fs::create_directories(Host(rel), ec);
    if (ec) return InternalError("mkdir " + Host(rel) + ": " + ec.message());
    return Status::Ok();
  }

  // A sysfs attribute: the value and a trailing newline.
  Status Attr(const std::string& rel, std::string_view value) {
    return File(rel, std::string(value) + "\n");
  }

  Status File(const std::string& rel, std::string_view content) {
    EFADRA_RETURN_IF_ERROR(Dir(std::string(fs::path(rel).parent_path())));
    std::ofstream out(Host(rel), std::ios::binary | std::ios::trunc);
    out << content;
    out.close();
    if (!out) return InternalError("write " + Host(rel) + ": " + std::strerror(errno));
    return Status::Ok();
  }

  Status Link(const std::string& rel, const std::string& target_rel) {
    EFADRA_RETURN_IF_ERROR(Dir(std::string(fs::path(rel).parent_path())));
    std::error_code ec;
    fs::remove(Host(rel), ec);
    fs::create_symlink(KernelRelativeLink(rel, target_rel), Host(rel), ec);
    if (ec) return InternalError("symlink " + Host(rel) + ": " + ec.message());
    return Status::Ok();
  }

  std::string Host(const std::string& rel) const { return root_ + "/" + rel; }

 private:
  std::string root_;
};

class TreeBuilder {
 public:
  TreeBuilder(const Topology& topology, const std::string& sysfs_root)
      : topology_(topology), w_(sysfs_root) {
    for (const auto& [node, list] : topology.cpulist) {
      auto cpus = ExpandCpuList(list);
      all_cpus_.insert(all_cpus_.end(), cpus.begin(), cpus.end());
      node_cpus_[node] = std::move(cpus);
    }
    std::sort(all_cpus_.begin(), all_cpus_.end());
    all_cpus_.erase(std::unique(all_cpus_.begin(), all_cpus_.end()), all_cpus_.end());
    if (all_cpus_.empty()) all_cpus_ = {0};
    nr_cpus_ = all_cpus_.back() + 1;
  }

  Status Build() {
    for (const char* dir : {"devices/system/cpu", "bus/pci/devices", "bus/pci/drivers",
                            "class/infiniband", "class/net", "class/infiniband_verbs"}) {
      EFADRA_RETURN_IF_ERROR(w_.Dir(dir));
    }
    EFADRA_RETURN_IF_ERROR(w_.Attr("class/infiniband_verbs/abi_version", "6"));
    EFADRA_RETURN_IF_ERROR(w_.Attr("devices/system/cpu/online", CompressCpuList(all_cpus_)));
    for (const auto& [node, cpus] : node_cpus_) {
      const std::string dir = "devices/system/node/node" + std::to_string(node);
      EFADRA_RETURN_IF_ERROR(w_.Attr(dir + "/cpulist", CompressCpuList(cpus)));
      // The SLIT row: 10 to itself, 21 to every other node (the topologies carry no distances;
      // 21 is what two-socket EC2 hosts report). Each node is its own socket, as on the
      // two-socket EFA instance types: physical_package_id of the node's first CPU.
      std::string distances;
      for (const auto& other : node_cpus_) {
        distances += (distances.empty() ? "" : " ") + std::string(other.first == node ? "10" : "21");
      }
      EFADRA_RETURN_IF_ERROR(w_.Attr(dir + "/distance", distances));
      if (!cpus.empty()) {
        EFADRA_RETURN_IF_ERROR(w_.Attr("devices/system/cpu/cpu" + std::to_string(cpus.front()) +
                                           "/topology/physical_package_id",
                                       std::to_string(node)));
      }
    }
    for (const auto& root : topology_.roots) {
      EFADRA_RETURN_IF_ERROR(w_.File("devices/" + root + "/uevent", ""));
    }
    for (const auto& function : topology_.functions) {
      EFADRA_RETURN_IF_ERROR(PciDevice(function));
    }
    EFADRA_RETURN_IF_ERROR(Loopback());
    const std::string dmi = "devices/virtual/dmi/id";
    EFADRA_RETURN_IF_ERROR(w_.Attr(dmi + "/product_name", topology_.instance_type));
    EFADRA_RETURN_IF_ERROR(w_.Attr(dmi + "/sys_vendor", "Amazon EC2"));
    EFADRA_RETURN_IF_ERROR(w_.Attr(dmi + "/board_vendor", "Amazon EC2"));
    return w_.Link("class/dmi/id", dmi);
  }

 private:
  std::string Cpulist(int numa) const {
    auto it = node_cpus_.find(numa);
    return CompressCpuList(it == node_cpus_.end() ? all_cpus_ : it->second);
  }
  std::string Cpumask(int numa) const {
    auto it = node_cpus_.find(numa);
    return CpuMask(it == node_cpus_.end() ? all_cpus_ : it->second, nr_cpus_);
  }

  Status PciDevice(const PciFunction& f) {
    const std::string dir = "devices/" + Join(f.path);
    const unsigned base = f.pci_class >> 16;
    const unsigned sub = (f.pci_class >> 8) & 0xff;
    const unsigned prog = f.pci_class & 0xff;
    char modalias[96];
    std::snprintf(modalias, sizeof(modalias), "pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X",
                  f.vendor_id, f.device_id, f.subsystem_vendor_id, f.subsystem_device_id, base, sub,
                  prog);
    std::string uevent;
    if (!f.driver.empty()) uevent += "DRIVER=" + f.driver + "\n";
    uevent += "PCI_CLASS=" + Hex("%X", f.pci_class) + "\n";
    uevent += "PCI_ID=" + Hex("%04X", f.vendor_id) + ":" + Hex("%04X", f.device_id) + "\n";
    uevent += "PCI_SUBSYS_ID=" + Hex("%04X", f.subsystem_vendor_id) + ":" +
              Hex("%04X", f.subsystem_device_id) + "\n";
    uevent += "PCI_SLOT_NAME=" + f.bdf + "\n";
    uevent += std::string("MODALIAS=") + modalias + "\n";

    EFADRA_RETURN_IF_ERROR(w_.Attr(dir + "/vendor", Hex("0x%04x", f.vendor_id)));
    EFADRA_RETURN_IF_ERROR(w_.Attr(dir + "/device", Hex("0x%04x", f.device_id)));
    EFADRA_RETURN_IF_ERROR(
        w_.Attr(dir + "/subsystem_vendor", Hex("0x%04x", f.subsystem_vendor_id)));
    EFADRA_RETURN_IF_ERROR(
        w_.Attr(dir + "/subsystem_device", Hex("0x%04x", f.subsystem_device_id)));
    EFADRA_RETURN_IF_ERROR(w_.Attr(dir + "/class", Hex("0x%06x", f.pci_class)));
    EFADRA_RETURN_IF_ERROR(w_.Attr(dir + "/revision", "0x00"));
    EFADRA_RETURN_IF_ERROR(w_.Attr(dir + "/numa_node", std::to_string(f.numa_node)));
    EFADRA_RETURN_IF_ERROR(w_.Attr(dir + "/local_cpulist", Cpulist(f.numa_node)));
    EFADRA_RETURN_IF_ERROR(w_.Attr(dir + "/local_cpus", Cpumask(f.numa_node)));
    EFADRA_RETURN_IF_ERROR(w_.Attr(dir + "/enable", "1"));
    EFADRA_RETURN_IF_ERROR(w_.Attr(dir + "/modalias", modalias));
    EFADRA_RETURN_IF_ERROR(w_.File(dir + "/uevent", uevent));
    EFADRA_RETURN_IF_ERROR(w_.Link(dir + "/subsystem", "bus/pci"));
    EFADRA_RETURN_IF_ERROR(w_.Link("bus/pci/devices/" + f.bdf, dir));
    if (!f.driver.empty()) {
      const std::string driver_dir = "bus/pci/drivers/" + f.driver;
      EFADRA_RETURN_IF_ERROR(w_.Link(dir + "/driver", driver_dir));
      EFADRA_RETURN_IF_ERROR(w_.Link(driver_dir + "/" + f.bdf, dir));
      if (drivers_.insert(f.driver).second) {
        EFADRA_RETURN_IF_ERROR(w_.File(driver_dir + "/bind", ""));
        EFADRA_RETURN_IF_ERROR(w_.File(driver_dir + "/unbind", ""));
        EFADRA_RETURN_IF_ERROR(w_.File(driver_dir + "/uevent", ""));
      }
    }
    if (!f.ibdev.empty()) EFADRA_RETURN_IF_ERROR(RdmaDevice(f, dir));
    if (!f.netdev.empty()) EFADRA_RETURN_IF_ERROR(Netdev(f, dir));
    return Status::Ok();
  }

  Status RdmaDevice(const PciFunction& f, const std::string& pci_dir) {
    const bool efa = f.kind == DeviceKind::kEfa;
    const std::string ib = pci_dir + "/infiniband/" + f.ibdev;
    EFADRA_RETURN_IF_ERROR(w_.Attr(ib + "/node_type", efa ? "7: unspecified" : "1: CA"));
    EFADRA_RETURN_IF_ERROR(w_.Attr(ib + "/node_guid", f.node_guid));
    EFADRA_RETURN_IF_ERROR(
        w_.Attr(ib + "/sys_image_guid", efa ? "0000:0000:0000:0000" : f.node_guid));
    EFADRA_RETURN_IF_ERROR(w_.Attr(ib + "/fw_ver", efa ? "" : "28.39.1002"));
    EFADRA_RETURN_IF_ERROR(w_.Attr(ib + "/node_desc", ""));
    EFADRA_RETURN_IF_ERROR(w_.Attr(ib + "/uevent", "NAME=" + f.ibdev));
    EFADRA_RETURN_IF_ERROR(w_.Link(ib + "/device", pci_dir));
    EFADRA_RETURN_IF_ERROR(w_.Link(ib + "/subsystem", "class/infiniband"));
    EFADRA_RETURN_IF_ERROR(w_.Link("class/infiniband/" + f.ibdev, ib));

    const std::string port = ib + "/ports/1";
    EFADRA_RETURN_IF_ERROR(w_.Attr(port + "/state", "4: ACTIVE"));
    EFADRA_RETURN_IF_ERROR(w_.Attr(port + "/phys_state", "5: LinkUp"));
    EFADRA_RETURN_IF_ERROR(w_.Attr(port + "/rate", f.rate));
    EFADRA_RETURN_IF_ERROR(w_.Attr(port + "/link_layer", efa ? "Unknown" : "InfiniBand"));
    EFADRA_RETURN_IF_ERROR(w_.Attr(port + "/lid", efa ? "0x0" : Hex("0x%x", 1u + f.uverbs)));
    EFADRA_RETURN_IF_ERROR(w_.Attr(port + "/sm_lid", efa ? "0x0" : "0x1"));
    EFADRA_RETURN_IF_ERROR(w_.Attr(port + "/sm_sl", "0"));
    EFADRA_RETURN_IF_ERROR(w_.Attr(port + "/lid_mask_count", efa ? "1" : "0"));
    EFADRA_RETURN_IF_ERROR(w_.Attr(port + "/cap_mask", efa ? "0x00000000" : "0xa651e848"));
    EFADRA_RETURN_IF_ERROR(w_.Attr(port + "/pkeys/0", "0xffff"));
    const std::string gid =
        efa ? Eui64GidFromMac(f.gid_mac)
            : "fe80:0000:0000:0000:" + f.node_guid;  // IB GIDs carry the port GUID
    EFADRA_RETURN_IF_ERROR(w_.Attr(port + "/gids/0", gid));
    if (efa) {
      for (const char* name : kDeviceCounters) {
        EFADRA_RETURN_IF_ERROR(w_.Attr(ib + "/hw_counters/" + name, "0"));
      }
      EFADRA_RETURN_IF_ERROR(w_.Attr(ib + "/hw_counters/lifespan", "10"));
      for (const char* name : kPortCounters) {
        EFADRA_RETURN_IF_ERROR(w_.Attr(port + "/hw_counters/" + name, "0"));
      }
      if (topology_.rdma_write) {
        for (const char* name : kRdmaWriteCounters) {
          EFADRA_RETURN_IF_ERROR(w_.Attr(port + "/hw_counters/" + name, "0"));
        }
      }
      EFADRA_RETURN_IF_ERROR(w_.Attr(port + "/hw_counters/lifespan", "10"));
    }

    const std::string name = "uverbs" + std::to_string(f.uverbs);
    const std::string uv = pci_dir + "/infiniband_verbs/" + name;
    const std::string dev = std::to_string(f.uverbs_major) + ":" + std::to_string(f.uverbs_minor);
    EFADRA_RETURN_IF_ERROR(w_.Attr(uv + "/ibdev", f.ibdev));
    EFADRA_RETURN_IF_ERROR(w_.Attr(uv + "/dev", dev));
    EFADRA_RETURN_IF_ERROR(w_.Attr(uv + "/abi_version", "1"));
    EFADRA_RETURN_IF_ERROR(w_.File(uv + "/uevent", "MAJOR=" + std::to_string(f.uverbs_major) +
                                                       "\nMINOR=" + std::to_string(f.uverbs_minor) +
                                                       "\nDEVNAME=infiniband/" + name + "\n"));
    EFADRA_RETURN_IF_ERROR(w_.Link(uv + "/device", pci_dir));
    EFADRA_RETURN_IF_ERROR(w_.Link(uv + "/subsystem", "class/infiniband_verbs"));
    return w_.Link("class/infiniband_verbs/" + name, uv);
  }

  Status NetAttrs(const std::string& net, const std::string& name, const std::string& mac, int mtu,
                  int ifindex, int type, const std::string& operstate) {
    EFADRA_RETURN_IF_ERROR(w_.Attr(net + "/address", mac));
    EFADRA_RETURN_IF_ERROR(
        w_.Attr(net + "/broadcast", type == 1 ? "ff:ff:ff:ff:ff:ff" : "00:00:00:00:00:00"));
    EFADRA_RETURN_IF_ERROR(w_.Attr(net + "/addr_len", std::to_string((mac.size() + 1) / 3)));
    EFADRA_RETURN_IF_ERROR(w_.Attr(net + "/mtu", std::to_string(mtu)));
    EFADRA_RETURN_IF_ERROR(w_.Attr(net + "/operstate", operstate));
    EFADRA_RETURN_IF_ERROR(w_.Attr(net + "/carrier", "1"));
    EFADRA_RETURN_IF_ERROR(w_.Attr(net + "/ifindex", std::to_string(ifindex)));
    EFADRA_RETURN_IF_ERROR(w_.Attr(net + "/iflink", std::to_string(ifindex)));
    EFADRA_RETURN_IF_ERROR(w_.Attr(net + "/type", std::to_string(type)));
    EFADRA_RETURN_IF_ERROR(w_.File(
        net + "/uevent", "INTERFACE=" + name + "\nIFINDEX=" + std::to_string(ifindex) + "\n"));
    EFADRA_RETURN_IF_ERROR(w_.Link(net + "/subsystem", "class/net"));
    return w_.Link("class/net/" + name, net);
  }

  Status Netdev(const PciFunction& f, const std::string& pci_dir) {
    const std::string net = pci_dir + "/net/" + f.netdev;
    std::string mac = f.mac;
    int type = 1;  // ARPHRD_ETHER
    if (f.kind == DeviceKind::kMlx5) {
      // IPoIB: 20-byte hardware address (QPN + port GID), ARPHRD_INFINIBAND.
      std::string guid;
      for (char c : f.node_guid) {
        if (c != ':') guid.push_back(c);
      }
      mac = "00:00:10:29:fe:80:00:00:00:00:00:00";
      for (size_t i = 0; i + 1 < guid.size(); i += 2) mac += ":" + guid.substr(i, 2);
      type = 32;
    }
    EFADRA_RETURN_IF_ERROR(w_.Link(net + "/device", pci_dir));
    return NetAttrs(net, f.netdev, mac, f.mtu, f.ifindex, type, "up");
  }

  Status Loopback() {
    return NetAttrs("devices/virtual/net/lo", "lo", "00:00:00:00:00:00", 65536, 1, 772, "unknown");
  }

  const Topology& topology_;
  Writer w_;
  std::map<int, std::vector<int>> node_cpus_;
  std::vector<int> all_cpus_;
  int nr_cpus_ = 1;
  std::set<std::string> drivers_;
};

Status DevNode(const std::string& path, uint32_t major, uint32_t minor, bool char_device) {
  std::error_code ec;
  fs::remove(path, ec);
  if (char_device && ::geteuid() == 0) {
    if (::mknod(path.c_str(), S_IFCHR | 0666, makedev(major, minor)) == 0) {
      ::chmod(path.c_str(), 0666);  // mknod honours the umask; the kernel's nodes are 0666
      return Status::Ok();
    }
    if (errno != EPERM) return InternalError("mknod " + path + ": " + std::strerror(errno));
    // No CAP_MKNOD (unprivileged container): fall through to a regular file.
  }
  std::ofstream out(path, std::ios::trunc);
  if (!out) return InternalError("create " + path + ": " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace

std::string KernelRelativeLink(std::string_view link_path, std::string_view target_path) {
  const auto link = Split(link_path);
  const auto target = Split(target_path);
  // The link's directory is everything but its own name.
  const size_t from_depth = link.empty() ? 0 : link.size() - 1;
  size_t common = 0;
  while (common < from_depth && common + 1 < target.size() && link[common] == target[common]) {
    ++common;
  }
  std::string out;
  for (size_t i = common; i < from_depth; ++i) out += "../";
  for (size_t i = common; i < target.size(); ++i) {
    out += target[i];
    if (i + 1 < target.size()) out.push_back('/');
  }
  return out;
}

Status BuildSysfsTree(const Topology& topology, const std::string& sysfs_root,
                      const std::string& dev_root, const TreeOptions& options) {
  std::error_code ec;
  fs::create_directories(sysfs_root, ec);
  if (ec) return InternalError("mkdir " + sysfs_root + ": " + ec.message());
  EFADRA_RETURN_IF_ERROR(TreeBuilder(topology, sysfs_root)
                             .Build()
                             .WithContext("build sysfs tree for " + topology.instance_type));
  if (dev_root.empty()) return Status::Ok();
  const std::string ib_dir = dev_root + "/infiniband";
  fs::create_directories(ib_dir, ec);
  if (ec) return InternalError("mkdir " + ib_dir + ": " + ec.message());
  for (const auto& function : topology.functions) {
    if (function.ibdev.empty()) continue;
    EFADRA_RETURN_IF_ERROR(DevNode(ib_dir + "/uverbs" + std::to_string(function.uverbs),
                                   function.uverbs_major, function.uverbs_minor,
                                   options.char_devices));
  }
  return DevNode(ib_dir + "/rdma_cm", kMiscMajor, kRdmaCmMinor, options.char_devices);
}

}  // namespace efadra::sysfstree
