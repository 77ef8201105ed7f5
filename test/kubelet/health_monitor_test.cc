// Device health between rescans, end to end inside one process: a generated p5.48xlarge tree,
// one discovery scan, the HealthMonitor polling it, and the kubelet plugin's health stream
// (DRAResourceHealth NodeWatchResources) read by a real gRPC client over the unix socket. No
// rescan ever runs after the first, so whatever the stream reports came from the poll or from
// verbs events.
#include "efadra/kubelet/health_monitor.h"

#include <fcntl.h>
#include <infiniband/verbs.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>

#include <gtest/gtest.h>

#include "claims/claims_fixture.h"
#include "efadra/apidouble/fake_api_server.h"
#include "efadra/kubelet/device_health.h"
#include "efadra/kubelet/plugin.h"
#include "efadra/slices/resource_slices.h"
#include "kubelet_client.h"

namespace efadra::kubelet {
namespace {

using claims::testing::kDriver;
using claims::testing::kNode;
using efadra::testing::TempDir;
using efadra::testing::WaitFor;
using efadra::testing::WriteFileOrDie;

// Verbs events on demand: one pipe stands for every opened device's async fd.
class ScriptedVerbsSource final : public discovery::VerbsEventSource {
 public:
  struct Script {
    std::mutex mu;
    std::vector<Event> queued;
    int write_fd = -1;
  };
  explicit ScriptedVerbsSource(std::shared_ptr<Script> script) : script_(std::move(script)) {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    read_fd_ = fds[0];
    script_->write_fd = fds[1];
  }
  ~ScriptedVerbsSource() override {
    ::close(read_fd_);
    ::close(script_->write_fd);
  }
  int Open(const std::vector<std::string>& rdma_devices) override {
    return static_cast<int>(rdma_devices.size());
  }
  std::vector<int> Fds() const override { return {read_fd_}; }
  std::vector<Event> Drain(int fd) override {
    char buffer[64];
    while (::read(fd, buffer, sizeof(buffer)) > 0) {
    }
    std::lock_guard<std::mutex> lock(script_->mu);
    std::vector<Event> out;
    out.swap(script_->queued);
    return out;
  }

 private:
  std::shared_ptr<Script> script_;
  int read_fd_ = -1;
};

class HealthMonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    inventory_ = claims::testing::DiscoverBundled(dir_);
    ASSERT_TRUE(server_.Start().ok());
    server_.PutNode(kNode, "node-uid-1");
    client_ = claims::testing::QuickRetryClient(server_.url());
    std::filesystem::create_directories(dir_.Sub("cdi"));
    std::filesystem::create_directories(dir_.Sub("state"));
    cdi_ = core::NewPosixFilesystem(dir_.Sub("cdi"));
    state_ = core::NewPosixFilesystem(dir_.Sub("state"));
    sysfs_ = core::NewPosixFilesystem(dir_.Sub("sys"));
    dev_ = core::NewPosixFilesystem(dir_.Sub("dev"));
    health_.Update(*inventory_, 1000);
  }

  void TearDown() override {
    if (context_ != nullptr) context_->TryCancel();
    if (plugin_ != nullptr) plugin_->Stop();
    if (monitor_ != nullptr) monitor_->Stop();
  }

