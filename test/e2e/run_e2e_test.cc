// End to end: the real `efa-dra-driver run` binary against a FakeApiServer (real HTTP) and a
// generated sysfs tree, with this test playing the kubelet over the real unix sockets. Covers
// publishing, registration, prepare, /readyz and /metrics, SIGTERM, kill -9 (once at a chosen
// moment and repeatedly during a stream of prepares) and a reboot (new boot id, wiped CDI dir).
#include <gtest/gtest.h>
#include <httplib.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "claims/claims_fixture.h"
#include "efadra/apidouble/fake_api_server.h"
#include "efadra/claims/cdi_spec.h"
#include "efadra/slices/resource_slices.h"
#include "e2e/driver_process.h"
#include "kubelet/kubelet_client.h"
#include "support/test_support.h"

namespace efadra {
namespace {

using claims::testing::AllocatedClaim;
using efadra::testing::Child;
using efadra::testing::FreePort;
using efadra::testing::Kubeconfig;
using efadra::testing::ReadFileOrEmpty;
using efadra::testing::TempDir;
using efadra::testing::WaitFor;
using efadra::testing::WriteFileOrDie;
using kubelet::testing::AddClaim;
using kubelet::testing::KubeletClient;
namespace dra_v1 = kubelet::testing::dra_v1;

constexpr char kBinary[] = EFADRA_BINARY_DIR "/efa-dra-driver";
constexpr char kNode[] = "node-1";

class RunE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access(kBinary, X_OK), 0) << kBinary << " is not built";
    ASSERT_TRUE(server_.Start().ok());
    server_.PutNode(kNode, "uid-node-1");
    WriteFileOrDie(dir_.Sub("kubeconfig"), Kubeconfig(server_.url()));
    WriteFileOrDie(dir_.Sub("boot_id"), "boot-1\n");
    port_ = FreePort();
  }

  void BuildP5() {
    inventory_ = claims::testing::DiscoverBundled(dir_);  // builds dir/sys and dir/dev too
  }

  // The run flags, with `overrides` replacing the values of the flags they name. In the
  // chart's layout the driver runs as the DaemonSet starts it: with the pod's UID (per-pod
  // sockets, the shared lock) and no --state-dir, so the checkpoints live in the plugin dir.
  std::vector<std::string> Args(const std::map<std::string, std::string>& overrides = {}) const {
    std::vector<std::string> args = BaseArgs();
    for (size_t i = 2; i + 1 < args.size(); i += 2) {
      if (auto it = overrides.find(args[i]); it != overrides.end()) args[i + 1] = it->second;
    }
    if (chart_layout_) {
      auto state = std::find(args.begin(), args.end(), "--state-dir");
      args.erase(state, state + 2);
      args.insert(args.end(), {"--pod-uid", kPodUid});
    }
    return args;
  }

  std::vector<std::string> BaseArgs() const {
    return {kBinary,           "run",
            "--node-name",     kNode,
            "--sysfs-root",    dir_.Sub("sys"),
            "--dev-root",      dir_.Sub("dev"),
            "--kubeconfig",    dir_.Sub("kubeconfig"),
            "--registrar-dir", dir_.Sub("registry"),
            "--plugin-dir",    dir_.Sub("plugins/dra.net"),
            "--cdi-root",      dir_.Sub("cdi"),
            "--state-dir",     dir_.Sub("state"),
            "--boot-id-file",  dir_.Sub("boot_id"),
            "--device-plugin-dir", dir_.Sub("device-plugins"),
            "--http-address",  "127.0.0.1:" + std::to_string(port_),
            "--resync",        "200ms",
            "--log-format",    "json"};
  }

  std::unique_ptr<Child> Start() {
    auto child = std::make_unique<Child>(Args(), dir_.Sub("log"));
    // Served, not merely present: a killed instance leaves its socket files behind.
    EXPECT_TRUE(WaitFor([&] {
      pluginregistration::PluginInfo info;
      return KubeletClient::GetInfo(RegistrationSocket(), &info).ok();
    })) << ReadFileOrEmpty(dir_.Sub("log"));
    return child;
  }

  static constexpr char kPodUid[] = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
  std::string RegistrationSocket() const {
    return dir_.Sub(chart_layout_ ? "registry/dra.net-" + std::string(kPodUid) + "-reg.sock"
                                  : "registry/dra.net-reg.sock");
  }
  std::string DraSocket() const {
    return dir_.Sub(chart_layout_ ? "plugins/dra.net/dra-" + std::string(kPodUid) + ".sock"
                                  : "plugins/dra.net/dra.sock");
  }
  std::string CheckpointPath(const std::string& uid) const {
    return dir_.Sub((chart_layout_ ? "plugins/dra.net" : "state") + std::string("/checkpoints/") +
                    uid + ".json");
  }

  // Renumbers two EFAs the way a reboot can: their uverbs nodes swap (each
  // infiniband_verbs/uverbsN keeps its dev number but names the other device) and rdma_cm
  // gets another minor. Returns the inventory of the changed tree.
  std::shared_ptr<const discovery::Inventory> Renumber(size_t a, size_t b, int rdma_cm_minor) {
    const discovery::EfaDevice& first = inventory_->devices.at(a);
    const discovery::EfaDevice& second = inventory_->devices.at(b);
    WriteFileOrDie(dir_.Sub("sys/class/infiniband_verbs/" + first.UverbsName() + "/ibdev"),
                   second.rdma_device + "\n");
    WriteFileOrDie(dir_.Sub("sys/class/infiniband_verbs/" + second.UverbsName() + "/ibdev"),
                   first.rdma_device + "\n");
    WriteFileOrDie(dir_.Sub("sys/class/misc/rdma_cm/dev"),
                   "10:" + std::to_string(rdma_cm_minor) + "\n");
    return claims::testing::DiscoverTree(dir_.path());
  }

  // Every CDI spec names, for each of its devices, the uverbs node and number that device has
  // in `now`, and the rdma_cm minor of now; no two specs inject the same uverbs device.
  void ExpectSpecsMatch(const discovery::Inventory& now, int rdma_cm_minor) const {
    std::map<std::string, std::string> injected;  // "major:minor" -> spec device
    for (const auto& entry : std::filesystem::directory_iterator(dir_.Sub("cdi"))) {
      const std::string file = entry.path().filename().string();
      if (file.front() == '.') continue;
      SCOPED_TRACE(file);
      auto spec = nlohmann::json::parse(ReadFileOrEmpty(entry.path()), nullptr, false);
      ASSERT_TRUE(spec.is_object());
      EXPECT_EQ(spec["containerEdits"]["deviceNodes"][0]["minor"], rdma_cm_minor);
      for (const auto& device : spec["devices"]) {
        const std::string name = device.value("name", "");
        const discovery::EfaDevice* current = nullptr;
        for (const auto& candidate : now.devices) {
          const std::string suffix = "-" + slices::DeviceName(candidate.pci_address);
          if (name.size() > suffix.size() &&
              name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
            current = &candidate;
          }
        }
        ASSERT_NE(current, nullptr) << name;
        const auto& node = device["containerEdits"]["deviceNodes"][0];
        EXPECT_EQ(node["path"], "/dev/infiniband/" + current->UverbsName()) << name;
        EXPECT_EQ(node["major"], current->uverbs_dev.major) << name;
        EXPECT_EQ(node["minor"], current->uverbs_dev.minor) << name;
        const std::string number = node["major"].dump() + ":" + node["minor"].dump();
        auto [it, inserted] = injected.emplace(number, name);
        EXPECT_TRUE(inserted) << name << " and " << it->second << " both inject " << number;
      }
    }
  }
  std::string SpecPath(const std::string& uid) const {
    return dir_.Sub("cdi/" + claims::CdiSpecFileName("dra.net", uid));
  }

  int HttpStatus(const std::string& path, std::string* body = nullptr) const {
    httplib::Client http("127.0.0.1", port_);
    auto result = http.Get(path);
    if (!result) return 0;
    if (body != nullptr) *body = result->body;
    return result->status;
  }

  std::string Device(size_t i) const {
    return slices::DeviceName(inventory_->devices.at(i).pci_address);
  }

  void PutClaim(const std::string& name, const std::string& uid,
                const std::vector<std::string>& devices) {
    std::vector<claims::testing::AllocatedDevice> allocated;
    for (const auto& d : devices) allocated.push_back({"efa", d, "dra.net", kNode});
    server_.PutResourceClaim(AllocatedClaim("train", name, uid, allocated));
  }

  grpc::Status Prepare(const std::string& name, const std::string& uid,
                       dra_v1::NodePrepareResourcesResponse* response) const {
    dra_v1::NodePrepareResourcesRequest request;
    AddClaim(&request, "train", name, uid);
    return KubeletClient::Prepare<dra_v1::DRAPlugin>(DraSocket(), request, response);
  }

  grpc::Status Unprepare(const std::string& name, const std::string& uid) const {
    dra_v1::NodeUnprepareResourcesRequest request;
    AddClaim(&request, "train", name, uid);
    dra_v1::NodeUnprepareResourcesResponse response;
    grpc::Status status =
        KubeletClient::Unprepare<dra_v1::DRAPlugin>(DraSocket(), request, &response);
    if (status.ok() && !response.claims().at(uid).error().empty()) {
      return {grpc::StatusCode::UNKNOWN, response.claims().at(uid).error()};
    }
    return status;
  }

  TempDir dir_;
  apidouble::FakeApiServer server_;
  std::shared_ptr<const discovery::Inventory> inventory_;
  int port_ = 0;
  bool chart_layout_ = false;
};

