#include "efadra/claims/checkpoint.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace efadra::claims {
namespace {

ClaimCheckpoint Sample() {
  ClaimCheckpoint c;
  c.claim = {"train", "worker-0-efa", "6f1c2d3e-aaaa-bbbb-cccc-0123456789ab"};
  c.boot_id = "b0a7c1e2-0000-4000-8000-000000000001";
  CheckpointDevice d;
  d.request_names = {"efa"};
  d.pool_name = "node-1";
  d.device_name = "pci-0000-10-1b-0";
  d.pci_address = "0000:10:1b.0";
  d.share_id = "share-1";
  c.devices.push_back(d);
  CheckpointDevice admin = d;
  admin.request_names = {"monitor"};
  admin.share_id.reset();
  admin.admin_access = true;
  c.devices.push_back(admin);
  return c;
}

TEST(CheckpointTest, RoundTrips) {
  const ClaimCheckpoint in = Sample();
  auto out = ParseCheckpoint(SerializeCheckpoint(in), "x.json");
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->schema_version, kCheckpointSchemaVersion);
  EXPECT_EQ(out->claim.uid, in.claim.uid);
  EXPECT_EQ(out->claim.namespace_name, "train");
  EXPECT_EQ(out->boot_id, in.boot_id);
  ASSERT_EQ(out->devices.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(out->devices[i].request_names, in.devices[i].request_names);
    EXPECT_EQ(out->devices[i].device_name, in.devices[i].device_name);
    EXPECT_EQ(out->devices[i].pci_address, in.devices[i].pci_address);
    EXPECT_EQ(out->devices[i].share_id, in.devices[i].share_id);
    EXPECT_EQ(out->devices[i].admin_access, in.devices[i].admin_access);
  }
}

// Identities only: nothing the kernel numbers, no spec, no CDI ids (they are derived).
TEST(CheckpointTest, HoldsNoDeviceNumbersAndNoSpec) {
  auto doc = nlohmann::json::parse(SerializeCheckpoint(Sample()));
  EXPECT_FALSE(doc.contains("cdiSpec"));
  for (const auto& device : doc["devices"]) {
    EXPECT_FALSE(device.contains("cdiDeviceIds"));
    EXPECT_EQ(device.size(), device.contains("shareId") ? 6u : 5u) << device.dump();
  }
}

// A file a schema-1 driver wrote (with its spec and CDI ids) still parses to its identities.
TEST(CheckpointTest, ReadsSchemaOne) {
  const std::string path =
      efadra::testing::TestDataDir() + "/checkpoints/schema1-pci-0000-4f-00-0.json";
  const std::string content = efadra::testing::ReadFileOrEmpty(path);
  auto parsed = ParseCheckpoint(content, path);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->schema_version, 1);
  EXPECT_EQ(parsed->claim.uid, "7e57c1a1-0000-4000-8000-000000000001");
  ASSERT_EQ(parsed->devices.size(), 1u);
  EXPECT_EQ(parsed->devices[0].device_name, "pci-0000-4f-00-0");
  EXPECT_EQ(parsed->devices[0].pci_address, "");
  EXPECT_FALSE(parsed->devices[0].admin_access);
  // Its checksum still guards it.
  std::string flipped = content;
  flipped.replace(flipped.find("uverbs31"), 8, "uverbs30");
  auto damaged = ParseCheckpoint(flipped, path);
  EXPECT_EQ(damaged.status().code(), StatusCode::kDataLoss);
}

// The claims prepared in the same call are recorded, in order, and guarded by the checksum.
TEST(CheckpointTest, RoundTripsThePeersOfTheCall) {
  ClaimCheckpoint in = Sample();
  in.peer_claim_uids = {"uid-peer-b", "uid-peer-a"};
  const std::string content = SerializeCheckpoint(in);
  auto out = ParseCheckpoint(content, "x.json");
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->peer_claim_uids, in.peer_claim_uids);
  std::string swapped = content;
  swapped.replace(swapped.find("uid-peer-b"), 10, "uid-peer-c");
  EXPECT_EQ(ParseCheckpoint(swapped, "x.json").status().code(), StatusCode::kDataLoss);
  // Without peers the field is not written at all: such a file is what older drivers wrote.
  EXPECT_EQ(SerializeCheckpoint(Sample()).find("peerClaimUids"), std::string::npos);
}

