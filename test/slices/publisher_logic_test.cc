// The publisher's reconcile logic against the in-memory SliceApi (no network): fast, and it
// can assert exact write counts for each kind of change.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string>

#include <unistd.h>

#include "efadra/slices/publish_lock.h"
#include "efadra/slices/publisher.h"
#include "efadra/slices/resource_slices.h"
#include "slices/inventories.h"
#include "slices/memory_slice_api.h"
#include "support/test_support.h"

namespace efadra::slices {
namespace {

using efadra::testing::WaitFor;
using nlohmann::json;
using std::chrono::milliseconds;

discovery::Inventory ManyDevices(int count) {
  discovery::Inventory inventory;
  for (int i = 0; i < count; ++i) {
    inventory.devices.push_back(testing::MakeDevice(i / 32, i % 32, 0xefa1, 0, "pci0000:00", i));
  }
  return inventory;
}

class PublisherLogicTest : public ::testing::Test {
 protected:
  PublisherOptions Options() {
    PublisherOptions options;
    options.node_name = "node-1";
    options.resync = milliseconds(20);
    options.debounce = milliseconds(5);
    options.initial_backoff = milliseconds(5);
    options.max_backoff = milliseconds(50);
    // The tests below count writes per change and repair deletes within a second; the
    // write bucket and the re-watch floor have tests of their own.
    options.write_refill = milliseconds(0);
    options.min_rewatch_interval = milliseconds(5);
    return options;
  }
  InventoryScanner Scanner() {
    return [this]() -> Result<discovery::Inventory> {
      std::lock_guard<std::mutex> lock(mutex_);
      return inventory_;
    };
  }
  void SetInventory(discovery::Inventory inventory) {
    std::lock_guard<std::mutex> lock(mutex_);
    inventory_ = std::move(inventory);
  }
  bool Converged(int per_slice = 128) {
    discovery::Inventory inventory;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      inventory = inventory_;
    }
    SliceOptions options;
    options.node_name = "node-1";
    options.node_uid = "uid-node-1";
    options.max_devices_per_slice = per_slice;
    const auto desired = DesiredSlices(inventory, options);
    const auto stored = api_.Slices();
    if (stored.size() != desired.size()) return false;
    std::set<int64_t> generations;
    json want = json::array();
    json have = json::array();
    for (const auto& slice : desired) {
      for (const auto& d : slice["spec"]["devices"]) want.push_back(d);
    }
    std::vector<json> sorted = stored;
    std::sort(sorted.begin(), sorted.end(), [](const json& a, const json& b) {
      return a["metadata"]["name"].get<std::string>() < b["metadata"]["name"].get<std::string>();
    });
    for (const auto& slice : sorted) {
      generations.insert(slice["spec"]["pool"]["generation"].get<int64_t>());
      if (slice["spec"]["pool"]["resourceSliceCount"] != static_cast<int64_t>(desired.size())) {
        return false;
      }
      if (slice["metadata"]["ownerReferences"][0]["uid"] != "uid-node-1") return false;
      for (const auto& d : slice["spec"]["devices"]) have.push_back(d);
    }
    std::sort(have.begin(), have.end(), [](const json& a, const json& b) {
      return a["name"].get<std::string>() < b["name"].get<std::string>();
    });
    return generations.size() == 1 && have == want;
  }

  testing::MemorySliceApi api_;
  std::mutex mutex_;
  discovery::Inventory inventory_ = testing::P5Inventory();
};

TEST_F(PublisherLogicTest, FirstPublishThenZeroWrites) {
  Publisher publisher(api_, Scanner(), Options());
  ASSERT_TRUE(publisher.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }));
  EXPECT_TRUE(Converged());
  EXPECT_EQ(api_.Writes(), 1);
  const auto scans = publisher.State().scans;
  ASSERT_TRUE(WaitFor([&] { return publisher.State().scans >= scans + 30; }));
  EXPECT_EQ(api_.Writes(), 1);
  EXPECT_EQ(publisher.State().pool_generation, 1);
}

