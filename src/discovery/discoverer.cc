#include "efadra/discovery/discoverer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "efadra/discovery/sysfs_values.h"
#include "numa_topology.h"
#if EFADRA_WITH_NEURON
#include "efadra/neuron/device_groups.h"
#endif

namespace efadra::discovery {
namespace {

constexpr uint16_t kAmazonVendor = 0x1d0f;
constexpr std::string_view kEfaDriver = "efa";
// Drivers that bind any device they are told to (driver_override / new_id).
constexpr std::string_view kGenericDrivers[] = {"vfio-pci", "pci-stub", "uio_pci_generic"};

bool IsGenericDriver(std::string_view driver) {
  return std::find(std::begin(kGenericDrivers), std::end(kGenericDrivers), driver) !=
         std::end(kGenericDrivers);
}

// Everything one Discover() call accumulates. Not shared between calls.
class Walk {
 public:
  // `log_once` returns true the first time it sees a message (per Discoverer).
  Walk(const core::Filesystem& sysfs, const core::Filesystem& dev, VerbsProvider* verbs,
       std::function<bool(const std::string&)> log_once)
      : sysfs_(sysfs), dev_(dev), verbs_(verbs), log_once_(std::move(log_once)) {}

  Result<Inventory> Run() {
    // A missing root is bad input (exit 1 in `discover`); anything inside is a warning.
    auto root = sysfs_.Stat("/");
    if (!root.ok() || root->type != core::FileType::kDirectory) {
      return InvalidArgumentError("sysfs root " + sysfs_.HostPath("/") +
                                  " does not exist or is not a directory");
    }
    if (!sysfs_.Exists("/devices") && !sysfs_.Exists("/class")) {
      return InvalidArgumentError("sysfs root " + sysfs_.HostPath("/") +
                                  " is not a sysfs tree (has neither devices/ nor class/)");
    }
    inventory_.instance_type = ReadInstanceType();
    NumaTopology numa = ReadNumaTopology(sysfs_);
    inventory_.numa_node_count = numa.node_count;
    inventory_.numa_local_nodes = std::move(numa.local_nodes);
    ReadUverbs();
    ReadRdmaDevices();
    ReportStrayEfaFunctions();
    std::sort(inventory_.devices.begin(), inventory_.devices.end(),
              [](const EfaDevice& a, const EfaDevice& b) { return a.pci_address < b.pci_address; });
    return std::move(inventory_);
  }

 private:
  struct Uverbs {
    int index = -1;
    std::string name;
    std::optional<CharDeviceNumber> dev;
  };

  // Warnings are returned, not logged: the caller (run, discover) decides how to show them.
  void Warn(std::string message) { inventory_.warnings.push_back(std::move(message)); }

  std::string Host(std::string_view path) const { return sysfs_.HostPath(path); }

  // The attribute's text, or nullopt with a warning naming the file.
  std::optional<std::string> ReadAttr(const std::string& path, std::string_view what) {
    auto text = sysfs_.ReadFile(path, 4096);
    if (!text.ok()) {
      Warn(std::string(what) + ": cannot read " + Host(path) + ": " + text.status().message());
      return std::nullopt;
    }
    return std::move(*text);
  }

  // Reads without a warning (optional attributes).
  std::optional<std::string> ReadOptional(const std::string& path) const {
    auto text = sysfs_.ReadFile(path, 4096);
    if (!text.ok()) return std::nullopt;
    return std::string(TrimValue(*text));
  }

  // Follows the symlink at `path` one level: the cleaned target, relative links resolved against
  // the link's directory (all sysfs links are relative). A path that is not a link is itself.
  Result<std::string> FollowLink(const std::string& path) const {
    auto target = sysfs_.ReadLink(path);
    if (!target.ok()) {
      if (target.status().code() == StatusCode::kInvalidArgument) return path;  // not a link
      return target.status();
    }
    if (!target->empty() && target->front() == '/') return core::CleanPath(*target);
    return core::CleanPath(std::string(core::DirName(path)) + "/" + *target);
  }

