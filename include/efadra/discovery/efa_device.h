// The device model: what discovery finds on a node, as plain data. Every other module (slices,
// claims, health) consumes these structs and never reads sysfs itself. Value types; copy freely.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace efadra::discovery {

// State of the EFA's single RDMA port (ports/1 in sysfs).
struct PortInfo {
  std::string state;       // "ACTIVE", "DOWN", ... (text after "N: " in ports/1/state); "" unknown
  std::string phys_state;  // "LinkUp", "Disabled", ...; "" unknown
  std::string rate;        // "100 Gb/sec (4X EDR)" as the kernel prints it; "" unknown
  int rate_gbps = 0;       // 100; 0 when unknown
};

// The ENA network interface that belongs to the same ENI as an EFA ("efa" interface type).
// Absent for "efa-only" interfaces. Matched by the EFA GID's EUI-64 == the netdev's MAC
// (efa-hardware.md §A8).
struct Netdev {
  std::string name;       // "ens32"
  std::string mac;        // "16:b0:33:f8:77:cd", lowercase
  int mtu = 0;            // 0 unknown
  std::string operstate;  // "up", "down", ...
};

// What libibverbs + efadv report once the device is opened (only on real hardware).
struct VerbsCapabilities {
  bool rdma_read = false;
  bool rdma_write = false;
  uint32_t max_rdma_size = 0;
  uint32_t max_sq_wr = 0;
  uint32_t max_rq_wr = 0;
  uint32_t max_sq_sge = 0;
  uint32_t max_rq_sge = 0;
  uint32_t inline_buf_size = 0;
};

struct CharDeviceNumber {
  uint32_t major = 0;
  uint32_t minor = 0;
};

struct EfaDevice {
  std::string pci_address;  // "0000:10:1b.0", lowercase extended BDF
  uint16_t vendor_id = 0;   // 0x1d0f
  uint16_t device_id = 0;   // 0xefa0..0xefa4
  uint16_t subsystem_vendor_id = 0;
  uint16_t subsystem_device_id = 0;
  int generation = 0;       // PCI id 0xefaN -> EFA generation N+1 (efa-hardware.md §A1)
  std::string driver;       // bound PCI driver, "efa"

  std::string rdma_device;  // "rdmap16s27" or "efa_0"; never parsed for meaning
  int uverbs_index = -1;    // N of /dev/infiniband/uverbsN; -1 if the device has no uverbs node
  CharDeviceNumber uverbs_dev;  // from infiniband_verbs/uverbsN/dev, never assumed

  std::string pcie_root;       // "pci0000:10" (contracts.md §6.1); "" when it cannot be derived
  int numa_node = -1;          // -1 = unknown
  std::string local_cpulist;   // "0-23,48-71"; "" unknown

  PortInfo port;
  std::string gid;         // ports/1/gids/0, "fe80:0000:0000:0000:14b0:33ff:fef8:77cd"; "" unknown
  std::string node_guid;   // "dd28:fea6:0000:2500"
  std::string fw_version;  // usually empty on EFA

  std::optional<Netdev> netdev;              // ENA sibling, when one exists
  std::optional<VerbsCapabilities> verbs;    // only when the device could be opened

  // Neuron alignment (neuron-devicegroups.md): "devicegroup1_id" .. "devicegroup16_id" -> value.
  // Empty on non-Neuron instances.
  std::map<std::string, std::string> device_groups;

  // "uverbs3"; "" when uverbs_index < 0.
  std::string UverbsName() const {
    return uverbs_index < 0 ? std::string() : "uverbs" + std::to_string(uverbs_index);
  }
};

// Everything discovery learnt about one node.
struct Inventory {
  // Sorted by pci_address. Only injectable devices: an EFA without a uverbs node is left out
  // (with a warning), see discoverer.h.
  std::vector<EfaDevice> devices;
  std::string instance_type;       // DMI product_name, e.g. "p5.48xlarge"; "" unknown
  // NUMA nodes of the host (node<N> under devices/system/node); 0 when that is missing.
  // DRANET publishes numaNode only where this is not 1 (its PCI library reports NUMA
  // affinity only on a "NUMA architecture"), so single-node hosts carry none.
  int numa_node_count = 0;
  // NUMA node -> that node first, then the other nodes on its socket at the minimum SLIT
  // distance (the list form of resource.kubernetes.io/numaNode). Absent nodes: unknown.
  std::map<int, std::vector<int64_t>> numa_local_nodes;
  // Problems that did not stop discovery, one sentence each naming the file or device:
  // skipped non-EFA RDMA devices, unreadable attributes, malformed values.
  std::vector<std::string> warnings;
};

}  // namespace efadra::discovery
