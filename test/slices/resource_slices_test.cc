#include "efadra/slices/resource_slices.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "efadra/slices/api_limits.h"
#include "slices/inventories.h"

namespace efadra::slices {
namespace {

using nlohmann::json;
using testing::MakeDevice;

const json* FindDevice(const std::vector<json>& slices, const std::string& name) {
  for (const auto& slice : slices) {
    for (const auto& device : slice["spec"]["devices"]) {
      if (device["name"] == name) return &device;
    }
  }
  return nullptr;
}

SliceOptions Options(const std::string& node = "node-1") {
  SliceOptions options;
  options.node_name = node;
  options.node_uid = "uid-1";
  return options;
}

TEST(DeviceNameTest, MatchesDranet) {
  struct Case {
    std::string address;
    std::string name;
  } cases[] = {
      {"0000:10:1b.0", "pci-0000-10-1b-0"},
      {"0000:4f:00.0", "pci-0000-4f-00-0"},
      {"0000:C9:00.1", "pci-0000-c9-00-1"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.address);
    EXPECT_EQ(DeviceName(c.address), c.name);
    EXPECT_TRUE(IsDnsLabel(DeviceName(c.address)));
  }
}

// Every attribute of one device of each topology, as a table: attribute -> expected value.
TEST(DesiredSlicesTest, AttributesOnRealTopologies) {
  struct Case {
    std::string topology;
    discovery::Inventory inventory;
    std::string device;
    json attributes;
  };
  std::vector<Case> cases = {
      {"p4d", testing::P4dInventory(), "pci-0000-20-1b-0", json::parse(R"j({
         "dra.net/pciAddress": {"string": "0000:20:1b.0"},
         "dra.net/pciVendor": {"string": "Amazon.com, Inc."},
         "dra.net/pciDevice": {"string": "Elastic Fabric Adapter (EFA)"},
         "dra.net/pciSubsystem": {"string": "efa0"},
         "dra.net/numaNode": {"int": 0},
         "dra.net/rdma": {"bool": true},
         "dra.net/rdmaDevice": {"string": "rdmap32s27"},
         "resource.kubernetes.io/pcieRoot": {"string": "pci0000:20"},
         "resource.kubernetes.io/pciBusID": {"string": "0000:20:1b.0"},
         "resource.kubernetes.io/numaNode": {"int": 0},
         "dra.net/efaGeneration": {"int": 1},
         "dra.net/interfaceType": {"string": "efa"},
         "dra.net/rdmaRead": {"bool": true},
         "dra.net/rdmaWrite": {"bool": false},
         "dra.net/portState": {"string": "ACTIVE"},
         "dra.net/linkSpeedGbps": {"int": 100},
         "dra.net/uverbs": {"int": 1}
       })j")},
      {"p5", testing::P5Inventory(), "pci-0000-94-00-0", json::parse(R"j({
         "dra.net/pciAddress": {"string": "0000:94:00.0"},
         "dra.net/pciVendor": {"string": "Amazon.com, Inc."},
         "dra.net/pciDevice": {"string": "Elastic Fabric Adapter (EFA)"},
         "dra.net/pciSubsystem": {"string": "efa1"},
         "dra.net/numaNode": {"int": 1},
         "dra.net/rdma": {"bool": true},
         "dra.net/rdmaDevice": {"string": "rdmap148s0"},
         "resource.kubernetes.io/pcieRoot": {"string": "pci0000:88"},
         "resource.kubernetes.io/pciBusID": {"string": "0000:94:00.0"},
         "resource.kubernetes.io/numaNode": {"int": 1},
         "dra.net/efaGeneration": {"int": 2},
         "dra.net/interfaceType": {"string": "efa-only"},
         "dra.net/rdmaRead": {"bool": true},
         "dra.net/rdmaWrite": {"bool": true},
         "dra.net/portState": {"string": "ACTIVE"},
         "dra.net/linkSpeedGbps": {"int": 100},
         "dra.net/uverbs": {"int": 17}
       })j")},
      {"trn2-like", testing::Trn2LikeInventory(), "pci-0000-c9-00-0", json::parse(R"j({
         "dra.net/pciAddress": {"string": "0000:c9:00.0"},
         "dra.net/pciVendor": {"string": "Amazon.com, Inc."},
         "dra.net/pciDevice": {"string": "Elastic Fabric Adapter (EFA)"},
         "dra.net/pciSubsystem": {"string": "efa2"},
         "dra.net/numaNode": {"int": 1},
         "dra.net/rdma": {"bool": true},
         "dra.net/rdmaDevice": {"string": "rdmap201s0"},
         "resource.kubernetes.io/pcieRoot": {"string": "pci0000:be"},
         "resource.kubernetes.io/pciBusID": {"string": "0000:c9:00.0"},
         "resource.kubernetes.io/numaNode": {"int": 1},
         "resource.aws.com/devicegroup1_id": {"string": "0000:c9:00.0"},
         "resource.aws.com/devicegroup4_id": {"string": "0123456789abcdef"},
         "resource.aws.com/devicegroup8_id": {"string": "fedcba9876543210"},
         "resource.aws.com/devicegroup16_id": {"string": "00112233aabbccdd"},
         "dra.net/efaGeneration": {"int": 3},
         "dra.net/interfaceType": {"string": "efa"},
         "dra.net/rdmaRead": {"bool": true},
         "dra.net/rdmaWrite": {"bool": true},
         "dra.net/portState": {"string": "ACTIVE"},
         "dra.net/linkSpeedGbps": {"int": 200},
         "dra.net/uverbs": {"int": 10}
       })j")},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.topology);
    std::vector<std::string> warnings;
    const auto slices = DesiredSlices(c.inventory, Options(), &warnings);
    EXPECT_TRUE(warnings.empty()) << warnings.front();
    const json* device = FindDevice(slices, c.device);
    ASSERT_NE(device, nullptr);
    EXPECT_EQ((*device)["attributes"], c.attributes) << (*device)["attributes"].dump(1);
  }
}

TEST(DesiredSlicesTest, VerbsCapabilitiesOverrideGeneration) {
  discovery::Inventory inventory;
  auto device = MakeDevice(0x10, 0x1b, 0xefa0, 0, "pci0000:10", 0);
  device.verbs = discovery::VerbsCapabilities{};
  device.verbs->rdma_read = true;
  device.verbs->rdma_write = true;  // newer firmware on an efa0
  inventory.devices.push_back(device);
  const auto slices = DesiredSlices(inventory, Options());
  const auto& attributes = slices[0]["spec"]["devices"][0]["attributes"];
  EXPECT_EQ(attributes["dra.net/rdmaWrite"], json({{"bool", true}}));
  EXPECT_EQ(attributes["dra.net/rdmaRead"], json({{"bool", true}}));
}

TEST(DesiredSlicesTest, UnknownValuesAreOmitted) {
  struct Case {
    std::string name;
    void (*blank)(discovery::EfaDevice&);
    std::vector<std::string> absent;
  } cases[] = {
      {"numa -1",
       [](discovery::EfaDevice& d) { d.numa_node = -1; },
       {"dra.net/numaNode", "resource.kubernetes.io/numaNode"}},
      {"no pcieRoot",
       [](discovery::EfaDevice& d) { d.pcie_root.clear(); },
       {"resource.kubernetes.io/pcieRoot"}},
      {"no port state",
       [](discovery::EfaDevice& d) { d.port = {}; },
       {"dra.net/portState", "dra.net/linkSpeedGbps"}},
      {"no uverbs", [](discovery::EfaDevice& d) { d.uverbs_index = -1; }, {"dra.net/uverbs"}},
      {"unknown generation",
       [](discovery::EfaDevice& d) { d.generation = 0; },
       {"dra.net/efaGeneration", "dra.net/rdmaRead", "dra.net/rdmaWrite"}},
      {"no rdma device",
       [](discovery::EfaDevice& d) { d.rdma_device.clear(); },
       {"dra.net/rdmaDevice"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    discovery::Inventory inventory;
    auto device = MakeDevice(0x10, 0x1b, 0xefa1, 0, "pci0000:10", 0);
    c.blank(device);
    inventory.devices.push_back(device);
    const auto attributes =
        DesiredSlices(inventory, Options())[0]["spec"]["devices"][0]["attributes"];
    for (const auto& name : c.absent) EXPECT_FALSE(attributes.contains(name)) << name;
    // The compatibility core is still there.
    EXPECT_TRUE(attributes.contains("dra.net/pciAddress"));
    EXPECT_TRUE(attributes.contains("dra.net/rdma"));
  }
}

TEST(DesiredSlicesTest, OversizedAndInvalidValuesAreDroppedWithWarning) {
  discovery::Inventory inventory;
  auto device = MakeDevice(0x10, 0x1b, 0xefa1, 0, "pci0000:10", 0);
  device.rdma_device = std::string(65, 'x');
  device.device_groups["devicegroup4_id"] = std::string(64, 'a');  // exactly at the limit
  device.device_groups["bad-name!"] = "x";
  device.device_groups["devicegroup_this_name_is_far_too_long_id"] = "y";
  inventory.devices.push_back(device);
  std::vector<std::string> warnings;
  const auto attributes =
      DesiredSlices(inventory, Options(), &warnings)[0]["spec"]["devices"][0]["attributes"];
  EXPECT_FALSE(attributes.contains("dra.net/rdmaDevice"));
  EXPECT_EQ(attributes["resource.aws.com/devicegroup4_id"]["string"], std::string(64, 'a'));
  EXPECT_FALSE(attributes.contains("resource.aws.com/bad-name!"));
  EXPECT_FALSE(attributes.contains("resource.aws.com/devicegroup_this_name_is_far_too_long_id"));
  ASSERT_EQ(warnings.size(), 3u);
  for (const auto& warning : warnings) {
    SCOPED_TRACE(warning);
    EXPECT_NE(warning.find("pci-0000-10-1b-0"), std::string::npos);
  }
  EXPECT_NE(warnings[0].find("rdmaDevice"), std::string::npos);
}

TEST(DesiredSlicesTest, MalformedAddressLeavesDeviceOut) {
  discovery::Inventory inventory;
  inventory.devices.push_back(MakeDevice(0x10, 0x1b, 0xefa1, 0, "pci0000:10", 0));
  auto bad = MakeDevice(0x20, 0x1b, 0xefa1, 0, "pci0000:20", 1);
  bad.pci_address = "0000:20:1b.0/../x";
  inventory.devices.push_back(bad);
  std::vector<std::string> warnings;
  const auto slices = DesiredSlices(inventory, Options(), &warnings);
  EXPECT_EQ(slices[0]["spec"]["devices"].size(), 1u);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("0000:20:1b.0/../x"), std::string::npos);
}

TEST(DesiredSlicesTest, AttributeCapKeepsCompatibilityAttributes) {
  discovery::Inventory inventory = testing::Trn2LikeInventory();
  // Far more attributes than the API allows: 40 extra device-group-like entries.
  for (auto& device : inventory.devices) {
    for (int i = 0; i < 40; ++i) {
      device.device_groups["devicegroup" + std::to_string(100 + i) + "_id"] = "x";
    }
  }
  std::vector<std::string> warnings;
  const auto slices = DesiredSlices(inventory, Options(), &warnings);
  for (const auto& device : slices[0]["spec"]["devices"]) {
    SCOPED_TRACE(device["name"].get<std::string>());
    const auto& attributes = device["attributes"];
    EXPECT_EQ(attributes.size(), static_cast<size_t>(kMaxAttributesPerDevice));
    for (const auto& name :
         {"dra.net/pciAddress", "dra.net/pciVendor", "dra.net/pciDevice", "dra.net/pciSubsystem",
          "dra.net/numaNode", "dra.net/rdma", "dra.net/rdmaDevice",
          "resource.kubernetes.io/pcieRoot", "resource.aws.com/devicegroup1_id",
          "resource.aws.com/devicegroup16_id", "dra.net/uverbs"}) {
      EXPECT_TRUE(attributes.contains(name)) << name;
    }
  }
  EXPECT_FALSE(warnings.empty());
  EXPECT_NE(warnings[0].find("at most 32 attributes"), std::string::npos) << warnings[0];
}

// Sharing is opt-in: by default a device carries neither allowMultipleAllocations nor a
// capacity (byte for byte what DRANET publishes); with shares each device has both, and the
// capacity counts against the API's limit of 32 attributes and capacities.
TEST(DesiredSlicesTest, SharedDevicesCarryAShareCapacity) {
  const auto exclusive = DesiredSlices(testing::P4dInventory(), Options());
  for (const auto& device : exclusive[0]["spec"]["devices"]) {
    EXPECT_FALSE(device.contains("allowMultipleAllocations"));
    EXPECT_FALSE(device.contains("capacity"));
  }
  SliceOptions options = Options();
  options.shares_per_device = 4;
  const auto devices = DesiredSlices(testing::P4dInventory(), options)[0]["spec"]["devices"];
  ASSERT_EQ(devices.size(), 4u);
  const json want_capacity = json::parse(R"({"dra.net/shares": {"value": "4", "requestPolicy":
      {"default": "1", "validRange": {"min": "1", "max": "4", "step": "1"}}}})");
  for (const auto& device : devices) {
    SCOPED_TRACE(device["name"].get<std::string>());
    EXPECT_EQ(device["allowMultipleAllocations"], true);
    EXPECT_EQ(device["capacity"], want_capacity);
  }

