// Slices of real topologies end to end through the library: sysfstree writes a kernel-exact
// tree, discovery::Discoverer reads it, DesiredSlices builds the objects.
#include <gtest/gtest.h>

#include <string>

#include "efadra/core/filesystem.h"
#include "efadra/discovery/discoverer.h"
#include "efadra/slices/api_limits.h"
#include "efadra/slices/resource_slices.h"
#include "efadra/sysfstree/bundled.h"
#include "efadra/sysfstree/topology.h"
#include "efadra/sysfstree/tree_builder.h"
#include "support/test_support.h"

namespace efadra::slices {
namespace {

using nlohmann::json;

TEST(DiscoveredSlicesTest, BundledTopologies) {
  struct Case {
    std::string instance;
    size_t devices;
    std::string device;
    json attributes;  // a subset that must match exactly
  };
  const Case cases[] = {
      {"p4d.24xlarge", 4, "pci-0000-10-1b-0", json::parse(R"j({
         "dra.net/pciAddress": {"string": "0000:10:1b.0"},
         "dra.net/pciVendor": {"string": "Amazon.com, Inc."},
         "dra.net/pciDevice": {"string": "Elastic Fabric Adapter (EFA)"},
         "dra.net/pciSubsystem": {"string": "efa0"},
         "dra.net/rdma": {"bool": true},
         "dra.net/rdmaDevice": {"string": "rdmap16s27"},
         "dra.net/numaNode": {"int": 0},
         "resource.kubernetes.io/pcieRoot": {"string": "pci0000:10"},
         "resource.kubernetes.io/pciBusID": {"string": "0000:10:1b.0"},
         "resource.kubernetes.io/numaNode": {"int": 0},
         "dra.net/efaGeneration": {"int": 1},
         "dra.net/rdmaRead": {"bool": true},
         "dra.net/rdmaWrite": {"bool": false}
       })j")},
      {"p5.48xlarge", 32, "pci-0000-4f-00-0", json::parse(R"j({
         "dra.net/pciAddress": {"string": "0000:4f:00.0"},
         "dra.net/pciSubsystem": {"string": "efa1"},
         "dra.net/rdmaDevice": {"string": "rdmap79s0"},
         "resource.kubernetes.io/pcieRoot": {"string": "pci0000:44"},
         "resource.kubernetes.io/pciBusID": {"string": "0000:4f:00.0"},
         "dra.net/uverbs": {"int": 0},
         "dra.net/efaGeneration": {"int": 2},
         "dra.net/rdmaRead": {"bool": true},
         "dra.net/rdmaWrite": {"bool": true}
       })j")},
      // The largest attribute set: netdev-less EFAs with all four Neuron device groups.
      {"trn2.48xlarge", 16, "pci-0000-c9-00-0", json::parse(R"j({
         "dra.net/pciAddress": {"string": "0000:c9:00.0"},
         "dra.net/pciSubsystem": {"string": "efa2"},
         "dra.net/efaGeneration": {"int": 3},
         "resource.aws.com/devicegroup1_id": {"string": "0000:c9:00.0"}
       })j")},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.instance);
    const auto yaml = sysfstree::BundledTopology(c.instance);
    ASSERT_TRUE(yaml.has_value()) << c.instance << " is not bundled";
    auto topology = sysfstree::ParseTopology(*yaml);
    ASSERT_TRUE(topology.ok()) << topology.status().ToString();
    efadra::testing::TempDir dir;
    ASSERT_TRUE(sysfstree::BuildSysfsTree(*topology, dir.Sub("sys"), dir.Sub("dev")).ok());
    auto sysfs = core::NewPosixFilesystem(dir.Sub("sys"));
    auto dev = core::NewPosixFilesystem(dir.Sub("dev"));
    discovery::Discoverer discoverer(*sysfs, *dev, nullptr);
    auto inventory = discoverer.Discover();
    ASSERT_TRUE(inventory.ok()) << inventory.status().ToString();

    SliceOptions options;
    options.node_name = "node-1";
    std::vector<std::string> warnings;
    const auto slices = DesiredSlices(*inventory, options, &warnings);
    EXPECT_TRUE(warnings.empty()) << warnings.front();
    ASSERT_EQ(slices.size(), 1u);
    const json& devices = slices[0]["spec"]["devices"];
    ASSERT_EQ(devices.size(), c.devices);
    const json* found = nullptr;
    for (const auto& device : devices) {
      const auto& attributes = device["attributes"];
      EXPECT_LE(attributes.size(), static_cast<size_t>(kMaxAttributesPerDevice));
      // No netdev attribute on an EFA, whether it has an ENA sibling or not.
      EXPECT_FALSE(attributes.contains("dra.net/ifName"));
      EXPECT_FALSE(attributes.contains("ifName"));
      if (device["name"] == c.device) found = &device;
    }
    ASSERT_NE(found, nullptr);
    if (c.instance.rfind("trn2", 0) == 0) {
      for (const char* group :
           {"devicegroup1_id", "devicegroup4_id", "devicegroup8_id", "devicegroup16_id"}) {
        EXPECT_TRUE((*found)["attributes"].contains(std::string("resource.aws.com/") + group))
            << group;
      }
    }
    for (const auto& [name, value] : c.attributes.items()) {
      EXPECT_EQ((*found)["attributes"].value(name, json()), value) << name;
    }
  }
}

}  // namespace
}  // namespace efadra::slices
