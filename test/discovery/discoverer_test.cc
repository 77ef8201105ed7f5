#include "efadra/discovery/discoverer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "efadra/sysfstree/bundled.h"
#include "efadra/sysfstree/tree_builder.h"
#include "support/test_support.h"

namespace efadra::discovery {
namespace {

namespace fs = std::filesystem;
using ::efadra::testing::TempDir;
using ::efadra::testing::WriteFileOrDie;

// A generated tree in a temp dir plus Filesystems rooted at it.
class Tree {
 public:
  explicit Tree(std::string_view yaml) {
    auto topology = sysfstree::ParseTopology(yaml);
    if (!topology.ok()) {
      ADD_FAILURE() << topology.status().ToString();
      return;
    }
    Status status = sysfstree::BuildSysfsTree(*topology, sys(), dev());
    EXPECT_TRUE(status.ok()) << status.ToString();
  }
  std::string sys() const { return dir_.Sub("sys"); }
  std::string dev() const { return dir_.Sub("dev"); }

  Result<Inventory> Discover(VerbsProvider* verbs = nullptr) const {
    auto sysfs = core::NewPosixFilesystem(sys());
    auto devfs = core::NewPosixFilesystem(dev());
    return Discoverer(*sysfs, *devfs, verbs).Discover();
  }