// The tests that matter most in both of the driver's modes: a single instance with its own
// state dir, and the chart's DaemonSet (--pod-uid, state inside the plugin dir).
enum class Layout { kSingleInstance, kChart };

class RunLayoutE2eTest : public RunE2eTest, public ::testing::WithParamInterface<Layout> {
 protected:
  void SetUp() override {
    chart_layout_ = GetParam() == Layout::kChart;
    RunE2eTest::SetUp();
  }
};

INSTANTIATE_TEST_SUITE_P(Layouts, RunLayoutE2eTest,
                         ::testing::Values(Layout::kSingleInstance, Layout::kChart),
                         [](const ::testing::TestParamInfo<Layout>& param_info) {
                           return param_info.param == Layout::kChart ? "ChartLayout"
                                                                     : "SingleInstance";
                         });

TEST_F(RunE2eTest, PublishesRegistersPreparesAndStopsCleanlyOnSigterm) {
  BuildP5();
  auto child = Start();
  ASSERT_TRUE(WaitFor([&] {
    const auto slices = server_.ResourceSlices();
    return slices.size() == 1 &&
           slices[0]["spec"].value("devices", nlohmann::json::array()).size() == 32;
  })) << ReadFileOrEmpty(dir_.Sub("log"));
  const auto slice = server_.ResourceSlices()[0];
  EXPECT_EQ(slice["spec"]["driver"], "dra.net");
  EXPECT_EQ(slice["metadata"]["ownerReferences"][0]["uid"], "uid-node-1");

  // Not ready until the kubelet accepted the registration.
  std::string body;
  EXPECT_EQ(HttpStatus("/readyz?verbose", &body), 503);
  EXPECT_NE(body.find("[-]kubelet-registration"), std::string::npos) << body;
  EXPECT_EQ(HttpStatus("/healthz"), 200);
  pluginregistration::PluginInfo info;
  ASSERT_TRUE(KubeletClient::Register(RegistrationSocket(), &info).ok());
  EXPECT_EQ(info.endpoint(), DraSocket());
  EXPECT_TRUE(WaitFor([&] { return HttpStatus("/readyz") == 200; }));

  PutClaim("job", "uid-job", {Device(0), Device(1)});
  dra_v1::NodePrepareResourcesResponse response;
  ASSERT_TRUE(Prepare("job", "uid-job", &response).ok());
  EXPECT_EQ(response.claims().at("uid-job").error(), "");
  EXPECT_EQ(response.claims().at("uid-job").devices_size(), 2);
  EXPECT_TRUE(std::filesystem::exists(SpecPath("uid-job")));
  ASSERT_EQ(HttpStatus("/metrics", &body), 200);
  EXPECT_NE(body.find("efa_dra_prepare_total{api_version=\"v1\",result=\"ok\"} 1"),
            std::string::npos)
      << body;
  EXPECT_NE(body.find("efa_dra_published_devices 32"), std::string::npos);
  EXPECT_NE(body.find("efa_dra_prepared_claims 1"), std::string::npos);

  const auto begin = std::chrono::steady_clock::now();
  child->Signal(SIGTERM);
  EXPECT_TRUE(WaitFor([&] { return !child->Running(); }, std::chrono::seconds(5)))
      << ReadFileOrEmpty(dir_.Sub("log"));
  EXPECT_LT(std::chrono::steady_clock::now() - begin, std::chrono::seconds(2));
  EXPECT_EQ(child->ExitCode(), 0) << ReadFileOrEmpty(dir_.Sub("log"));
  EXPECT_FALSE(std::filesystem::exists(RegistrationSocket()));
  EXPECT_FALSE(std::filesystem::exists(DraSocket()));
  // Slices stay for the next instance to adopt (the kubelet wipes them if none comes), and the
  // prepared claim stays prepared.
  EXPECT_EQ(server_.ResourceSlices().size(), 1u);
  EXPECT_TRUE(std::filesystem::exists(SpecPath("uid-job")));
}

