#include "efadra/sysfstree/tree_builder.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "efadra/sysfstree/bundled.h"
#include "efadra/sysfstree/topology.h"
#include "support/test_support.h"

namespace efadra::sysfstree {
namespace {

namespace fs = std::filesystem;
using ::efadra::testing::ReadFileOrEmpty;
using ::efadra::testing::TempDir;

struct ExpectedEfa {
  std::string bdf;
  std::string root;
  int numa;
  std::string ibdev;
  int uverbs;
};

// p4d.24xlarge facts from efa-hardware.md §B and DRANET's slices: one flat EFA per root.
std::vector<ExpectedEfa> P4dEfas() {
  return {{"0000:10:1b.0", "pci0000:10", 0, "rdmap16s27", 0},
          {"0000:20:1b.0", "pci0000:20", 0, "rdmap32s27", 1},
          {"0000:90:1b.0", "pci0000:90", 1, "rdmap144s27", 2},
          {"0000:a0:1b.0", "pci0000:a0", 1, "rdmap160s27", 3}};
}

// p5.48xlarge facts (efa-hardware.md §B): 8 roots, EFAs on buses root+0x0b..0x0e, rdmap<bus>s0,
// uverbs in BDF order, roots 44..77 on NUMA 0 and 88..bb on NUMA 1.
std::vector<ExpectedEfa> P5Efas() {
  std::vector<ExpectedEfa> out;
  const unsigned roots[] = {0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb};
  int uverbs = 0;
  for (unsigned root : roots) {
    for (unsigned k = 0; k < 4; ++k) {
      const unsigned bus = root + 0x0b + k;
      char bdf[16];
      char root_id[16];
      std::snprintf(bdf, sizeof(bdf), "0000:%02x:00.0", bus);
      std::snprintf(root_id, sizeof(root_id), "pci0000:%02x", root);
      out.push_back(
          {bdf, root_id, root < 0x88 ? 0 : 1, "rdmap" + std::to_string(bus) + "s0", uverbs++});
    }
  }
  return out;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

struct InstanceCase {
  std::string instance;
  std::vector<ExpectedEfa> efas;
  size_t netdevs;  // ENA netdevs (without lo)
};

class BundledTreeTest : public ::testing::TestWithParam<InstanceCase> {};

TEST_P(BundledTreeTest, MatchesKernelLayoutFacts) {
  const InstanceCase& c = GetParam();
  auto yaml = BundledTopology(c.instance);
  ASSERT_TRUE(yaml.has_value()) << c.instance;
  auto topology = ParseTopology(*yaml);
  ASSERT_TRUE(topology.ok()) << topology.status().ToString();
  TempDir dir;
  const std::string sys = dir.Sub("sys");
  const std::string dev = dir.Sub("dev");
  TreeOptions options;
  options.char_devices = true;
  ASSERT_TRUE(BuildSysfsTree(*topology, sys, dev, options).ok());

  EXPECT_EQ(ReadFileOrEmpty(sys + "/devices/virtual/dmi/id/product_name"), c.instance + "\n");
  EXPECT_EQ(ReadFileOrEmpty(sys + "/class/infiniband_verbs/abi_version"), "6\n");

  // Every symlink is relative and resolves; every attribute file ends with a newline.
  size_t links = 0;
  for (auto it = fs::recursive_directory_iterator(sys); it != fs::recursive_directory_iterator();
       ++it) {
    if (it->is_symlink()) {
      ++links;
      const fs::path target = fs::read_symlink(it->path());
      SCOPED_TRACE(it->path().string() + " -> " + target.string());
      EXPECT_TRUE(target.is_relative());
      EXPECT_TRUE(fs::exists(it->path()));
      it.disable_recursion_pending();
    } else if (it->is_regular_file() && it->file_size() > 0) {
      const std::string content = ReadFileOrEmpty(it->path().string());
      EXPECT_EQ(content.back(), '\n') << it->path();
    }
  }
  EXPECT_GT(links, c.efas.size() * 8);

  std::set<std::string> gid_macs;
  for (const ExpectedEfa& efa : c.efas) {
    SCOPED_TRACE(efa.bdf);
    // pcieRoot: the first component after devices/ of the resolved bus/pci/devices link.
    const std::string link = sys + "/bus/pci/devices/" + efa.bdf;
    const std::string target = fs::read_symlink(link).string();
    ASSERT_EQ(target.rfind("../../../devices/", 0), 0u) << target;
    const fs::path resolved = fs::weakly_canonical(fs::path(link));
    EXPECT_EQ(resolved.filename(), efa.bdf);
    const std::string rel = fs::relative(resolved, fs::weakly_canonical(sys)).string();
    EXPECT_EQ(rel.substr(0, rel.find('/', 8)), "devices/" + efa.root);

    const std::string pci = resolved.string();
    EXPECT_EQ(ReadFileOrEmpty(pci + "/vendor"), "0x1d0f\n");
    EXPECT_EQ(Trim(ReadFileOrEmpty(pci + "/numa_node")), std::to_string(efa.numa));
    EXPECT_EQ(fs::read_symlink(pci + "/driver").filename(), "efa");
    EXPECT_NE(ReadFileOrEmpty(pci + "/uevent").find("DRIVER=efa\n"), std::string::npos);

    const std::string ib = sys + "/class/infiniband/" + efa.ibdev;
    ASSERT_TRUE(fs::exists(ib));
    EXPECT_EQ(fs::weakly_canonical(ib + "/device"), resolved);
    EXPECT_EQ(fs::read_symlink(ib + "/device").string(), "../../../" + efa.bdf);
    EXPECT_EQ(ReadFileOrEmpty(ib + "/ports/1/state"), "4: ACTIVE\n");
    const std::string gid = Trim(ReadFileOrEmpty(ib + "/ports/1/gids/0"));
    auto mac = MacFromEui64Gid(gid);
    ASSERT_TRUE(mac.ok()) << gid;
    EXPECT_TRUE(gid_macs.insert(*mac).second) << "GID repeated: " << gid;

    const std::string name = "uverbs" + std::to_string(efa.uverbs);
    const std::string uv = sys + "/class/infiniband_verbs/" + name;
    EXPECT_EQ(ReadFileOrEmpty(uv + "/ibdev"), efa.ibdev + "\n");
    EXPECT_EQ(ReadFileOrEmpty(uv + "/dev"), "231:" + std::to_string(192 + efa.uverbs) + "\n");
    EXPECT_EQ(fs::weakly_canonical(uv + "/device"), resolved);
    EXPECT_TRUE(fs::exists(pci + "/infiniband_verbs/" + name));

    struct stat st {};
    ASSERT_EQ(::lstat((dev + "/infiniband/" + name).c_str(), &st), 0);
    if (::geteuid() == 0 && S_ISCHR(st.st_mode)) {
      EXPECT_EQ(major(st.st_rdev), 231u);
      EXPECT_EQ(minor(st.st_rdev), 192u + static_cast<unsigned>(efa.uverbs));
    }
  }
  EXPECT_TRUE(fs::exists(dev + "/infiniband/rdma_cm"));

  // ENA netdevs: each MAC is the GID MAC of exactly one EFA on its root.
  size_t netdevs = 0;
  for (const auto& entry : fs::directory_iterator(sys + "/class/net")) {
    if (entry.path().filename() == "lo") continue;
    ++netdevs;
    const std::string mac = Trim(ReadFileOrEmpty(entry.path().string() + "/address"));
    EXPECT_EQ(gid_macs.count(mac), 1u) << entry.path() << " " << mac;
    EXPECT_EQ(fs::read_symlink(entry.path().string() + "/device").string().substr(0, 9),
              "../../../");
  }
  EXPECT_EQ(netdevs, c.netdevs);
}

INSTANTIATE_TEST_SUITE_P(Instances, BundledTreeTest,
                         ::testing::Values(InstanceCase{"p4d.24xlarge", P4dEfas(), 4},
                                           InstanceCase{"p5.48xlarge", P5Efas(), 1}),
                         [](const auto& param_info) {
                           std::string name = param_info.param.instance;
                           for (char& ch : name) {
                             if (ch == '.') ch = '_';
                           }
                           return name;
                         });

TEST(TreeBuilderTest, P5BridgesFormTheSwitchPath) {
  auto topology = ParseTopology(*BundledTopology("p5.48xlarge"));
  ASSERT_TRUE(topology.ok());
  TempDir dir;
  ASSERT_TRUE(BuildSysfsTree(*topology, dir.Sub("sys"), "").ok());
  const std::string efa =
      dir.Sub("sys/devices/pci0000:44/0000:44:00.0/0000:45:00.0/0000:46:01.0/0000:4f:00.0");
  EXPECT_TRUE(fs::is_directory(efa));
  EXPECT_EQ(fs::read_symlink(efa + "/driver").string(), "../../../../../../bus/pci/drivers/efa");
  // Root port, switch upstream port and 14 downstream ports per root, all bound to pcieport.
  size_t bridges = 0;
  for (const auto& entry : fs::directory_iterator(dir.Sub("sys/bus/pci/drivers/pcieport"))) {
    if (entry.is_symlink()) ++bridges;
  }
  EXPECT_EQ(bridges, 8u * 16u);
  EXPECT_TRUE(
      fs::is_directory(dir.Sub("sys/devices/pci0000:44/0000:44:00.0/0000:45:00.0/0000:46:01.5")));
  EXPECT_FALSE(
      fs::exists(dir.Sub("sys/devices/pci0000:44/0000:44:00.0/0000:45:00.0/0000:46:01.6")));
  EXPECT_FALSE(fs::exists(dir.Sub("dev")));
}

TEST(TreeBuilderTest, KernelRelativeLink) {
  struct Case {
    std::string link, target, want;
  };
  const Case cases[] = {
      {"bus/pci/devices/0000:10:1b.0", "devices/pci0000:10/0000:10:1b.0",
       "../../../devices/pci0000:10/0000:10:1b.0"},
      {"devices/pci0000:10/0000:10:1b.0/infiniband/rdmap16s27/device",
       "devices/pci0000:10/0000:10:1b.0", "../../../0000:10:1b.0"},
      {"devices/pci0000:10/0000:10:1b.0/driver", "bus/pci/drivers/efa",
       "../../../bus/pci/drivers/efa"},
      {"class/infiniband/rdmap16s27", "devices/pci0000:10/0000:10:1b.0/infiniband/rdmap16s27",
       "../../devices/pci0000:10/0000:10:1b.0/infiniband/rdmap16s27"},
      {"class/dmi/id", "devices/virtual/dmi/id", "../../devices/virtual/dmi/id"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.link);
    EXPECT_EQ(KernelRelativeLink(c.link, c.target), c.want);
  }
}

TEST(TreeBuilderTest, ConnectXNeuronAndDynamicUverbsMajor) {
  constexpr char kYaml[] = R"(
schema: efa-topo/v1
instance: test.mixed
platform: {cpulist: {0: "0-3"}}
roots:
  - id: pci0000:10
    numa: 0
    devices:
      - {bdf: "0000:10:01.0", class: efa, id: "1d0f:efa2", uverbs: 40}
      - {bdf: "0000:10:02.0", class: mlx5, id: "15b3:1021", subsys: "15b3:0087", netdev: ibp16s2f0}
      - {bdf: "0000:10:03.0", class: neuron, id: "1d0f:7364"}
      - {bdf: "0000:10:04.0", class: efa, id: "1d0f:efa2", driver: ""}
)";
  auto topology = ParseTopology(kYaml);
  ASSERT_TRUE(topology.ok()) << topology.status().ToString();
  TempDir dir;
  ASSERT_TRUE(BuildSysfsTree(*topology, dir.Sub("sys"), dir.Sub("dev")).ok());
  const std::string sys = dir.Sub("sys");
  EXPECT_EQ(ReadFileOrEmpty(sys + "/class/infiniband_verbs/uverbs40/dev"), "240:8\n");
  EXPECT_EQ(ReadFileOrEmpty(sys + "/class/infiniband_verbs/uverbs40/ibdev"), "rdmap16s1\n");
  EXPECT_EQ(ReadFileOrEmpty(sys + "/class/infiniband_verbs/uverbs0/ibdev"), "ibp16s2f0\n");
  EXPECT_EQ(fs::read_symlink(sys + "/bus/pci/devices/0000:10:02.0/driver").filename(), "mlx5_core");
  EXPECT_EQ(ReadFileOrEmpty(sys + "/class/infiniband/ibp16s2f0/node_type"), "1: CA\n");
  EXPECT_EQ(ReadFileOrEmpty(sys + "/class/net/ibp16s2f0/type"), "32\n");
  EXPECT_EQ(fs::read_symlink(sys + "/bus/pci/devices/0000:10:03.0/driver").filename(),
            "neuron-driver");
  // No driver bound: no driver link, no RDMA device, no uverbs.
  EXPECT_FALSE(fs::exists(sys + "/bus/pci/devices/0000:10:04.0/driver"));
  EXPECT_FALSE(fs::exists(sys + "/bus/pci/devices/0000:10:04.0/infiniband"));
  EXPECT_EQ(ReadFileOrEmpty(sys + "/bus/pci/devices/0000:10:01.0/local_cpus"), "0000000f\n");
}

TEST(TopologyTest, RejectsMalformedInput) {
  struct Case {
    std::string name, yaml, want;
  };
  const std::string head = "schema: efa-topo/v1\ninstance: x\n";
  const Case cases[] = {
      {"not yaml", "roots: [", "topology YAML"},
      {"bad schema", "schema: v0\ninstance: x\nroots: []\n", "efa-topo/v1"},
      {"no roots", head, "roots"},
      {"bad root id", head + "roots: [{id: root0}]\n", "root0"},
      {"bad bdf", head + "roots: [{id: pci0000:10, devices: [{bdf: 10:1b.0, class: efa}]}]\n",
       "10:1b.0"},
      {"upper-case bdf",
       head + "roots: [{id: pci0000:10, devices: [{bdf: 0000:10:1B.0, class: efa}]}]\n",
       "0000:10:1B.0"},
      {"bad id",
       head + "roots: [{id: pci0000:10, devices: [{bdf: 0000:10:1b.0, class: efa, id: efa}]}]\n",
       "bad id"},
      {"path elsewhere",
       head + "roots: [{id: pci0000:10, devices: [{bdf: 0000:10:1b.0, class: efa, "
              "path: /sys/devices/pci0000:20/0000:10:1b.0}]}]\n",
       "path"},
      {"duplicate",
       head + "roots: [{id: pci0000:10, devices: [{bdf: 0000:10:1b.0, class: efa}, "
              "{bdf: 0000:10:1b.0, class: ena}]}]\n",
       "twice"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto topology = ParseTopology(c.yaml);
    ASSERT_FALSE(topology.ok());
    EXPECT_EQ(topology.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(topology.status().message().find(c.want), std::string::npos)
        << topology.status().message();
  }
}

TEST(TopologyTest, GidMacRoundTrip) {
  // efa-hardware.md §A4: MAC 16:b0:33:f8:77:cd <-> fe80::14b0:33ff:fef8:77cd.
  EXPECT_EQ(Eui64GidFromMac("16:b0:33:f8:77:cd"), "fe80:0000:0000:0000:14b0:33ff:fef8:77cd");
  auto mac = MacFromEui64Gid("fe80:0000:0000:0000:14b0:33ff:fef8:77cd\n");
  ASSERT_TRUE(mac.ok());
  EXPECT_EQ(*mac, "16:b0:33:f8:77:cd");
  for (const char* bad :
       {"", "fe80::14b0:33ff:fef8:77cd", "fe80:0000:0000:0000:14b0:33aa:fef8:77cd",
        "2001:0000:0000:0000:14b0:33ff:fef8:77cd"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(MacFromEui64Gid(bad).ok());
  }
}

// Every bundled topology, not only the ones with hand-checked facts above: links relative and
// resolving, attributes newline-terminated, one uverbs node per RDMA device.
TEST(BundledTest, EveryTreeHasKernelShape) {
  for (std::string_view name : BundledInstanceTypes()) {
    SCOPED_TRACE(std::string(name));
    auto topology = ParseTopology(*BundledTopology(name));
    ASSERT_TRUE(topology.ok()) << topology.status().ToString();
    TempDir dir;
    ASSERT_TRUE(BuildSysfsTree(*topology, dir.Sub("sys"), dir.Sub("dev")).ok());
    size_t bad = 0;
    for (auto it = fs::recursive_directory_iterator(dir.Sub("sys"));
         it != fs::recursive_directory_iterator(); ++it) {
      if (it->is_symlink()) {
        it.disable_recursion_pending();
        if (fs::read_symlink(it->path()).is_absolute() || !fs::exists(it->path())) {
          ADD_FAILURE() << it->path();
          ++bad;
        }
      } else if (it->is_regular_file() && it->file_size() > 0 &&
                 ReadFileOrEmpty(it->path().string()).back() != '\n') {
        ADD_FAILURE() << it->path() << " has no trailing newline";
        ++bad;
      }
      if (bad > 5) break;
    }
    size_t rdma = 0;
    for (const auto& function : topology->functions) {
      if (function.ibdev.empty()) continue;
      ++rdma;
      EXPECT_TRUE(fs::exists(dir.Sub("dev/infiniband/uverbs" + std::to_string(function.uverbs))));
      EXPECT_TRUE(fs::exists(dir.Sub("sys/class/infiniband/" + function.ibdev + "/ports/1/rate")));
    }
    EXPECT_GT(rdma, 0u);
  }
}

TEST(BundledTest, ListsTheFixtures) {
  const auto names = BundledInstanceTypes();
  EXPECT_NE(std::find(names.begin(), names.end(), "p4d.24xlarge"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "p5.48xlarge"), names.end());
  EXPECT_FALSE(BundledTopology("m5.large").has_value());
  for (std::string_view name : names) {
    SCOPED_TRACE(std::string(name));
    auto topology = ParseTopology(*BundledTopology(name));
    ASSERT_TRUE(topology.ok()) << topology.status().ToString();
    EXPECT_EQ(topology->instance_type, name);
  }
}

}  // namespace
}  // namespace efadra::sysfstree