 private:
  TempDir dir_;
};

std::string Bundled(std::string_view instance) {
  auto yaml = sysfstree::BundledTopology(instance);
  return yaml ? std::string(*yaml) : std::string();
}

struct Expected {
  std::string bdf, root;
  int numa;
  std::string rdma;
  int uverbs;
  std::string netdev;  // "" = efa-only
};

std::vector<Expected> P4d() {
  return {{"0000:10:1b.0", "pci0000:10", 0, "rdmap16s27", 0, "ens32"},
          {"0000:20:1b.0", "pci0000:20", 0, "rdmap32s27", 1, "ens65"},
          {"0000:90:1b.0", "pci0000:90", 1, "rdmap144s27", 2, "ens129"},
          {"0000:a0:1b.0", "pci0000:a0", 1, "rdmap160s27", 3, "ens161"}};
}

// efa-hardware.md §B: 8 roots of 4 EFAs at root+0x0b.., NUMA 4+4 roots, uverbs in BDF order;
// the fixture's only ENA (enp72s0, root 44) pairs with the first EFA of that root.
std::vector<Expected> P5() {
  std::vector<Expected> out;
  const unsigned roots[] = {0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb};
  int uverbs = 0;
  for (unsigned root : roots) {
    for (unsigned k = 0; k < 4; ++k) {
      char bdf[16];
      char root_id[16];
      std::snprintf(bdf, sizeof(bdf), "0000:%02x:00.0", root + 0x0b + k);
      std::snprintf(root_id, sizeof(root_id), "pci0000:%02x", root);
      out.push_back({bdf, root_id, root < 0x88 ? 0 : 1,
                     "rdmap" + std::to_string(root + 0x0b + k) + "s0", uverbs++,
                     root == 0x44 && k == 0 ? "enp72s0" : ""});
    }
  }
  return out;
}

// trn2.48xlarge (efa-hardware.md §B, roots inferred as EFA bus - 0x0b): 8 switches of 2 EFAs,
// all efa-only.
std::vector<Expected> Trn2() {
  std::vector<Expected> out;
  const unsigned roots[] = {0x4b, 0x61, 0x77, 0x8d, 0xa8, 0xbe, 0xd4, 0xea};
  int uverbs = 0;
  for (size_t r = 0; r < 8; ++r) {
    for (unsigned k = 0; k < 2; ++k) {
      const unsigned bus = roots[r] + 0x0b + k;
      char bdf[16];
      char root_id[16];
      std::snprintf(bdf, sizeof(bdf), "0000:%02x:00.0", bus);
      std::snprintf(root_id, sizeof(root_id), "pci0000:%02x", roots[r]);
      out.push_back(
          {bdf, root_id, r < 4 ? 0 : 1, "rdmap" + std::to_string(bus) + "s0", uverbs++, ""});
    }
  }
  return out;
}

// p6-b200.48xlarge (efa-hardware.md §B): 2 EFAs per root, each with an ENA sibling; two
// ConnectX-7 HCAs on pci0000:66 register uverbs6/7 between the EFAs (BDF order), so the last
// EFAs are uverbs8/9: discovery must read the index, not count EFAs.
std::vector<Expected> P6b200() {
  return {{"0000:4f:00.0", "pci0000:44", 0, "rdmap79s0", 0, "enp71s0"},
          {"0000:50:00.0", "pci0000:44", 0, "rdmap80s0", 1, "enp72s0"},
          {"0000:60:00.0", "pci0000:55", 0, "rdmap96s0", 2, "enp88s0"},
          {"0000:61:00.0", "pci0000:55", 0, "rdmap97s0", 3, "enp89s0"},
          {"0000:71:00.0", "pci0000:66", 1, "rdmap113s0", 4, "enp106s0"},
          {"0000:72:00.0", "pci0000:66", 1, "rdmap114s0", 5, "enp107s0"},
          {"0000:84:00.0", "pci0000:79", 1, "rdmap132s0", 8, "enp124s0"},
          {"0000:85:00.0", "pci0000:79", 1, "rdmap133s0", 9, "enp125s0"}};
}

struct InstanceCase {
  std::string instance;
  std::vector<Expected> devices;
  uint16_t device_id;
  std::string cpulist_numa0;
  std::string rate;
  std::vector<std::string> warnings = {};  // substrings, one warning each
};

class InstanceTest : public ::testing::TestWithParam<InstanceCase> {};

TEST_P(InstanceTest, FindsEveryEfaWithItsAttributes) {
  const InstanceCase& c = GetParam();
  Tree tree(Bundled(c.instance));
  auto inventory = tree.Discover();
  ASSERT_TRUE(inventory.ok()) << inventory.status().ToString();
  EXPECT_EQ(inventory->instance_type, c.instance);
  ASSERT_EQ(inventory->warnings.size(), c.warnings.size());
  for (size_t i = 0; i < c.warnings.size(); ++i) {
    EXPECT_NE(inventory->warnings[i].find(c.warnings[i]), std::string::npos)
        << inventory->warnings[i];
  }
  ASSERT_EQ(inventory->devices.size(), c.devices.size());
  for (size_t i = 0; i < c.devices.size(); ++i) {
    const Expected& want = c.devices[i];
    EfaDevice got = inventory->devices[i];
    SCOPED_TRACE(want.bdf);
    EXPECT_EQ(got.pci_address, want.bdf);
    EXPECT_EQ(got.pcie_root, want.root);
    EXPECT_EQ(got.numa_node, want.numa);
    EXPECT_EQ(got.rdma_device, want.rdma);
    EXPECT_EQ(got.uverbs_index, want.uverbs);
    EXPECT_EQ(got.UverbsName(), "uverbs" + std::to_string(want.uverbs));
    EXPECT_EQ(got.uverbs_dev.major, 231u);
    EXPECT_EQ(got.uverbs_dev.minor, 192u + static_cast<uint32_t>(want.uverbs));
    EXPECT_EQ(got.netdev.has_value(), !want.netdev.empty());
    EXPECT_EQ(got.vendor_id, 0x1d0f);
    EXPECT_EQ(got.device_id, c.device_id);
    EXPECT_EQ(got.subsystem_vendor_id, 0x1d0f);
    EXPECT_EQ(got.subsystem_device_id, c.device_id);
    EXPECT_EQ(got.generation, (c.device_id & 0xf) + 1);
    EXPECT_EQ(got.driver, "efa");
    EXPECT_EQ(got.port.state, "ACTIVE");
    EXPECT_EQ(got.port.phys_state, "LinkUp");
    EXPECT_EQ(got.port.rate, c.rate);
    EXPECT_EQ(got.port.rate_gbps, std::stoi(c.rate));
    EXPECT_EQ(got.node_guid.size(), 19u) << got.node_guid;
    EXPECT_EQ(got.fw_version, "");
    if (want.numa == 0) {
      EXPECT_EQ(got.local_cpulist, c.cpulist_numa0);
    }
    EXPECT_FALSE(got.verbs.has_value());
#ifdef EFADRA_TEST_WITH_NEURON
    // Neuron device groups on Trainium only; CDM's own test vector for EFA 0000:c9:00.0
    // (neuron-devicegroups.md §1).
    if (c.instance.rfind("trn", 0) == 0) {
      EXPECT_EQ(got.device_groups.size(), 4u);
      EXPECT_EQ(got.device_groups["devicegroup1_id"], got.pci_address);
      if (got.pci_address == "0000:c9:00.0") {
        EXPECT_EQ(got.device_groups["devicegroup4_id"], "13713e551cd37c19");
        EXPECT_EQ(got.device_groups["devicegroup8_id"], "3593812b8066a078");
        EXPECT_EQ(got.device_groups["devicegroup16_id"], "821d14afaf11327d");
      }
    } else {
      EXPECT_TRUE(got.device_groups.empty());
    }
#else
    EXPECT_TRUE(got.device_groups.empty());
#endif
    if (want.netdev.empty()) {
      EXPECT_FALSE(got.netdev.has_value()) << got.netdev->name;
    } else {
      ASSERT_TRUE(got.netdev.has_value());
      EXPECT_EQ(got.netdev->name, want.netdev);
      EXPECT_EQ(got.netdev->mtu, 9001);
      EXPECT_EQ(got.netdev->operstate, "up");
      EXPECT_EQ(got.netdev->mac.size(), 17u);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Bundled, InstanceTest,
    ::testing::Values(
        InstanceCase{"p4d.24xlarge", P4d(), 0xefa0, "0-23,48-71", "100 Gb/sec (4X EDR)"},
        InstanceCase{"p5.48xlarge", P5(), 0xefa1, "0-47,96-143", "100 Gb/sec (4X EDR)"},
        InstanceCase{"trn2.48xlarge", Trn2(), 0xefa2, "0-47,96-143", "200 Gb/sec (4X HDR)"},
        InstanceCase{"p6-b200.48xlarge",
                     P6b200(),
                     0xefa3,
                     "0-47,96-143",
                     "400 Gb/sec (8X HDR)",
                     {"skipped RDMA device ibp115s0f0: not an EFA (0000:73:00.0 is 15b3:1021",
                      "skipped RDMA device ibp116s0f0"}}),
    [](const auto& param_info) {
      std::string name = param_info.param.instance;
      for (char& ch : name) {
        if (ch == '.' || ch == '-') ch = '_';
      }
      return name;
    });

// Small topologies for the edge trees.
constexpr char kTwoEfas[] = R"(
schema: efa-topo/v1
instance: test.two
platform: {cpulist: {0: "0-3", 1: "4-7"}}
roots:
  - id: pci0000:10
    numa: 0
    devices:
      - {bdf: "0000:10:01.0", class: efa, id: "1d0f:efa1"}
      - {bdf: "0000:10:02.0", class: efa, id: "1d0f:efa1"}
)";

constexpr char kWithConnectX[] = R"(
schema: efa-topo/v1
instance: p6-b200.48xlarge
platform: {cpulist: {0: "0-3"}}
roots:
  - id: pci0000:66
    numa: 0
    devices:
      - {bdf: "0000:71:00.0", class: efa, id: "1d0f:efa3", uverbs: 2}
      - {bdf: "0000:73:00.0", class: mlx5, id: "15b3:1021", subsys: "15b3:0087", uverbs: 0,
         ibdev: ibp115s0f0, netdev: ibp115s0f0}
      - {bdf: "0000:74:00.0", class: mlx5, id: "15b3:1021", subsys: "15b3:0087", uverbs: 1,
         ibdev: ibp116s0f0}
)";

constexpr char kUnbound[] = R"(
schema: efa-topo/v1
instance: test.unbound
roots:
  - id: pci0000:10
    numa: 0
    devices:
      - {bdf: "0000:10:01.0", class: efa, id: "1d0f:efa1"}
      - {bdf: "0000:10:02.0", class: efa, id: "1d0f:efa1", driver: ""}
      - {bdf: "0000:10:03.0", class: efa, id: "1d0f:efa1", driver: vfio-pci}
)";

constexpr char kDynamicMajor[] = R"(
schema: efa-topo/v1
instance: test.many
roots:
  - id: pci0000:10
    numa: 1
    devices:
      - {bdf: "0000:10:01.0", class: efa, id: "1d0f:efa2", uverbs: 33}
      - {bdf: "0000:10:02.0", class: efa, id: "1d0f:efa2", uverbs: 32}
)";