// The chart turns GDRCopy injection on with EFA_DRA_INJECT_GDRDRV=true: the binary then puts the
// node's /dev/gdrdrv into the spec of each claim it prepares. With "false" (the chart's default)
// it does not, though the node has one.
TEST_F(RunE2eTest, TheChartsEnvVariableTurnsGdrdrvInjectionOn) {
  BuildP5();
  const std::string node = dir_.Sub("dev/gdrdrv");
  if (::mknod(node.c_str(), S_IFCHR | 0666, makedev(509, 0)) != 0) {
    const int err = errno;
    if (err == EPERM) GTEST_SKIP() << "mknod " << node << " needs root with CAP_MKNOD";
    FAIL() << "mknod " << node << ": " << std::strerror(err);
  }
  for (const bool on : {true, false}) {
    SCOPED_TRACE(on ? "on" : "off");
    Child child(Args(), dir_.Sub("log"), {std::string("EFA_DRA_INJECT_GDRDRV=") + (on ? "true" : "false")});
    ASSERT_TRUE(WaitFor([&] {
      pluginregistration::PluginInfo info;
      return KubeletClient::Register(RegistrationSocket(), &info).ok();
    })) << ReadFileOrEmpty(dir_.Sub("log"));
    const std::string uid = on ? "uid-gdrdrv-on" : "uid-gdrdrv-off";
    PutClaim(uid, uid, {Device(on ? 0 : 1)});
    dra_v1::NodePrepareResourcesResponse response;
    ASSERT_TRUE(Prepare(uid, uid, &response).ok());
    ASSERT_EQ(response.claims().at(uid).error(), "");
    auto spec = nlohmann::json::parse(ReadFileOrEmpty(SpecPath(uid)));
    std::vector<std::string> gdrdrv;  // this tree has no rdma_cm char device: only gdrdrv's
    for (const auto& n : spec["containerEdits"].value("deviceNodes", nlohmann::json::array())) {
      if (n.value("path", "") != "/dev/gdrdrv") continue;
      gdrdrv.push_back(n["hostPath"].get<std::string>() + " " + n["major"].dump() + ":" +
                       n["minor"].dump());
    }
    EXPECT_EQ(gdrdrv, on ? std::vector<std::string>{node + " 509:0"} : std::vector<std::string>{})
        << spec.dump(2);
    child.Signal(SIGTERM);
    ASSERT_TRUE(WaitFor([&] { return !child.Running(); }, std::chrono::seconds(5)))
        << ReadFileOrEmpty(dir_.Sub("log"));
  }
}

