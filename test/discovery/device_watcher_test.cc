#include "efadra/discovery/device_watcher.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "support/test_support.h"

namespace efadra::discovery {
namespace {

using namespace std::chrono_literals;
using ::efadra::testing::WaitFor;

TEST(DebouncerTest, FiresOnceAfterTheBurstIsQuiet) {
  using TP = Debouncer::TimePoint;
  const TP t0{};
  struct Step {
    int at_ms;
    bool event;      // record an event at this time
    bool want_fire;  // Fire() at this time (after the event, if any)
  };
  struct Case {
    std::string name;
    std::vector<Step> steps;
  };
  const Case cases[] = {
      {"nothing pending", {{0, false, false}, {1000, false, false}}},
      {"single event",
       {{0, true, false}, {199, false, false}, {200, false, true}, {400, false, false}}},
      {"burst extends the window",
       {{0, true, false},
        {150, true, false},
        {300, true, false},
        {499, false, false},
        {500, false, true},
        {900, false, false}}},
      {"two bursts fire twice",
       {{0, true, false}, {200, false, true}, {300, true, false}, {500, false, true}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Debouncer debouncer(200ms);
    for (const Step& step : c.steps) {
      SCOPED_TRACE(step.at_ms);
      const TP now = t0 + std::chrono::milliseconds(step.at_ms);
      if (step.event) {
        debouncer.OnEvent(now);
        EXPECT_EQ(debouncer.Deadline(), now + 200ms);
      }
      EXPECT_EQ(debouncer.Fire(now), step.want_fire);
    }
  }
}

TEST(UeventFilterTest, KeepsRdmaAndPciAddRemoveChange) {
  auto msg = [](std::string head, std::vector<std::string> fields) {
    std::string out = head;
    out.push_back('\0');
    for (const auto& f : fields) {
      out += f;
      out.push_back('\0');
    }
    return out;
  };
  struct Case {
    std::string name, datagram;
    bool want;
  };
  const Case cases[] = {
      {"ib add",
       msg("add@/devices/pci0000:10/0000:10:1b.0/infiniband/efa_0",
           {"ACTION=add", "DEVPATH=/devices/...", "SUBSYSTEM=infiniband"}),
       true},
      {"verbs remove", msg("remove@/x", {"ACTION=remove", "SUBSYSTEM=infiniband_verbs"}), true},
      {"pci change", msg("change@/x", {"ACTION=change", "SUBSYSTEM=pci"}), true},
      {"pci bind", msg("bind@/x", {"ACTION=bind", "SUBSYSTEM=pci"}), false},
      {"block add", msg("add@/x", {"ACTION=add", "SUBSYSTEM=block"}), false},
      {"net add", msg("add@/x", {"ACTION=add", "SUBSYSTEM=net"}), false},
      {"udev rebroadcast", msg("libudev", {"ACTION=add", "SUBSYSTEM=pci"}), false},
      {"empty", "", false},
      {"truncated", "add@/x", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(IsRelevantUevent(c.datagram), c.want);
  }
}

// Events from a pipe: each byte written is one relevant event.
class PipeSource : public EventSource {
 public:
  PipeSource(int read_fd, std::atomic<int>* opened) : read_fd_(read_fd), opened_(opened) {}
  Status Open() override {
    ++*opened_;
    return Status::Ok();
  }
  std::vector<int> Fds() const override { return {read_fd_}; }
  int Drain(int fd) override {
    char buffer[64];
    int events = 0;
    ssize_t n;
    while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) events += static_cast<int>(n);
    return events;
  }

 private:
  int read_fd_;
  std::atomic<int>* opened_;
};

class WatcherTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(::pipe2(fds_, O_NONBLOCK | O_CLOEXEC), 0); }
  void TearDown() override {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  void Event() { ASSERT_EQ(::write(fds_[1], "e", 1), 1); }

  int fds_[2] = {-1, -1};
  std::atomic<int> opened_{0};
  std::atomic<int> calls_{0};
};

TEST_F(WatcherTest, BurstBecomesOneCallback) {
  // A long window: the whole burst is written well inside it, so exactly one callback follows.
  DeviceWatcher watcher([this] { ++calls_; }, std::make_unique<PipeSource>(fds_[0], &opened_),
                        {.debounce = 300ms});
  ASSERT_TRUE(watcher.Start().ok());
  EXPECT_EQ(opened_.load(), 1);
  for (int i = 0; i < 5; ++i) Event();
  ASSERT_TRUE(WaitFor([this] { return calls_.load() >= 1; }));
  watcher.Stop();
  EXPECT_EQ(calls_.load(), 1);
}

TEST_F(WatcherTest, SecondBurstAfterQuietGivesSecondCallback) {
  DeviceWatcher watcher([this] { ++calls_; }, std::make_unique<PipeSource>(fds_[0], &opened_),
                        {.debounce = 20ms});
  ASSERT_TRUE(watcher.Start().ok());
  Event();
  ASSERT_TRUE(WaitFor([this] { return calls_.load() == 1; }));
  Event();
  ASSERT_TRUE(WaitFor([this] { return calls_.load() == 2; }));
}

TEST_F(WatcherTest, StopDropsPendingEventsAndIsIdempotent) {
  DeviceWatcher watcher([this] { ++calls_; }, std::make_unique<PipeSource>(fds_[0], &opened_),
                        {.debounce = 60s});
  ASSERT_TRUE(watcher.Start().ok());
  EXPECT_EQ(watcher.Start().code(), StatusCode::kFailedPrecondition);
  Event();
  // Stop must not wait for the 60 s window (the watcher thread blocks in poll).
  watcher.Stop();
  watcher.Stop();
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(WatcherTest, RestartsAfterStop) {
  DeviceWatcher watcher([this] { ++calls_; }, std::make_unique<PipeSource>(fds_[0], &opened_),
                        {.debounce = 10ms});
  ASSERT_TRUE(watcher.Start().ok());
  watcher.Stop();
  ASSERT_TRUE(watcher.Start().ok());
  Event();
  EXPECT_TRUE(WaitFor([this] { return calls_.load() == 1; }));
}

// The real kernel sources: a new netdev is an RTM_NEWLINK event.
TEST(KernelWatcherTest, LinkEventTriggersCallback) {
  std::atomic<int> calls{0};
  DeviceWatcher watcher([&calls] { ++calls; }, {.debounce = 20ms});
  Status started = watcher.Start();
  if (!started.ok()) GTEST_SKIP() << "kernel netlink sockets unavailable: " << started.ToString();
  // The sockets survive a restart.
  watcher.Stop();
  ASSERT_TRUE(watcher.Start().ok());
  const std::string name = "efadra-t" + std::to_string(::getpid() % 100000);
  const std::string add = "ip link add " + name + " type dummy 2>/dev/null || ip link add " + name +
                          " type bridge 2>/dev/null";
  if (std::system(add.c_str()) != 0) {
    GTEST_SKIP() << "cannot create a netdev here (need root and the dummy or bridge driver)";
  }
  const bool called = WaitFor([&calls] { return calls.load() >= 1; });
  std::system(("ip link del " + name + " 2>/dev/null").c_str());
  EXPECT_TRUE(called);
  watcher.Stop();
}

}  // namespace
}  // namespace efadra::discovery