constexpr char kNoEfa[] = R"(
schema: efa-topo/v1
instance: m5.large
roots:
  - id: pci0000:00
    devices:
      - {bdf: "0000:00:05.0", class: ena, id: "1d0f:ec20", netdev: ens5}
      - {bdf: "0000:00:04.0", class: nvme, id: "1d0f:8061"}
)";

const char kEfa0[] = "devices/pci0000:10/0000:10:01.0";  // first EFA of kTwoEfas

struct EdgeCase {
  std::string name;
  std::string yaml;
  std::function<void(const std::string& sys, const std::string& dev)> mutate;
  size_t want_devices;
  std::vector<std::string> want_warnings;  // each must be a substring of some warning
  std::function<void(const Inventory&)> check;
};

void Replace(const std::string& path, const std::string& content) {
  fs::remove(path);
  WriteFileOrDie(path, content);
}

void Relink(const std::string& path, const std::string& target) {
  fs::remove(path);
  fs::create_symlink(target, path);
}

std::vector<EdgeCase> EdgeCases() {
  const std::string p4d = Bundled("p4d.24xlarge");
  return {
      {"efa-only (no ENA on the root)",
       kTwoEfas,
       nullptr,
       2,
       {},
       [](const Inventory& inv) {
         for (const auto& d : inv.devices) EXPECT_FALSE(d.netdev.has_value()) << d.pci_address;
       }},
      {"next to ConnectX",
       kWithConnectX,
       nullptr,
       1,
       {"skipped RDMA device ibp115s0f0", "15b3:1021", "mlx5_core",
        "skipped RDMA device ibp116s0f0"},
       [](const Inventory& inv) {
         EXPECT_EQ(inv.devices[0].rdma_device, "rdmap113s0");
         EXPECT_EQ(inv.devices[0].uverbs_index, 2);
         EXPECT_EQ(inv.devices[0].uverbs_dev.minor, 194u);
         EXPECT_EQ(inv.devices[0].generation, 4);
       }},
      {"no driver bound / other driver",
       kUnbound,
       nullptr,
       1,
       {"0000:10:02.0 has no driver bound", "/bus/pci/devices/0000:10:02.0/driver",
        "0000:10:03.0 is bound to \"vfio-pci\""},
       nullptr},
      {"ibdev whose function lost its driver link",
       kTwoEfas,
       [](const std::string& sys, const std::string&) {
         fs::remove(sys + "/" + kEfa0 + "/driver");
       },
       1,
       {"rdmap16s1: 0000:10:01.0 has EFA ids but driver none"},
       nullptr},
      {"missing numa_node",
       kTwoEfas,
       [](const std::string& sys, const std::string&) {
         fs::remove(sys + "/" + kEfa0 + "/numa_node");
       },
       2,
       {std::string("NUMA node unknown: cannot read ") + "", "0000:10:01.0/numa_node"},
       [](const Inventory& inv) {
         EXPECT_EQ(inv.devices[0].numa_node, -1);
         EXPECT_EQ(inv.devices[1].numa_node, 0);
       }},
      {"garbage numa_node",
       kTwoEfas,
       [](const std::string& sys, const std::string&) {
         Replace(sys + "/" + kEfa0 + "/numa_node", "banana\n");
       },
       2,
       {"0000:10:01.0/numa_node: want a NUMA node", "banana"},
       [](const Inventory& inv) { EXPECT_EQ(inv.devices[0].numa_node, -1); }},
      {"NUMA -1",
       kTwoEfas,
       [](const std::string& sys, const std::string&) {
         Replace(sys + "/" + kEfa0 + "/numa_node", "-1\n");
       },
       2,
       {},
       [](const Inventory& inv) {
         EXPECT_EQ(inv.devices[0].numa_node, -1);
         EXPECT_TRUE(inv.warnings.empty());
       }},
      {"dangling device symlink",
       kTwoEfas,
       [](const std::string& sys, const std::string&) {
         Relink(sys + "/" + kEfa0 + "/infiniband/rdmap16s1/device", "../../../0000:10:09.0");
       },
       1,
       {"rdmap16s1/device is dangling"},
       [](const Inventory& inv) { EXPECT_EQ(inv.devices[0].pci_address, "0000:10:02.0"); }},
      {"unreadable vendor (a directory)",
       kTwoEfas,
       [](const std::string& sys, const std::string&) {
         fs::remove(sys + "/" + kEfa0 + "/vendor");
         fs::create_directory(sys + "/" + kEfa0 + "/vendor");
       },
       1,
       {"rdmap16s1: cannot read", "0000:10:01.0/vendor"},
       nullptr},
      {"unreadable numa_node (a directory)",
       kTwoEfas,
       [](const std::string& sys, const std::string&) {
         fs::remove(sys + "/" + kEfa0 + "/numa_node");
         fs::create_directory(sys + "/" + kEfa0 + "/numa_node");
       },
       2,
       {"0000:10:01.0/numa_node"},
       [](const Inventory& inv) { EXPECT_EQ(inv.devices[0].numa_node, -1); }},
      {"garbage vendor",
       kTwoEfas,
       [](const std::string& sys, const std::string&) {
         Replace(sys + "/" + kEfa0 + "/vendor", "\x01\x02garbage\n");
       },
       1,
       {"0000:10:01.0/vendor: want a PCI id", "device skipped"},
       nullptr},
      {"uverbs >= 32 with a dynamic major",
       kDynamicMajor,
       nullptr,
       2,
       {},
       [](const Inventory& inv) {
         EXPECT_EQ(inv.devices[0].uverbs_index, 33);
         EXPECT_EQ(inv.devices[0].uverbs_dev.major, 240u);
         EXPECT_EQ(inv.devices[0].uverbs_dev.minor, 1u);
         EXPECT_EQ(inv.devices[1].UverbsName(), "uverbs32");
         EXPECT_EQ(inv.devices[1].uverbs_dev.minor, 0u);
         EXPECT_EQ(inv.devices[1].numa_node, 1);
       }},
      {"garbage uverbs dev",
       kTwoEfas,
       [](const std::string& sys, const std::string&) {
         Replace(sys + "/" + kEfa0 + "/infiniband_verbs/uverbs0/dev", "231\n");
       },
       1,
       {"uverbs0/dev: want major:minor", "left out"},
       nullptr},
      {"no uverbs node",
       kTwoEfas,
       [](const std::string& sys, const std::string&) {
         fs::remove(sys + "/class/infiniband_verbs/uverbs1");
       },
       1,
       {"rdmap16s2 (0000:10:02.0): no uverbs node", "cannot be injected"},
       nullptr},
      {"dev node missing",
       kTwoEfas,
       [](const std::string&, const std::string& dev) { fs::remove(dev + "/infiniband/uverbs1"); },
       2,
       {"/infiniband/uverbs1 is missing"},
       nullptr},
      {"no EFA at all", kNoEfa, nullptr, 0, {}, nullptr},
      {"no class/infiniband",
       p4d,
       [](const std::string& sys, const std::string&) {
         fs::remove_all(sys + "/class/infiniband");
       },
       0,
       {"class/infiniband does not exist"},
       nullptr},
      {"soft-RoCE rxe next to EFAs",
       kTwoEfas,
       [](const std::string& sys, const std::string&) {
         WriteFileOrDie(sys + "/devices/virtual/infiniband/rxe0/node_type", "1: CA\n");
         fs::create_symlink("../../devices/virtual/infiniband/rxe0",
                            sys + "/class/infiniband/rxe0");
       },
       2,
       {"skipped RDMA device rxe0: virtual RDMA device"},
       nullptr},
      {"bus/pci/devices link missing: pcieRoot unknown",
       kTwoEfas,
       [](const std::string& sys, const std::string&) {
         fs::remove(sys + "/bus/pci/devices/0000:10:01.0");
       },
       2,
       {"rdmap16s1: pcieRoot unknown", "bus/pci/devices/0000:10:01.0"},
       [](const Inventory& inv) {
         EXPECT_EQ(inv.devices[0].pcie_root, "");
         EXPECT_EQ(inv.devices[1].pcie_root, "pci0000:10");
       }},
  };
}

