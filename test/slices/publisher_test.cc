// The publisher against the FakeApiServer (a real HTTP server on 127.0.0.1:0) through the real
// kube::Client, as `efa-dra-driver run` wires it.
#include "efadra/slices/publisher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "efadra/apidouble/fake_api_server.h"
#include "efadra/kube/client.h"
#include "efadra/slices/resource_slices.h"
#include "efadra/slices/kube_slice_api.h"
#include "slices/inventories.h"
#include "support/test_support.h"

namespace efadra::slices {
namespace {

using efadra::testing::WaitFor;
using nlohmann::json;
using std::chrono::milliseconds;

constexpr char kNode[] = "node-1";
constexpr char kNodeUid[] = "8a4c5e2f-0000-4000-8000-000000000001";

// A node whose inventory the test changes at will. The scanner shares the state: publishers
// live until TearDown, after the test body's FakeNode is gone, and keep rescanning until then
// (TSAN caught a scan of a destroyed FakeNode).
class FakeNode {
 public:
  explicit FakeNode(discovery::Inventory inventory)
      : state_(std::make_shared<State>(std::move(inventory))) {}
  void Set(discovery::Inventory inventory) {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->inventory = std::move(inventory);
  }
  InventoryScanner Scanner() {
    return [state = state_]() -> Result<discovery::Inventory> {
      std::lock_guard<std::mutex> lock(state->mutex);
      return state->inventory;
    };
  }

 private:
  struct State {
    explicit State(discovery::Inventory i) : inventory(std::move(i)) {}
    std::mutex mutex;
    discovery::Inventory inventory;
  };
  std::shared_ptr<State> state_;
};

class PublisherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start().ok());
    server_.PutNode(kNode, kNodeUid);
    kube::ClientConfig config;
    config.server = server_.url();
    config.request_timeout = std::chrono::seconds(5);
    kube::RetryPolicy retry;
    retry.max_attempts = 2;
    retry.initial_backoff = milliseconds(5);
    retry.max_backoff = milliseconds(20);
    auto client = kube::Client::Create(config, retry);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(client).value();
    api_ = std::make_unique<slices::KubeSliceApi>(*client_);
  }

  void TearDown() override {
    publishers_.clear();
    // Closing the client's pooled connections first spares Stop() the keep-alive wait.
    api_.reset();
    client_.reset();
    server_.Stop();
  }

  PublisherOptions Options() {
    PublisherOptions options;
    options.node_name = kNode;
    options.resync = milliseconds(50);
    options.debounce = milliseconds(10);
    options.initial_backoff = milliseconds(10);
    options.max_backoff = milliseconds(200);
    options.write_refill = milliseconds(0);  // tests of their own in publisher_logic_test
    options.min_rewatch_interval = milliseconds(5);
    return options;
  }

  Publisher& StartPublisher(FakeNode& node, PublisherOptions options) {
    publishers_.push_back(std::make_unique<Publisher>(*api_, node.Scanner(), options));
    EXPECT_TRUE(publishers_.back()->Start().ok());
    return *publishers_.back();
  }
  Publisher& StartPublisher(FakeNode& node) { return StartPublisher(node, Options()); }

  // Devices across all stored slices, by name.
  std::map<std::string, json> StoredDevices() {
    std::map<std::string, json> devices;
    for (const auto& slice : server_.ResourceSlices()) {
      for (const auto& device : slice["spec"].value("devices", json::array())) {
        devices[device["name"]] = device;
      }
    }
    return devices;
  }

  // True when the stored slices are exactly the desired ones for `inventory` (any
  // generation, all slices of one generation, count consistent).
  bool Converged(const discovery::Inventory& inventory, int max_per_slice = 128) {
    SliceOptions options;
    options.node_name = kNode;
    options.node_uid = kNodeUid;
    options.max_devices_per_slice = max_per_slice;
    const auto desired = DesiredSlices(inventory, options);
    const auto stored = server_.ResourceSlices();
    if (stored.size() != desired.size()) return false;
    std::map<std::string, json> want;
    for (const auto& slice : desired) {
      for (const auto& device : slice["spec"]["devices"]) want[device["name"]] = device;
    }
    std::set<int64_t> generations;
    for (const auto& slice : stored) {
      generations.insert(slice["spec"]["pool"]["generation"].get<int64_t>());
      if (slice["spec"]["pool"]["resourceSliceCount"] != static_cast<int64_t>(desired.size())) {
        return false;
      }
    }
    return generations.size() == 1 && StoredDevices() == want;
  }

  // DRANET's slice of this node's pool (p4d devices), written with DRANET's user agent, which
  // the API server takes as the field manager.
  void PutDranetSlice(int64_t generation) {
    kube::ClientConfig config;
    config.server = server_.url();
    config.user_agent = "dranet/v1.2.0";
    auto dranet = kube::Client::Create(config, kube::RetryPolicy{});
    ASSERT_TRUE(dranet.ok());
    SliceOptions slice_options;
    slice_options.node_name = kNode;
    json theirs = DesiredSlices(testing::P4dInventory(), slice_options)[0];
    theirs["metadata"] = {{"name", std::string(kNode) + "-dra.net-x7k2p"}};
    theirs["spec"]["pool"]["generation"] = generation;
    ASSERT_TRUE((*dranet)->Create("/apis/resource.k8s.io/v1/resourceslices", theirs).ok());
  }

  apidouble::FakeApiServer server_;
  std::unique_ptr<kube::Client> client_;
  std::unique_ptr<slices::KubeSliceApi> api_;
  std::vector<std::unique_ptr<Publisher>> publishers_;
};