  discovery::Inventory crowded = testing::Trn2LikeInventory();
  for (auto& device : crowded.devices) {
    for (int i = 0; i < 40; ++i) {
      device.device_groups["devicegroup" + std::to_string(100 + i) + "_id"] = "x";
    }
  }
  const auto crowded_slices = DesiredSlices(crowded, options);
  for (const auto& device : crowded_slices[0]["spec"]["devices"]) {
    EXPECT_EQ(device["attributes"].size() + device["capacity"].size(),
              static_cast<size_t>(kMaxAttributesPerDevice));
  }
}

// DRANET publishes netdev attributes only on the PCI function that owns the netdev; an EFA's
// ENA sibling is another function, so an EFA has none, whether or not it has a sibling.
TEST(DesiredSlicesTest, NoNetdevAttributesOnAnEfa) {
  discovery::Inventory inventory = testing::P4dInventory();
  ASSERT_TRUE(inventory.devices[0].netdev.has_value());
  const auto slices = DesiredSlices(inventory, Options());
  for (const auto& device : slices[0]["spec"]["devices"]) {
    SCOPED_TRACE(device["name"].get<std::string>());
    for (const char* netdev_attribute : {"ifName", "mac", "mtu", "state", "alias", "type"}) {
      EXPECT_FALSE(device["attributes"].contains(netdev_attribute));
      EXPECT_FALSE(device["attributes"].contains(std::string("dra.net/") + netdev_attribute));
    }
    EXPECT_EQ(device["attributes"]["dra.net/interfaceType"]["string"], "efa");
  }
}

// Every name in the driver's domain is written with the driver's own name, whatever it is.
TEST(DesiredSlicesTest, DriverAttributesAreQualifiedWithTheDriverName) {
  SliceOptions options = Options();
  options.driver_name = "efa.example.com";
  const auto slices = DesiredSlices(testing::P5Inventory(), options);
  for (const auto& [name, value] : slices[0]["spec"]["devices"][0]["attributes"].items()) {
    SCOPED_TRACE(name);
    EXPECT_NE(name.find('/'), std::string::npos);
    EXPECT_EQ(name.rfind("dra.net/", 0), std::string::npos);
  }
  EXPECT_TRUE(slices[0]["spec"]["devices"][0]["attributes"].contains("efa.example.com/pciAddress"));
}

TEST(DesiredSlicesTest, DriverNumaNodeOnlyOnNumaHosts) {
  struct Case {
    int numa_nodes;
    bool driver_numa;
  } cases[] = {{0, true}, {1, false}, {2, true}, {8, true}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.numa_nodes);
    discovery::Inventory inventory = testing::P5Inventory();
    inventory.numa_node_count = c.numa_nodes;
    const json attributes = DesiredSlices(inventory, Options())[0]["spec"]["devices"][0]["attributes"];
    EXPECT_EQ(attributes.contains("dra.net/numaNode"), c.driver_numa);
    // The standard attribute does not depend on it.
    EXPECT_EQ(attributes["resource.kubernetes.io/numaNode"], json({{"int", 0}}));
  }
}