// A surge rollout as the chart runs it with host networking: the new pod starts on the same
// node and the same HTTP port while the old one still serves, both registered under per-pod
// socket names; the old one leaves on SIGTERM and the new one unprepares what it prepared.
TEST_F(RunE2eTest, ASurgeRolloutOverlapsTwoPodsOnOnePort) {
  BuildP5();
  // Pod UIDs as the API server writes them (the driver refuses anything but a UUID).
  const std::string kOldPod = "01d0d000-0000-4000-8000-000000000001";
  const std::string kNewPod = "0e40d000-0000-4000-8000-000000000002";
  auto pod = [&](const std::string& uid) {
    auto args = Args();
    args.insert(args.end(), {"--pod-uid", uid});
    return std::make_unique<Child>(args, dir_.Sub("log"));
  };
  auto registration = [&](const std::string& uid) {
    return dir_.Sub("registry/dra.net-" + uid + "-reg.sock");
  };
  auto dra_socket = [&](const std::string& uid) {
    return dir_.Sub("plugins/dra.net/dra-" + uid + ".sock");
  };
  auto registered = [&](const std::string& uid) {
    return WaitFor([&] {
      pluginregistration::PluginInfo info;
      return KubeletClient::Register(registration(uid), &info).ok() &&
             info.endpoint() == dra_socket(uid);
    });
  };

  auto old_pod = pod(kOldPod);
  ASSERT_TRUE(registered(kOldPod)) << ReadFileOrEmpty(dir_.Sub("log"));
  ASSERT_TRUE(WaitFor([&] { return HttpStatus("/readyz") == 200; }))
      << ReadFileOrEmpty(dir_.Sub("log"));
  PutClaim("job", "uid-job", {Device(0)});
  dra_v1::NodePrepareResourcesRequest prepare;
  AddClaim(&prepare, "train", "job", "uid-job");
  dra_v1::NodePrepareResourcesResponse prepared;
  ASSERT_TRUE(KubeletClient::Prepare<dra_v1::DRAPlugin>(dra_socket(kOldPod), prepare, &prepared)
                  .ok());
  ASSERT_EQ(prepared.claims().at("uid-job").error(), "");

  // The surge pod binds the same port and registers next to the old one.
  auto new_pod = pod(kNewPod);
  ASSERT_TRUE(registered(kNewPod)) << ReadFileOrEmpty(dir_.Sub("log"));
  EXPECT_TRUE(old_pod->Running());
  EXPECT_TRUE(new_pod->Running()) << ReadFileOrEmpty(dir_.Sub("log"));

  old_pod->Signal(SIGTERM);
  ASSERT_TRUE(WaitFor([&] { return !old_pod->Running(); }, std::chrono::seconds(5)));
  EXPECT_EQ(old_pod->ExitCode(), 0) << ReadFileOrEmpty(dir_.Sub("log"));
  EXPECT_FALSE(std::filesystem::exists(registration(kOldPod)));
  EXPECT_TRUE(std::filesystem::exists(registration(kNewPod)));

  // The port is served by the new pod alone now, and it is ready.
  EXPECT_TRUE(WaitFor([&] { return HttpStatus("/readyz") == 200; }))
      << ReadFileOrEmpty(dir_.Sub("log"));
  // It answers the old pod's claim identically and can unprepare it.
  dra_v1::NodePrepareResourcesResponse again;
  ASSERT_TRUE(
      KubeletClient::Prepare<dra_v1::DRAPlugin>(dra_socket(kNewPod), prepare, &again).ok());
  EXPECT_EQ(again.claims().at("uid-job").SerializeAsString(),
            prepared.claims().at("uid-job").SerializeAsString());
  dra_v1::NodeUnprepareResourcesRequest unprepare;
  AddClaim(&unprepare, "train", "job", "uid-job");
  dra_v1::NodeUnprepareResourcesResponse unprepared;
  ASSERT_TRUE(KubeletClient::Unprepare<dra_v1::DRAPlugin>(dra_socket(kNewPod), unprepare,
                                                          &unprepared)
                  .ok());
  EXPECT_EQ(unprepared.claims().at("uid-job").error(), "");
  EXPECT_FALSE(std::filesystem::exists(SpecPath("uid-job")));
}

TEST_P(RunLayoutE2eTest, Kill9AndRebootLoseNothing) {
  BuildP5();
  auto child = Start();
  PutClaim("job", "uid-job", {Device(4), Device(5), Device(6), Device(7)});
  dra_v1::NodePrepareResourcesResponse first;
  ASSERT_TRUE(Prepare("job", "uid-job", &first).ok()) << ReadFileOrEmpty(dir_.Sub("log"));
  ASSERT_EQ(first.claims().at("uid-job").error(), "");
  const std::string spec = ReadFileOrEmpty(SpecPath("uid-job"));
  ASSERT_FALSE(spec.empty());

  // kill -9: the restarted driver replaces the stale sockets and answers identically, without
  // reading the claim from the API again (re-applying its status.devices is allowed: the write
  // is idempotent and may not have happened before the kill).
  child->Kill();
  child = Start();
  server_.ClearRequests();
  dra_v1::NodePrepareResourcesResponse again;
  grpc::Status status = Prepare("job", "uid-job", &again);
  ASSERT_TRUE(status.ok()) << status.error_message() << ReadFileOrEmpty(dir_.Sub("log"));
  EXPECT_EQ(again.SerializeAsString(), first.SerializeAsString());
  for (const auto& request : server_.Requests()) {
    if (request.method != "GET") continue;
    EXPECT_EQ(request.path.find("/resourceclaims/"), std::string::npos) << request.path;
  }

  // Reboot: /var/run/cdi is a tmpfs (empty after boot), the boot id changes and the kernel
  // numbers the hardware anew (a claimed EFA swaps uverbs nodes with a free one, rdma_cm gets
  // another minor). The spec is back, with today's numbers, before the kubelet asks.
  child->Kill();
  std::filesystem::remove_all(dir_.Sub("cdi"));
  WriteFileOrDie(dir_.Sub("boot_id"), "boot-2\n");
  const auto renumbered = Renumber(5, 12, 77);
  child = Start();
  EXPECT_TRUE(WaitFor([&] { return std::filesystem::exists(SpecPath("uid-job")); }));
  EXPECT_NE(ReadFileOrEmpty(SpecPath("uid-job")), spec);
  ExpectSpecsMatch(*renumbered, 77);
  EXPECT_NE(ReadFileOrEmpty(CheckpointPath("uid-job")).find("boot-2"), std::string::npos);

  // The device stays taken for another claim; unprepare frees it.
  PutClaim("other", "uid-other", {Device(4)});
  dra_v1::NodePrepareResourcesResponse other;
  ASSERT_TRUE(Prepare("other", "uid-other", &other).ok());
  EXPECT_NE(other.claims().at("uid-other").error().find("already prepared"), std::string::npos);
  // So does the number it had before the reboot, which the free EFA has now.
  PutClaim("renumbered", "uid-renumbered", {Device(12)});
  dra_v1::NodePrepareResourcesResponse renumbered_claim;
  ASSERT_TRUE(Prepare("renumbered", "uid-renumbered", &renumbered_claim).ok());
  EXPECT_EQ(renumbered_claim.claims().at("uid-renumbered").error(), "")
      << "the free EFA has uid-job's old number, which no current spec injects";
  ExpectSpecsMatch(*renumbered, 77);
  ASSERT_TRUE(Unprepare("job", "uid-job").ok());
  ASSERT_TRUE(Prepare("other", "uid-other", &other).ok());
  EXPECT_EQ(other.claims().at("uid-other").error(), "");
}