TEST_F(PublisherTest, FirstPublishMatchesDesiredSlices) {
  FakeNode node(testing::P5Inventory());
  Publisher& publisher = StartPublisher(node);
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }));
  const auto stored = server_.ResourceSlices();
  ASSERT_EQ(stored.size(), 1u);
  SliceOptions options;
  options.node_name = kNode;
  options.node_uid = kNodeUid;
  const json desired = DesiredSlices(testing::P5Inventory(), options)[0];
  EXPECT_EQ(stored[0]["spec"]["devices"], desired["spec"]["devices"]);
  EXPECT_EQ(stored[0]["spec"]["pool"], desired["spec"]["pool"]);
  EXPECT_EQ(stored[0]["spec"]["driver"], "dra.net");
  EXPECT_EQ(stored[0]["spec"]["nodeName"], kNode);
  EXPECT_EQ(stored[0]["metadata"]["ownerReferences"][0]["uid"], kNodeUid);
  EXPECT_EQ(SliceIndexFromName(stored[0]["metadata"]["name"].get<std::string>()), 0);
  const PublisherState state = publisher.State();
  EXPECT_EQ(state.slices_published, 1);
  EXPECT_EQ(state.devices_published, 32);
  EXPECT_EQ(state.last_error, "");
}

TEST_F(PublisherTest, EmptyNodePublishesEmptyPool) {
  FakeNode node(discovery::Inventory{});
  Publisher& publisher = StartPublisher(node);
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }));
  const auto stored = server_.ResourceSlices();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_TRUE(stored[0]["spec"].value("devices", json::array()).empty());
}

TEST_F(PublisherTest, NoWritesOverManyResyncs) {
  FakeNode node(testing::P5Inventory());
  Publisher& publisher = StartPublisher(node);
  // Up: the first publish done and the watch established. Its list follows the first sync, and
  // the double records a request before it answers it, so the list is counted before the clear.
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone() && publisher.State().watches > 0; }));
  server_.ClearRequests();
  const uint64_t scans = publisher.State().scans;
  ASSERT_TRUE(WaitFor([&] { return publisher.State().scans >= scans + 40; }));
  for (int i = 0; i < 10; ++i) publisher.RescanSoon();
  ASSERT_TRUE(WaitFor([&] { return publisher.State().scans >= scans + 45; }));
  EXPECT_EQ(server_.WriteCount(), 0u);
  // Not even reads: the watch keeps the view current.
  size_t non_watch = 0;
  for (const auto& request : server_.Requests()) non_watch += request.watch ? 0 : 1;
  EXPECT_EQ(non_watch, 0u);
}