// A schema 2 file written before peers were recorded (by that version of SerializeCheckpoint):
// it still parses, with no peers, and its checksum still guards it.
TEST(CheckpointTest, ReadsSchemaTwoFromBeforePeers) {
  const std::string path = efadra::testing::TestDataDir() +
                           "/checkpoints/schema2-before-peers-pci-0000-4f-00-0.json";
  const std::string content = efadra::testing::ReadFileOrEmpty(path);
  ASSERT_FALSE(content.empty()) << path;
  auto parsed = ParseCheckpoint(content, path);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->schema_version, 2);
  EXPECT_EQ(parsed->claim.uid, "5c4b3a29-0000-4000-8000-000000000002");
  ASSERT_EQ(parsed->devices.size(), 1u);
  EXPECT_EQ(parsed->devices[0].pci_address, "0000:4f:00.0");
  EXPECT_TRUE(parsed->peer_claim_uids.empty());
  EXPECT_EQ(SerializeCheckpoint(*parsed), content) << "rewritten byte for byte";
  std::string flipped = content;
  flipped.replace(flipped.find("worker-0-efa"), 12, "worker-1-efa");
  EXPECT_EQ(ParseCheckpoint(flipped, path).status().code(), StatusCode::kDataLoss);
}

TEST(CheckpointTest, RejectsDamage) {
  const std::string good = SerializeCheckpoint(Sample());
  struct Case {
    std::string name;
    std::string content;
    StatusCode code;
  };
  std::string flipped = good;
  flipped.replace(flipped.find("worker-0-efa"), 12, "worker-1-efa");
  std::string admin_flipped = good;
  admin_flipped.replace(admin_flipped.find("\"adminAccess\": true"), 19, "\"adminAccess\": false");
  std::string future = good;
  future.replace(future.find("\"schemaVersion\": 2"), 18, "\"schemaVersion\": 9");
  std::string zero = good;
  zero.replace(zero.find("\"schemaVersion\": 2"), 18, "\"schemaVersion\": 0");
  std::string no_address = good;
  no_address.replace(no_address.find("\"pciAddress\": \"0000:10:1b.0\""), 28, "\"pciAddress\": \"\"");
  std::string typed = good;
  typed.replace(typed.find("\"shareId\": \"share-1\""), 20, "\"shareId\": 7");
  ClaimCheckpoint with_peers = Sample();
  with_peers.peer_claim_uids = {"uid-peer"};
  const std::string peers_good = SerializeCheckpoint(with_peers);
  std::string peers_typed = peers_good;
  peers_typed.replace(peers_typed.find("\"uid-peer\""), 10, "7");
  std::string peers_empty = peers_good;
  peers_empty.replace(peers_empty.find("\"uid-peer\""), 10, "\"\"");
  const std::vector<Case> cases = {
      {"a peer that is no string", peers_typed, StatusCode::kDataLoss},
      {"an empty peer UID", peers_empty, StatusCode::kDataLoss},
      {"a changed value", flipped, StatusCode::kDataLoss},
      {"a changed admin flag", admin_flipped, StatusCode::kDataLoss},
      {"truncated", good.substr(0, good.size() / 2), StatusCode::kDataLoss},
      {"empty", "", StatusCode::kDataLoss},
      {"not an object", "[1,2]", StatusCode::kDataLoss},
      {"future schema", future, StatusCode::kUnimplemented},
      {"schema 0", zero, StatusCode::kDataLoss},
      {"no PCI address", no_address, StatusCode::kDataLoss},
      {"a share id that is no string", typed, StatusCode::kDataLoss},
      {"no checksum", R"({"kind":"EfaClaimCheckpoint","schemaVersion":2})", StatusCode::kDataLoss},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto parsed = ParseCheckpoint(c.content, "/state/checkpoints/x.json");
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), c.code) << parsed.status().ToString();
    EXPECT_NE(parsed.status().message().find("/state/checkpoints/x.json"), std::string::npos);
  }
}

}  // namespace
}  // namespace efadra::claims
