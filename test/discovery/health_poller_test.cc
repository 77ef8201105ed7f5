// The health poller against a generated p5.48xlarge tree (files rewritten in place, as the
// kernel's values change under a kept descriptor), and the verbs event watcher with a fake
// event source over real pipes.
#include "efadra/discovery/health_poller.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <infiniband/verbs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "efadra/discovery/discoverer.h"
#include "efadra/discovery/verbs_events.h"
#include "efadra/sysfstree/bundled.h"
#include "efadra/sysfstree/tree_builder.h"
#include "support/test_support.h"

namespace efadra::discovery {
namespace {

using ::efadra::testing::TempDir;
using ::efadra::testing::WaitFor;
using ::efadra::testing::WriteFileOrDie;

// One generated tree for the suite (building 32 EFAs takes seconds); each test puts back the
// files it changed in TearDown.
class HealthPollerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    Build();
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static void Build() {
    auto topology = sysfstree::ParseTopology(*sysfstree::BundledTopology("p5.48xlarge"));
    ASSERT_TRUE(topology.ok()) << topology.status().ToString();
    ASSERT_TRUE(sysfstree::BuildSysfsTree(*topology, dir_->Sub("sys"), dir_->Sub("dev")).ok());
  }

  void SetUp() override {
    sysfs_ = core::NewPosixFilesystem(dir_->Sub("sys"));
    dev_ = core::NewPosixFilesystem(dir_->Sub("dev"));
    auto inventory = Discoverer(*sysfs_, *dev_, nullptr).Discover();
    ASSERT_TRUE(inventory.ok()) << inventory.status().ToString();
    devices_ = inventory->devices;
    ASSERT_EQ(devices_.size(), 32u);
  }
  void TearDown() override {
    for (const auto& [path, content] : originals_) WriteFileOrDie(path, content);
  }

  std::string Ib(size_t i, const std::string& file) {
    return Remember(dir_->Sub("sys/class/infiniband/" + devices_.at(i).rdma_device + "/" + file));
  }
  std::string DevNode(size_t i) {
    return Remember(dir_->Sub("dev/infiniband/" + devices_.at(i).UverbsName()));
  }
  std::string Remember(const std::string& path) {
    originals_.emplace(path, ::efadra::testing::ReadFileOrEmpty(path));
    return path;
  }

  static TempDir* dir_;
  std::map<std::string, std::string> originals_;
  std::unique_ptr<core::Filesystem> sysfs_;
  std::unique_ptr<core::Filesystem> dev_;
  std::vector<EfaDevice> devices_;
};

TempDir* HealthPollerTest::dir_ = nullptr;

TEST_F(HealthPollerTest, AFreshTreeReadsActiveWithNoProblems) {
  HealthPoller poller(*sysfs_, *dev_);
  poller.Track(devices_);
  const auto readings = poller.Poll();
  ASSERT_EQ(readings.size(), 32u);
  for (size_t i = 0; i < readings.size(); ++i) {
    SCOPED_TRACE(devices_[i].rdma_device);
    EXPECT_EQ(readings[i].pci_address, devices_[i].pci_address);
    EXPECT_EQ(readings[i].port_state, "ACTIVE");
    EXPECT_EQ(readings[i].phys_state, "LinkUp");
    EXPECT_EQ(readings[i].dev_node_problem, "");
    EXPECT_EQ(readings[i].counter_problem, "");
  }
}

TEST_F(HealthPollerTest, SeesPortFlipsNodeLossAndCounterTroubleOnKeptDescriptors) {
  HealthPoller poller(*sysfs_, *dev_);
  poller.Track(devices_);
  ASSERT_EQ(poller.Poll().at(3).port_state, "ACTIVE");  // files are open from here on

  WriteFileOrDie(Ib(3, "ports/1/state"), "1: DOWN\n");
  WriteFileOrDie(Ib(3, "ports/1/phys_state"), "3: Disabled\n");
  std::filesystem::remove(DevNode(7));
  WriteFileOrDie(Ib(9, "hw_counters/no_completion_cmds"), "2\n");
  auto readings = poller.Poll();
  EXPECT_EQ(readings[3].port_state, "DOWN");
  EXPECT_EQ(readings[3].phys_state, "Disabled");
  EXPECT_EQ(readings[7].port_state, "ACTIVE");
  EXPECT_NE(readings[7].dev_node_problem.find(DevNode(7) + " is missing"), std::string::npos)
      << readings[7].dev_node_problem;
  EXPECT_NE(readings[9].counter_problem.find("2 admin command(s) got no completion"),
            std::string::npos)
      << readings[9].counter_problem;
  for (size_t i : {0, 31}) {
    EXPECT_EQ(readings[i].port_state, "ACTIVE");
    EXPECT_EQ(readings[i].dev_node_problem, "");
    EXPECT_EQ(readings[i].counter_problem, "");
  }

  WriteFileOrDie(Ib(3, "ports/1/state"), "4: ACTIVE\n");
  WriteFileOrDie(Ib(3, "ports/1/phys_state"), "5: LinkUp\n");
  WriteFileOrDie(DevNode(7), "");
  readings = poller.Poll();
  EXPECT_EQ(readings[3].port_state, "ACTIVE");
  EXPECT_EQ(readings[3].phys_state, "LinkUp");
  EXPECT_EQ(readings[7].dev_node_problem, "");
}

TEST_F(HealthPollerTest, AnUnreadablePortIsUnknownAndRecoversWhenTheFileReturns) {
  HealthPoller poller(*sysfs_, *dev_);
  std::vector<EfaDevice> one = {devices_.at(0)};
  // Never opened: the file is gone before the first poll.
  std::filesystem::remove(Ib(0, "ports/1/state"));
  poller.Track(one);
  EXPECT_EQ(poller.Poll().at(0).port_state, "");
  WriteFileOrDie(Ib(0, "ports/1/state"), "4: ACTIVE\n");
  EXPECT_EQ(poller.Poll().at(0).port_state, "ACTIVE");
}

TEST_F(HealthPollerTest, TrackFollowsTheLatestScan) {
  HealthPoller poller(*sysfs_, *dev_);
  poller.Track(devices_);
  ASSERT_EQ(poller.Poll().size(), 32u);
  std::vector<EfaDevice> fewer(devices_.begin() + 2, devices_.end());
  poller.Track(fewer);
  const auto readings = poller.Poll();
  ASSERT_EQ(readings.size(), 30u);
  EXPECT_EQ(readings.front().pci_address, devices_[2].pci_address);
  EXPECT_EQ(readings.front().port_state, "ACTIVE");
}

TEST(JudgeNoCompletionCmdsTest, AnyCompletionTimeoutIsTrouble) {
  struct Case {
    std::optional<std::string_view> text;
    bool trouble;
  };
  const Case cases[] = {{std::nullopt, false}, {"0\n", false},  {"", false},
                        {"junk\n", false},     {"1\n", true},   {"18446744073709551615\n", true},
                        {"-1\n", false},       {"12 \n", true}, {"3x\n", false}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text.has_value() ? std::string(*c.text) : "<unreadable>");
    EXPECT_EQ(!JudgeNoCompletionCmds(c.text).empty(), c.trouble);
  }
}

