// DeviceStatusWriter against the API double over a real socket: what a prepare leaves in
// status.devices, what an unprepare removes, and how API refusals are handled.
#include "efadra/claims/device_status_writer.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "claims_fixture.h"
#include "efadra/apidouble/fake_api_server.h"
#include "efadra/slices/resource_slices.h"

namespace efadra::claims {
namespace {

using nlohmann::json;
using testing::AllocatedClaim;

class DeviceStatusWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    inventory_ = testing::DiscoverBundled(dir_);
    ASSERT_TRUE(server_.Start().ok());
    client_ = testing::QuickRetryClient(server_.url());
    device_ = inventory_->devices.front();
  }

  std::unique_ptr<DeviceStatusWriter> NewWriter(DeviceStatusWriterOptions options = {}) {
    options.initial_backoff = std::chrono::milliseconds(5);
    options.max_backoff = std::chrono::milliseconds(20);
    return std::make_unique<DeviceStatusWriter>(
        options, *client_, [this] { return inventory_; },
        [this](std::string_view reason) {
          std::lock_guard<std::mutex> lock(mu_);
          failures_.emplace_back(reason);
        });
  }

  ClaimRef PutClaim(const std::string& name, const std::string& uid) {
    server_.PutResourceClaim(AllocatedClaim(
        "train", name, uid, {{"efa", slices::DeviceName(device_.pci_address)}}));
    return {"train", name, uid};
  }

  PreparedDevice Prepared() const {
    PreparedDevice d;
    d.request_names = {"efa"};
    d.pool_name = testing::kNode;
    d.device_name = slices::DeviceName(device_.pci_address);
    d.cdi_device_ids = {"dra.net/efa=x"};
    return d;
  }

  json Claim(const std::string& name) {
    auto claim = client_->Get("/apis/resource.k8s.io/v1/namespaces/train/resourceclaims/" + name);
    EXPECT_TRUE(claim.ok()) << claim.status().ToString();
    return claim.ok() ? *claim : json();
  }

  size_t Patches() const {
    auto requests = server_.Requests();
    return std::count_if(requests.begin(), requests.end(),
                         [](const auto& r) { return r.method == "PATCH"; });
  }

  std::vector<std::string> Failures() {
    std::lock_guard<std::mutex> lock(mu_);
    return failures_;
  }

  efadra::testing::TempDir dir_;
  std::shared_ptr<const discovery::Inventory> inventory_;
  apidouble::FakeApiServer server_;
  std::unique_ptr<kube::Client> client_;
  discovery::EfaDevice device_;
  std::mutex mu_;
  std::vector<std::string> failures_;
};

TEST_F(DeviceStatusWriterTest, PrepareWritesAReadyEntryWithTheDeviceDataUnderOurManager) {
  ClaimRef ref = PutClaim("a", "uid-a");
  auto writer = NewWriter();
  writer->Prepared(ref, {Prepared()});
  ASSERT_TRUE(writer->WaitIdle(std::chrono::seconds(5)));

  json claim = Claim("a");
  ASSERT_TRUE(claim["status"].contains("devices")) << claim.dump(2);
  ASSERT_EQ(claim["status"]["devices"].size(), 1u);
  const json& entry = claim["status"]["devices"][0];
  EXPECT_EQ(entry["driver"], "dra.net");
  EXPECT_EQ(entry["pool"], testing::kNode);
  EXPECT_EQ(entry["device"], slices::DeviceName(device_.pci_address));
  EXPECT_EQ(entry["conditions"][0]["type"], "Ready");
  EXPECT_EQ(entry["conditions"][0]["status"], "True");
  EXPECT_EQ(entry["data"]["rdmaDevice"], device_.rdma_device);
  EXPECT_EQ(entry["data"]["uverbsPath"], "/dev/infiniband/" + device_.UverbsName());
  EXPECT_EQ(entry["data"]["pcieRoot"], device_.pcie_root);
  EXPECT_EQ(entry["data"]["pciAddress"], device_.pci_address);
  // The generated tree has the port's GID as the kernel lays it out (a link-local fe80:: GID).
  ASSERT_EQ(device_.gid.rfind("fe80:0000:0000:0000:", 0), 0u) << device_.gid;
  EXPECT_EQ(entry["data"]["gid"], device_.gid);
  // The allocation the scheduler wrote is untouched.
  EXPECT_TRUE(claim["status"].contains("allocation"));
  bool ours = false;
  for (const auto& m : claim["metadata"]["managedFields"]) {
    ours |= m["manager"] == "efa-dra-driver" && m["operation"] == "Apply";
  }
  EXPECT_TRUE(ours) << claim["metadata"].dump(2);
  EXPECT_TRUE(Failures().empty());
}

