#include "efadra/claims/checkpoint.h"

#include <gtest/gtest.h>

namespace efadra::claims {
namespace {

ClaimCheckpoint Sample() {
  ClaimCheckpoint c;
  c.claim = {"train", "worker-0-efa", "6f1c2d3e-aaaa-bbbb-cccc-0123456789ab"};
  c.boot_id = "b0a7c1e2-0000-4000-8000-000000000001";
  PreparedDevice d;
  d.request_names = {"efa"};
  d.pool_name = "node-1";
  d.device_name = "pci-0000-10-1b-0";
  d.cdi_device_ids = {"dra.net/efa=6f1c2d3e-aaaa-bbbb-cccc-0123456789ab-pci-0000-10-1b-0"};
  d.share_id = "share-1";
  c.devices.push_back(d);
  c.cdi_spec = {{"cdiVersion", "0.5.0"}, {"kind", "dra.net/efa"}};
  return c;
}

TEST(CheckpointTest, RoundTrips) {
  const ClaimCheckpoint in = Sample();
  auto out = ParseCheckpoint(SerializeCheckpoint(in), "x.json");
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->claim.uid, in.claim.uid);
  EXPECT_EQ(out->claim.namespace_name, "train");
  EXPECT_EQ(out->boot_id, in.boot_id);
  ASSERT_EQ(out->devices.size(), 1u);
  EXPECT_EQ(out->devices[0].cdi_device_ids, in.devices[0].cdi_device_ids);
  EXPECT_EQ(out->devices[0].share_id, in.devices[0].share_id);
  EXPECT_EQ(out->cdi_spec, in.cdi_spec);
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
  std::string future = good;
  future.replace(future.find("\"schemaVersion\": 1"), 18, "\"schemaVersion\": 9");
  const std::vector<Case> cases = {
      {"a changed value", flipped, StatusCode::kDataLoss},
      {"truncated", good.substr(0, good.size() / 2), StatusCode::kDataLoss},
      {"empty", "", StatusCode::kDataLoss},
      {"not an object", "[1,2]", StatusCode::kDataLoss},
      {"future schema", future, StatusCode::kUnimplemented},
      {"no checksum", R"({"kind":"EfaClaimCheckpoint","schemaVersion":1})", StatusCode::kDataLoss},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto parsed = ParseCheckpoint(c.content, "/state/checkpoints/x.json");
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), c.code);
    EXPECT_NE(parsed.status().message().find("/state/checkpoints/x.json"), std::string::npos);
  }
}

}  // namespace
}  // namespace efadra::claims
