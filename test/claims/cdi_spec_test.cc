#include "efadra/claims/cdi_spec.h"

#include <gtest/gtest.h>

#include "claims_fixture.h"
#include "efadra/slices/resource_slices.h"

namespace efadra::claims {
namespace {

using testing::DiscoverBundled;

TEST(CdiSpecTest, NamesFollowTheContract) {
  EXPECT_EQ(CdiKind("dra.net"), "dra.net/efa");
  EXPECT_EQ(CdiDeviceName("6f1c2d3e-aaaa", "pci-0000-10-1b-0"), "6f1c2d3e-aaaa-pci-0000-10-1b-0");
  EXPECT_EQ(CdiDeviceId("dra.net", "6f1c", "pci-0000-10-1b-0"), "dra.net/efa=6f1c-pci-0000-10-1b-0");
  EXPECT_EQ(CdiSpecFileName("dra.net", "6f1c"), "dra.net-efa_6f1c.json");
}

TEST(CdiSpecTest, InjectsTheAllocatedUverbsNodesWithHostNumbers) {
  efadra::testing::TempDir dir;
  auto inventory = DiscoverBundled(dir);
  ASSERT_EQ(inventory->devices.size(), 32u);
  // The four EFAs of pcieRoot pci0000:44, as the scheduler would pair them with its GPU.
  std::vector<CdiDeviceInput> inputs;
  for (const auto& d : inventory->devices) {
    if (d.pcie_root == "pci0000:44") inputs.push_back({slices::DeviceName(d.pci_address), &d, std::nullopt});
  }
  ASSERT_EQ(inputs.size(), 4u);
  auto spec = BuildCdiSpec("dra.net", "0e9d8c7b-1111", inputs, "/host/dev", HostCharDevice{10, 58});
  EXPECT_EQ(spec["cdiVersion"], "0.5.0");
  EXPECT_EQ(spec["kind"], "dra.net/efa");
  ASSERT_EQ(spec["devices"].size(), 4u);
  for (size_t i = 0; i < inputs.size(); ++i) {
    SCOPED_TRACE(inputs[i].device_name);
    const auto& device = spec["devices"][i];
    EXPECT_EQ(device["name"], "0e9d8c7b-1111-" + inputs[i].device_name);
    const auto& nodes = device["containerEdits"]["deviceNodes"];
    ASSERT_EQ(nodes.size(), 1u);
    const std::string uverbs = inputs[i].device->UverbsName();
    EXPECT_EQ(nodes[0]["path"], "/dev/infiniband/" + uverbs);
    EXPECT_EQ(nodes[0]["hostPath"], "/host/dev/infiniband/" + uverbs);
    EXPECT_EQ(nodes[0]["type"], "c");
    EXPECT_EQ(nodes[0]["major"], inputs[i].device->uverbs_dev.major);
    EXPECT_EQ(nodes[0]["minor"], inputs[i].device->uverbs_dev.minor);
  }
  EXPECT_EQ(spec["devices"][0]["containerEdits"]["deviceNodes"][0]["minor"], 192);
  EXPECT_EQ(spec["containerEdits"]["env"][0],
            "FI_EFA_IFACE=rdmap79s0,rdmap80s0,rdmap81s0,rdmap82s0");
  EXPECT_EQ(spec["containerEdits"]["deviceNodes"][0]["path"], "/dev/infiniband/rdma_cm");
  EXPECT_EQ(spec["containerEdits"]["deviceNodes"][0]["major"], 10);
  EXPECT_EQ(spec["containerEdits"]["deviceNodes"][0]["minor"], 58);
}

TEST(CdiSpecTest, LeavesRdmaCmOutWhenTheHostHasNone) {
  discovery::EfaDevice device;
  device.rdma_device = "efa_0";
  device.uverbs_index = 40;  // beyond the fixed minors: dynamic major
  device.uverbs_dev = {511, 8};
  auto spec = BuildCdiSpec("dra.net", "u1", {{"pci-0000-00-1f-0", &device, std::nullopt}}, "/dev", std::nullopt);
  EXPECT_FALSE(spec["containerEdits"].contains("deviceNodes"));
  EXPECT_EQ(spec["devices"][0]["containerEdits"]["deviceNodes"][0]["major"], 511);
  EXPECT_EQ(spec["devices"][0]["containerEdits"]["deviceNodes"][0]["path"],
            "/dev/infiniband/uverbs40");
}

// GDRCopy's node joins rdma_cm in the spec-level edits, with the host's numbers (its major is
// dynamic) and its hostPath below the dev root; without it the edits hold rdma_cm alone.
TEST(CdiSpecTest, InjectsGdrdrvOnlyWhenGiven) {
  discovery::EfaDevice device;
  device.rdma_device = "rdmap16s27";
  device.uverbs_index = 0;
  device.uverbs_dev = {231, 192};
  const std::vector<CdiDeviceInput> inputs = {{"pci-0000-10-1b-0", &device, std::nullopt}};

  auto with = BuildCdiSpec("dra.net", "u3", inputs, "/host/dev", HostCharDevice{10, 58},
                           HostCharDevice{508, 0});
  const auto& nodes = with["containerEdits"]["deviceNodes"];
  ASSERT_EQ(nodes.size(), 2u) << with.dump();
  EXPECT_EQ(nodes[0]["path"], "/dev/infiniband/rdma_cm");
  EXPECT_EQ(nodes[1]["path"], "/dev/gdrdrv");
  EXPECT_EQ(nodes[1]["hostPath"], "/host/dev/gdrdrv");
  EXPECT_EQ(nodes[1]["type"], "c");
  EXPECT_EQ(nodes[1]["major"], 508);
  EXPECT_EQ(nodes[1]["minor"], 0);
  EXPECT_EQ(nodes[1]["permissions"], "rw");
  // Spec-level only: no device of the claim carries it.
  EXPECT_EQ(with["devices"][0]["containerEdits"]["deviceNodes"].size(), 1u);

  // Without rdma_cm the node still comes, alone.
  auto only_gdrdrv = BuildCdiSpec("dra.net", "u3", inputs, "/dev", std::nullopt,
                                  HostCharDevice{237, 0});
  ASSERT_EQ(only_gdrdrv["containerEdits"]["deviceNodes"].size(), 1u);
  EXPECT_EQ(only_gdrdrv["containerEdits"]["deviceNodes"][0]["hostPath"], "/dev/gdrdrv");
  EXPECT_EQ(only_gdrdrv["containerEdits"]["deviceNodes"][0]["major"], 237);

  for (const auto& spec : {BuildCdiSpec("dra.net", "u3", inputs, "/dev", HostCharDevice{10, 58}),
                           BuildCdiSpec("dra.net", "u3", inputs, "/dev", HostCharDevice{10, 58},
                                        std::nullopt)}) {
    ASSERT_EQ(spec["containerEdits"]["deviceNodes"].size(), 1u) << spec.dump();
    EXPECT_EQ(spec["containerEdits"]["deviceNodes"][0]["path"], "/dev/infiniband/rdma_cm");
  }
  EXPECT_FALSE(BuildCdiSpec("dra.net", "u3", inputs, "/dev", std::nullopt)["containerEdits"]
                   .contains("deviceNodes"));
}

TEST(CdiSpecTest, SpecsValidateAgainstTheCdiSchema) {
  efadra::testing::TempDir dir;
  auto inventory = DiscoverBundled(dir);
  std::vector<std::string> files;
  const std::vector<size_t> sizes = {1, 4, 32};
  for (size_t n : sizes) {
    std::vector<CdiDeviceInput> inputs;
    for (size_t i = 0; i < n; ++i) {
      const auto& d = inventory->devices[i];
      inputs.push_back({slices::DeviceName(d.pci_address), &d, std::nullopt});
    }
    for (bool with_rdma_cm : {false, true}) {
      // Every spec-level node GDRCopy adds too, on the bigger claims.
      const bool with_gdrdrv = with_rdma_cm && n > 1;
      auto spec = BuildCdiSpec("dra.net", "0123abcd-" + std::to_string(n), inputs, dir.Sub("dev"),
                               with_rdma_cm ? std::optional<HostCharDevice>({10, 58}) : std::nullopt,
                               with_gdrdrv ? std::optional<HostCharDevice>({508, 0}) : std::nullopt);
      files.push_back(dir.Sub("spec-" + std::to_string(n) + (with_rdma_cm ? "-cm" : "") + ".json"));
      efadra::testing::WriteFileOrDie(files.back(), spec.dump(2));
    }
  }
  std::string problems = testing::ValidateCdiSpecs(files);
  if (problems.rfind("SKIP:", 0) == 0) GTEST_SKIP() << problems;
  EXPECT_EQ(problems, "");
}

TEST(CdiSpecTest, TheValidatorRejectsABrokenSpec) {
  // Proves the schema check can fail: a device without a name and a spec without a kind are
  // invalid CDI (the schema requires both).
  efadra::testing::TempDir dir;
  efadra::testing::WriteFileOrDie(dir.Sub("bad.json"),
                                  R"({"cdiVersion":"0.5.0","devices":[{"containerEdits":{}}]})");
  std::string problems = testing::ValidateCdiSpecs({dir.Sub("bad.json")});
  if (problems.rfind("SKIP:", 0) == 0) GTEST_SKIP() << problems;
  EXPECT_NE(problems, "");
}

TEST(CdiSpec, AClaimWithNoDevicesSetsNoEmptyFiEfaIface) {
  auto spec = BuildCdiSpec("dra.net", "u2", {}, "/dev", std::nullopt);
  EXPECT_FALSE(spec["containerEdits"].contains("env")) << spec.dump();
}

// The peers' RDMA devices follow the claim's own, each name once (two shares of one EFA, or a
// peer that holds a share of the same EFA, name it once); devices and nodes stay the claim's.
TEST(CdiSpec, FiEfaIfaceListsOwnDevicesThenThePeersOnce) {
  discovery::EfaDevice a, b;
  a.rdma_device = "rdmap79s0";
  a.uverbs_dev = {231, 192};
  b.rdma_device = "rdmap80s0";
  b.uverbs_dev = {231, 193};
  const std::vector<CdiDeviceInput> own = {{"pci-0000-4f-00-0", &a, "share-1"},
                                           {"pci-0000-4f-00-0", &a, "share-2"},
                                           {"pci-0000-50-00-0", &b, std::nullopt}};
  auto alone = BuildCdiSpec("dra.net", "u3", own, "/dev", std::nullopt);
  EXPECT_EQ(alone["containerEdits"]["env"],
            nlohmann::json::array({"FI_EFA_IFACE=rdmap79s0,rdmap80s0"}));
  auto spec = BuildCdiSpec("dra.net", "u3", own, "/dev", std::nullopt, std::nullopt,
                           {"rdmap99s0", "rdmap80s0", "rdmap81s0", "rdmap99s0"});
  EXPECT_EQ(spec["containerEdits"]["env"],
            nlohmann::json::array({"FI_EFA_IFACE=rdmap79s0,rdmap80s0,rdmap99s0,rdmap81s0"}));
  EXPECT_EQ(spec["devices"], alone["devices"]) << "peers add no device and no node";
}

}  // namespace
}  // namespace efadra::claims