  std::string ReadInstanceType() {
    // Absent on non-EC2 machines and in containers without DMI: "" is "unknown", no warning.
    return ReadOptional("/devices/virtual/dmi/id/product_name").value_or("");
  }

  void ReadUverbs() {
    auto names = sysfs_.ListDir("/class/infiniband_verbs");
    if (!names.ok()) return;  // reported per device below if an EFA lacks its node
    for (const std::string& name : *names) {
      const int index = ParseUverbsIndex(name);
      if (index < 0) continue;  // abi_version
      const std::string dir = "/class/infiniband_verbs/" + name;
      auto ibdev = ReadAttr(dir + "/ibdev", name);
      if (!ibdev) continue;
      Uverbs uverbs;
      uverbs.index = index;
      uverbs.name = name;
      if (auto dev_text = ReadAttr(dir + "/dev", name)) {
        auto number = ParseDevNumber(*dev_text);
        if (number.ok()) {
          uverbs.dev = *number;
        } else {
          Warn(name + ": " + Host(dir + "/dev") + ": " + number.status().message());
        }
      }
      uverbs_by_ibdev_[std::string(TrimValue(*ibdev))] = std::move(uverbs);
    }
  }

  void ReadRdmaDevices() {
    auto names = sysfs_.ListDir("/class/infiniband");
    if (!names.ok()) {
      if (names.status().code() == StatusCode::kNotFound) {
        Warn("no RDMA devices: " + Host("/class/infiniband") +
             " does not exist (ib_core/efa modules not loaded?)");
      } else {
        Warn("cannot list " + Host("/class/infiniband") + ": " + names.status().message());
      }
      return;
    }
    for (const std::string& name : *names) ReadRdmaDevice(name);
  }

  void Skip(const std::string& ibdev, const std::string& why) {
    std::string message = "skipped RDMA device " + ibdev + ": " + why;
    if (log_once_(message)) spdlog::info("discovery: {}", message);
    inventory_.warnings.push_back(std::move(message));
  }