  // The monitor (polling every 50 ms unless told otherwise), the plugin, and a stream reader.
  void Start(std::chrono::milliseconds interval = std::chrono::milliseconds(50),
             std::unique_ptr<discovery::VerbsEventSource> verbs = nullptr) {
    HealthMonitorOptions options;
    options.poll_interval = interval;
    options.on_port_change = [this] { ++port_changes_; };
    monitor_ = std::make_unique<HealthMonitor>(*sysfs_, *dev_, health_, std::move(verbs),
                                               std::move(options));
    monitor_->Track(*inventory_);
    ASSERT_TRUE(monitor_->Start().ok());

    claims::PreparerOptions preparer_options;
    preparer_options.driver_name = kDriver;
    preparer_options.node_name = kNode;
    preparer_options.dev_root = dir_.Sub("dev");
    preparer_options.sysfs_root = dir_.Sub("sys");
    preparer_options.boot_id = "boot-1";
    preparer_ = std::make_unique<claims::ClaimPreparer>(
        preparer_options, *client_, *cdi_, *state_, [this] { return inventory_; });
    ASSERT_TRUE(preparer_->Start().ok());
    PluginOptions plugin_options;
    plugin_options.driver_name = kDriver;
    plugin_options.registrar_dir = dir_.Sub("registry");
    plugin_options.plugin_dir = dir_.Sub("plugins/" + std::string(kDriver));
    plugin_ = std::make_unique<Plugin>(plugin_options, *preparer_, &health_);
    ASSERT_TRUE(plugin_->Start().ok());

    stub_ = v1alpha1::DRAResourceHealth::NewStub(testing::UnixChannel(plugin_->DraSocketPath()));
    context_ = std::make_unique<grpc::ClientContext>();
    context_->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    reader_ = stub_->NodeWatchResources(context_.get(), v1alpha1::NodeWatchResourcesRequest());
  }

  // Reads the stream until device `i` has `health`; its message then.
  std::optional<std::string> AwaitHealth(size_t i, v1alpha1::HealthStatus health) {
    const std::string name = slices::DeviceName(inventory_->devices.at(i).pci_address);
    v1alpha1::NodeWatchResourcesResponse message;
    while (reader_->Read(&message)) {
      for (const auto& device : message.devices()) {
        if (device.device().device_name() == name && device.health() == health) {
          return device.message();
        }
      }
    }
    return std::nullopt;  // the stream ended (deadline): the state never came
  }

  std::string Ib(size_t i, const std::string& file) const {
    return dir_.Sub("sys/class/infiniband/" + inventory_->devices.at(i).rdma_device + "/" + file);
  }

  TempDir dir_;
  apidouble::FakeApiServer server_;
  std::unique_ptr<kube::Client> client_;
  std::unique_ptr<core::Filesystem> cdi_, state_, sysfs_, dev_;
  std::shared_ptr<const discovery::Inventory> inventory_;
  DeviceHealthTracker health_{kNode};
  std::atomic<int> port_changes_{0};
  std::unique_ptr<HealthMonitor> monitor_;
  std::unique_ptr<claims::ClaimPreparer> preparer_;
  std::unique_ptr<Plugin> plugin_;
  std::unique_ptr<v1alpha1::DRAResourceHealth::Stub> stub_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<v1alpha1::NodeWatchResourcesResponse>> reader_;
};

TEST_F(HealthMonitorTest, APortThatGoesDownAndBackIsSeenWithoutARescan) {
  Start();
  ASSERT_TRUE(AwaitHealth(3, v1alpha1::HEALTHY));
  WriteFileOrDie(Ib(3, "ports/1/state"), "1: DOWN\n");
  WriteFileOrDie(Ib(3, "ports/1/phys_state"), "3: Disabled\n");
  EXPECT_EQ(AwaitHealth(3, v1alpha1::UNHEALTHY), "port 1 is DOWN (physical state Disabled)");
  // The daemon rescans then, for the slice (the callback runs just after the tracker changed).
  EXPECT_TRUE(WaitFor([&] { return port_changes_.load() >= 1; }));

  WriteFileOrDie(Ib(3, "ports/1/state"), "4: ACTIVE\n");
  WriteFileOrDie(Ib(3, "ports/1/phys_state"), "5: LinkUp\n");
  EXPECT_EQ(AwaitHealth(3, v1alpha1::HEALTHY), "");
  EXPECT_EQ(health_.Current().at(slices::DeviceName(inventory_->devices[0].pci_address)),
            DeviceHealthReport::Health::kHealthy);
}

