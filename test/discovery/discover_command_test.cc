// Runs the real `efa-dra-driver discover` binary (a process boundary) against bundled fixtures and
// generated edge trees. Skips when the binary is not part of this build.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
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

using CommandRun = ::efadra::testing::CommandResult;

std::string Binary() { return std::string(EFADRA_BINARY_DIR) + "/efa-dra-driver"; }

CommandRun Discover(const std::string& args, const std::string& env = "") {
  return ::efadra::testing::RunCommand(env + " " + ::efadra::testing::TargetProgramShellPrefix() +
                                       Binary() + " discover " + args + " 2>/dev/null");
}

class DiscoverCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(Binary()))
      GTEST_SKIP() << Binary() << " is not built (cmd not in EFADRA_MODULES)";
  }
};

TEST_F(DiscoverCommandTest, JsonOfEachBundledFixture) {
  struct Case {
    std::string instance;
    size_t devices;
    std::string first_name, first_root, first_rdma;
    int numa;
  };
  const Case cases[] = {{"p4d.24xlarge", 4, "pci-0000-10-1b-0", "pci0000:10", "rdmap16s27", 0},
                        {"p5.48xlarge", 32, "pci-0000-4f-00-0", "pci0000:44", "rdmap79s0", 0}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.instance);
    CommandRun run = Discover("--fixture " + c.instance + " -o json");
    ASSERT_EQ(run.exit_code, 0);
    auto doc = nlohmann::json::parse(run.out, nullptr, false);
    ASSERT_FALSE(doc.is_discarded()) << run.out;
    ASSERT_EQ(doc["devices"].size(), c.devices);
    const auto& first = doc["devices"][0];
    EXPECT_EQ(first["name"], c.first_name);
    EXPECT_EQ(first["pcieRoot"], c.first_root);
    EXPECT_EQ(first["rdmaDevice"], c.first_rdma);
    EXPECT_EQ(first["uverbs"], "uverbs0");
    EXPECT_EQ(first["numaNode"], c.numa);
    EXPECT_TRUE(first["netdev"].is_object());
    EXPECT_EQ(doc["instanceType"], c.instance);
  }
}

// `discover` pairs EFAs with the GPUs or Neuron devices on their PCIe root, on every bundled
// topology (json is the contract; the table shows the same groups).
TEST_F(DiscoverCommandTest, PairingOfEachBundledTopology) {
  struct Case {
    std::string instance;
    size_t roots;
    size_t gpus_per_root, neurons_per_root, efas_per_root;
    std::string probe_root;                 // one root checked in detail
    std::vector<std::string> probe_gpus;    // "index pciAddress"
    std::string probe_first_efa;
  };
  const Case cases[] = {
      {"p4d.24xlarge", 4, 2, 0, 1, "pci0000:90", {"4 0000:90:1c.0", "5 0000:90:1d.0"},
       "pci-0000-90-1b-0"},
      {"p5.48xlarge", 8, 1, 0, 4, "pci0000:aa", {"6 0000:b9:00.0"}, "pci-0000-b5-00-0"},
      {"p6-b200.48xlarge", 4, 2, 0, 2, "pci0000:66", {"4 0000:75:00.0", "5 0000:76:00.0"},
       "pci-0000-71-00-0"},
      {"trn2.48xlarge", 8, 0, 2, 2, "pci0000:4b", {}, "pci-0000-56-00-0"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.instance);
    CommandRun run = Discover("--fixture " + c.instance + " -o json");
    ASSERT_EQ(run.exit_code, 0);
    auto doc = nlohmann::json::parse(run.out, nullptr, false);
    ASSERT_FALSE(doc.is_discarded()) << run.out;
    const auto& roots = doc["pcieRoots"];
    ASSERT_EQ(roots.size(), c.roots) << roots.dump();
    size_t efas = 0;
    int last_numa = -1;
    for (const auto& root : roots) {
      EXPECT_EQ(root["gpus"].size(), c.gpus_per_root) << root.dump();
      EXPECT_EQ(root["neuronDevices"].size(), c.neurons_per_root) << root.dump();
      EXPECT_EQ(root["efas"].size(), c.efas_per_root) << root.dump();
      EXPECT_GE(root["numaNode"].get<int>(), last_numa) << "roots sorted by NUMA node";
      last_numa = root["numaNode"].get<int>();
      efas += root["efas"].size();
      // Every EFA listed under a root really is on it.
      for (const auto& name : root["efas"]) {
        for (const auto& device : doc["devices"]) {
          if (device["name"] == name) {
            EXPECT_EQ(device["pcieRoot"], root["root"]);
          }
        }
      }
    }
    EXPECT_EQ(efas, doc["devices"].size());
    bool probed = false;
    for (const auto& root : roots) {
      if (root["root"] != c.probe_root) continue;
      probed = true;
      std::vector<std::string> gpus;
      for (const auto& gpu : root["gpus"]) {
        gpus.push_back(std::to_string(gpu["index"].get<int>()) + " " +
                       gpu["pciAddress"].get<std::string>());
        EXPECT_EQ(gpu["vendorId"], "0x10de");
      }
      EXPECT_EQ(gpus, c.probe_gpus);
      EXPECT_EQ(root["efas"][0], c.probe_first_efa);
    }
    EXPECT_TRUE(probed) << c.probe_root;
  }
}