TEST(DiscovererTest, EdgeTrees) {
  for (const EdgeCase& c : EdgeCases()) {
    SCOPED_TRACE(c.name);
    Tree tree(c.yaml);
    if (c.mutate) c.mutate(tree.sys(), tree.dev());
    auto inventory = tree.Discover();
    ASSERT_TRUE(inventory.ok()) << inventory.status().ToString();
    std::string all;
    for (const auto& warning : inventory->warnings) all += "  " + warning + "\n";
    EXPECT_EQ(inventory->devices.size(), c.want_devices) << all;
    for (const std::string& want : c.want_warnings) {
      EXPECT_NE(all.find(want), std::string::npos)
          << "want warning containing \"" << want << "\", got:\n"
          << all;
    }
    if (c.want_warnings.empty() && c.name != "no EFA at all") {
      EXPECT_TRUE(inventory->warnings.empty()) << all;
    }
    if (c.check && inventory->devices.size() == c.want_devices) c.check(*inventory);
  }
}

TEST(DiscovererTest, NoEfaIsEmptyNotAnError) {
  Tree tree(kNoEfa);
  auto inventory = tree.Discover();
  ASSERT_TRUE(inventory.ok());
  EXPECT_TRUE(inventory->devices.empty());
  EXPECT_EQ(inventory->instance_type, "m5.large");
}