TEST(JudgeDevNodeTest, OnlyTheExpectedCharDeviceOrAStandInPasses) {
  auto info = [](core::FileType type, uint32_t major, uint32_t minor) {
    core::FileInfo out;
    out.type = type;
    out.device_major = major;
    out.device_minor = minor;
    return Result<core::FileInfo>(out);
  };
  const CharDeviceNumber expected{231, 195};
  struct Case {
    std::string name;
    Result<core::FileInfo> info;
    std::string want;  // substring; "" = no problem
  };
  const Case cases[] = {
      {"the node", info(core::FileType::kCharDevice, 231, 195), ""},
      {"fixture stand-in", info(core::FileType::kRegular, 0, 0), ""},
      {"other number", info(core::FileType::kCharDevice, 231, 192),
       "/d/uverbs3 is 231:192 but sysfs says 231:195"},
      {"a directory", info(core::FileType::kDirectory, 0, 0), "is not a character device"},
      {"missing", Result<core::FileInfo>(NotFoundError("no such file")),
       "/d/uverbs3 is missing (no such file)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string problem = JudgeDevNode(c.info, "/d/uverbs3", expected);
    if (c.want.empty()) {
      EXPECT_EQ(problem, "");
    } else {
      EXPECT_NE(problem.find(c.want), std::string::npos) << problem;
    }
  }
}

TEST(MapVerbsEventTest, PortAndFatalEventsMatterTheRestIsIgnored) {
  EXPECT_EQ(MapVerbsEvent(IBV_EVENT_PORT_ERR), VerbsHealthEvent::kPortDown);
  EXPECT_EQ(MapVerbsEvent(IBV_EVENT_PORT_ACTIVE), VerbsHealthEvent::kPortUp);
  EXPECT_EQ(MapVerbsEvent(IBV_EVENT_DEVICE_FATAL), VerbsHealthEvent::kDeviceFatal);
  for (int ignored : std::vector<int>{IBV_EVENT_QP_FATAL, IBV_EVENT_CQ_ERR, IBV_EVENT_LID_CHANGE,
                                      IBV_EVENT_GID_CHANGE, IBV_EVENT_SRQ_LIMIT_REACHED, 999}) {
    EXPECT_EQ(MapVerbsEvent(ignored), VerbsHealthEvent::kIgnored) << ignored;
  }
}

// One pipe per "opened" device: a byte written makes the fd readable, as the kernel makes the
// async fd readable; Drain hands out the events queued for it.
class FakeVerbsEventSource final : public VerbsEventSource {
 public:
  struct Shared {
    std::mutex mu;
    std::map<std::string, std::pair<int, int>> pipes;     // device -> (read, write)
    std::map<std::string, std::vector<int>> queued;       // device -> event types
    std::vector<std::string> openable;                    // what Open() succeeds for
    int opens = 0;
  };
  explicit FakeVerbsEventSource(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}
  ~FakeVerbsEventSource() override {
    for (auto& [name, fds] : shared_->pipes) {
      ::close(fds.first);
      ::close(fds.second);
    }
  }

  int Open(const std::vector<std::string>& rdma_devices) override {
    std::lock_guard<std::mutex> lock(shared_->mu);
    ++shared_->opens;
    int count = 0;
    for (const auto& device : rdma_devices) {
      if (std::find(shared_->openable.begin(), shared_->openable.end(), device) ==
          shared_->openable.end()) {
        continue;
      }
      if (shared_->pipes.count(device) == 0) {
        int fds[2];
        EXPECT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
        shared_->pipes[device] = {fds[0], fds[1]};
      }
      ++count;
    }
    return count;
  }
  std::vector<int> Fds() const override {
    std::lock_guard<std::mutex> lock(shared_->mu);
    std::vector<int> fds;
    for (const auto& [name, pipe] : shared_->pipes) fds.push_back(pipe.first);
    return fds;
  }
  std::vector<Event> Drain(int fd) override {
    std::lock_guard<std::mutex> lock(shared_->mu);
    std::vector<Event> events;
    for (auto& [name, pipe] : shared_->pipes) {
      if (pipe.first != fd) continue;
      char buffer[64];
      while (::read(fd, buffer, sizeof(buffer)) > 0) {
      }
      for (int type : shared_->queued[name]) events.push_back({name, type});
      shared_->queued[name].clear();
    }
    return events;
  }

 private:
  std::shared_ptr<Shared> shared_;
};

void Raise(FakeVerbsEventSource::Shared& shared, const std::string& device, int type) {
  std::lock_guard<std::mutex> lock(shared.mu);
  shared.queued[device].push_back(type);
  ASSERT_EQ(::write(shared.pipes.at(device).second, "x", 1), 1);
}

TEST(VerbsEventWatcherTest, ReportsWhatEventsMeanPerDevice) {
  auto shared = std::make_shared<FakeVerbsEventSource::Shared>();
  shared->openable = {"rdmap79s0", "rdmap80s0"};
  std::mutex mu;
  std::vector<std::pair<std::string, VerbsHealthEvent>> seen;
  VerbsEventWatcher watcher(std::make_unique<FakeVerbsEventSource>(shared),
                            [&](const std::string& device, VerbsHealthEvent event) {
                              std::lock_guard<std::mutex> lock(mu);
                              seen.emplace_back(device, event);
                            });
  ASSERT_TRUE(watcher.Start({"rdmap79s0", "rdmap80s0", "rdmap81s0"}).ok());
  Raise(*shared, "rdmap80s0", IBV_EVENT_PORT_ERR);
  Raise(*shared, "rdmap79s0", IBV_EVENT_QP_FATAL);  // a process's own QP: not device health
  Raise(*shared, "rdmap79s0", IBV_EVENT_DEVICE_FATAL);
  Raise(*shared, "rdmap80s0", IBV_EVENT_PORT_ACTIVE);
  const std::vector<std::pair<std::string, VerbsHealthEvent>> want = {
      {"rdmap80s0", VerbsHealthEvent::kPortDown},
      {"rdmap79s0", VerbsHealthEvent::kDeviceFatal},
      {"rdmap80s0", VerbsHealthEvent::kPortUp}};
  EXPECT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(mu);
    return seen.size() >= want.size();
  }));
  watcher.Stop();
  std::lock_guard<std::mutex> lock(mu);
  // Per device in order; across devices the watcher may see the fds in either order.
  auto of = [&](const std::string& device) {
    std::vector<VerbsHealthEvent> out;
    for (const auto& [d, e] : seen) {
      if (d == device) out.push_back(e);
    }
    return out;
  };
  EXPECT_EQ(of("rdmap80s0"),
            (std::vector<VerbsHealthEvent>{VerbsHealthEvent::kPortDown, VerbsHealthEvent::kPortUp}));
  EXPECT_EQ(of("rdmap79s0"), (std::vector<VerbsHealthEvent>{VerbsHealthEvent::kDeviceFatal}));
  EXPECT_EQ(seen.size(), want.size());
}

TEST(VerbsEventWatcherTest, NoDeviceThatOpensIsUnavailableNotAThread) {
  auto shared = std::make_shared<FakeVerbsEventSource::Shared>();
  VerbsEventWatcher watcher(std::make_unique<FakeVerbsEventSource>(shared),
                            [](const std::string&, VerbsHealthEvent) {});
  const Status status = watcher.Start({"rdmap79s0"});
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("none of the 1 EFA(s)"), std::string::npos) << status.message();
  watcher.Stop();  // nothing to stop; must not hang
}

TEST(VerbsEventWatcherTest, TheRealSourceDegradesCleanlyWithoutHardware) {
  // CI has no EFA: ibv_get_device_list finds none of these names, and Start says so.
  VerbsEventWatcher watcher(NewIbverbsEventSource(), [](const std::string&, VerbsHealthEvent) {});
  const Status status = watcher.Start({"no-such-efa-device"});
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
}

}  // namespace
}  // namespace efadra::discovery