TEST_F(PublisherTest, UnhealthyDevicesAreTaintedAndTaintsCauseNoChurn) {
  discovery::Inventory inventory = testing::P5Inventory();
  inventory.devices[3].port.state = "DOWN";
  inventory.devices[3].port.phys_state = "Disabled";
  const std::string sick = DeviceName(inventory.devices[3].pci_address);
  FakeNode node(inventory);
  PublisherOptions options = Options();
  options.taint_unhealthy = true;
  Publisher& publisher = StartPublisher(node, options);
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }));
  json taint = StoredDevices()[sick]["taints"][0];
  EXPECT_EQ(taint["key"], "dra.net/unhealthy");
  EXPECT_EQ(taint["value"], "PortNotActive");
  EXPECT_EQ(taint["effect"], "NoSchedule");
  EXPECT_TRUE(taint.contains("timeAdded"));  // stamped by the server
  EXPECT_FALSE(StoredDevices()[DeviceName(inventory.devices[0].pci_address)].contains("taints"));

  // The server's timeAdded is not a difference: rescans write nothing.
  server_.ClearRequests();
  const uint64_t scans = publisher.State().scans;
  ASSERT_TRUE(WaitFor([&] { return publisher.State().scans >= scans + 10; }));
  EXPECT_EQ(server_.WriteCount(), 0u);

  // Another device goes down: one update, and the first taint keeps its time.
  inventory.devices[5].port.state = "DOWN";
  node.Set(inventory);
  publisher.RescanSoon();
  const std::string second = DeviceName(inventory.devices[5].pci_address);
  ASSERT_TRUE(WaitFor([&] { return StoredDevices()[second].contains("taints"); }));
  EXPECT_EQ(StoredDevices()[sick]["taints"][0]["timeAdded"], taint["timeAdded"]);

  // Recovery removes the taints.
  node.Set(testing::P5Inventory());
  publisher.RescanSoon();
  EXPECT_TRUE(WaitFor([&] {
    auto devices = StoredDevices();
    return !devices[sick].contains("taints") && !devices[second].contains("taints");
  }));
}

TEST_F(PublisherTest, HardwareChangesUpdateTheSlice) {
  discovery::Inventory inventory = testing::P5Inventory();
  FakeNode node(inventory);
  Publisher& publisher = StartPublisher(node);
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }));
  const std::string name = server_.ResourceSlices()[0]["metadata"]["name"];

  struct Step {
    std::string name;
    void (*change)(discovery::Inventory&);
  } steps[] = {
      {"port goes down", [](discovery::Inventory& inv) { inv.devices[3].port.state = "DOWN"; }},
      {"device disappears",
       [](discovery::Inventory& inv) { inv.devices.erase(inv.devices.begin()); }},
      {"netdev appears",
       [](discovery::Inventory& inv) {
         inv.devices[0].netdev = discovery::Netdev{"ens5", "0e:00:00:00:00:01", 9001, "up"};
       }},
  };
  for (const auto& step : steps) {
    SCOPED_TRACE(step.name);
    step.change(inventory);
    node.Set(inventory);
    publisher.RescanSoon();
    EXPECT_TRUE(WaitFor([&] { return Converged(inventory); }));
    // One slice changed in place: same object, no generation bump needed.
    ASSERT_EQ(server_.ResourceSlices().size(), 1u);
    EXPECT_EQ(server_.ResourceSlices()[0]["metadata"]["name"], name);
    EXPECT_EQ(server_.ResourceSlices()[0]["spec"]["pool"]["generation"], 1);
  }
  EXPECT_EQ(StoredDevices().count("pci-0000-4f-00-0"), 0u);
  EXPECT_EQ(StoredDevices()["pci-0000-52-00-0"]["attributes"]["dra.net/portState"]["string"], "DOWN");
}

// Slices of this node's pool that another program wrote (DRANET, here with its user agent as
// the field manager) are neither adopted nor deleted, and nothing is published next to them;
// once they are gone the publisher takes the pool.
TEST_F(PublisherTest, AnotherProgramsSlicesAreLeftAloneAndBlockPublishing) {
  PutDranetSlice(1);

  FakeNode node(testing::P4dInventory());
  Publisher& publisher = StartPublisher(node);
  ASSERT_TRUE(WaitFor([&] { return publisher.State().syncs >= 3; }));
  const PublisherState state = publisher.State();
  ASSERT_EQ(state.foreign_slices.size(), 1u);
  EXPECT_EQ(state.foreign_slices[0], std::string(kNode) + "-dra.net-x7k2p (by dranet)");
  EXPECT_EQ(state.writes, 0u);
  EXPECT_FALSE(publisher.FirstPublishDone());
  EXPECT_NE(publisher.LastError().find("written by another program"), std::string::npos)
      << publisher.LastError();
  ASSERT_EQ(server_.ResourceSlices().size(), 1u);
  EXPECT_EQ(server_.ResourceSlices()[0]["metadata"]["managedFields"][0]["manager"], "dranet");

  server_.DeleteResourceSlice(std::string(kNode) + "-dra.net-x7k2p");
  EXPECT_TRUE(WaitFor([&] { return Converged(testing::P4dInventory()); }));
  EXPECT_TRUE(publisher.State().foreign_slices.empty());
  EXPECT_EQ(server_.ResourceSlices()[0]["metadata"]["managedFields"][0]["manager"],
            kFieldManager);
}