  void ReadRdmaDevice(const std::string& ibdev) {
    const std::string class_link = "/class/infiniband/" + ibdev;
    auto ib_dir = FollowLink(class_link);
    if (!ib_dir.ok()) {
      Warn(ibdev + ": cannot resolve " + Host(class_link) + ": " + ib_dir.status().message());
      return;
    }
    // Soft-RoCE (rxe), siw and other virtual devices live under devices/virtual and have no
    // PCI function.
    if (ib_dir->rfind("/devices/virtual/", 0) == 0) {
      Skip(ibdev, "virtual RDMA device (" + Host(*ib_dir) + "), not a PCI function");
      return;
    }
    const std::string device_link = *ib_dir + "/device";
    auto pci_dir = FollowLink(device_link);
    if (!pci_dir.ok()) {
      Warn(ibdev + ": cannot read " + Host(device_link) + ": " + pci_dir.status().message() +
           "; device skipped");
      return;
    }
    const std::string bdf(core::BaseName(*pci_dir));
    if (pci_dir->rfind("/devices/pci", 0) != 0 || !IsValidPciAddress(bdf)) {
      Skip(ibdev, "not a PCI function (" + Host(*pci_dir) + ")");
      return;
    }
    seen_functions_.insert(bdf);

    EfaDevice device;
    device.pci_address = bdf;
    device.rdma_device = ibdev;
    // Identity: all of vendor, device and driver must say EFA. Unreadable identity means the
    // device cannot be trusted to be an EFA; it is left out, with the file named.
    std::optional<uint16_t> ids[2];
    const char* id_files[2] = {"vendor", "device"};
    for (int i = 0; i < 2; ++i) {
      const std::string path = *pci_dir + "/" + id_files[i];
      auto text = sysfs_.ReadFile(path, 4096);
      if (!text.ok()) {
        // Checked only on failure: a Stat per device on the healthy path costs a syscall each
        // rescan.
        auto pci_stat = sysfs_.Stat(*pci_dir);
        if (!pci_stat.ok() || pci_stat->type != core::FileType::kDirectory) {
          Warn(ibdev + ": " + Host(device_link) + " is dangling (" + Host(*pci_dir) +
               " does not exist); device skipped");
        } else {
          Warn(ibdev + ": cannot read " + Host(path) + ": " + text.status().message() +
               "; device skipped");
        }
        return;
      }
      auto id = ParsePciId(*text);
      if (!id.ok()) {
        Warn(ibdev + ": " + Host(path) + ": " + id.status().message() + "; device skipped");
        return;
      }
      ids[i] = *id;
    }
    device.vendor_id = *ids[0];
    device.device_id = *ids[1];
    auto driver_dir = FollowLink(*pci_dir + "/driver");
    device.driver = driver_dir.ok() && *driver_dir != *pci_dir + "/driver"
                        ? std::string(core::BaseName(*driver_dir))
                        : "";
    const bool efa_ids = device.vendor_id == kAmazonVendor && EfaGeneration(device.device_id) > 0;
    if (!efa_ids) {
      char ids_text[16];
      std::snprintf(ids_text, sizeof(ids_text), "%04x:%04x", device.vendor_id, device.device_id);
      Skip(ibdev, std::string("not an EFA (") + bdf + " is " + ids_text + ", driver " +
                      (device.driver.empty() ? "none" : device.driver) + ")");
      return;
    }
    if (device.driver != kEfaDriver) {
      Warn(ibdev + ": " + bdf + " has EFA ids but driver " +
           (device.driver.empty() ? std::string("none (") + Host(*pci_dir + "/driver") + " missing)"
                                  : "\"" + device.driver + "\"") +
           "; device skipped");
      return;
    }
    device.generation = EfaGeneration(device.device_id);
    for (auto [file, field] : {std::pair{"subsystem_vendor", &device.subsystem_vendor_id},
                               std::pair{"subsystem_device", &device.subsystem_device_id}}) {
      const std::string path = *pci_dir + "/" + file;
      if (auto text = ReadAttr(path, ibdev)) {
        auto id = ParsePciId(*text);
        if (id.ok()) {
          *field = *id;
        } else {
          Warn(ibdev + ": " + Host(path) + ": " + id.status().message());
        }
      }
    }

    // uverbs: without a node the device cannot be handed to a container (header comment).
    auto uverbs = uverbs_by_ibdev_.find(ibdev);
    if (uverbs == uverbs_by_ibdev_.end()) {
      Warn(ibdev + " (" + bdf + "): no uverbs node (no " + Host("/class/infiniband_verbs") +
           "/uverbsN whose ibdev is " + ibdev + "); it cannot be injected and is left out");
      return;
    }
    if (!uverbs->second.dev) {
      Warn(ibdev + " (" + bdf + "): " + uverbs->second.name +
           " has no usable dev number; it cannot be injected and is left out");
      return;
    }
    device.uverbs_index = uverbs->second.index;
    device.uverbs_dev = *uverbs->second.dev;
    CheckDevNode(device);

    ReadPcieRoot(device);
    ReadNuma(device, *pci_dir);
    ReadPort(device, *ib_dir);
    device.node_guid = ReadOptional(*ib_dir + "/node_guid").value_or("");
    device.fw_version = ReadOptional(*ib_dir + "/fw_ver").value_or("");
    MatchNetdev(device);
    if (verbs_ != nullptr) device.verbs = verbs_->Query(device);
#if EFADRA_WITH_NEURON
    device.device_groups = neuron::DeviceGroupIds(inventory_.instance_type, device.pci_address);
#endif
    inventory_.devices.push_back(std::move(device));
  }

  // The /dev node is what the CDI spec hands the runtime; a missing or different node is worth
  // a warning, but sysfs stays authoritative (udev may create the node later).
  void CheckDevNode(const EfaDevice& device) {
    const std::string path = "/infiniband/" + device.UverbsName();
    auto info = dev_.Stat(path);
    if (!info.ok()) {
      Warn(device.rdma_device + ": " + dev_.HostPath(path) + " is missing (" +
           info.status().message() + ")");
      return;
    }
    if (info->type == core::FileType::kCharDevice &&
        (info->device_major != device.uverbs_dev.major ||
         info->device_minor != device.uverbs_dev.minor)) {
      Warn(device.rdma_device + ": " + dev_.HostPath(path) + " is " +
           std::to_string(info->device_major) + ":" + std::to_string(info->device_minor) +
           " but sysfs says " + std::to_string(device.uverbs_dev.major) + ":" +
           std::to_string(device.uverbs_dev.minor));
    }
  }