TEST(DesiredSlicesTest, NumaNodeListForm) {
  discovery::Inventory inventory = testing::P5Inventory();
  inventory.numa_local_nodes = {{0, {0, 2}}, {1, {1, 3}}};
  SliceOptions options = Options();
  options.numa_node_list = true;
  const auto slices = DesiredSlices(inventory, options);
  std::map<int64_t, json> by_node;
  for (const auto& device : slices[0]["spec"]["devices"]) {
    by_node[device["attributes"]["dra.net/numaNode"]["int"].get<int64_t>()] =
        device["attributes"]["resource.kubernetes.io/numaNode"];
  }
  EXPECT_EQ(by_node[0], json::parse(R"({"ints": [0, 2]})"));
  EXPECT_EQ(by_node[1], json::parse(R"({"ints": [1, 3]})"));
  // A node the topology does not know: the device's own node alone.
  inventory.numa_local_nodes.clear();
  EXPECT_EQ(DesiredSlices(inventory, options)[0]["spec"]["devices"][0]["attributes"]
                                                   ["resource.kubernetes.io/numaNode"],
            json::parse(R"({"ints": [0]})"));
}

// The largest real topologies stay within every API limit with nothing dropped.
TEST(DesiredSlicesTest, LargestTopologiesFitApiLimits) {
  struct Case {
    std::string name;
    discovery::Inventory inventory;
  } cases[] = {{"p4d", testing::P4dInventory()},
               {"p5", testing::P5Inventory()},
               {"trn2-like", testing::Trn2LikeInventory()}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<std::string> warnings;
    const auto slices = DesiredSlices(c.inventory, Options(), &warnings);
    EXPECT_TRUE(warnings.empty());
    ASSERT_EQ(slices.size(), 1u);
    const auto& devices = slices[0]["spec"]["devices"];
    EXPECT_EQ(devices.size(), c.inventory.devices.size());
    for (const auto& device : devices) {
      EXPECT_TRUE(IsDnsLabel(device["name"].get<std::string>()));
      EXPECT_LE(device["attributes"].size(), static_cast<size_t>(kMaxAttributesPerDevice));
      for (const auto& [name, value] : device["attributes"].items()) {
        EXPECT_TRUE(IsQualifiedAttributeName(name)) << name;
        EXPECT_EQ(value.size(), 1u) << name;
        if (value.contains("string")) {
          EXPECT_LE(value["string"].get<std::string>().size(), kMaxStringAttributeBytes);
        }
      }
    }
  }
}