TEST_F(PublisherLogicTest, WritesPerChange) {
  Publisher publisher(api_, Scanner(), Options());
  ASSERT_TRUE(publisher.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }));
  struct Step {
    std::string name;
    std::function<void(discovery::Inventory&)> change;
    int writes;
    int64_t generation;
  } steps[] = {
      {"port down: one update in place", [](auto& inv) { inv.devices[0].port.state = "DOWN"; }, 1,
       1},
      {"device gone: one update in place", [](auto& inv) { inv.devices.pop_back(); }, 1, 1},
      {"no change", [](auto&) {}, 0, 1},
      {"fields that are not published", [](auto& inv) { inv.devices[1].local_cpulist = "0-3"; }, 0,
       1},
      {"grow past one slice: bump, update + create", [](auto& inv) { inv = ManyDevices(130); }, 2,
       2},
      {"shrink to one slice: bump, delete + update", [](auto& inv) { inv = ManyDevices(3); }, 2, 3},
      {"empty: still one slice", [](auto& inv) { inv.devices.clear(); }, 1, 3},
  };
  for (const auto& step : steps) {
    SCOPED_TRACE(step.name);
    discovery::Inventory inventory;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      inventory = inventory_;
    }
    step.change(inventory);
    SetInventory(inventory);
    api_.ClearWrites();
    const auto scans = publisher.State().scans;
    publisher.RescanSoon();
    ASSERT_TRUE(WaitFor([&] { return publisher.State().scans >= scans + 3 && Converged(); }));
    EXPECT_EQ(api_.Writes(), step.writes);
    EXPECT_EQ(publisher.State().pool_generation, step.generation);
  }
}

TEST_F(PublisherLogicTest, ExternalDeleteAndDroppedWatches) {
  PublisherOptions options = Options();
  options.resync = std::chrono::hours(1);
  Publisher publisher(api_, Scanner(), options);
  ASSERT_TRUE(publisher.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }));
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    if (round == 1) api_.DropWatches();
    api_.DeleteAll();
    EXPECT_TRUE(WaitFor([&] { return Converged(); }, milliseconds(1000)));
  }
}

// The watch ends (dropped) and the pool is deleted while a sync is still writing: the sync's
// own slice is gone before the sync has recorded it, and its DELETED event went with the watch.
// The relist that follows sees an empty pool while the publisher's record is in flux; the
// publisher must check the pool again once the sync is done instead of trusting what the sync
// wrote (the resync is an hour away). ExternalDeleteAndDroppedWatches meets the same race
// when one of its rounds lands inside the previous round's repair.
TEST_F(PublisherLogicTest, APoolDeletedWhileASyncWritesIsRepairedAfterTheRelist) {
  // Declared before the publisher, so they outlive its last create even when an assertion
  // below ends the test early.
  std::atomic<bool> armed{false};
  std::atomic<bool> relisted{false};
  PublisherOptions options = Options();
  options.resync = std::chrono::hours(1);
  Publisher publisher(api_, Scanner(), options);
  ASSERT_TRUE(publisher.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }));
  armed = true;
  api_.OnCreated([&] {
    if (!armed.exchange(false)) return;
    const auto watches = publisher.State().watches;
    api_.DropWatches();
    api_.DeleteAll();
    relisted = WaitFor([&] { return publisher.State().watches > watches; });
  });
  api_.DeleteAll();  // repaired by a sync whose create runs the hook above
  ASSERT_TRUE(WaitFor([&] { return !armed && relisted; }));
  EXPECT_TRUE(WaitFor([&] { return Converged(); }, milliseconds(5000)));
  api_.OnCreated(nullptr);
}

TEST_F(PublisherLogicTest, FailuresAndConflictsConverge) {
  struct Case {
    std::string name;
    Status status;
    int count;
    std::string method;
  } cases[] = {
      {"API down at start", UnavailableError("503"), 20, "GetNode"},
      {"throttled creates", ResourceExhaustedError("429"), 5, "CreateSlice"},
      {"create conflicts", AlreadyExistsError("409"), 3, "CreateSlice"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    api_.DeleteAll();
    api_.FailNext(c.count, c.status, c.method);
    SetInventory(ManyDevices(20));
    PublisherOptions options = Options();
    options.resync = milliseconds(500);  // retries, not rescans, drive this test
    options.max_devices_per_slice = 8;   // several slices, so failures hit mid-publish
    Publisher publisher(api_, Scanner(), options);
    ASSERT_TRUE(publisher.Start().ok());
    ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }));
    EXPECT_TRUE(Converged(8));
    EXPECT_GE(publisher.State().sync_failures, 1u);
    EXPECT_EQ(publisher.LastError(), "");
  }
}