// A kubelet restart can empty the plugin dir; in the chart's layout that takes the checkpoints
// and the lock file too. The driver serves again, keeps what was prepared, and /healthz says
// whether the state can be written.
TEST_P(RunLayoutE2eTest, AKubeletRestartThatEmptiesThePluginDirLosesNothing) {
  BuildP5();
  auto child = Start();
  PutClaim("before", "uid-before", {Device(0)});
  PutClaim("after", "uid-after", {Device(1)});
  PutClaim("thief", "uid-thief", {Device(0)});
  dra_v1::NodePrepareResourcesResponse response;
  ASSERT_TRUE(Prepare("before", "uid-before", &response).ok()) << ReadFileOrEmpty(dir_.Sub("log"));
  ASSERT_EQ(response.claims().at("uid-before").error(), "");

  // The driver may put a socket back while the tree is removed: retry until one pass wins.
  for (const std::string& dir : {dir_.Sub("plugins"), dir_.Sub("registry")}) {
    ASSERT_TRUE(WaitFor([&] {
      std::error_code error;
      std::filesystem::remove_all(dir, error);
      return !error;
    }));
  }
  ASSERT_TRUE(WaitFor([&] {
    pluginregistration::PluginInfo info;
    return KubeletClient::GetInfo(RegistrationSocket(), &info).ok();
  })) << ReadFileOrEmpty(dir_.Sub("log"));
  std::string body;
  EXPECT_TRUE(WaitFor([&] { return HttpStatus("/healthz?verbose", &body) == 200; })) << body;
  ASSERT_TRUE(Prepare("after", "uid-after", &response).ok());
  EXPECT_EQ(response.claims().at("uid-after").error(), "") << ReadFileOrEmpty(dir_.Sub("log"));
  EXPECT_TRUE(std::filesystem::exists(CheckpointPath("uid-after")));
  EXPECT_TRUE(std::filesystem::exists(CheckpointPath("uid-before")));
  ASSERT_TRUE(Prepare("thief", "uid-thief", &response).ok());
  EXPECT_NE(response.claims().at("uid-thief").error().find("already prepared"), std::string::npos);

  // A state dir that cannot be written: liveness fails, naming the check; and recovers.
  const std::string checkpoints = std::filesystem::path(CheckpointPath("x")).parent_path();
  std::filesystem::remove_all(checkpoints);
  WriteFileOrDie(checkpoints, "not a directory");
  EXPECT_TRUE(WaitFor([&] { return HttpStatus("/healthz?verbose", &body) == 500; })) << body;
  EXPECT_NE(body.find("[-]state-dir-writable failed: unavailable"), std::string::npos) << body;
  std::filesystem::remove(checkpoints);
  EXPECT_TRUE(WaitFor([&] { return HttpStatus("/healthz?verbose", &body) == 200; })) << body;
  EXPECT_TRUE(std::filesystem::exists(CheckpointPath("uid-before"))) << "re-created by the probe";
}

// A reboot after which the kernel numbers two EFAs' uverbs nodes the other way round and gives
// rdma_cm another minor: the driver binary writes each restored spec with the node and number
// the device has now, so the two claims never inject the same char device.
TEST_P(RunLayoutE2eTest, ARebootThatRenumbersUverbsGetsSpecsOfTheNewNumbers) {
  BuildP5();
  WriteFileOrDie(dir_.Sub("sys/class/misc/rdma_cm/dev"), "10:120\n");
  const discovery::EfaDevice a = inventory_->devices.at(8);
  const discovery::EfaDevice b = inventory_->devices.at(9);
  auto child = Start();
  PutClaim("a", "uid-a", {Device(8)});
  PutClaim("b", "uid-b", {Device(9)});
  for (const auto& [name, uid] : {std::pair{"a", "uid-a"}, std::pair{"b", "uid-b"}}) {
    dra_v1::NodePrepareResourcesResponse response;
    ASSERT_TRUE(Prepare(name, uid, &response).ok()) << ReadFileOrEmpty(dir_.Sub("log"));
    ASSERT_EQ(response.claims().at(uid).error(), "");
  }
  child->Kill();
  std::filesystem::remove_all(dir_.Sub("cdi"));
  WriteFileOrDie(dir_.Sub("boot_id"), "boot-2\n");
  const auto renumbered = Renumber(8, 9, 57);
  child = Start();
  ASSERT_TRUE(WaitFor([&] {
    return std::filesystem::exists(SpecPath("uid-a")) && std::filesystem::exists(SpecPath("uid-b"));
  })) << ReadFileOrEmpty(dir_.Sub("log"));
  // Each spec now carries the other device's old node, and the new rdma_cm minor.
  for (const auto& [uid, now] : {std::pair{"uid-a", &b}, std::pair{"uid-b", &a}}) {
    SCOPED_TRACE(uid);
    auto spec = nlohmann::json::parse(ReadFileOrEmpty(SpecPath(uid)), nullptr, false);
    ASSERT_FALSE(spec.is_discarded());
    const auto& node = spec["devices"][0]["containerEdits"]["deviceNodes"][0];
    EXPECT_EQ(node["path"], "/dev/infiniband/" + now->UverbsName());
    EXPECT_EQ(node["major"], now->uverbs_dev.major);
    EXPECT_EQ(node["minor"], now->uverbs_dev.minor);
    EXPECT_EQ(spec["containerEdits"]["deviceNodes"][0]["minor"], 57);
  }
  ExpectSpecsMatch(*renumbered, 57);
}