// DRANET removed from the node leaves its slices behind, and the kubelet no longer wipes them
// once our driver is registered under the same name: with no other driver registered for
// leftover_grace they are deleted and the pool is published; while one is, they stay.
TEST_F(PublisherTest, SlicesLeftByADriverThatIsGoneAreReplacedAfterTheGrace) {
  PutDranetSlice(7);

  std::atomic<bool> registered{true};
  FakeNode node(testing::P4dInventory());
  PublisherOptions options = Options();
  options.other_driver_registered = [&registered] { return registered.load(); };
  options.leftover_grace = milliseconds(300);
  Publisher& publisher = StartPublisher(node, options);
  ASSERT_TRUE(WaitFor([&] { return publisher.State().syncs >= 5; }));
  EXPECT_EQ(publisher.State().writes, 0u);  // DRANET still registered: hands off
  ASSERT_EQ(server_.ResourceSlices().size(), 1u);

  registered = false;
  // DRANET's slice lists the same devices, so "converged" alone would hold from the start.
  EXPECT_TRUE(WaitFor([&] {
    // Read the store once: between the delete of DRANET's slice and the create of ours the
    // store is empty, and Converged() reads a snapshot of its own.
    const auto stored = server_.ResourceSlices();
    return stored.size() == 1 &&
           stored[0]["metadata"]["managedFields"][0]["manager"] == kFieldManager &&
           Converged(testing::P4dInventory());
  }));
  EXPECT_TRUE(publisher.State().foreign_slices.empty());
  EXPECT_GT(server_.ResourceSlices()[0]["spec"]["pool"]["generation"].get<int64_t>(), 7);
}

// With sharing on, the API server (DRAConsumableCapacity on) keeps what is published and the
// pool is written once.
TEST_F(PublisherTest, SharedDevicesArePublishedAndStayWritten) {
  FakeNode node(testing::P4dInventory());
  PublisherOptions options = Options();
  options.shares_per_device = 2;
  Publisher& publisher = StartPublisher(node, options);
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }));
  const uint64_t writes = publisher.State().writes;
  const uint64_t scans = publisher.State().scans;
  ASSERT_TRUE(WaitFor([&] { return publisher.State().scans >= scans + 10; }));
  EXPECT_EQ(publisher.State().writes, writes);
  EXPECT_FALSE(publisher.State().sharing_dropped_by_api);
  const auto devices = StoredDevices();
  ASSERT_EQ(devices.size(), 4u);
  for (const auto& [name, device] : devices) {
    EXPECT_EQ(device.value("allowMultipleAllocations", false), true) << name;
    EXPECT_EQ(device["capacity"]["dra.net/shares"]["value"], "2") << name;
  }
}

// With the gate off the server drops allowMultipleAllocations: the publisher notices once,
// publishes the EFAs for exclusive use (no shares capacity either) and then stops writing,
// instead of rewriting the pool at every sync.
TEST_F(PublisherTest, SharingDroppedByTheApiServerIsNoticedAndCausesNoChurn) {
  server_.SetConsumableCapacityGate(false);
  FakeNode node(testing::P4dInventory());
  PublisherOptions options = Options();
  options.shares_per_device = 2;
  Publisher& publisher = StartPublisher(node, options);
  ASSERT_TRUE(WaitFor([&] {
    return publisher.State().sharing_dropped_by_api && Converged(testing::P4dInventory());
  }));
  // The store can show the exclusive pool before the sync that wrote it counted the write.
  uint64_t scans = publisher.State().scans;
  ASSERT_TRUE(WaitFor([&] { return publisher.State().scans >= scans + 3; }));
  const uint64_t writes = publisher.State().writes;
  scans = publisher.State().scans;
  ASSERT_TRUE(WaitFor([&] { return publisher.State().scans >= scans + 10; }));
  EXPECT_EQ(publisher.State().writes, writes);
  for (const auto& [name, device] : StoredDevices()) {
    EXPECT_FALSE(device.contains("allowMultipleAllocations")) << name;
    EXPECT_FALSE(device.contains("capacity")) << name;
  }
}