TEST(DiscovererTest, MissingRootIsBadInput) {
  TempDir dir;
  for (const std::string& root : {dir.Sub("nope"), dir.path()}) {
    SCOPED_TRACE(root);
    auto sysfs = core::NewPosixFilesystem(root);
    auto devfs = core::NewPosixFilesystem(dir.path());
    auto inventory = Discoverer(*sysfs, *devfs, nullptr).Discover();
    ASSERT_FALSE(inventory.ok());
    EXPECT_EQ(inventory.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(inventory.status().message().find(root), std::string::npos);
  }
}

TEST(DiscovererTest, MissingDmiIsUnknownInstanceType) {
  Tree tree(kTwoEfas);
  fs::remove(tree.sys() + "/devices/virtual/dmi/id/product_name");
  auto inventory = tree.Discover();
  ASSERT_TRUE(inventory.ok());
  EXPECT_EQ(inventory->instance_type, "");
  EXPECT_EQ(inventory->devices.size(), 2u);
}

// A small stateful fake: answers for one device name, counts what it was asked.
class FakeVerbs : public VerbsProvider {
 public:
  std::optional<VerbsCapabilities> Query(const EfaDevice& device) override {
    asked.push_back(device.rdma_device);
    if (device.rdma_device != "rdmap16s2") return std::nullopt;
    VerbsCapabilities caps;
    caps.rdma_read = true;
    caps.rdma_write = true;
    caps.max_rdma_size = 1u << 30;
    return caps;
  }
  std::vector<std::string> asked;
};

TEST(DiscovererTest, VerbsEnrichmentOnlyWhereTheDeviceOpens) {
  Tree tree(kTwoEfas);
  FakeVerbs verbs;
  auto inventory = tree.Discover(&verbs);
  ASSERT_TRUE(inventory.ok());
  ASSERT_EQ(inventory->devices.size(), 2u);
  EXPECT_EQ(verbs.asked, (std::vector<std::string>{"rdmap16s1", "rdmap16s2"}));
  EXPECT_FALSE(inventory->devices[0].verbs.has_value());
  ASSERT_TRUE(inventory->devices[1].verbs.has_value());
  EXPECT_TRUE(inventory->devices[1].verbs->rdma_write);
  EXPECT_EQ(inventory->devices[1].verbs->max_rdma_size, 1u << 30);
}

// The real libibverbs provider on this machine (no EFA: ibv_get_device_list returns no device
// by these names) must fall back cleanly: every device is still reported, verbs stays nullopt.
TEST(DiscovererTest, RealVerbsProviderFallsBackWithoutHardware) {
  Tree tree(Bundled("p4d.24xlarge"));
  auto verbs = NewIbverbsProvider();
  auto inventory = tree.Discover(verbs.get());
  ASSERT_TRUE(inventory.ok());
  ASSERT_EQ(inventory->devices.size(), 4u);
  for (const auto& device : inventory->devices) {
    SCOPED_TRACE(device.rdma_device);
    EXPECT_FALSE(device.verbs.has_value());
  }
}

}  // namespace
}  // namespace efadra::discovery
