// The kubelet plugin over its real unix sockets, driven by a real gRPC client playing the
// kubelet, with the real ClaimPreparer against the fake API server and a generated p5 tree.
#include "efadra/kubelet/plugin.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fcntl.h>
#include <sys/file.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <filesystem>
#include <thread>
#include <tuple>

#include <gtest/gtest.h>

#include "claims/claims_fixture.h"
#include "efadra/apidouble/fake_api_server.h"
#include "efadra/claims/cdi_spec.h"
#include "efadra/kubelet/coexistence.h"
#include "efadra/kubelet/conflict_monitor.h"
#include "efadra/kubelet/device_health.h"
#include "efadra/slices/resource_slices.h"
#include "drahealth/v1/api.grpc.pb.h"
#include "kubelet_client.h"

namespace efadra::kubelet {
namespace {

using claims::testing::AllocatedClaim;
using claims::testing::AllocatedDevice;
using claims::testing::kDriver;
using claims::testing::kNode;
using efadra::testing::TempDir;
using efadra::testing::WaitFor;
using testing::AddClaim;
namespace dra_v1 = testing::dra_v1;
namespace dra_v1beta1 = testing::dra_v1beta1;
using testing::KubeletClient;

ino_t Inode(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 ? info.st_ino : 0;
}

// The real client with a gate: GETs whose path contains `held` wait until Open() (the API
// server answering one claim slowly), everything else goes straight through.
class GatedClient final : public kube::Client {
 public:
  GatedClient(kube::Client& real, std::string held) : real_(real), held_(std::move(held)) {}
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    opened_.notify_all();
  }
  bool Waiting() const { return waiting_ > 0; }

  Result<nlohmann::json> Get(std::string_view path) override {
    if (path.find(held_) != std::string_view::npos) {
      ++waiting_;
      std::unique_lock<std::mutex> lock(mu_);
      opened_.wait(lock, [this] { return open_; });
      --waiting_;
    }
    return real_.Get(path);
  }
  Result<nlohmann::json> List(std::string_view path, const kube::ListOptions& options) override {
    return real_.List(path, options);
  }
  Result<nlohmann::json> Create(std::string_view path, const nlohmann::json& object) override {
    return real_.Create(path, object);
  }
  Result<nlohmann::json> Update(std::string_view path, const nlohmann::json& object) override {
    return real_.Update(path, object);
  }
  Status Delete(std::string_view path, const kube::DeletePreconditions& pre) override {
    return real_.Delete(path, pre);
  }
  Status Watch(std::string_view path, const kube::ListOptions& options,
               const std::function<bool(const kube::WatchEvent&)>& on_event,
               const std::atomic<bool>& stop) override {
    return real_.Watch(path, options, on_event, stop);
  }
  void SetObserver(kube::RequestObserver* observer) override { real_.SetObserver(observer); }

 private:
  kube::Client& real_;
  const std::string held_;
  std::mutex mu_;
  std::condition_variable opened_;
  bool open_ = false;  // guarded by mu_
  std::atomic<int> waiting_{0};
};

// Plays a rolling-update twin stuck in its section: holds the flock until released.
class LockHolder {
 public:
  explicit LockHolder(const std::string& path)
      : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    EXPECT_EQ(::flock(fd_, LOCK_EX | LOCK_NB), 0) << path;
  }
  ~LockHolder() { Release(); }
  void Release() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

constexpr char kOldPod[] = "11111111-2222-3333-4444-555555555555";
constexpr char kNewPod[] = "66666666-7777-8888-9999-000000000000";

// Removes a tree the way a kubelet restart does while our watcher may put a socket back into
// it: retried until one pass removes everything.
bool RemoveTree(const std::string& path) {
  return WaitFor([&] {
    std::error_code error;
    std::filesystem::remove_all(path, error);
    return !error;
  });
}

// One driver instance: its preparer and plugin over shared directories.
struct Instance {
  std::unique_ptr<claims::ClaimPreparer> preparer;
  std::unique_ptr<Plugin> plugin;
};

class PluginTest : public ::testing::Test {
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
  }

  PluginOptions Options(const std::string& pod_uid = "") const {
    PluginOptions options;
    options.driver_name = kDriver;
    options.registrar_dir = dir_.Sub("registry");
    options.plugin_dir = dir_.Sub("plugins/" + std::string(kDriver));
    options.pod_uid = pod_uid;
    options.socket_check_period = std::chrono::milliseconds(50);
    return options;
  }

  // `refuse`, when given, is the plugin's RefusePreparesWhile hook; `client` and `state`
  // replace the fixture's API client and state directory. With a pod UID the preparer shares
  // the lock file as the driver binary wires it.
  Instance StartInstance(PluginOptions options, HealthSource* health = nullptr,
                         std::function<std::string()> refuse = nullptr,
                         kube::Client* client = nullptr, core::Filesystem* state = nullptr) {
    Instance instance;
    claims::PreparerOptions preparer_options;
    preparer_options.driver_name = kDriver;
    preparer_options.node_name = kNode;
    preparer_options.dev_root = dir_.Sub("dev");
    preparer_options.sysfs_root = dir_.Sub("sys");
    preparer_options.boot_id = "boot-1";
    if (!options.pod_uid.empty()) {
      preparer_options.shared_lock_path = SharedLockPath(options.plugin_dir);
    }
    instance.preparer = std::make_unique<claims::ClaimPreparer>(
        preparer_options, client != nullptr ? *client : *client_, *cdi_,
        state != nullptr ? *state : *state_, [this] { return inventory_; });
    EXPECT_TRUE(instance.preparer->Start().ok());
    instance.plugin = std::make_unique<Plugin>(options, *instance.preparer, health);
    if (refuse) instance.plugin->RefusePreparesWhile(std::move(refuse));
    Status started = instance.plugin->Start();
    EXPECT_TRUE(started.ok()) << started.ToString();
    return instance;
  }