TEST_F(PublisherLogicTest, RestartAdoptsWithZeroWrites) {
  for (int per_slice : {128, 7, 1}) {
    SCOPED_TRACE(per_slice);
    api_.DeleteAll();
    PublisherOptions options = Options();
    options.max_devices_per_slice = per_slice;
    {
      Publisher first(api_, Scanner(), options);
      ASSERT_TRUE(first.Start().ok());
      ASSERT_TRUE(WaitFor([&] { return first.FirstPublishDone(); }));
    }
    ASSERT_TRUE(Converged(per_slice));
    api_.ClearWrites();
    Publisher second(api_, Scanner(), options);
    ASSERT_TRUE(second.Start().ok());
    ASSERT_TRUE(WaitFor([&] { return second.FirstPublishDone(); }));
    const auto scans = second.State().scans;
    ASSERT_TRUE(WaitFor([&] { return second.State().scans >= scans + 5; }));
    EXPECT_EQ(api_.Writes(), 0);
  }
}

TEST_F(PublisherLogicTest, ScanFailureKeepsPublishedSlices) {
  std::atomic<bool> fail{false};
  Publisher publisher(
      api_,
      [&]() -> Result<discovery::Inventory> {
        if (fail) return InvalidArgumentError("/sys is not a sysfs tree");
        std::lock_guard<std::mutex> lock(mutex_);
        return inventory_;
      },
      Options());
  ASSERT_TRUE(publisher.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return publisher.FirstPublishDone(); }));
  api_.ClearWrites();
  fail = true;
  ASSERT_TRUE(WaitFor([&] { return !publisher.LastError().empty(); }));
  EXPECT_NE(publisher.LastError().find("/sys is not a sysfs tree"), std::string::npos);
  EXPECT_EQ(api_.Writes(), 0);
  EXPECT_TRUE(Converged());
}

TEST_F(PublisherLogicTest, FlappingPortCostsAtMostTheWriteBucketsRate) {
  PublisherOptions options = Options();
  options.resync = milliseconds(2);  // a scan, and a flap, every 2 ms
  options.write_burst = 2;
  // A token per second: several flaps arrive per token however slow the scans get. Under
  // ThreadSanitizer on a loaded two-core machine a scan and its write took 0.3 s, which a
  // refill of 0.2 s outpaced: every flap found a token and nothing was held back.
  options.write_refill = milliseconds(1000);
  std::atomic<bool> flapping{true};
  std::atomic<int> flips{0};
  auto with_port = [](const char* state) {
    discovery::Inventory inventory = testing::P5Inventory();
    inventory.devices[0].port.state = state;
    return inventory;
  };
  SetInventory(with_port("DOWN"));  // where the flapping ends (what Converged() checks)
  const auto start = std::chrono::steady_clock::now();
  Publisher publisher(
      api_,
      [&]() -> Result<discovery::Inventory> {
        if (!flapping) return with_port("DOWN");
        return with_port(++flips % 2 == 0 ? "DOWN" : "ACTIVE");
      },
      options);
  ASSERT_TRUE(publisher.Start().ok());
  // Generous: under ThreadSanitizer on a loaded machine a scan takes far longer than 2 ms.
  ASSERT_TRUE(WaitFor([&] { return flips >= 50; }, std::chrono::seconds(120)));
  flapping = false;
  const auto elapsed = std::chrono::steady_clock::now() - start;
  const int writes = api_.Writes();
  // One slice, so one write per sync that writes: the burst, one per refill since the start,
  // and one sync that may be in flight.
  const int allowed = options.write_burst + static_cast<int>(elapsed / options.write_refill) + 1;
  EXPECT_LE(writes, allowed) << flips << " flaps in "
                             << std::chrono::duration_cast<milliseconds>(elapsed).count()
                             << " ms";
  EXPECT_GT(publisher.State().write_limited, 0u);
  // No update is lost: the state the port settled in is published.
  EXPECT_TRUE(WaitFor([&] { return Converged(); }));
}