// The writer's thread runs at a lower priority than the rest of the driver, so status writes
// never take CPU from the prepares they follow.
TEST_F(DeviceStatusWriterTest, TheWriterThreadYieldsTheCpu) {
  auto writer = NewWriter();
  std::optional<int> nice;
  ASSERT_TRUE(efadra::testing::WaitFor([&] {
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream comm(task.path() / "comm");
      std::string name;
      std::getline(comm, name);
      if (name != kStatusThreadName) continue;
      std::ifstream stat_file(task.path() / "stat");
      std::string stat((std::istreambuf_iterator<char>(stat_file)), {});
      // Fields after the ")" that ends comm: state is field 3, nice is field 19.
      std::istringstream fields(stat.substr(stat.rfind(')') + 2));
      std::string field;
      for (int i = 3; i <= 19 && fields >> field; ++i) {
        if (i == 19) nice = std::stoi(field);
      }
      return nice.has_value();
    }
    return false;
  }));
  EXPECT_EQ(*nice, kStatusThreadNice);
}

TEST_F(DeviceStatusWriterTest, UnprepareRemovesOurEntriesAndKeepsAnotherDriversEntry) {
  ClaimRef ref = PutClaim("b", "uid-b");
  json other = {{"apiVersion", "resource.k8s.io/v1"},
                {"kind", "ResourceClaim"},
                {"metadata", {{"name", "b"}, {"namespace", "train"}}},
                {"status",
                 {{"devices",
                   {{{"driver", "gpu.example.com"}, {"pool", "p"}, {"device", "gpu-0"}}}}}}};
  ASSERT_TRUE(client_
                  ->Apply("/apis/resource.k8s.io/v1/namespaces/train/resourceclaims/b/status",
                          other, "gpu-driver", true)
                  .ok());
  auto writer = NewWriter();
  writer->Prepared(ref, {Prepared()});
  ASSERT_TRUE(writer->WaitIdle(std::chrono::seconds(5)));
  EXPECT_EQ(Claim("b")["status"]["devices"].size(), 2u);

  writer->Unprepared(ref);
  ASSERT_TRUE(writer->WaitIdle(std::chrono::seconds(5)));
  json devices = Claim("b")["status"]["devices"];
  ASSERT_EQ(devices.size(), 1u) << devices.dump(2);
  EXPECT_EQ(devices[0]["driver"], "gpu.example.com");
}

TEST_F(DeviceStatusWriterTest, ForbiddenIsReportedOnceAndNotRetried) {
  ClaimRef ref = PutClaim("c", "uid-c");
  server_.FailNext(100, 403, 0, "PATCH");
  auto writer = NewWriter();
  writer->Prepared(ref, {Prepared()});
  ASSERT_TRUE(writer->WaitIdle(std::chrono::seconds(5)));
  EXPECT_EQ(Patches(), 1u);
  EXPECT_EQ(Failures(), std::vector<std::string>{"forbidden"});
}