// On the Grace tray (p6e-gb200) half the EFAs sit on PCIe roots that hold no GPU: discover
// must list those roots with their EFAs and no GPU rather than drop them or borrow a GPU.
TEST_F(DiscoverCommandTest, GpuLessRootsOnGb200) {
  CommandRun run = Discover("--fixture p6e-gb200.36xlarge -o json");
  ASSERT_EQ(run.exit_code, 0) << run.out;
  auto doc = nlohmann::json::parse(run.out, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << run.out;
  EXPECT_EQ(doc["instanceType"], "p6e-gb200.36xlarge");
  EXPECT_EQ(doc["devices"].size(), 16u);
  std::vector<std::string> with_gpu, without_gpu;
  for (const auto& root : doc["pcieRoots"]) {
    EXPECT_EQ(root["efas"].size(), 2u) << root.dump();
    (root["gpus"].empty() ? without_gpu : with_gpu).push_back(root["root"].get<std::string>());
    for (const auto& gpu : root["gpus"]) EXPECT_EQ(gpu["vendorId"], "0x10de");
  }
  EXPECT_EQ(with_gpu, (std::vector<std::string>{"pci0000:24", "pci0000:3a", "pci0000:97",
                                                 "pci0000:ad"}));
  EXPECT_EQ(without_gpu, (std::vector<std::string>{"pci0000:2f", "pci0000:45", "pci0000:a2",
                                                    "pci0000:b8"}));
}

TEST_F(DiscoverCommandTest, NeuronGroupsOnTrn2) {
  CommandRun run = Discover("--fixture trn2.48xlarge -o json");
  ASSERT_EQ(run.exit_code, 0);
  auto doc = nlohmann::json::parse(run.out, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << run.out;
  const auto& groups = doc["neuronDeviceGroups"];
  ASSERT_EQ(groups.size(), 4u) << groups.dump();
  std::set<int> indexes;
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& group = groups[g];
    EXPECT_EQ(group["neuronIndexes"], nlohmann::json({4 * g, 4 * g + 1, 4 * g + 2, 4 * g + 3}))
        << group.dump();
    EXPECT_EQ(group["efas"].size(), 4u) << group.dump();
    for (const auto& index : group["neuronIndexes"]) indexes.insert(index.get<int>());
    // The group's EFAs carry its devicegroup4_id, as the slices publish it.
    for (const auto& name : group["efas"]) {
      for (const auto& device : doc["devices"]) {
        if (device["name"] != name) continue;
        EXPECT_EQ(device["deviceGroups"]["devicegroup4_id"], group["devicegroup4Id"]);
      }
    }
  }
  EXPECT_EQ(indexes.size(), 16u);
  CommandRun table = Discover("--fixture trn2.48xlarge");
  EXPECT_NE(table.out.find("NEURON GROUP (devicegroup4_id)"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("0,1,2,3"), std::string::npos) << table.out;
  // GPU nodes have no Neuron groups.
  CommandRun p5 = Discover("--fixture p5.48xlarge -o json");
  EXPECT_TRUE(nlohmann::json::parse(p5.out)["neuronDeviceGroups"].empty());
}

// A GPU node where one root has EFAs and no GPU; NVIDIA functions that are not GPUs (audio,
// NVSwitch) are not listed; a GPU without EFAs still shows its root.
TEST_F(DiscoverCommandTest, RootWithEfasAndNoGpu) {
  TempDir dir;
  auto topology = sysfstree::ParseTopology(R"(
schema: efa-topo/v1
instance: test.gpu
roots:
  - id: pci0000:10
    numa: 0
    devices:
      - {bdf: "0000:10:01.0", class: efa, id: "1d0f:efa1"}
      - {bdf: "0000:10:02.0", class: gpu, id: "10de:2330"}
      - {bdf: "0000:10:02.1", class: "0x040300", id: "10de:22a3"}
  - id: pci0000:20
    numa: 0
    devices:
      - {bdf: "0000:20:01.0", class: efa, id: "1d0f:efa1"}
      - {bdf: "0000:20:02.0", class: nvswitch, id: "10de:22a3"}
  - id: pci0000:30
    numa: 1
    devices:
      - {bdf: "0000:30:02.0", class: gpu, id: "10de:2330"}
)");
  ASSERT_TRUE(topology.ok()) << topology.status().message();
  ASSERT_TRUE(sysfstree::BuildSysfsTree(*topology, dir.Sub("sys"), dir.Sub("dev")).ok());
  const std::string env =
      "EFA_DRA_SYSFS_ROOT=" + dir.Sub("sys") + " EFA_DRA_DEV_ROOT=" + dir.Sub("dev");
  CommandRun run = Discover("-o json", env);
  ASSERT_EQ(run.exit_code, 0);
  auto roots = nlohmann::json::parse(run.out)["pcieRoots"];
  ASSERT_EQ(roots.size(), 3u) << roots.dump();
  EXPECT_EQ(roots[0]["root"], "pci0000:10");
  ASSERT_EQ(roots[0]["gpus"].size(), 1u) << roots[0].dump();
  EXPECT_EQ(roots[0]["gpus"][0]["pciAddress"], "0000:10:02.0");
  EXPECT_EQ(roots[0]["gpus"][0]["index"], 0);
  EXPECT_EQ(roots[1]["root"], "pci0000:20");
  EXPECT_TRUE(roots[1]["gpus"].empty()) << roots[1].dump();
  EXPECT_EQ(roots[1]["efas"], nlohmann::json({"pci-0000-20-01-0"}));
  EXPECT_EQ(roots[2]["root"], "pci0000:30");
  EXPECT_EQ(roots[2]["gpus"][0]["index"], 1);
  EXPECT_TRUE(roots[2]["efas"].empty());
  CommandRun table = Discover("", env);
  EXPECT_NE(table.out.find("pci0000:20  -"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("0 0000:10:02.0"), std::string::npos) << table.out;
}

TEST_F(DiscoverCommandTest, UnknownValuesAreNull) {
  TempDir dir;
  auto topology = sysfstree::ParseTopology(R"(
schema: efa-topo/v1
instance: test.one
roots:
  - id: pci0000:10
    numa: 0
    devices:
      - {bdf: "0000:10:01.0", class: efa, id: "1d0f:efa1"}
)");
  ASSERT_TRUE(topology.ok());
  ASSERT_TRUE(sysfstree::BuildSysfsTree(*topology, dir.Sub("sys"), dir.Sub("dev")).ok());
  fs::remove(dir.Sub("sys/devices/pci0000:10/0000:10:01.0/numa_node"));
  WriteFileOrDie(dir.Sub("sys/devices/pci0000:10/0000:10:01.0/numa_node"), "-1\n");
  CommandRun run = Discover(
      "-o json", "EFA_DRA_SYSFS_ROOT=" + dir.Sub("sys") + " EFA_DRA_DEV_ROOT=" + dir.Sub("dev"));
  ASSERT_EQ(run.exit_code, 0);
  auto doc = nlohmann::json::parse(run.out, nullptr, false);
  ASSERT_EQ(doc["devices"].size(), 1u) << run.out;
  EXPECT_TRUE(doc["devices"][0]["numaNode"].is_null());
  EXPECT_TRUE(doc["devices"][0]["netdev"].is_null());
  EXPECT_EQ(doc["devices"][0]["interfaceType"], "efa-only");
}

TEST_F(DiscoverCommandTest, YamlAndSlices) {
  CommandRun yaml = Discover("--fixture p4d.24xlarge -o yaml");
  ASSERT_EQ(yaml.exit_code, 0);
  YAML::Node doc = YAML::Load(yaml.out);
  ASSERT_EQ(doc["devices"].size(), 4u);
  EXPECT_EQ(doc["devices"][0]["pciAddress"].as<std::string>(), "0000:10:1b.0");
  EXPECT_EQ(doc["devices"][0]["charDevice"].as<std::string>(), "231:192");

  CommandRun slices =
      Discover("--fixture p5.48xlarge --slices -o json --node-name n1 --driver-name dra.net");
  ASSERT_EQ(slices.exit_code, 0);
  auto object = nlohmann::json::parse(slices.out, nullptr, false);
  ASSERT_FALSE(object.is_discarded()) << slices.out;
  size_t devices = 0;
  if (object["kind"] == "List") {
    for (const auto& item : object["items"]) devices += item["spec"]["devices"].size();
  } else {
    EXPECT_EQ(object["kind"], "ResourceSlice");
    devices = object["spec"]["devices"].size();
  }
  EXPECT_EQ(devices, 32u);
}

TEST_F(DiscoverCommandTest, TableAndExitCodes) {
  CommandRun table = Discover("--fixture p4d.24xlarge");
  ASSERT_EQ(table.exit_code, 0);
  EXPECT_NE(table.out.find("pci0000:90  pci-0000-90-1b-0"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("4 EFA devices on p4d.24xlarge"), std::string::npos) << table.out;

  TempDir dir;
  struct Case {
    std::string args;
    int want;
  };
  const Case cases[] = {
      {"--sysfs-root " + dir.Sub("missing"), 1},
      {"--fixture m5.large", 1},
      {"-o xml", 2},
      {"--no-such-flag", 2},
      {"--fixture p4d.24xlarge --slices -o table", 2},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    EXPECT_EQ(Discover(c.args).exit_code, c.want);
  }
  // An empty but valid tree: no EFA is not an error.
  fs::create_directories(dir.Sub("empty/devices"));
  EXPECT_EQ(Discover("--sysfs-root " + dir.Sub("empty")).exit_code, 0);
}

}  // namespace
}  // namespace efadra::discovery