TEST(DesiredSlicesTest, SliceShape) {
  SliceOptions options = Options("ip-10-0-1-23.ec2.internal");
  const auto slices = DesiredSlices(testing::P4dInventory(), options);
  ASSERT_EQ(slices.size(), 1u);
  const json& slice = slices[0];
  EXPECT_EQ(slice["apiVersion"], "resource.k8s.io/v1");
  EXPECT_EQ(slice["kind"], "ResourceSlice");
  EXPECT_EQ(slice["metadata"]["generateName"], "00000-dra.net-ip-10-0-1-23.ec2.internal-");
  EXPECT_EQ(slice["metadata"]["ownerReferences"],
            json::parse(R"([{"apiVersion": "v1", "kind": "Node",
                             "name": "ip-10-0-1-23.ec2.internal", "uid": "uid-1",
                             "controller": true}])"));
  EXPECT_EQ(slice["spec"]["driver"], "dra.net");
  EXPECT_EQ(slice["spec"]["nodeName"], "ip-10-0-1-23.ec2.internal");
  EXPECT_EQ(slice["spec"]["pool"],
            json::parse(R"({"name": "ip-10-0-1-23.ec2.internal", "generation": 1,
                            "resourceSliceCount": 1})"));
  // Device order is by name, stable across scans.
  std::vector<std::string> names;
  for (const auto& device : slice["spec"]["devices"]) names.push_back(device["name"]);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));

  options.node_uid.clear();
  EXPECT_FALSE(
      DesiredSlices(testing::P4dInventory(), options)[0]["metadata"].contains("ownerReferences"));
}