  void ReadPcieRoot(EfaDevice& device) {
    const std::string link = "/bus/pci/devices/" + device.pci_address;
    auto text = sysfs_.ReadLink(link);
    if (!text.ok()) {
      Warn(device.rdma_device + ": pcieRoot unknown: cannot read link " + Host(link) + ": " +
           text.status().message());
      return;
    }
    auto root = PcieRootFromLink(device.pci_address, *text);
    if (!root.ok()) {
      Warn(device.rdma_device + ": pcieRoot unknown: " + root.status().message());
      return;
    }
    device.pcie_root = std::move(*root);
  }

  void ReadNuma(EfaDevice& device, const std::string& pci_dir) {
    const std::string path = pci_dir + "/numa_node";
    if (auto text = ReadAttr(path, device.rdma_device + ": NUMA node unknown")) {
      auto node = ParseNumaNode(*text);
      if (node.ok()) {
        device.numa_node = *node;
      } else {
        Warn(device.rdma_device + ": NUMA node unknown: " + Host(path) + ": " +
             node.status().message());
      }
    }
    device.local_cpulist = ReadOptional(pci_dir + "/local_cpulist").value_or("");
  }

  void ReadPort(EfaDevice& device, const std::string& ib_dir) {
    const std::string port = ib_dir + "/ports/1";
    if (auto state = ReadAttr(port + "/state", device.rdma_device + ": port state unknown")) {
      device.port.state = ParsePortStateText(*state);
    }
    device.port.phys_state = ParsePortStateText(ReadOptional(port + "/phys_state").value_or(""));
    device.port.rate = ReadOptional(port + "/rate").value_or("");
    device.port.rate_gbps = ParseRateGbps(device.port.rate);
    device.gid = ReadOptional(port + "/gids/0").value_or("");
  }

  // The ENA sibling: the netdev whose MAC the EFA's GID encodes as EUI-64 (efa-hardware.md §A8).
  // None for efa-only interfaces, which is normal and not warned about.
  void MatchNetdev(EfaDevice& device) {
    if (device.gid.empty()) return;
    auto mac = MacFromGid(device.gid);
    if (!mac) return;
    LoadNetdevs();
    auto it = netdev_by_mac_.find(*mac);
    if (it == netdev_by_mac_.end()) return;
    Netdev netdev;
    netdev.name = it->second;
    netdev.mac = *mac;
    const std::string dir = "/class/net/" + netdev.name;
    if (auto mtu = ReadOptional(dir + "/mtu")) netdev.mtu = std::atoi(mtu->c_str());
    netdev.operstate = ReadOptional(dir + "/operstate").value_or("");
    device.netdev = std::move(netdev);
  }

  // fe80:0000:0000:0000:AABB:CCff:feDD:EEFF -> aa^02:bb:cc:dd:ee:ff.
  static std::optional<std::string> MacFromGid(std::string_view gid) {
    if (gid.size() != 39 || gid.substr(0, 20) != "fe80:0000:0000:0000:" ||
        gid.substr(27, 2) != "ff" || gid.substr(30, 2) != "fe") {
      return std::nullopt;
    }
    auto byte = [&](size_t pos) -> int {
      unsigned value = 0;
      auto [end, ec] = std::from_chars(gid.data() + pos, gid.data() + pos + 2, value, 16);
      return ec == std::errc() && end == gid.data() + pos + 2 ? static_cast<int>(value) : -1;
    };
    const int bytes[6] = {byte(20), byte(22), byte(25), byte(32), byte(35), byte(37)};
    char mac[18];
    for (int b : bytes) {
      if (b < 0) return std::nullopt;
    }
    std::snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", bytes[0] ^ 0x02, bytes[1],
                  bytes[2], bytes[3], bytes[4], bytes[5]);
    return std::string(mac);
  }