// kill -9 at arbitrary moments of a stream of prepares and unprepares: after each restart,
// every claim whose prepare was answered (and not unprepared since) answers the same again, and
// no CDI spec exists without its checkpoint.
TEST_F(RunE2eTest, Kill9DuringAStreamOfPreparesLosesNoAnsweredClaim) {
  BuildP5();
  constexpr int kClaims = 8;
  for (int i = 0; i < kClaims; ++i) {
    PutClaim("c" + std::to_string(i), "uid-" + std::to_string(i), {Device(static_cast<size_t>(i))});
  }
  std::mt19937 random(7);
  std::map<std::string, std::string> answered;  // uid -> serialized answer, while prepared
  for (int round = 0; round < 5; ++round) {
    auto child = Start();
    // Temporary files of writes cut short by the last kill are gone.
    for (const auto& entry : std::filesystem::directory_iterator(dir_.Sub("cdi"))) {
      EXPECT_NE(entry.path().filename().string().front(), '.') << entry.path();
    }
    // Everything answered before the last crash is still prepared, identically.
    for (const auto& [uid, answer] : answered) {
      dra_v1::NodePrepareResourcesResponse response;
      const std::string name = "c" + uid.substr(4);
      ASSERT_TRUE(Prepare(name, uid, &response).ok()) << ReadFileOrEmpty(dir_.Sub("log"));
      EXPECT_EQ(response.claims().at(uid).SerializeAsString(), answer) << uid;
    }
    // Drawn before the kubelet thread starts: it uses `random` until it is joined.
    const auto kill_after = std::chrono::milliseconds(50 + random() % 250);
    std::atomic<bool> stop{false};
    std::thread kubelet([&] {
      for (int op = 0; !stop; ++op) {
        const int i = static_cast<int>(random() % kClaims);
        const std::string uid = "uid-" + std::to_string(i);
        const std::string name = "c" + std::to_string(i);
        if (answered.count(uid) == 0) {
          dra_v1::NodePrepareResourcesResponse response;
          if (Prepare(name, uid, &response).ok() && response.claims().at(uid).error().empty()) {
            answered[uid] = response.claims().at(uid).SerializeAsString();
          }
        } else if (Unprepare(name, uid).ok()) {
          answered.erase(uid);
        }
      }
    });
    std::this_thread::sleep_for(kill_after);
    child->Kill();
    stop = true;
    kubelet.join();
    // An unprepare in flight at the kill may or may not have happened; only answered ones
    // count, and for a claim whose unprepare was cut short a repeat prepare is still valid.
    for (const auto& entry : std::filesystem::directory_iterator(dir_.Sub("cdi"))) {
      const std::string name = entry.path().filename().string();
      if (name.front() == '.') continue;  // a write cut short; the next start removes it
      const std::string uid = name.substr(std::string("dra.net-efa_").size(),
                                          name.size() - std::string("dra.net-efa_.json").size());
      EXPECT_TRUE(std::filesystem::exists(dir_.Sub("state/checkpoints/" + uid + ".json")))
          << "CDI spec without checkpoint: " << name;
    }
  }
}