  void StartDefault(HealthSource* health = nullptr) { main_ = StartInstance(Options(), health); }

  std::vector<std::string> DevicesOfRoot(const std::string& root) const {
    std::vector<std::string> names;
    for (const auto& d : inventory_->devices) {
      if (d.pcie_root == root) names.push_back(slices::DeviceName(d.pci_address));
    }
    return names;
  }

  void PutClaim(const std::string& name, const std::string& uid,
                const std::vector<std::string>& devices, const std::string& request = "efa") {
    std::vector<AllocatedDevice> allocated;
    for (const auto& device : devices) allocated.push_back({request, device});
    server_.PutResourceClaim(AllocatedClaim("train", name, uid, allocated));
  }

  template <typename Version>
  typename Version::PrepareResponse PrepareOk(const std::string& endpoint,
                                              const std::vector<std::string>& names_uids) {
    typename Version::PrepareRequest request;
    for (size_t i = 0; i + 1 < names_uids.size(); i += 2) {
      AddClaim(&request, "train", names_uids[i], names_uids[i + 1]);
    }
    typename Version::PrepareResponse response;
    grpc::Status status =
        KubeletClient::Prepare<typename Version::Api>(endpoint, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  std::string SpecPath(const std::string& uid) const {
    return dir_.Sub("cdi/" + claims::CdiSpecFileName(kDriver, uid));
  }

  TempDir dir_;
  std::shared_ptr<const discovery::Inventory> inventory_;
  apidouble::FakeApiServer server_;
  std::unique_ptr<kube::Client> client_;
  std::unique_ptr<core::Filesystem> cdi_, state_;
  Instance main_;
};

struct V1 {
  using Api = dra_v1::DRAPlugin;
  using PrepareRequest = dra_v1::NodePrepareResourcesRequest;
  using PrepareResponse = dra_v1::NodePrepareResourcesResponse;
  using UnprepareRequest = dra_v1::NodeUnprepareResourcesRequest;
  using UnprepareResponse = dra_v1::NodeUnprepareResourcesResponse;
};
struct V1beta1 {
  using Api = dra_v1beta1::DRAPlugin;
  using PrepareRequest = dra_v1beta1::NodePrepareResourcesRequest;
  using PrepareResponse = dra_v1beta1::NodePrepareResourcesResponse;
  using UnprepareRequest = dra_v1beta1::NodeUnprepareResourcesRequest;
  using UnprepareResponse = dra_v1beta1::NodeUnprepareResourcesResponse;
};

TEST_F(PluginTest, GetInfoAnswersWhatTheKubeletMatches) {
  StartDefault();
  pluginregistration::PluginInfo info;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(KubeletClient::GetInfo(main_.plugin->RegistrationSocketPath(), &info).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_EQ(info.type(), "DRAPlugin");
  EXPECT_EQ(info.name(), "dra.net");
  EXPECT_EQ(info.endpoint(), dir_.Sub("plugins/dra.net/dra.sock"));
  ASSERT_EQ(info.supported_versions_size(), 2);
  EXPECT_EQ(info.supported_versions(0), "v1.DRAPlugin");
  EXPECT_EQ(info.supported_versions(1), "v1beta1.DRAPlugin");
  EXPECT_EQ(main_.plugin->RegistrationSocketPath(), dir_.Sub("registry/dra.net-reg.sock"));
  EXPECT_EQ(main_.plugin->Registration().phase, RegistrationState::Phase::kWaitingForKubelet);
}

TEST_F(PluginTest, HealthIsAdvertisedOnlyWhenServed) {
  DeviceHealthTracker health(kNode);
  StartDefault(&health);
  pluginregistration::PluginInfo info;
  ASSERT_TRUE(KubeletClient::GetInfo(main_.plugin->RegistrationSocketPath(), &info).ok());
  ASSERT_EQ(info.supported_versions_size(), 4);
  EXPECT_EQ(info.supported_versions(0), "v1.DRAPlugin");
  EXPECT_EQ(info.supported_versions(1), "v1beta1.DRAPlugin");
  EXPECT_EQ(info.supported_versions(2), "v1.DRAResourceHealth");
  EXPECT_EQ(info.supported_versions(3), "v1alpha1.DRAResourceHealth");
}

TEST_F(PluginTest, RegistrationStatusIsRecordedAndRejectionsAreErrors) {
  StartDefault();
  std::atomic<int> callbacks{0};
  main_.plugin->OnRegistered([&] { ++callbacks; });
  const std::string socket = main_.plugin->RegistrationSocketPath();
  grpc::Status rejected = KubeletClient::Notify(socket, false, "no handler for DRAPlugin");
  EXPECT_FALSE(rejected.ok());
  RegistrationState state = main_.plugin->Registration();
  EXPECT_EQ(state.phase, RegistrationState::Phase::kRejected);
  EXPECT_EQ(state.error, "no handler for DRAPlugin");
  EXPECT_EQ(callbacks, 0);

  ASSERT_TRUE(KubeletClient::Notify(socket, true).ok());
  state = main_.plugin->Registration();
  EXPECT_EQ(state.phase, RegistrationState::Phase::kRegistered);
  EXPECT_EQ(state.registrations, 1);
  EXPECT_EQ(callbacks, 1);
}

TEST_F(PluginTest, ARejectedRegistrationIsOfferedAgain) {
  PluginOptions options = Options();
  options.rejected_retry = std::chrono::milliseconds(100);
  main_ = StartInstance(options);
  const std::string socket = main_.plugin->RegistrationSocketPath();
  EXPECT_FALSE(KubeletClient::Notify(socket, false, "endpoint already registered").ok());
  EXPECT_EQ(main_.plugin->Registration().phase, RegistrationState::Phase::kRejected);
  // The socket is re-created (the kubelet sees a new plugin) and we wait for it again.
  ASSERT_TRUE(WaitFor([&] {
    return main_.plugin->Registration().phase == RegistrationState::Phase::kWaitingForKubelet &&
           main_.plugin->Serving();
  }));
  pluginregistration::PluginInfo info;
  EXPECT_TRUE(KubeletClient::Register(socket, &info).ok());
}

template <typename T>
class PluginVersionTest : public PluginTest {};
using Versions = ::testing::Types<V1, V1beta1>;
TYPED_TEST_SUITE(PluginVersionTest, Versions);

TYPED_TEST(PluginVersionTest, PreparesUnpreparesAndRepeatsIdentically) {
  this->StartDefault();
  const auto devices = this->DevicesOfRoot(this->inventory_->devices.front().pcie_root);
  ASSERT_EQ(devices.size(), 4u);
  this->PutClaim("job-efa", "uid-a", devices);
  const std::string endpoint = this->main_.plugin->DraSocketPath();

  auto first = this->template PrepareOk<TypeParam>(endpoint, {"job-efa", "uid-a"});
  ASSERT_EQ(first.claims().count("uid-a"), 1u);
  const auto& claim = first.claims().at("uid-a");
  EXPECT_EQ(claim.error(), "");
  ASSERT_EQ(claim.devices_size(), 4);
  for (int i = 0; i < claim.devices_size(); ++i) {
    const auto& device = claim.devices(i);
    EXPECT_EQ(device.pool_name(), kNode);
    EXPECT_EQ(device.device_name(), devices[static_cast<size_t>(i)]);
    ASSERT_EQ(device.request_names_size(), 1);
    EXPECT_EQ(device.request_names(0), "efa");
    ASSERT_EQ(device.cdi_device_ids_size(), 1);
    EXPECT_EQ(device.cdi_device_ids(0), "dra.net/efa=uid-a-" + device.device_name());
  }
  const ino_t spec_inode = Inode(this->SpecPath("uid-a"));
  ASSERT_NE(spec_inode, 0u);
  const size_t writes = this->server_.WriteCount();

  // The kubelet repeats prepares (restarts, retries): same answer, nothing rewritten.
  auto second = this->template PrepareOk<TypeParam>(endpoint, {"job-efa", "uid-a"});
  EXPECT_EQ(second.SerializeAsString(), first.SerializeAsString());
  EXPECT_EQ(Inode(this->SpecPath("uid-a")), spec_inode);
  EXPECT_EQ(this->server_.WriteCount(), writes);

  typename TypeParam::UnprepareRequest unprepare;
  AddClaim(&unprepare, "train", "job-efa", "uid-a");
  AddClaim(&unprepare, "train", "never-prepared", "uid-unknown");
  typename TypeParam::UnprepareResponse unprepared;
  ASSERT_TRUE(KubeletClient::Unprepare<typename TypeParam::Api>(endpoint, unprepare, &unprepared)
                  .ok());
  ASSERT_EQ(unprepared.claims_size(), 2);
  EXPECT_EQ(unprepared.claims().at("uid-a").error(), "");
  EXPECT_EQ(unprepared.claims().at("uid-unknown").error(), "");
  EXPECT_FALSE(std::filesystem::exists(this->SpecPath("uid-a")));
  // And again: already unprepared is success.
  ASSERT_TRUE(KubeletClient::Unprepare<typename TypeParam::Api>(endpoint, unprepare, &unprepared)
                  .ok());
  EXPECT_EQ(unprepared.claims().at("uid-a").error(), "");
}

TYPED_TEST(PluginVersionTest, MalformedClaimsFailAloneAndNameTheClaim) {
  this->StartDefault();
  const std::string endpoint = this->main_.plugin->DraSocketPath();
  const auto& all = this->inventory_->devices;
  const std::string device = slices::DeviceName(all.front().pci_address);
  this->PutClaim("good", "uid-good", {device});
  // Not allocated: no status.
  this->server_.PutResourceClaim({{"apiVersion", "resource.k8s.io/v1"},
                                  {"kind", "ResourceClaim"},
                                  {"metadata", {{"namespace", "train"}, {"name", "pending"},
                                                {"uid", "uid-pending"}}},
                                  {"spec", {{"devices", {{"requests", nlohmann::json::array()}}}}}});
  // Allocated, but to another driver and to another node's pool: nothing for us.
  this->server_.PutResourceClaim(AllocatedClaim(
      "train", "foreign", "uid-foreign",
      {{"gpu", "gpu-0", "gpu.nvidia.com"}, {"efa", device, kDriver, "other-node"}}));
  this->PutClaim("unknown-device", "uid-unknown-dev", {"pci-0000-ff-00-0"});
  this->PutClaim("replaced", "uid-new", {device});

  typename TypeParam::PrepareRequest request;
  AddClaim(&request, "train", "good", "uid-good");
  AddClaim(&request, "train", "pending", "uid-pending");
  AddClaim(&request, "train", "foreign", "uid-foreign");
  AddClaim(&request, "train", "unknown-device", "uid-unknown-dev");
  AddClaim(&request, "train", "replaced", "uid-old");
  AddClaim(&request, "no-such-namespace", "ghost", "uid-ghost");
  typename TypeParam::PrepareResponse response;
  ASSERT_TRUE(
      KubeletClient::Prepare<typename TypeParam::Api>(endpoint, request, &response).ok());
  ASSERT_EQ(response.claims_size(), 6);
  EXPECT_EQ(response.claims().at("uid-good").error(), "");
  EXPECT_EQ(response.claims().at("uid-good").devices_size(), 1);
  EXPECT_EQ(response.claims().at("uid-foreign").error(), "");
  EXPECT_EQ(response.claims().at("uid-foreign").devices_size(), 0);
  EXPECT_NE(response.claims().at("uid-pending").error().find("train/pending"), std::string::npos);
  EXPECT_NE(response.claims().at("uid-pending").error().find("not allocated"), std::string::npos);
  EXPECT_NE(response.claims().at("uid-unknown-dev").error().find("pci-0000-ff-00-0"),
            std::string::npos);
  EXPECT_NE(response.claims().at("uid-old").error().find("uid-new"), std::string::npos);
  EXPECT_NE(response.claims().at("uid-ghost").error().find("no-such-namespace/ghost"),
            std::string::npos);

  // A claim without a UID cannot be answered per claim: the whole call is refused.
  typename TypeParam::PrepareRequest no_uid;
  AddClaim(&no_uid, "train", "good", "");
  grpc::Status refused =
      KubeletClient::Prepare<typename TypeParam::Api>(endpoint, no_uid, &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.error_message().find("train/good"), std::string::npos);
  // The driver is still serving.
  EXPECT_TRUE(this->main_.plugin->Serving());
}

TEST_F(PluginTest, ThirtyTwoDevicesAndAShareIdOnlyInV1) {
  StartDefault();
  std::vector<AllocatedDevice> allocated;
  for (const auto& d : inventory_->devices) {
    allocated.push_back({"efa/any", slices::DeviceName(d.pci_address)});
  }
  ASSERT_EQ(allocated.size(), 32u);
  nlohmann::json claim = AllocatedClaim("train", "all", "uid-all", allocated);
  claim["status"]["allocation"]["devices"]["results"][0]["shareID"] = "share-1";
  server_.PutResourceClaim(claim);
  auto v1 = PrepareOk<V1>(main_.plugin->DraSocketPath(), {"all", "uid-all"});
  const auto& devices = v1.claims().at("uid-all").devices();
  ASSERT_EQ(devices.size(), 32);
  EXPECT_EQ(devices[0].request_names(0), "efa");  // the base name of "efa/any"
  EXPECT_TRUE(devices[0].has_share_id());
  EXPECT_EQ(devices[0].share_id(), "share-1");
  EXPECT_FALSE(devices[1].has_share_id());
  auto v1beta1 = PrepareOk<V1beta1>(main_.plugin->DraSocketPath(), {"all", "uid-all"});
  EXPECT_EQ(v1beta1.claims().at("uid-all").devices_size(), 32);
}

TEST_F(PluginTest, OversizedRequestsAreRefusedAndTheDriverStaysUp) {
  PluginOptions options = Options();
  options.max_request_bytes = 64 << 10;
  options.max_claims_per_request = 100;
  main_ = StartInstance(options);
  const std::string endpoint = main_.plugin->DraSocketPath();
  dra_v1::NodePrepareResourcesRequest huge;
  AddClaim(&huge, "train", std::string(100 << 10, 'x'), "uid-huge");
  dra_v1::NodePrepareResourcesResponse response;
  grpc::Status status = KubeletClient::Prepare<dra_v1::DRAPlugin>(endpoint, huge, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  dra_v1::NodePrepareResourcesRequest many;
  for (int i = 0; i < 101; ++i) AddClaim(&many, "train", "c", "uid-" + std::to_string(i));
  status = KubeletClient::Prepare<dra_v1::DRAPlugin>(endpoint, many, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("101 claims"), std::string::npos);

  pluginregistration::PluginInfo info;
  EXPECT_TRUE(KubeletClient::GetInfo(main_.plugin->RegistrationSocketPath(), &info).ok());
}

TEST_F(PluginTest, ConcurrentPodsGetTheirOwnClaimsAndShareOneClaim) {
  StartDefault();
  const std::string endpoint = main_.plugin->DraSocketPath();
  const auto& all = inventory_->devices;
  for (int i = 0; i < 8; ++i) {
    PutClaim("claim-" + std::to_string(i), "uid-" + std::to_string(i),
             {slices::DeviceName(all[static_cast<size_t>(i)].pci_address)});
  }
  PutClaim("shared", "uid-shared", {slices::DeviceName(all[8].pci_address)});
  std::atomic<int> failures{0};
  std::vector<std::thread> pods;
  for (int i = 0; i < 8; ++i) {
    pods.emplace_back([&, i] {
      // Each pod has its own claim and references the shared one (resourceClaimName).
      dra_v1::NodePrepareResourcesRequest request;
      AddClaim(&request, "train", "claim-" + std::to_string(i), "uid-" + std::to_string(i));
      AddClaim(&request, "train", "shared", "uid-shared");
      dra_v1::NodePrepareResourcesResponse response;
      grpc::Status status =
          KubeletClient::Prepare<dra_v1::DRAPlugin>(endpoint, request, &response);
      if (!status.ok() || response.claims_size() != 2) ++failures;
      for (const auto& [uid, claim] : response.claims()) {
        if (!claim.error().empty() || claim.devices_size() != 1) ++failures;
      }
    });
  }
  for (auto& pod : pods) pod.join();
  EXPECT_EQ(failures, 0);
  auto uids = main_.preparer->PreparedClaimUids();
  EXPECT_EQ(uids.size(), 9u);
  // The shared claim's GET happened for the first pod; later pods got the stored answer.
  auto requests = server_.Requests();
  EXPECT_LE(std::count_if(requests.begin(), requests.end(),
                          [](const auto& r) {
                            return r.path.find("/resourceclaims/shared") != std::string::npos;
                          }),
            8);
}

// A checkpoint the driver skipped at start (here: written by a newer version, as after a
// downgrade) is still removed, with its CDI spec, when the kubelet unprepares that claim: it must
// not come back after the next upgrade to block its device for a claim long gone.
TEST_F(PluginTest, UnprepareRemovesTheFilesOfAClaimTheDriverSkipped) {
  const std::string device = DevicesOfRoot(inventory_->devices.front().pcie_root)[1];
  const std::string checkpoint = dir_.Sub("state/checkpoints/uid-left.json");
  {
    Instance first = StartInstance(Options());
    PutClaim("left", "uid-left", {device});
    auto prepared = PrepareOk<V1>(first.plugin->DraSocketPath(), {"left", "uid-left"});
    ASSERT_EQ(prepared.claims().at("uid-left").error(), "");
    first.plugin->Stop();
  }
  std::string content = efadra::testing::ReadFileOrEmpty(checkpoint);
  ASSERT_NE(content.find("\"schemaVersion\": "), std::string::npos);
  content.replace(content.find("\"schemaVersion\": "), 18, "\"schemaVersion\": 9");
  efadra::testing::WriteFileOrDie(checkpoint, content);

  StartDefault();
  dra_v1::NodeUnprepareResourcesRequest unprepare;
  AddClaim(&unprepare, "train", "left", "uid-left");
  dra_v1::NodeUnprepareResourcesResponse unprepared;
  ASSERT_TRUE(KubeletClient::Unprepare<dra_v1::DRAPlugin>(main_.plugin->DraSocketPath(), unprepare,
                                                          &unprepared)
                  .ok());
  EXPECT_EQ(unprepared.claims().at("uid-left").error(), "");
  EXPECT_FALSE(std::filesystem::exists(checkpoint));
  EXPECT_FALSE(std::filesystem::exists(SpecPath("uid-left")));
}

TEST_F(PluginTest, StaleSocketsAreReplacedAndStopRemovesOurs) {
  // A crashed instance left both sockets behind (bound, nobody listening).
  const PluginOptions options = Options();
  std::filesystem::create_directories(options.registrar_dir);
  std::filesystem::create_directories(options.plugin_dir);
  for (const std::string& path :
       {options.registrar_dir + "/dra.net-reg.sock", options.plugin_dir + "/dra.sock"}) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    ::close(fd);
  }
  main_ = StartInstance(options);
  pluginregistration::PluginInfo info;
  ASSERT_TRUE(KubeletClient::GetInfo(main_.plugin->RegistrationSocketPath(), &info).ok());
  EXPECT_TRUE(main_.plugin->Serving());
  main_.plugin->Stop();
  EXPECT_FALSE(std::filesystem::exists(options.registrar_dir + "/dra.net-reg.sock"));
  EXPECT_FALSE(std::filesystem::exists(options.plugin_dir + "/dra.sock"));
  EXPECT_FALSE(main_.plugin->Serving());
  EXPECT_EQ(main_.plugin->Registration().phase, RegistrationState::Phase::kNotServing);
}

// In the chart's layout (per-pod sockets, the state inside the plugin dir), which the restart
// empties along with the sockets.
TEST_F(PluginTest, AKubeletRestartLeadsToReRegistrationWithoutADriverRestart) {
  const PluginOptions options = Options(kOldPod);
  std::filesystem::create_directories(options.plugin_dir);
  auto plugin_dir_state = core::NewPosixFilesystem(options.plugin_dir);
  Instance pod = StartInstance(options, nullptr, nullptr, nullptr, plugin_dir_state.get());
  std::atomic<int> registered{0};
  pod.plugin->OnRegistered([&] { ++registered; });
  pluginregistration::PluginInfo info;
  ASSERT_TRUE(KubeletClient::Register(pod.plugin->RegistrationSocketPath(), &info).ok());
  // The kubelet restarts and recreates its directories: our sockets are gone.
  ASSERT_TRUE(RemoveTree(dir_.Sub("registry")));
  ASSERT_TRUE(RemoveTree(dir_.Sub("plugins")));
  ASSERT_TRUE(WaitFor([&] { return pod.plugin->Serving(); }));
  EXPECT_EQ(pod.plugin->Registration().phase, RegistrationState::Phase::kWaitingForKubelet);
  ASSERT_TRUE(KubeletClient::Register(pod.plugin->RegistrationSocketPath(), &info).ok());
  EXPECT_EQ(registered, 2);
  EXPECT_EQ(pod.plugin->Registration().registrations, 2);
  // And the DRA endpoint it advertised answers.
  PutClaim("after-restart", "uid-r", {slices::DeviceName(inventory_->devices[0].pci_address)});
  auto response = PrepareOk<V1>(info.endpoint(), {"after-restart", "uid-r"});
  EXPECT_EQ(response.claims().at("uid-r").error(), "");
}

TEST_F(PluginTest, RollingUpdateTwinsShareOneViewOfPreparedClaims) {
  Instance old_pod = StartInstance(Options("11111111-2222-3333-4444-555555555555"));
  Instance new_pod = StartInstance(Options("66666666-7777-8888-9999-000000000000"));
  EXPECT_EQ(old_pod.plugin->RegistrationSocketPath(),
            dir_.Sub("registry/dra.net-11111111-2222-3333-4444-555555555555-reg.sock"));
  EXPECT_EQ(new_pod.plugin->DraSocketPath(),
            dir_.Sub("plugins/dra.net/dra-66666666-7777-8888-9999-000000000000.sock"));
  const std::string device = slices::DeviceName(inventory_->devices[0].pci_address);
  PutClaim("first", "uid-1", {device});
  PutClaim("second", "uid-2", {device});

  // The old pod prepares after the new one started; the new one must know about it.
  auto first = PrepareOk<V1>(old_pod.plugin->DraSocketPath(), {"first", "uid-1"});
  EXPECT_EQ(first.claims().at("uid-1").error(), "");
  auto second = PrepareOk<V1>(new_pod.plugin->DraSocketPath(), {"second", "uid-2"});
  EXPECT_NE(second.claims().at("uid-2").error().find("already prepared for claim train/first"),
            std::string::npos);

  // The new pod unprepares what the old one prepared; the old one sees it gone.
  dra_v1::NodeUnprepareResourcesRequest unprepare;
  AddClaim(&unprepare, "train", "first", "uid-1");
  dra_v1::NodeUnprepareResourcesResponse unprepared;
  ASSERT_TRUE(KubeletClient::Unprepare<dra_v1::DRAPlugin>(new_pod.plugin->DraSocketPath(),
                                                          unprepare, &unprepared)
                  .ok());
  EXPECT_EQ(unprepared.claims().at("uid-1").error(), "");
  EXPECT_FALSE(std::filesystem::exists(SpecPath("uid-1")));
  second = PrepareOk<V1>(old_pod.plugin->DraSocketPath(), {"second", "uid-2"});
  EXPECT_EQ(second.claims().at("uid-2").error(), "");
}

// A listening unix socket, as another program's registration socket would be.
class FakeRegistrant {
 public:
  explicit FakeRegistrant(const std::string& path) : path_(path) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(::listen(fd_, 4), 0);
  }
  ~FakeRegistrant() { Close(); }
  // Leaves the socket file behind, as a crashed process does.
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// DRANET registers as dra.net-reg.sock; a second copy of a dra.net driver in rolling-update mode
// as dra.net-<uid>-reg.sock. Neither has our instance marker, unlike our rolling-update twin.
TEST_F(PluginTest, AnotherDraNetRegistrationIsFoundAndOurTwinIsNot) {
  Instance ours = StartInstance(Options("11111111-2222-3333-4444-555555555555"));
  Instance twin = StartInstance(Options("66666666-7777-8888-9999-000000000000"));
  const PluginOptions options = Options("11111111-2222-3333-4444-555555555555");
  auto foreign = [&] {
    return ForeignRegistrations(options.registrar_dir, kDriver, options.plugin_dir,
                                ours.plugin->RegistrationSocketPath());
  };
  EXPECT_EQ(foreign(), std::vector<std::string>{});

  FakeRegistrant dranet(dir_.Sub("registry/dra.net-reg.sock"));
  FakeRegistrant other_copy(dir_.Sub("registry/dra.net-abcdef00-1111-2222-3333-444444444444-reg.sock"));
  FakeRegistrant other_driver(dir_.Sub("registry/gpu.nvidia.com-reg.sock"));
  EXPECT_EQ(foreign(), (std::vector<std::string>{
                           dir_.Sub("registry/dra.net-abcdef00-1111-2222-3333-444444444444-reg.sock"),
                           dir_.Sub("registry/dra.net-reg.sock")}));
  // A socket file nobody listens on is a leftover, not a driver.
  dranet.Close();
  other_copy.Close();
  EXPECT_EQ(foreign(), std::vector<std::string>{});
  // Our twin's marker goes with it.
  twin.plugin->Stop();
  EXPECT_FALSE(std::filesystem::exists(
      InstanceMarkerPath(options.plugin_dir, "66666666-7777-8888-9999-000000000000")));
  EXPECT_TRUE(std::filesystem::exists(InstanceMarkerPath(options.plugin_dir, options.pod_uid)));
}

// While a conflict lasts every claim of a prepare fails with the reason; unprepares go on, and
// prepares work again once it is gone.
TEST_F(PluginTest, PreparesAreRefusedWhileAConflictLastsAndUnpreparesAreNot) {
  ConflictMonitor conflicts(std::chrono::milliseconds(20));
  std::atomic<bool> dranet_present{false};
  conflicts.AddSource([&] {
    return dranet_present ? std::vector<std::string>{"another program is registered as dra.net"}
                          : std::vector<std::string>{};
  });
  Instance instance =
      StartInstance(Options(), nullptr, [&conflicts] { return conflicts.Summary(); });
  conflicts.Start();
  const std::string device = slices::DeviceName(inventory_->devices[0].pci_address);
  PutClaim("first", "uid-1", {device});
  PutClaim("second", "uid-2", {slices::DeviceName(inventory_->devices[1].pci_address)});
  auto prepared = PrepareOk<V1>(instance.plugin->DraSocketPath(), {"first", "uid-1"});
  EXPECT_EQ(prepared.claims().at("uid-1").error(), "");

  dranet_present = true;
  ASSERT_TRUE(WaitFor([&] { return !conflicts.Summary().empty(); }));
  auto refused = PrepareOk<V1>(instance.plugin->DraSocketPath(), {"second", "uid-2"});
  EXPECT_EQ(refused.claims().at("uid-2").error(),
            "claim train/second not prepared: another program is registered as dra.net");
  EXPECT_FALSE(std::filesystem::exists(SpecPath("uid-2")));
  dra_v1::NodeUnprepareResourcesRequest unprepare;
  AddClaim(&unprepare, "train", "first", "uid-1");
  dra_v1::NodeUnprepareResourcesResponse unprepared;
  ASSERT_TRUE(KubeletClient::Unprepare<dra_v1::DRAPlugin>(instance.plugin->DraSocketPath(),
                                                          unprepare, &unprepared)
                  .ok());
  EXPECT_EQ(unprepared.claims().at("uid-1").error(), "");

  dranet_present = false;
  ASSERT_TRUE(WaitFor([&] { return conflicts.Summary().empty(); }));
  prepared = PrepareOk<V1>(instance.plugin->DraSocketPath(), {"second", "uid-2"});
  EXPECT_EQ(prepared.claims().at("uid-2").error(), "");
  conflicts.Stop();
}

TEST(ConflictMonitorTest, EachNewReasonIsReportedOnce) {
  std::vector<std::string> reported;
  std::vector<std::string> reasons;
  ConflictMonitor monitor(std::chrono::hours(1),
                          [&](const std::string& reason) { reported.push_back(reason); });
  monitor.AddSource([&] { return reasons; });
  monitor.CheckNow();
  EXPECT_EQ(monitor.Summary(), "");
  reasons = {"b", "a"};
  monitor.CheckNow();
  monitor.CheckNow();
  EXPECT_EQ(monitor.Summary(), "a; b");
  EXPECT_EQ(reported, (std::vector<std::string>{"a", "b"}));
  reasons = {"b"};
  monitor.CheckNow();
  reasons = {"a", "b"};
  monitor.CheckNow();  // a came back: reported again
  EXPECT_EQ(reported, (std::vector<std::string>{"a", "b", "a"}));
}

// The shared lock covers only the check-and-write: a claim whose API GET hangs in one pod
// delays neither the twin's prepares nor this pod's other claims.
TEST_F(PluginTest, ASlowApiGetInOnePodDelaysNoOtherClaimInRollingUpdateMode) {
  GatedClient gated(*client_, "/resourceclaims/slow");
  Instance old_pod = StartInstance(Options(kOldPod), nullptr, nullptr, &gated);
  Instance new_pod = StartInstance(Options(kNewPod));
  PutClaim("slow", "uid-slow", {slices::DeviceName(inventory_->devices[0].pci_address)});
  PutClaim("fast", "uid-fast", {slices::DeviceName(inventory_->devices[1].pci_address)});
  PutClaim("also-fast", "uid-also", {slices::DeviceName(inventory_->devices[2].pci_address)});

  std::thread slow([&] {
    auto response = PrepareOk<V1>(old_pod.plugin->DraSocketPath(), {"slow", "uid-slow"});
    EXPECT_EQ(response.claims().at("uid-slow").error(), "");
  });
  ASSERT_TRUE(WaitFor([&] { return gated.Waiting(); }));
  for (const auto& [endpoint, name, uid] :
       {std::tuple{new_pod.plugin->DraSocketPath(), "fast", "uid-fast"},
        std::tuple{old_pod.plugin->DraSocketPath(), "also-fast", "uid-also"}}) {
    SCOPED_TRACE(name);
    dra_v1::NodePrepareResourcesRequest request;
    AddClaim(&request, "train", name, uid);
    dra_v1::NodePrepareResourcesResponse response;
    // Far longer than the prepare takes; on a lock held across the GET it never comes.
    grpc::Status status = KubeletClient::Prepare<dra_v1::DRAPlugin>(
        endpoint, request, &response, std::chrono::seconds(5));
    EXPECT_TRUE(status.ok()) << status.error_message();
    if (status.ok()) {
      EXPECT_EQ(response.claims().at(uid).error(), "");
    }
  }
  EXPECT_TRUE(gated.Waiting()) << "the slow claim's GET was still outstanding";
  gated.Open();
  slow.join();
  EXPECT_TRUE(std::filesystem::exists(SpecPath("uid-slow")));
}

// The kubelet gives up after its deadline; the claim must get an error before that, not an
// answer nobody reads (or a call that hangs behind a stuck twin).
TEST_F(PluginTest, AClaimWaitingForAStuckTwinFailsWithinTheKubeletsDeadline) {
  Instance pod = StartInstance(Options(kOldPod));
  PutClaim("waits", "uid-waits", {slices::DeviceName(inventory_->devices[0].pci_address)});
  LockHolder twin(SharedLockPath(Options(kOldPod).plugin_dir));
  dra_v1::NodePrepareResourcesRequest request;
  AddClaim(&request, "train", "waits", "uid-waits");
  dra_v1::NodePrepareResourcesResponse response;
  grpc::Status status = KubeletClient::Prepare<dra_v1::DRAPlugin>(
      pod.plugin->DraSocketPath(), request, &response, std::chrono::seconds(2));
  ASSERT_TRUE(status.ok()) << "the call itself timed out: " << status.error_message();
  const std::string error = response.claims().at("uid-waits").error();
  EXPECT_NE(error.find("prepare claim train/waits (uid uid-waits)"), std::string::npos) << error;
  EXPECT_NE(error.find("past the deadline"), std::string::npos) << error;
  twin.Release();
  response = PrepareOk<V1>(pod.plugin->DraSocketPath(), {"waits", "uid-waits"});
  EXPECT_EQ(response.claims().at("uid-waits").error(), "");
}

// The chart's layout: the state dir is the plugin dir, so a kubelet restart that empties it
// takes the checkpoints, the lock file and the instance marker along with the sockets.
TEST_F(PluginTest, AWipedPluginDirIsRebuiltAndPreparesGoOnInTheChartsLayout) {
  const PluginOptions options = Options(kOldPod);
  std::filesystem::create_directories(options.plugin_dir);
  auto plugin_dir_state = core::NewPosixFilesystem(options.plugin_dir);
  Instance pod = StartInstance(options, nullptr, nullptr, nullptr, plugin_dir_state.get());
  const std::string first_device = slices::DeviceName(inventory_->devices[0].pci_address);
  PutClaim("first", "uid-1", {first_device});
  PutClaim("second", "uid-2", {slices::DeviceName(inventory_->devices[1].pci_address)});
  PutClaim("thief", "uid-3", {first_device});
  auto first = PrepareOk<V1>(pod.plugin->DraSocketPath(), {"first", "uid-1"});
  ASSERT_EQ(first.claims().at("uid-1").error(), "");
  ASSERT_TRUE(std::filesystem::exists(options.plugin_dir + "/checkpoints/uid-1.json"));

  ASSERT_TRUE(RemoveTree(options.plugin_dir));
  ASSERT_TRUE(WaitFor([&] {
    return pod.plugin->Serving() &&
           std::filesystem::exists(InstanceMarkerPath(options.plugin_dir, options.pod_uid));
  }));
  auto second = PrepareOk<V1>(pod.plugin->DraSocketPath(), {"second", "uid-2"});
  EXPECT_EQ(second.claims().at("uid-2").error(), "");
  EXPECT_TRUE(std::filesystem::exists(options.plugin_dir + "/checkpoints/uid-2.json"));
  EXPECT_TRUE(std::filesystem::exists(options.plugin_dir + "/checkpoints/uid-1.json"))
      << "the claim prepared before the wipe is written again";
  EXPECT_TRUE(std::filesystem::exists(SharedLockPath(options.plugin_dir)));
  auto thief = PrepareOk<V1>(pod.plugin->DraSocketPath(), {"thief", "uid-3"});
  EXPECT_NE(thief.claims().at("uid-3").error().find("already prepared for claim train/first"),
            std::string::npos);
  EXPECT_TRUE(pod.preparer->CheckStateDir().ok());
}

// Only the AWS plugin's own socket is a conflict: other device plugins that merely have "efa"
// (or "default") in their names must not stop prepares on the node.
TEST(CoexistenceTest, OnlyTheEfaDevicePluginsExactSocketNameIsAConflict) {
  TempDir dir;
  const std::string plugins = dir.Sub("device-plugins");
  std::vector<std::unique_ptr<FakeRegistrant>> sockets;
  for (const char* name : {"kubelet.sock", "default.sock", "my-efa-thing.sock",
                           "aws-efa-k8s-device-plugin.sock", "EFA.sock"}) {
    sockets.push_back(std::make_unique<FakeRegistrant>(plugins + "/" + name));
  }
  efadra::testing::WriteFileOrDie(plugins + "/aws-efa-device-plugin.sock.bak", "not a socket");
  EXPECT_EQ(EfaDevicePluginSockets(plugins), std::vector<std::string>{});

  sockets.push_back(std::make_unique<FakeRegistrant>(plugins + "/aws-efa-device-plugin.sock"));
  EXPECT_EQ(EfaDevicePluginSockets(plugins),
            std::vector<std::string>{plugins + "/aws-efa-device-plugin.sock"});
  // --efa-device-plugin-socket names others (a fork); names with a '/' never match.
  EXPECT_EQ(EfaDevicePluginSockets(plugins, {"my-efa-thing.sock", "../device-plugins/EFA.sock"}),
            std::vector<std::string>{plugins + "/my-efa-thing.sock"});
  EXPECT_EQ(EfaDevicePluginSockets(dir.Sub("not-mounted")), std::vector<std::string>{});
}

TEST_F(PluginTest, TheHealthStreamSendsTheFullListAndEveryChange) {
  DeviceHealthTracker health(kNode);
  health.Update(*inventory_, 1000);
  StartDefault(&health);
  auto stub = v1alpha1::DRAResourceHealth::NewStub(
      testing::UnixChannel(main_.plugin->DraSocketPath()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = stub->NodeWatchResources(&context, v1alpha1::NodeWatchResourcesRequest());
  v1alpha1::NodeWatchResourcesResponse message;
  ASSERT_TRUE(reader->Read(&message));
  ASSERT_EQ(message.devices_size(), 32);
  for (const auto& device : message.devices()) {
    EXPECT_EQ(device.device().pool_name(), kNode);
    EXPECT_EQ(device.health(), v1alpha1::HEALTHY);
  }

  // Port 1 of the first EFA goes down, and the last one disappears.
  discovery::Inventory changed = *inventory_;
  changed.devices.front().port.state = "DOWN";
  changed.devices.front().port.phys_state = "Disabled";
  const std::string gone = slices::DeviceName(changed.devices.back().pci_address);
  changed.devices.pop_back();
  health.Update(changed, 2000);
  ASSERT_TRUE(reader->Read(&message));
  ASSERT_EQ(message.devices_size(), 32);
  int unhealthy = 0;
  for (const auto& device : message.devices()) {
    if (device.health() != v1alpha1::UNHEALTHY) continue;
    ++unhealthy;
    EXPECT_EQ(device.last_updated_time(), 2000);
    if (device.device().device_name() == gone) {
      EXPECT_EQ(device.message(), "the device disappeared from the node");
    } else {
      EXPECT_EQ(device.message(), "port 1 is DOWN (physical state Disabled)");
    }
  }
  EXPECT_EQ(unhealthy, 2);
  context.TryCancel();
  main_.plugin->Stop();  // ends the stream server-side too
}

// The GA package is the bare `v1`: the stub's method path is /v1.DRAResourceHealth/...,
// distinct from the DRAPlugin's k8s.io.kubelet.pkg.apis.dra.v1 package on the same socket.
TEST_F(PluginTest, TheV1HealthStreamServesTheSameListAsV1alpha1) {
  DeviceHealthTracker health(kNode);
  health.Update(*inventory_, 1000);
  discovery::Inventory changed = *inventory_;
  changed.devices.front().port.state = "DOWN";
  changed.devices.front().port.phys_state = "Disabled";
  health.Update(changed, 2000);
  StartDefault(&health);
  auto channel = testing::UnixChannel(main_.plugin->DraSocketPath());

  auto v1_stub = ::v1::DRAResourceHealth::NewStub(channel);
  grpc::ClientContext v1_context;
  v1_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto v1_reader = v1_stub->NodeWatchResources(&v1_context, ::v1::NodeWatchResourcesRequest());
  ::v1::NodeWatchResourcesResponse v1_message;
  ASSERT_TRUE(v1_reader->Read(&v1_message));

  auto alpha_stub = v1alpha1::DRAResourceHealth::NewStub(channel);
  grpc::ClientContext alpha_context;
  alpha_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto alpha_reader =
      alpha_stub->NodeWatchResources(&alpha_context, v1alpha1::NodeWatchResourcesRequest());
  v1alpha1::NodeWatchResourcesResponse alpha_message;
  ASSERT_TRUE(alpha_reader->Read(&alpha_message));

  ASSERT_EQ(v1_message.devices_size(), 32);
  ASSERT_EQ(alpha_message.devices_size(), 32);
  int unhealthy = 0;
  for (int i = 0; i < v1_message.devices_size(); ++i) {
    const auto& a = v1_message.devices(i);
    const auto& b = alpha_message.devices(i);
    EXPECT_EQ(a.device().pool_name(), kNode);
    EXPECT_EQ(a.device().device_name(), b.device().device_name());
    EXPECT_EQ(static_cast<int>(a.health()), static_cast<int>(b.health()));
    EXPECT_EQ(a.message(), b.message());
    if (a.health() == ::v1::UNHEALTHY) {
      ++unhealthy;
      EXPECT_EQ(a.message(), "port 1 is DOWN (physical state Disabled)");
      EXPECT_EQ(a.last_updated_time(), 2000);
    }
  }
  EXPECT_EQ(unhealthy, 1);
  v1_context.TryCancel();
  alpha_context.TryCancel();
  main_.plugin->Stop();
}

}  // namespace
}  // namespace efadra::kubelet