TEST_F(DeviceStatusWriterTest, ConflictIsRetriedWithBackoffUntilWritten) {
  ClaimRef ref = PutClaim("d", "uid-d");
  server_.FailNext(3, 409, 0, "PATCH");
  auto writer = NewWriter();
  writer->Prepared(ref, {Prepared()});
  ASSERT_TRUE(writer->WaitIdle(std::chrono::seconds(5)));
  EXPECT_EQ(Patches(), 4u);
  EXPECT_EQ(Claim("d")["status"]["devices"].size(), 1u);
  EXPECT_TRUE(Failures().empty());
}

TEST_F(DeviceStatusWriterTest, AttemptsAreBounded) {
  ClaimRef ref = PutClaim("e", "uid-e");
  server_.FailNext(100, 409, 0, "PATCH");
  DeviceStatusWriterOptions options;
  options.max_attempts = 3;
  auto writer = NewWriter(options);
  writer->Prepared(ref, {Prepared()});
  ASSERT_TRUE(writer->WaitIdle(std::chrono::seconds(5)));
  EXPECT_EQ(Patches(), 3u);
  EXPECT_EQ(Failures(), std::vector<std::string>{"gave_up"});
}

TEST_F(DeviceStatusWriterTest, AClaimThatIsGoneEndsTheJobQuietly) {
  auto writer = NewWriter();
  writer->Prepared({"train", "never-created", "uid-x"}, {Prepared()});
  ASSERT_TRUE(writer->WaitIdle(std::chrono::seconds(5)));
  EXPECT_EQ(Patches(), 1u);
  EXPECT_TRUE(Failures().empty());
}

TEST_F(DeviceStatusWriterTest, AnUnprepareBeforeThePrepareWriteOnlyClears) {
  ClaimRef slow = PutClaim("f", "uid-f");
  ClaimRef ref = PutClaim("g", "uid-g");
  server_.SetLatency(std::chrono::milliseconds(300));
  auto writer = NewWriter();
  writer->Prepared(slow, {Prepared()});
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the worker is on "f" now
  writer->Prepared(ref, {Prepared()});
  writer->Unprepared(ref);
  ASSERT_TRUE(writer->WaitIdle(std::chrono::seconds(5)));
  server_.SetLatency(std::chrono::milliseconds(0));
  auto requests = server_.Requests();
  size_t g_patches = std::count_if(requests.begin(), requests.end(), [](const auto& r) {
    return r.method == "PATCH" && r.path.find("/resourceclaims/g/") != std::string::npos;
  });
  EXPECT_EQ(g_patches, 1u);
  EXPECT_FALSE(Claim("g")["status"].contains("devices"));
}

TEST_F(DeviceStatusWriterTest, AFullQueueDropsNewClaimsAndSaysSo) {
  ClaimRef slow = PutClaim("h", "uid-h");
  ClaimRef ref = PutClaim("i", "uid-i");
  server_.SetLatency(std::chrono::milliseconds(300));
  DeviceStatusWriterOptions options;
  options.max_pending = 1;
  auto writer = NewWriter(options);
  writer->Prepared(slow, {Prepared()});
  writer->Prepared(ref, {Prepared()});
  ASSERT_TRUE(writer->WaitIdle(std::chrono::seconds(5)));
  EXPECT_EQ(Failures(), std::vector<std::string>{"queue_full"});
}

TEST(BuildDeviceStatusEntryTest, AMissingDeviceIsNotReady) {
  PreparedDevice d;
  d.pool_name = "n";
  d.device_name = "pci-0000-10-1b-0";
  d.share_id = "share-1";
  json entry = BuildDeviceStatusEntry("dra.net", d, nullptr, "2026-01-01T00:00:00Z");
  EXPECT_EQ(entry["conditions"][0]["status"], "False");
  EXPECT_EQ(entry["shareID"], "share-1");
  EXPECT_TRUE(entry["data"].empty());
}

}  // namespace
}  // namespace efadra::claims
