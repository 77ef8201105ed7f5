// Drop-in compatibility with DRANET v1.2.0 (what the aws-dranet chart ships): for the bundled
// p4d.24xlarge and p5.48xlarge trees, every attribute of an EFA whose key DRANET defines
// (pkg/apis/attributes.go: dra.net/pciAddress ... dra.net/rdmaDevice, plus
// resource.kubernetes.io/pcieRoot) has the key, type and value DRANET publishes, and no other
// such key appears. The expected values are in test/fixtures/dranet/<instance>.json, derived
// from the topology files by test/fixtures/dranet/derive.py, whose docstring gives DRANET's
// rules with the code they come from. Attributes DRANET does not define (our EFA extras,
// resource.kubernetes.io/numaNode) are outside the comparison.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "efadra/core/filesystem.h"
#include "efadra/discovery/discoverer.h"
#include "efadra/slices/resource_slices.h"
#include "efadra/sysfstree/bundled.h"
#include "efadra/sysfstree/topology.h"
#include "efadra/sysfstree/tree_builder.h"
#include "support/test_support.h"

namespace efadra::slices {
namespace {

using nlohmann::json;

// Every attribute name DRANET v1.2.0 can publish on a device (pkg/apis/attributes.go), and the
// standard one it adds from k8s.io/dynamic-resource-allocation.
const std::set<std::string>& DranetKeys() {
  static const std::set<std::string>* const kKeys = new std::set<std::string>{
      "dra.net/ifName",        "dra.net/pciAddress",    "dra.net/mac",
      "dra.net/pciVendor",     "dra.net/pciDevice",     "dra.net/pciSubsystem",
      "dra.net/numaNode",      "dra.net/mtu",           "dra.net/encapsulation",
      "dra.net/alias",         "dra.net/state",         "dra.net/type",
      "dra.net/ipv4",          "dra.net/ipv6",          "dra.net/tcFilterNames",
      "dra.net/tcxProgramNames", "dra.net/ebpf",        "dra.net/sriov",
      "dra.net/sriovVfs",      "dra.net/isSriovVf",     "dra.net/virtual",
      "dra.net/rdma",          "dra.net/rdmaDevice",    "resource.kubernetes.io/pcieRoot",
  };
  return *kKeys;
}

// DRANET's names also count unqualified: the scheduler reads "pciAddress" in the driver's
// domain as dra.net/pciAddress, so an unqualified key is one of DRANET's keys written wrongly.
bool IsDranetKey(const std::string& key) {
  return DranetKeys().count(key) > 0 || DranetKeys().count("dra.net/" + key) > 0;
}

json OurDranetAttributes(const std::string& instance) {
  const auto yaml = sysfstree::BundledTopology(instance);
  EXPECT_TRUE(yaml.has_value()) << instance;
  auto topology = sysfstree::ParseTopology(*yaml);
  EXPECT_TRUE(topology.ok()) << topology.status().ToString();
  efadra::testing::TempDir dir;
  EXPECT_TRUE(sysfstree::BuildSysfsTree(*topology, dir.Sub("sys"), dir.Sub("dev")).ok());
  auto sysfs = core::NewPosixFilesystem(dir.Sub("sys"));
  auto dev = core::NewPosixFilesystem(dir.Sub("dev"));
  auto inventory = discovery::Discoverer(*sysfs, *dev, nullptr).Discover();
  EXPECT_TRUE(inventory.ok()) << inventory.status().ToString();
  SliceOptions options;
  options.node_name = "node-1";
  json devices = json::object();
  for (const auto& slice : DesiredSlices(*inventory, options)) {
    for (const auto& device : slice["spec"]["devices"]) {
      json kept = json::object();
      for (const auto& [key, value] : device["attributes"].items()) {
        if (IsDranetKey(key)) kept[key] = value;
      }
      devices[device["name"].get<std::string>()] = kept;
    }
  }
  return devices;
}

TEST(DranetCompatTest, EfaAttributesEqualDranetV120) {
  for (const std::string instance : {"p4d.24xlarge", "p5.48xlarge"}) {
    SCOPED_TRACE(instance);
    const std::string golden_text =
        efadra::testing::ReadFileOrEmpty(efadra::testing::TestDataDir() + "/dranet/" + instance +
                                         ".json");
    const json golden = json::parse(golden_text, nullptr, false);
    ASSERT_FALSE(golden.is_discarded()) << "no golden file for " << instance;
    const json ours = OurDranetAttributes(instance);
    ASSERT_EQ(ours.size(), golden["devices"].size());
    for (const auto& [name, expected] : golden["devices"].items()) {
      SCOPED_TRACE(name);
      ASSERT_TRUE(ours.contains(name)) << "DRANET publishes device " << name << ", we do not";
      EXPECT_EQ(ours[name], expected) << "ours:   " << ours[name].dump() << "\nDRANET: "
                                      << expected.dump();
    }
  }
}

}  // namespace
}  // namespace efadra::slices