TEST_F(PublisherTest, ExternalDeleteIsRepairedWithinASecond) {
  FakeNode node(testing::P4dInventory());
  PublisherOptions options = Options();
  options.resync = std::chrono::hours(1);  // only the watch can notice
  Publisher& publisher = StartPublisher(node, options);
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }));
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    server_.DeleteAllResourceSlices();  // the kubelet's wipe
    EXPECT_TRUE(WaitFor([&] { return Converged(testing::P4dInventory()); }, milliseconds(1000)));
  }
  // An outside edit of our slice is reverted too.
  json slice = server_.ResourceSlices()[0];
  slice["spec"]["devices"][0]["attributes"]["portState"] = json{{"string", "BROKEN"}};
  ASSERT_TRUE(client_
                  ->Update("/apis/resource.k8s.io/v1/resourceslices/" +
                               slice["metadata"]["name"].get<std::string>(),
                           slice)
                  .ok());
  EXPECT_TRUE(WaitFor([&] { return Converged(testing::P4dInventory()); }, milliseconds(1000)));
}

TEST_F(PublisherTest, ApiDownAtStartPublishesOnceUp) {
  server_.FailNext(40, 503);
  FakeNode node(testing::P4dInventory());
  Publisher& publisher = StartPublisher(node);
  ASSERT_TRUE(WaitFor([&] { return !publisher.LastError().empty(); }));
  EXPECT_FALSE(publisher.FirstPublishDone());
  EXPECT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }, std::chrono::seconds(20)));
  EXPECT_TRUE(Converged(testing::P4dInventory()));
  EXPECT_EQ(publisher.LastError(), "");
}

TEST_F(PublisherTest, ConflictIsResolvedByRereading) {
  discovery::Inventory inventory = testing::P4dInventory();
  FakeNode node(inventory);
  Publisher& publisher = StartPublisher(node);
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }));
  server_.FailNext(2, 409, 0, "PUT");
  inventory.devices[1].port.state = "DOWN";
  node.Set(inventory);
  publisher.RescanSoon();
  EXPECT_TRUE(WaitFor([&] { return Converged(inventory); }));
  EXPECT_GE(publisher.State().sync_failures, 1u);
  EXPECT_TRUE(WaitFor([&] { return publisher.LastError().empty(); }));
}

TEST_F(PublisherTest, MoreDevicesThanOneSliceHolds) {
  discovery::Inventory inventory;
  for (int i = 0; i < 300; ++i) {
    inventory.devices.push_back(testing::MakeDevice(i / 32, i % 32, 0xefa1, 0, "pci0000:00", i));
  }
  FakeNode node(inventory);
  Publisher& publisher = StartPublisher(node);
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }));
  EXPECT_TRUE(Converged(inventory));
  std::set<std::string> names;
  for (const auto& slice : server_.ResourceSlices()) names.insert(slice["metadata"]["name"]);
  EXPECT_EQ(names.size(), 3u);

  // Shrinking below one slice's worth: obsolete slices go, generation is bumped.
  const int64_t before = server_.ResourceSlices()[0]["spec"]["pool"]["generation"];
  inventory.devices.resize(100);
  node.Set(inventory);
  publisher.RescanSoon();
  EXPECT_TRUE(WaitFor([&] { return Converged(inventory); }));
  EXPECT_GT(server_.ResourceSlices()[0]["spec"]["pool"]["generation"].get<int64_t>(), before);
}

TEST_F(PublisherTest, PreviousInstanceSlicesAreAdoptedWithoutWrites) {
  struct Case {
    std::string name;
    discovery::Inventory inventory;
    int per_slice;
  };
  discovery::Inventory big;
  for (int i = 0; i < 300; ++i) {
    big.devices.push_back(testing::MakeDevice(i / 32, i % 32, 0xefa1, 0, "pci0000:00", i));
  }
  std::vector<Case> cases = {{"p5", testing::P5Inventory(), 128},
                             {"300 devices", big, 128},
                             {"p4d split in 4", testing::P4dInventory(), 1}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    server_.DeleteAllResourceSlices();
    FakeNode node(c.inventory);
    PublisherOptions options = Options();
    options.max_devices_per_slice = c.per_slice;
    {
      Publisher first(*api_, node.Scanner(), options);
      ASSERT_TRUE(first.Start().ok());
      ASSERT_TRUE(WaitFor([&] { return first.FirstPublishDone(); }));
      first.Stop();
    }
    ASSERT_TRUE(Converged(c.inventory, c.per_slice));
    const auto before = server_.ResourceSlices();
    server_.ClearRequests();
    Publisher second(*api_, node.Scanner(), options);
    ASSERT_TRUE(second.Start().ok());
    ASSERT_TRUE(WaitFor([&] { return second.FirstPublishDone(); }));
    const uint64_t scans = second.State().scans;
    ASSERT_TRUE(WaitFor([&] { return second.State().scans >= scans + 5; }));
    second.Stop();
    EXPECT_EQ(server_.WriteCount(), 0u);
    EXPECT_EQ(server_.ResourceSlices(), before);
  }
}