TEST_F(HealthMonitorTest, ALostUverbsNodeIsUnhealthyUntilItReturns) {
  Start();
  const std::string node = dir_.Sub("dev/infiniband/" + inventory_->devices[5].UverbsName());
  std::filesystem::remove(node);
  const auto message = AwaitHealth(5, v1alpha1::UNHEALTHY);
  ASSERT_TRUE(message.has_value());
  EXPECT_NE(message->find(node + " is missing"), std::string::npos) << *message;
  EXPECT_EQ(port_changes_.load(), 0);  // not a port change: no rescan needed

  // A rescan, which only warns about /dev, does not wipe what the poll found.
  health_.Update(*inventory_, 2000);
  EXPECT_EQ(health_.Current().at(slices::DeviceName(inventory_->devices[5].pci_address)),
            DeviceHealthReport::Health::kUnhealthy);

  WriteFileOrDie(node, "");
  EXPECT_EQ(AwaitHealth(5, v1alpha1::HEALTHY), "");
}

TEST_F(HealthMonitorTest, AnAdminCommandWithoutCompletionMakesTheDeviceUnhealthy) {
  Start();
  WriteFileOrDie(Ib(11, "hw_counters/no_completion_cmds"), "1\n");
  const auto message = AwaitHealth(11, v1alpha1::UNHEALTHY);
  ASSERT_TRUE(message.has_value());
  EXPECT_NE(message->find("no_completion_cmds"), std::string::npos) << *message;
}

TEST_F(HealthMonitorTest, VerbsEventsDriveHealthAndPortActiveRechecksAtOnce) {
  auto script = std::make_shared<ScriptedVerbsSource::Script>();
  // Polling off: only events (and the re-check they ask for) can change anything.
  Start(std::chrono::milliseconds(0), std::make_unique<ScriptedVerbsSource>(script));
  ASSERT_TRUE(AwaitHealth(2, v1alpha1::HEALTHY));
  auto raise = [&](size_t i, int type) {
    std::lock_guard<std::mutex> lock(script->mu);
    script->queued.push_back({inventory_->devices.at(i).rdma_device, type});
    ASSERT_EQ(::write(script->write_fd, "x", 1), 1);
  };
  // The watcher is started from the monitor's thread once it has the devices.
  ASSERT_TRUE(WaitFor([&] {
    raise(2, IBV_EVENT_PORT_ERR);
    return health_.Current().at(slices::DeviceName(inventory_->devices[2].pci_address)) ==
           DeviceHealthReport::Health::kUnhealthy;
  }));
  EXPECT_EQ(AwaitHealth(2, v1alpha1::UNHEALTHY), "port 1 reported an error (IBV_EVENT_PORT_ERR)");

  // PORT_ACTIVE clears the event and re-reads sysfs, which still says DOWN here.
  WriteFileOrDie(Ib(2, "ports/1/state"), "1: DOWN\n");
  raise(2, IBV_EVENT_PORT_ACTIVE);
  EXPECT_EQ(AwaitHealth(2, v1alpha1::UNHEALTHY), "port 1 is DOWN (physical state LinkUp)");
  WriteFileOrDie(Ib(2, "ports/1/state"), "4: ACTIVE\n");
  raise(2, IBV_EVENT_PORT_ACTIVE);
  EXPECT_EQ(AwaitHealth(2, v1alpha1::HEALTHY), "");

  raise(4, IBV_EVENT_DEVICE_FATAL);
  EXPECT_EQ(AwaitHealth(4, v1alpha1::UNHEALTHY),
            "the device reported a fatal error (IBV_EVENT_DEVICE_FATAL)");
  raise(4, IBV_EVENT_PORT_ACTIVE);  // a port event does not undo a fatal device
  monitor_->PollNow();
  EXPECT_FALSE(WaitFor(
      [&] {
        return health_.Current().at(slices::DeviceName(inventory_->devices[4].pci_address)) ==
               DeviceHealthReport::Health::kHealthy;
      },
      std::chrono::milliseconds(300)));
}

}  // namespace
}  // namespace efadra::kubelet
