// Topology: an instance type's PCI layout as data (format efa-topo/v1, see
// test/fixtures/topologies/*.yaml and shared/fixtures/README.md), parsed from YAML. The tree
// builder (tree_builder.h) turns it into a kernel-exact sysfs + /dev tree for tests, the
// `discover --fixture` and `demo` subcommands, and benchmarks.
//
// Keys read (all others, such as src/note/what, are documentation and ignored):
//   schema: efa-topo/v1 (required)      instance: <instance type> (required; DMI product_name)
//   platform.cpulist: {<numa>: "0-47,96-143", ...}   efa.rate, efa.rdma_write
//   roots[]: id (pci0000:44), numa, root_port/switch_up {bdf, id, class},
//            downstream {bus, ports} (empty hotplug ports of the switch), devices[]
//   devices[]: bdf, class (efa|ena|gpu|nvme|nvswitch|bridge|neuron|mlx5|<other name>),
//            id/subsys ("1d0f:efa1"), path (/sys/devices/...) or port (the downstream port BDF),
//            numa (overrides the root's), driver ("" = unbound; default per class),
//            pci_class (0x020000), ibdev, uverbs, uverbs_dev ("240:0"), rate, node_guid (efa,
//            mlx5), netdev, mac, mtu (ena, mlx5 IPoIB).
//
// Pure data and pure parsing: no I/O. Thread-safe (no state).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "efadra/core/status.h"

namespace efadra::sysfstree {

// What a PCI function is; decides its driver and the class-specific sysfs it gets.
enum class DeviceKind {
  kEfa,       // driver efa: infiniband/<ibdev>, infiniband_verbs/uverbsN
  kEna,       // driver ena: net/<ifname>
  kGpu,       // driver nvidia
  kNvme,      // driver nvme
  kNvswitch,  // driver nvidia
  kBridge,    // driver pcieport (root ports, switch ports)
  kNeuron,    // driver neuron-driver (Trainium/Inferentia functions)
  kMlx5,      // driver mlx5_core: a ConnectX IB HCA with its own ibdev + uverbs (p6)
  kOther,     // host bridge, ISA, VGA, ...: no driver
};

// "efa", "ena", ...; the YAML spelling.
std::string_view DeviceKindName(DeviceKind kind);

struct PciFunction {
  std::string bdf;  // "0000:4f:00.0"
  DeviceKind kind = DeviceKind::kOther;
  std::string class_name;  // as written in the YAML ("efa", "host-bridge", ...)
  uint16_t vendor_id = 0;
  uint16_t device_id = 0;
  uint16_t subsystem_vendor_id = 0;
  uint16_t subsystem_device_id = 0;
  uint32_t pci_class = 0;  // 0x020000
  std::string driver;      // bound PCI driver; "" = none bound
  // Path components below /sys/devices: {"pci0000:44", "0000:44:00.0", ..., "0000:4f:00.0"}.
  std::vector<std::string> path;
  int numa_node = -1;

  // kEfa / kMlx5: the RDMA device and its uverbs node.
  std::string ibdev;          // "rdmap79s0"
  int uverbs = -1;            // N of uverbsN
  uint32_t uverbs_major = 0;  // 231, or a dynamic major from N >= 32
  uint32_t uverbs_minor = 0;  // 192 + N, or N - 32 with a dynamic major
  std::string rate;           // ports/1/rate text
  std::string node_guid;      // "cd77:f833:0000:1001"
  std::string gid_mac;        // MAC whose EUI-64 is ports/1/gids/0 (kEfa)

  // kEna (and kMlx5 IPoIB): the netdev.
  std::string netdev;  // "ens32"; "" = none
  std::string mac;     // "0e:a0:00:00:10:00", lowercase
  int mtu = 0;
  int ifindex = 0;

  const std::string& root() const { return path.front(); }
};

struct Topology {
  std::string instance_type;           // "p5.48xlarge"; written to DMI product_name
  std::map<int, std::string> cpulist;  // NUMA node -> "0-47,96-143"
  std::vector<std::string> roots;      // "pci0000:44", in YAML order
  std::vector<PciFunction> functions;  // endpoints and bridges, sorted by BDF
  bool rdma_write = true;              // EFA port counters include rdma_write_*

  // The functions of one kind, in BDF order.
  std::vector<const PciFunction*> OfKind(DeviceKind kind) const;
};

// Parses an efa-topo/v1 document. Fills in what the YAML leaves out, deterministically:
// bridges along every device path (and the empty downstream ports a switch declares), drivers
// per kind, RDMA names (rdmap<bus>s<dev>), uverbs indices in BDF order, uverbs numbers
// (231:192+N below 32, a dynamic major above), MACs from the BDF, ENA <-> EFA pairing (the i-th
// ENA on a root is the sibling of the i-th EFA on that root, so its MAC is the EFA's GID; other
// EFAs get GIDs from synthetic MACs no netdev has).
// kInvalidArgument naming the root/device and field for anything malformed.
Result<Topology> ParseTopology(std::string_view yaml_text);

// The MAC the EUI-64 link-local GID of an EFA encodes ("fe80:0000:0000:0000:14b0:33ff:fef8:77cd"
// -> "16:b0:33:f8:77:cd"), and back. kInvalidArgument if `gid` is not such a GID.
Result<std::string> MacFromEui64Gid(std::string_view gid);
std::string Eui64GidFromMac(std::string_view mac);

}  // namespace efadra::sysfstree