TEST_F(PublisherTest, AdoptsSlicesNamedByOtherHelpers) {
  // A slice written by the 1.34/1.35 helper (or DRANET) with our exact content: adopted as is.
  SliceOptions options;
  options.node_name = kNode;
  options.node_uid = kNodeUid;
  json slice = DesiredSlices(testing::P4dInventory(), options)[0];
  slice["metadata"]["generateName"] = std::string(kNode) + "-dra.net-";
  ASSERT_TRUE(client_->Create("/apis/resource.k8s.io/v1/resourceslices", slice).ok());
  server_.ClearRequests();
  FakeNode node(testing::P4dInventory());
  Publisher& publisher = StartPublisher(node);
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }));
  EXPECT_EQ(server_.WriteCount(), 0u);
  EXPECT_EQ(server_.ResourceSlices().size(), 1u);
}

TEST_F(PublisherTest, StaleGenerationsAndDuplicatesAreRemoved) {
  SliceOptions options;
  options.node_name = kNode;
  options.node_uid = kNodeUid;
  // A stale generation and two copies of the current one, as a crashed writer could leave.
  json old_slice = DesiredSlices(testing::P4dInventory(), options)[0];
  old_slice["spec"]["pool"]["generation"] = 1;
  json current = old_slice;
  current["spec"]["pool"]["generation"] = 2;
  for (const json* s : {&old_slice, &current, &current}) {
    ASSERT_TRUE(client_->Create("/apis/resource.k8s.io/v1/resourceslices", *s).ok());
  }
  FakeNode node(testing::P4dInventory());
  Publisher& publisher = StartPublisher(node);
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }));
  EXPECT_TRUE(Converged(testing::P4dInventory()));
  EXPECT_GE(server_.ResourceSlices()[0]["spec"]["pool"]["generation"].get<int64_t>(), 2);
}

TEST_F(PublisherTest, ErrorStormsLeaveNoDuplicates) {
  discovery::Inventory inventory;
  for (int i = 0; i < 200; ++i) {
    inventory.devices.push_back(testing::MakeDevice(i / 32, i % 32, 0xefa1, 0, "pci0000:00", i));
  }
  FakeNode node(inventory);
  Publisher& publisher = StartPublisher(node);
  server_.FailNext(15, 503, 0, "POST");
  server_.FailNext(10, 429, 0);
  // Generous: 25 failures with backoff, 200 devices, ThreadSanitizer, a loaded machine (30 s
  // were not enough once while another build ran).
  constexpr auto kGenerous = std::chrono::seconds(90);
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }, kGenerous));
  EXPECT_TRUE(Converged(inventory));

  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    inventory.devices[round].port.state = "DOWN";
    inventory.devices.pop_back();  // changes the split: creates + updates + deletes
    node.Set(inventory);
    server_.FailNext(7, round % 2 == 0 ? 503 : 429, 0);
    publisher.RescanSoon();
    // 60 s each, so that the whole test stays inside ctest's 300 s even when every wait fails.
    EXPECT_TRUE(WaitFor([&] { return Converged(inventory); }, std::chrono::seconds(60)));
  }
  std::set<std::string> devices;
  size_t total = 0;
  for (const auto& slice : server_.ResourceSlices()) {
    for (const auto& device : slice["spec"]["devices"]) {
      devices.insert(device["name"]);
      ++total;
    }
  }
  EXPECT_EQ(devices.size(), total);
  EXPECT_EQ(server_.ResourceSlices().size(), 2u);
}

TEST_F(PublisherTest, RejectsBadNames) {
  FakeNode node(discovery::Inventory{});
  PublisherOptions options = Options();
  options.node_name = "Not_A_Node";
  Publisher publisher(*api_, node.Scanner(), options);
  const Status status = publisher.Start();
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("Not_A_Node"), std::string::npos);
}

}  // namespace
}  // namespace efadra::slices