  void LoadNetdevs() {
    if (netdevs_loaded_) return;
    netdevs_loaded_ = true;
    auto names = sysfs_.ListDir("/class/net");
    if (!names.ok()) return;
    for (const std::string& name : *names) {
      auto address = ReadOptional("/class/net/" + name + "/address");
      if (!address || address->size() != 17) continue;  // lo has one, IPoIB has 20 bytes
      std::string mac = *address;
      std::transform(mac.begin(), mac.end(), mac.begin(), ::tolower);
      // Bonds, VLANs and bridges copy the MAC of a port; the physical function (the one with a
      // `device` link) is the ENA sibling.
      auto existing = netdev_by_mac_.find(mac);
      if (existing != netdev_by_mac_.end() && !sysfs_.Exists("/class/net/" + name + "/device")) {
        continue;
      }
      netdev_by_mac_[mac] = name;
    }
  }

  // EFA PCI functions that did not show up as RDMA devices: unbound, bound to a generic
  // pass-through driver, or bound to efa without registering. This runs on every rescan, so it
  // reads as little as it can: one readlink of `driver` per function, and the ids only of
  // functions with no driver or a generic one. A function bound to a device-specific driver
  // other than efa (pcieport, nvme, ena, nvidia, ...) cannot be an EFA: such drivers only bind
  // the ids they declare.
  void ReportStrayEfaFunctions() {
    auto functions = sysfs_.ListDir("/bus/pci/devices");
    if (!functions.ok()) return;
    for (const std::string& bdf : *functions) {
      if (seen_functions_.count(bdf) > 0) continue;
      const std::string dir = "/bus/pci/devices/" + bdf;
      auto driver_link = sysfs_.ReadLink(dir + "/driver");
      const std::string driver =
          driver_link.ok() ? std::string(core::BaseName(*driver_link)) : std::string();
      if (driver == kEfaDriver) {
        Warn("EFA PCI function " + bdf + " is bound to efa but registered no RDMA device (" +
             Host(dir + "/infiniband") + " missing)");
        continue;
      }
      if (!driver.empty() && !IsGenericDriver(driver)) continue;
      auto device_id = ParsePciId(ReadOptional(dir + "/device").value_or(""));
      if (!device_id.ok() || EfaGeneration(*device_id) == 0) continue;
      auto vendor = ParsePciId(ReadOptional(dir + "/vendor").value_or(""));
      if (!vendor.ok()) {
        Warn("PCI function " + bdf + ": " + Host(dir + "/vendor") + ": " +
             vendor.status().message());
        continue;
      }
      if (*vendor != kAmazonVendor) continue;
      if (driver.empty()) {
        Warn("EFA PCI function " + bdf + " has no driver bound (" + Host(dir + "/driver") +
             " missing); load the efa module to use it");
      } else {
        Warn("EFA PCI function " + bdf + " is bound to \"" + driver + "\", not efa; not used");
      }
    }
  }

  const core::Filesystem& sysfs_;
  const core::Filesystem& dev_;
  VerbsProvider* verbs_;
  std::function<bool(const std::string&)> log_once_;
  Inventory inventory_;
  std::map<std::string, Uverbs> uverbs_by_ibdev_;
  std::set<std::string> seen_functions_;
  bool netdevs_loaded_ = false;
  std::map<std::string, std::string> netdev_by_mac_;
};

}  // namespace

Result<Inventory> Discoverer::Discover() const {
  auto log_once = [this](const std::string& message) {
    // The messages quote sysfs text (a half-probed device can show new garbage on every
    // scan), so the set is bounded: when full it starts over, and a skip may be logged again.
    constexpr size_t kMaxLoggedSkips = 256;
    std::lock_guard<std::mutex> lock(logged_mu_);
    if (logged_skips_.count(message) > 0) return false;
    if (logged_skips_.size() >= kMaxLoggedSkips) logged_skips_.clear();
    return logged_skips_.insert(message).second;
  };
  return Walk(sysfs_, dev_, verbs_, log_once).Run();
}

}  // namespace efadra::discovery