TEST(DesiredSlicesTest, EmptyInventoryIsAnEmptyPool) {
  const auto slices = DesiredSlices(discovery::Inventory{}, Options());
  ASSERT_EQ(slices.size(), 1u);
  EXPECT_TRUE(slices[0]["spec"]["devices"].is_array());
  EXPECT_TRUE(slices[0]["spec"]["devices"].empty());
  EXPECT_EQ(slices[0]["spec"]["pool"]["resourceSliceCount"], 1);
}

TEST(DesiredSlicesTest, Splitting) {
  struct Case {
    int devices;
    int per_slice;
    int slices;
  } cases[] = {{300, 128, 3}, {128, 128, 1}, {129, 128, 2}, {32, 8, 4}, {300, 1000, 3}};
  for (const auto& c : cases) {
    SCOPED_TRACE(std::to_string(c.devices) + " devices, " + std::to_string(c.per_slice));
    discovery::Inventory inventory;
    for (int i = 0; i < c.devices; ++i) {
      inventory.devices.push_back(MakeDevice(i / 32, i % 32, 0xefa1, 0, "pci0000:00", i));
    }
    SliceOptions options = Options();
    options.max_devices_per_slice = c.per_slice;
    const auto slices = DesiredSlices(inventory, options);
    ASSERT_EQ(slices.size(), static_cast<size_t>(c.slices));
    std::set<std::string> names;
    std::set<std::string> generate_names;
    size_t total = 0;
    for (size_t i = 0; i < slices.size(); ++i) {
      const auto& spec = slices[i]["spec"];
      EXPECT_EQ(spec["pool"]["resourceSliceCount"], c.slices);
      EXPECT_LE(spec["devices"].size(), static_cast<size_t>(kMaxDevicesPerSlice));
      generate_names.insert(slices[i]["metadata"]["generateName"].get<std::string>());
      EXPECT_EQ(
          SliceIndexFromName(slices[i]["metadata"]["generateName"].get<std::string>() + "abcde"),
          static_cast<int>(i));
      for (const auto& device : spec["devices"]) names.insert(device["name"].get<std::string>());
      total += spec["devices"].size();
    }
    EXPECT_EQ(total, static_cast<size_t>(c.devices));
    EXPECT_EQ(names.size(), total) << "device names must be unique in the pool";
    EXPECT_EQ(generate_names.size(), slices.size());
  }
}