TEST_F(RunE2eTest, SigtermFinishesAnInFlightPrepare) {
  BuildP5();
  auto child = Start();
  ASSERT_TRUE(WaitFor([&] { return !server_.ResourceSlices().empty(); }));
  PutClaim("slow", "uid-slow", {Device(9)});
  server_.SetLatency(std::chrono::milliseconds(1500));  // the claim GET takes 1.5 s
  grpc::Status status;
  dra_v1::NodePrepareResourcesResponse response;
  std::thread kubelet([&] { status = Prepare("slow", "uid-slow", &response); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  child->Signal(SIGTERM);
  kubelet.join();
  server_.SetLatency(std::chrono::milliseconds(0));
  ASSERT_TRUE(status.ok()) << status.error_message() << ReadFileOrEmpty(dir_.Sub("log"));
  EXPECT_EQ(response.claims().at("uid-slow").error(), "");
  EXPECT_TRUE(WaitFor([&] { return !child->Running(); }, std::chrono::seconds(5)));
  EXPECT_EQ(child->ExitCode(), 0) << ReadFileOrEmpty(dir_.Sub("log"));
  EXPECT_TRUE(std::filesystem::exists(SpecPath("uid-slow")));
  EXPECT_TRUE(std::filesystem::exists(dir_.Sub("state/checkpoints/uid-slow.json")));
}

TEST_F(RunE2eTest, NoEfaPublishesEmptyPoolAndKeepsRunning) {
  WriteFileOrDie(dir_.Sub("sys/devices/.keep"), "");
  WriteFileOrDie(dir_.Sub("sys/class/.keep"), "");
  WriteFileOrDie(dir_.Sub("dev/.keep"), "");
  Child child(Args(), dir_.Sub("log"));
  ASSERT_TRUE(WaitFor([&] { return server_.ResourceSlices().size() == 1; }))
      << ReadFileOrEmpty(dir_.Sub("log"));
  EXPECT_TRUE(
      server_.ResourceSlices()[0]["spec"].value("devices", nlohmann::json::array()).empty());
  EXPECT_TRUE(child.Running());
  child.Signal(SIGINT);
  EXPECT_TRUE(WaitFor([&] { return !child.Running(); }, std::chrono::seconds(5)));
  EXPECT_EQ(child.ExitCode(), 0) << ReadFileOrEmpty(dir_.Sub("log"));
}

// Other device plugins, even one with "efa" in its socket name, are no conflict; the AWS EFA
// device plugin's own socket is: prepares are refused saying why, /readyz fails, an Event goes
// to the Node.
TEST_F(RunE2eTest, AConflictingEfaDevicePluginIsReported) {
  BuildP5();
  std::filesystem::create_directories(dir_.Sub("device-plugins"));
  // A bound socket file is enough to be detected; nobody needs to listen.
  std::vector<int> fds;
  auto bind_socket = [&](const std::string& name) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const std::string path = dir_.Sub("device-plugins/" + name);
    std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0) << path;
    fds.push_back(fd);
  };
  bind_socket("kubelet.sock");
  bind_socket("default.sock");
  bind_socket("my-efa-thing.sock");
  auto child = Start();
  pluginregistration::PluginInfo info;
  ASSERT_TRUE(KubeletClient::Register(RegistrationSocket(), &info).ok());
  std::string body;
  EXPECT_TRUE(WaitFor([&] { return HttpStatus("/readyz?verbose", &body) == 200; }))
      << "another vendor's device plugin is no conflict: " << body;
  PutClaim("job", "uid-job", {Device(0)});
  dra_v1::NodePrepareResourcesResponse response;
  ASSERT_TRUE(Prepare("job", "uid-job", &response).ok());
  EXPECT_EQ(response.claims().at("uid-job").error(), "");

  bind_socket("aws-efa-device-plugin.sock");
  // The conflict monitor polls every 2 s; prepares are refused from its next poll on.
  EXPECT_TRUE(WaitFor([&] {
    return HttpStatus("/readyz?verbose", &body) == 503 &&
           body.find("[-]no-conflicting-driver") != std::string::npos;
  })) << body;
  // The probe answer names the failing check and its category only; the reason is logged.
  EXPECT_NE(body.find("[-]no-efa-device-plugin failed: failed precondition"), std::string::npos)
      << body;
  EXPECT_NE(body.find("[-]no-conflicting-driver failed: failed precondition"), std::string::npos)
      << body;
  EXPECT_EQ(body.find("cannot run together"), std::string::npos) << body;
  EXPECT_NE(ReadFileOrEmpty(dir_.Sub("log")).find("cannot run together"), std::string::npos);
  ASSERT_EQ(HttpStatus("/metrics", &body), 200);
  EXPECT_NE(body.find("efa_dra_device_plugin_conflict 1"), std::string::npos);
  EXPECT_NE(ReadFileOrEmpty(dir_.Sub("log")).find("aws-efa-device-plugin.sock"),
            std::string::npos);
  PutClaim("refused", "uid-refused", {Device(1)});
  ASSERT_TRUE(Prepare("refused", "uid-refused", &response).ok());
  const std::string error = response.claims().at("uid-refused").error();
  EXPECT_NE(error.find("claim train/refused not prepared: the EFA device plugin also serves this "
                       "node (" + dir_.Sub("device-plugins/aws-efa-device-plugin.sock") + ")"),
            std::string::npos)
      << error;
  EXPECT_FALSE(std::filesystem::exists(SpecPath("uid-refused")));
  EXPECT_TRUE(WaitFor([&] {
    for (const auto& request : server_.Requests()) {
      if (request.method == "POST" && request.path == "/api/v1/namespaces/default/events") {
        return true;
      }
    }
    return false;
  })) << "a Warning Event on the Node";
  for (const int fd : fds) ::close(fd);
}