TEST_F(PublisherLogicTest, DuringASurgeOnlyTheLockHolderPublishes) {
  efadra::testing::TempDir dir;
  PublisherOptions options = Options();
  options.publish_lock_path = dir.Sub("publish.lock");
  options.publish_lock_retry = milliseconds(10);
  // The old pod publishes what it sees; the new one sees a port down (it would write).
  Publisher old_pod(api_, Scanner(), options);
  ASSERT_TRUE(old_pod.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return old_pod.FirstPublishDone(); }));
  ASSERT_TRUE(Converged());
  discovery::Inventory changed = testing::P5Inventory();
  changed.devices[0].port.state = "DOWN";
  Publisher new_pod(api_, [&changed]() -> Result<discovery::Inventory> { return changed; },
                    options);
  api_.ClearWrites();
  ASSERT_TRUE(new_pod.Start().ok());
  const auto scans = new_pod.State().scans;
  ASSERT_TRUE(WaitFor([&] { return new_pod.State().scans >= scans + 20; }));
  EXPECT_TRUE(new_pod.State().standby);
  EXPECT_FALSE(new_pod.FirstPublishDone());
  EXPECT_EQ(api_.Writes(), 0);
  EXPECT_TRUE(Converged());  // still the old pod's view
  EXPECT_FALSE(old_pod.State().standby);

  // The old pod goes away: the new one takes over and publishes its view.
  old_pod.Stop();
  SetInventory(changed);
  EXPECT_TRUE(WaitFor([&] { return new_pod.FirstPublishDone() && Converged(); }));
  EXPECT_FALSE(new_pod.State().standby);
  EXPECT_EQ(api_.Writes(), 1);
}

// A kubelet restart can empty the plugin directory while a pod holds the lock: the file it
// locked is gone, and a twin that creates a new one must not publish beside it.
TEST(PublishLockTest, ALockWhoseFileWasRemovedMovesToTheNewFileOrIsLost) {
  efadra::testing::TempDir dir;
  const std::string path = dir.Sub("publish.lock");
  PublishLock first(path);
  PublishLock second(path);
  ASSERT_TRUE(*first.TryAcquire());
  EXPECT_FALSE(*second.TryAcquire());

  ASSERT_EQ(::unlink(path.c_str()), 0);
  ASSERT_TRUE(*second.TryAcquire());  // the twin locks a new file at the same path
  EXPECT_FALSE(*first.TryAcquire()) << "both instances would publish";
  EXPECT_FALSE(first.Held());

  // Removed again while nobody else wants it: the holder re-creates and keeps it.
  ASSERT_EQ(::unlink(path.c_str()), 0);
  EXPECT_TRUE(*second.TryAcquire());
  EXPECT_FALSE(*first.TryAcquire());
}

// Forwards to the in-memory API, but every watch ends at once (cleanly, or with 410 Gone):
// what an overloaded server or a bad proxy does.
class EndingWatches : public SliceApi {
 public:
  EndingWatches(SliceApi& api, Status end) : api_(api), end_(std::move(end)) {}
  Result<json> GetNode(const std::string& node) override { return api_.GetNode(node); }
  Result<json> ListSlices(const std::string& driver, const std::string& node) override {
    return api_.ListSlices(driver, node);
  }
  Result<json> CreateSlice(const json& slice) override { return api_.CreateSlice(slice); }
  Result<json> UpdateSlice(const json& slice) override { return api_.UpdateSlice(slice); }
  Status DeleteSlice(const std::string& name, const std::string& uid,
                     const std::string& resource_version) override {
    return api_.DeleteSlice(name, uid, resource_version);
  }
  Status WatchSlices(const std::string&, const std::string&, const std::string&,
                     const std::function<bool(const std::string&, const json&)>&,
                     const std::atomic<bool>&) override {
    ++watches;
    return end_;
  }
  std::atomic<int> watches{0};

 private:
  SliceApi& api_;
  const Status end_;
};

TEST_F(PublisherLogicTest, WatchesThatEndAtOnceAreNotRetriedInATightLoop) {
  const std::pair<std::string, Status> kEnds[] = {
      {"clean end", Status::Ok()}, {"410 Gone", OutOfRangeError("too old resource version")}};
  for (const auto& [what, end] : kEnds) {
    SCOPED_TRACE(what);
    EndingWatches api(api_, end);
    PublisherOptions options = Options();
    options.min_rewatch_interval = milliseconds(50);
    const auto start = std::chrono::steady_clock::now();
    Publisher publisher(api, Scanner(), options);
    ASSERT_TRUE(publisher.Start().ok());
    ASSERT_TRUE(WaitFor([&] { return api.watches >= 6; }));
    const auto elapsed = std::chrono::steady_clock::now() - start;
    // Five gaps of at least the minimum each lie between the first and the sixth watch.
    EXPECT_GE(elapsed, 5 * options.min_rewatch_interval)
        << api.watches << " watches in "
        << std::chrono::duration_cast<milliseconds>(elapsed).count() << " ms";
    EXPECT_EQ(publisher.State().watches, static_cast<uint64_t>(api.watches.load()));
    publisher.Stop();
  }
}

}  // namespace
}  // namespace efadra::slices