TEST(SliceIndexFromNameTest, Table) {
  struct Case {
    std::string name;
    std::optional<int> index;
  } cases[] = {
      {"00000-dra.net-node-1-abcde", 0},      {"0000a-dra.net-node-1-abcde", 10},
      {"node-1-dra.net-abcde", std::nullopt}, {"0000-dra.net-x", std::nullopt},
      {"0000G-dra.net-x", std::nullopt},      {"", std::nullopt},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(SliceIndexFromName(c.name), c.index);
  }
}

TEST(ApiLimitsTest, Names) {
  struct Case {
    std::string name;
    bool label, subdomain, attribute;
  } cases[] = {
      {"pci-0000-10-1b-0", true, true, false},
      {"pciAddress", false, false, true},
      {"resource.kubernetes.io/pcieRoot", false, false, true},
      {"dra.net", false, true, false},
      {"a/b/c", false, false, false},
      {"-bad", false, false, false},
      {std::string(64, 'a'), false, false, false},
      {std::string(33, 'a'), true, true, false},
      {std::string(32, 'a'), true, true, true},
      {"_x9", false, false, true},
      {"9x", true, true, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(IsDnsLabel(c.name), c.label);
    EXPECT_EQ(IsDnsSubdomain(c.name), c.subdomain);
    EXPECT_EQ(IsQualifiedAttributeName(c.name), c.attribute);
  }
  EXPECT_FALSE(IsQualifiedAttributeName(std::string(64, 'd') + "/x"));
  EXPECT_TRUE(IsPoolName("node-1"));
  EXPECT_TRUE(IsPoolName("a.b/c"));
  EXPECT_FALSE(IsPoolName("a//c"));
}

}  // namespace
}  // namespace efadra::slices

namespace efadra::slices {
namespace {

TEST(TaintTest, OnlyWithTheOptionAndOnlyOnUnhealthyDevices) {
  discovery::Inventory inventory = testing::P5Inventory();
  inventory.devices[0].port.state = "DOWN";
  inventory.devices[1].uverbs_index = -1;
  inventory.devices[2].port.state = "";  // unknown: no taint (not known to be broken)
  SliceOptions options;
  options.node_name = "node-1";
  auto plain = DesiredSlices(inventory, options);
  for (const auto& device : plain[0]["spec"]["devices"]) EXPECT_FALSE(device.contains("taints"));

  options.taint_unhealthy = true;
  auto tainted = DesiredSlices(inventory, options);
  std::map<std::string, std::string> reasons;
  for (const auto& slice : tainted) {
    for (const auto& device : slice["spec"]["devices"]) {
      if (device.contains("taints")) reasons[device["name"]] = device["taints"][0]["value"];
    }
  }
  EXPECT_EQ(reasons.size(), 2u);
  EXPECT_EQ(reasons[DeviceName(inventory.devices[0].pci_address)], "PortNotActive");
  EXPECT_EQ(reasons[DeviceName(inventory.devices[1].pci_address)], "NoUverbsDevice");
}

TEST(TaintTest, TheOptionCapsSlicesAtSixtyFourDevices) {
  discovery::Inventory inventory;
  for (int i = 0; i < 100; ++i) {
    inventory.devices.push_back(testing::MakeDevice(i + 1, 0, 0xefa2, 0, "pci0000:00", i));
  }
  SliceOptions options;
  options.node_name = "node-1";
  EXPECT_EQ(DesiredSlices(inventory, options).size(), 1u);
  options.taint_unhealthy = true;
  auto slices = DesiredSlices(inventory, options);
  ASSERT_EQ(slices.size(), 2u);
  EXPECT_EQ(slices[0]["spec"]["devices"].size(), 64u);
}

}  // namespace
}  // namespace efadra::slices