TEST_F(RunE2eTest, BadConfigurationExitsNonZeroWithOneLine) {
  struct Case {
    std::string name;
    std::map<std::string, std::string> overrides;
    int code;
    std::string message;
  } cases[] = {
      {"bad resync", {{"--resync", "soon"}}, 2, "--resync"},
      {"bad http address", {{"--http-address", "nowhere"}}, 2, "--http-address"},
      {"missing kubeconfig", {{"--kubeconfig", "/nonexistent"}}, 1, "/nonexistent"},
      {"missing boot id", {{"--boot-id-file", "/nonexistent-boot-id"}}, 1, "/nonexistent-boot-id"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::filesystem::remove(dir_.Sub("log"));
    Child child(Args(c.overrides), dir_.Sub("log"));
    ASSERT_TRUE(WaitFor([&] { return !child.Running(); }, std::chrono::seconds(5)));
    EXPECT_EQ(child.ExitCode(), c.code) << ReadFileOrEmpty(dir_.Sub("log"));
    EXPECT_NE(ReadFileOrEmpty(dir_.Sub("log")).find(c.message), std::string::npos)
        << ReadFileOrEmpty(dir_.Sub("log"));
  }
  // No node name at all.
  std::filesystem::remove(dir_.Sub("log"));
  Child child({kBinary, "run", "--kubeconfig", dir_.Sub("kubeconfig")}, dir_.Sub("log"),
              {"NODE_NAME=", "EFA_DRA_NODE_NAME="});
  ASSERT_TRUE(WaitFor([&] { return !child.Running(); }, std::chrono::seconds(5)));
  EXPECT_EQ(child.ExitCode(), 2);
}

// The Grafana dashboard the chart ships: every panel queries metrics this binary exports on
// /metrics, grouped by labels those metrics (or Prometheus' target labels) carry.
TEST_F(RunE2eTest, GrafanaDashboardQueriesExportedMetrics) {
  BuildP5();
  auto child = Start();
  pluginregistration::PluginInfo info;
  ASSERT_TRUE(WaitFor([&] { return KubeletClient::Register(RegistrationSocket(), &info).ok(); }))
      << ReadFileOrEmpty(dir_.Sub("log"));
  PutClaim("job", "uid-job", {Device(0)});
  dra_v1::NodePrepareResourcesResponse response;
  ASSERT_TRUE(Prepare("job", "uid-job", &response).ok());
  std::string body;
  ASSERT_EQ(HttpStatus("/metrics", &body), 200);

  // Exported series names (histograms add _bucket/_sum/_count) and each family's labels.
  std::map<std::string, std::set<std::string>> labels_of;
  std::istringstream lines(body);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t name_end = line.find_first_of("{ ");
    std::set<std::string>& labels = labels_of[line.substr(0, name_end)];
    if (name_end == std::string::npos || line[name_end] != '{') continue;
    const std::string inside = line.substr(name_end + 1, line.find('}') - name_end - 1);
    static const std::regex kLabel(R"(([a-zA-Z_][a-zA-Z0-9_]*)=")");
    for (std::sregex_iterator it(inside.begin(), inside.end(), kLabel), end; it != end; ++it) {
      labels.insert((*it)[1]);
    }
  }
  ASSERT_TRUE(labels_of.contains("efa_dra_prepare_duration_seconds_bucket")) << body;

  const auto dashboard = nlohmann::json::parse(ReadFileOrEmpty(
      std::string(EFADRA_SOURCE_DIR) + "/deploy/helm/efa-dra-driver/dashboards/efa-dra-driver.json"));
  ASSERT_FALSE(dashboard["panels"].empty());
  // Labels Prometheus adds to every scraped series (ServiceMonitor / PodMonitor targets).
  const std::set<std::string> target_labels = {"instance", "job", "pod", "namespace", "node"};
  static const std::regex kMetric(R"(\befa_dra_[a-z_]+)");
  static const std::regex kBy(R"(\bby \(([^)]*)\))");
  std::set<std::string> queried;
  for (const auto& panel : dashboard["panels"]) {
    const std::string title = panel.value("title", "");
    SCOPED_TRACE(title);
    ASSERT_FALSE(panel["targets"].empty());
    for (const auto& target : panel["targets"]) {
      const std::string expr = target.value("expr", "");
      std::set<std::string> metric_labels = target_labels;
      size_t metrics = 0;
      for (std::sregex_iterator it(expr.begin(), expr.end(), kMetric), end; it != end; ++it) {
        const std::string metric = it->str();
        ++metrics;
        queried.insert(metric);
        auto found = labels_of.find(metric);
        ASSERT_NE(found, labels_of.end()) << metric << " in \"" << expr << "\" is not exported";
        metric_labels.insert(found->second.begin(), found->second.end());
      }
      EXPECT_GT(metrics, 0u) << "a query without a driver metric: " << expr;
      for (std::sregex_iterator it(expr.begin(), expr.end(), kBy), end; it != end; ++it) {
        std::istringstream names((*it)[1]);
        for (std::string name; std::getline(names, name, ',');) {
          name.erase(0, name.find_first_not_of(' '));
          name.erase(name.find_last_not_of(' ') + 1);
          EXPECT_TRUE(metric_labels.contains(name)) << "label " << name << " in " << expr;
        }
      }
    }
  }
  // What the dashboard is for: devices, health, prepare latency, API errors.
  for (const char* needed : {"efa_dra_published_devices", "efa_dra_device_healthy",
                             "efa_dra_prepare_duration_seconds_bucket",
                             "efa_dra_api_requests_total"}) {
    EXPECT_TRUE(queried.contains(needed)) << needed;
  }
  child->Signal(SIGTERM);
  EXPECT_TRUE(WaitFor([&] { return !child->Running(); }, std::chrono::seconds(5)));
}

// The kernel sends no uevent when a port goes DOWN and the rescan is an hour away here, so only
// the health poll (default interval) can carry these changes to the kubelet's health stream.
TEST_F(RunE2eTest, PortAndUverbsNodeChangesReachTheHealthStreamWithoutARescan) {
  BuildP5();
  auto child = std::make_unique<Child>(Args({{"--resync", "1h"}}), dir_.Sub("log"));
  // Served, as the kubelet sees it: the registration socket answers once the DRA one does.
  ASSERT_TRUE(WaitFor([&] {
    pluginregistration::PluginInfo info;
    return KubeletClient::GetInfo(RegistrationSocket(), &info).ok();
  })) << ReadFileOrEmpty(dir_.Sub("log"));
  auto stub = v1alpha1::DRAResourceHealth::NewStub(kubelet::testing::UnixChannel(DraSocket()));
  grpc::ClientContext context;
  context.set_wait_for_ready(true);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto reader = stub->NodeWatchResources(&context, v1alpha1::NodeWatchResourcesRequest());
  // Reads until `device` has `health`; its message, or nullopt when the stream ended first.
  auto await = [&](const std::string& device,
                   v1alpha1::HealthStatus health) -> std::optional<std::string> {
    v1alpha1::NodeWatchResourcesResponse message;
    while (reader->Read(&message)) {
      for (const auto& d : message.devices()) {
        if (d.device().device_name() == device && d.health() == health) return d.message();
      }
    }
    return std::nullopt;
  };
  const auto& efa = inventory_->devices.at(6);
  const std::string port = dir_.Sub("sys/class/infiniband/" + efa.rdma_device + "/ports/1/");
  ASSERT_TRUE(await(Device(6), v1alpha1::HEALTHY)) << ReadFileOrEmpty(dir_.Sub("log"));

  WriteFileOrDie(port + "phys_state", "3: Disabled\n");
  WriteFileOrDie(port + "state", "1: DOWN\n");
  EXPECT_EQ(await(Device(6), v1alpha1::UNHEALTHY), "port 1 is DOWN (physical state Disabled)");
  WriteFileOrDie(port + "state", "4: ACTIVE\n");
  WriteFileOrDie(port + "phys_state", "5: LinkUp\n");
  EXPECT_EQ(await(Device(6), v1alpha1::HEALTHY), "");

  const std::string node = dir_.Sub("dev/infiniband/" + efa.UverbsName());
  std::filesystem::remove(node);
  const auto lost = await(Device(6), v1alpha1::UNHEALTHY);
  ASSERT_TRUE(lost.has_value());
  EXPECT_NE(lost->find(node + " is missing"), std::string::npos) << *lost;
  context.TryCancel();
  child->Signal(SIGTERM);
  EXPECT_TRUE(WaitFor([&] { return !child->Running(); }, std::chrono::seconds(5)));
  EXPECT_EQ(child->ExitCode(), 0);
}

}  // namespace
}  // namespace efadra
