// Runs the real `efa-dra-driver discover` binary (a process boundary) against bundled fixtures and
// generated edge trees. Skips when the binary is not part of this build.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "efadra/sysfstree/bundled.h"
#include "efadra/sysfstree/tree_builder.h"
#include "support/test_support.h"

namespace efadra::discovery {
namespace {

namespace fs = std::filesystem;
using ::efadra::testing::TempDir;
using ::efadra::testing::WriteFileOrDie;

struct CommandRun {
  int exit_code = -1;
  std::string out;
};

std::string Binary() { return std::string(EFADRA_BINARY_DIR) + "/efa-dra-driver"; }

CommandRun Discover(const std::string& args, const std::string& env = "") {
  const std::string command = env + " " + Binary() + " discover " + args + " 2>/dev/null";
  CommandRun run;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) run.out.append(buffer, n);
  const int status = ::pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
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
