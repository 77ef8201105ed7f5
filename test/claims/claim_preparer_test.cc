#include "efadra/claims/claim_preparer.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "claims_fixture.h"
#include "efadra/apidouble/fake_api_server.h"
#include "efadra/claims/cdi_spec.h"
#include "efadra/claims/checkpoint.h"
#include "efadra/slices/resource_slices.h"
#include "faulty_filesystem.h"

namespace efadra::claims {
namespace {

using efadra::testing::TempDir;
using testing::AllocatedClaim;
using testing::AllocatedDevice;
using testing::FaultyFilesystem;
using testing::kDriver;
using testing::kNode;
using efadra::testing::LogsOf;

class ClaimPreparerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    inventory_ = testing::DiscoverBundled(dir_);
    ASSERT_TRUE(server_.Start().ok());
    server_.PutNode(kNode, "node-uid-1");
    client_ = testing::QuickRetryClient(server_.url());
    std::filesystem::create_directories(dir_.Sub("cdi"));
    std::filesystem::create_directories(dir_.Sub("state"));
    real_cdi_ = core::NewPosixFilesystem(dir_.Sub("cdi"));
    real_state_ = core::NewPosixFilesystem(dir_.Sub("state"));
    cdi_ = std::make_unique<FaultyFilesystem>(*real_cdi_);
    state_ = std::make_unique<FaultyFilesystem>(*real_state_);
    preparer_ = NewPreparer("boot-1");
  }

  std::unique_ptr<ClaimPreparer> NewPreparer(const std::string& boot_id,
                                             std::vector<std::string>* warnings = nullptr) {
    PreparerOptions options = testing::FixturePreparerOptions(dir_.path(), boot_id);
    options.inject_gdrdrv = inject_gdrdrv_;
    auto preparer = std::make_unique<ClaimPreparer>(options, *client_, *cdi_, *state_,
                                                    [this] { return inventory_; });
    Status started = preparer->Start(warnings);
    EXPECT_TRUE(started.ok()) << started.ToString();
    return preparer;
  }

  // The device names of the EFAs on one PCIe root, in BDF order.
  std::vector<std::string> DevicesOfRoot(const std::string& root) const {
    std::vector<std::string> names;
    for (const auto& d : inventory_->devices) {
      if (d.pcie_root == root) names.push_back(slices::DeviceName(d.pci_address));
    }
    return names;
  }

  ClaimRef PutClaim(const std::string& name, const std::string& uid,
                    const std::vector<AllocatedDevice>& devices) {
    server_.PutResourceClaim(AllocatedClaim("train", name, uid, devices));
    return {"train", name, uid};
  }

  PrepareResult PrepareOne(const ClaimRef& ref) { return preparer_->Prepare({ref})[ref.uid]; }

  size_t ClaimGets() const {
    auto requests = server_.Requests();
    return std::count_if(requests.begin(), requests.end(), [](const auto& r) {
      return r.method == "GET" && r.path.find("/resourceclaims/") != std::string::npos;
    });
  }

  std::string SpecPath(const std::string& uid) const {
    return dir_.Sub("cdi/" + CdiSpecFileName(kDriver, uid));
  }
  std::string CheckpointPath(const std::string& uid) const {
    return dir_.Sub("state/checkpoints/" + uid + ".json");
  }

  // Renumbers two EFAs the way a reboot or an `efa` module reload can: their uverbs nodes swap
  // (each infiniband_verbs/uverbsN keeps its dev number but now names the other device), then
  // discovers the changed tree.
  void SwapUverbs(const discovery::EfaDevice& a, const discovery::EfaDevice& b) {
    const std::string a_dir = dir_.Sub("sys/class/infiniband_verbs/" + a.UverbsName());
    const std::string b_dir = dir_.Sub("sys/class/infiniband_verbs/" + b.UverbsName());
    efadra::testing::WriteFileOrDie(a_dir + "/ibdev", b.rdma_device + "\n");
    efadra::testing::WriteFileOrDie(b_dir + "/ibdev", a.rdma_device + "\n");
    inventory_ = testing::DiscoverTree(dir_.path());
  }

  // The kernel's rdma_cm number, as sysfs shows it (class/misc/rdma_cm/dev).
  void SetRdmaCm(uint32_t major, uint32_t minor) {
    efadra::testing::WriteFileOrDie(dir_.Sub("sys/class/misc/rdma_cm/dev"),
                                    std::to_string(major) + ":" + std::to_string(minor) + "\n");
  }

  const discovery::EfaDevice& DeviceNamed(const std::string& name) const {
    for (const auto& d : inventory_->devices) {
      if (slices::DeviceName(d.pci_address) == name) return d;
    }
    throw std::runtime_error("no device " + name);
  }

  // Every char device node a claim's spec injects: "path major:minor", spec-level edits too.
  std::vector<std::string> SpecNodes(const std::string& uid) const {
    auto spec = nlohmann::json::parse(efadra::testing::ReadFileOrEmpty(SpecPath(uid)), nullptr,
                                      false);
    std::vector<std::string> nodes;
    if (spec.is_discarded() || !spec.is_object()) return {"unreadable spec " + SpecPath(uid)};
    auto add = [&](const nlohmann::json& edits) {
      for (const auto& node : edits.value("deviceNodes", nlohmann::json::array())) {
        nodes.push_back(node.value("path", "") + " " + std::to_string(node.value("major", 0)) +
                        ":" + std::to_string(node.value("minor", 0)));
      }
    };
    for (const auto& device : spec.value("devices", nlohmann::json::array())) {
      add(device.value("containerEdits", nlohmann::json::object()));
    }
    add(spec.value("containerEdits", nlohmann::json::object()));
    return nodes;
  }

  // The FI_EFA_IFACE value a claim's spec sets, or a description of what is wrong.
  std::string IfaceOf(const std::string& uid) const {
    auto spec = nlohmann::json::parse(efadra::testing::ReadFileOrEmpty(SpecPath(uid)), nullptr,
                                      false);
    if (spec.is_discarded() || !spec.is_object()) return "unreadable spec " + SpecPath(uid);
    std::string value = "no FI_EFA_IFACE in " + SpecPath(uid);
    for (const auto& env : spec["containerEdits"].value("env", nlohmann::json::array())) {
      const std::string entry = env.get<std::string>();
      if (entry.rfind("FI_EFA_IFACE=", 0) == 0) value = entry.substr(13);
    }
    return value;
  }

  std::string RdmaOf(const std::string& device_name) const {
    return DeviceNamed(device_name).rdma_device;
  }

  static std::string NodeOf(const discovery::EfaDevice& d) {
    return "/dev/infiniband/" + d.UverbsName() + " " + std::to_string(d.uverbs_dev.major) + ":" +
           std::to_string(d.uverbs_dev.minor);
  }

  bool inject_gdrdrv_ = false;  // --inject-gdrdrv of the next NewPreparer
  TempDir dir_;
  std::shared_ptr<const discovery::Inventory> inventory_;
  apidouble::FakeApiServer server_;
  std::unique_ptr<kube::Client> client_;
  std::unique_ptr<core::Filesystem> real_cdi_, real_state_;
  std::unique_ptr<FaultyFilesystem> cdi_, state_;
  std::unique_ptr<ClaimPreparer> preparer_;
};

TEST_F(ClaimPreparerTest, PreparesTheEfasOfOneRoot) {
  auto devices = DevicesOfRoot("pci0000:44");
  ASSERT_EQ(devices.size(), 4u);
  std::vector<AllocatedDevice> allocated;
  for (const auto& d : devices) allocated.push_back({"efa/first", d});
  allocated.push_back({"gpu", "gpu-0", "gpu.nvidia.com"});  // another driver's result: ignored
  ClaimRef ref = PutClaim("worker-0", "11111111-0000-0000-0000-000000000001", allocated);

  PrepareResult result = PrepareOne(ref);
  ASSERT_TRUE(result.status.ok()) << result.status.ToString();
  ASSERT_EQ(result.devices.size(), 4u);
  for (size_t i = 0; i < devices.size(); ++i) {
    SCOPED_TRACE(devices[i]);
    EXPECT_EQ(result.devices[i].device_name, devices[i]);
    EXPECT_EQ(result.devices[i].pool_name, kNode);
    EXPECT_EQ(result.devices[i].request_names, std::vector<std::string>{"efa"});
    EXPECT_EQ(result.devices[i].cdi_device_ids,
              std::vector<std::string>{CdiDeviceId(kDriver, ref.uid, devices[i])});
  }
  EXPECT_TRUE(std::filesystem::exists(SpecPath(ref.uid)));
  EXPECT_TRUE(std::filesystem::exists(CheckpointPath(ref.uid)));
  EXPECT_EQ(preparer_->PreparedClaimUids(), std::vector<std::string>{ref.uid});
  // Last: it skips (with the reason) when the validator is not installed.
  std::string problems = testing::ValidateCdiSpecs({SpecPath(ref.uid)});
  if (problems.rfind("SKIP:", 0) == 0) GTEST_SKIP() << "CDI schema check not run: " << problems;
  EXPECT_EQ(problems, "");
}

// Opaque configuration for our driver is refused per claim, naming the entry and its fields
// (DRANET's interface/routes/ethtool settings, for example); empty parameters, another
// driver's config and config for other requests pass.
TEST_F(ClaimPreparerTest, OpaqueConfigForOurDriverIsAPerClaimError) {
  const auto devices = DevicesOfRoot("pci0000:44");
  struct Case {
    std::string name;
    nlohmann::json config;
    std::string error;  // "" = prepares
  } cases[] = {
      {"dranet settings",
       nlohmann::json::parse(R"([{"source": "FromClaim", "requests": ["efa"],
         "opaque": {"driver": "dra.net", "parameters": {"interface": {"mtu": 9001},
                                                         "routes": []}}}])"),
       "status.allocation.devices.config[0] (FromClaim, requests efa) gives driver dra.net "
       "parameters (interface, routes)"},
      {"every request, from the class",
       nlohmann::json::parse(R"([{"source": "FromClass",
         "opaque": {"driver": "dra.net", "parameters": {"ethtool": {}}}}])"),
       "config[0] (FromClass, every request) gives driver dra.net parameters (ethtool)"},
      {"empty parameters",
       nlohmann::json::parse(R"([{"source": "FromClaim",
         "opaque": {"driver": "dra.net", "parameters": {}}}])"),
       ""},
      {"another driver",
       nlohmann::json::parse(R"([{"source": "FromClaim",
         "opaque": {"driver": "gpu.nvidia.com", "parameters": {"sharing": {}}}}])"),
       ""},
      {"another request",
       nlohmann::json::parse(R"([{"source": "FromClaim", "requests": ["gpu"],
         "opaque": {"driver": "dra.net", "parameters": {"interface": {}}}}])"),
       ""},
  };
  int n = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string uid = "22222222-0000-0000-0000-00000000000" + std::to_string(n);
    const std::string name = "config-" + std::to_string(n++);
    auto claim = testing::AllocatedClaim("train", name, uid, {{"efa", devices[0]}});
    claim["status"]["allocation"]["devices"]["config"] = c.config;
    server_.PutResourceClaim(claim);
    PrepareResult result = PrepareOne({"train", name, uid});
    if (c.error.empty()) {
      EXPECT_TRUE(result.status.ok()) << result.status.ToString();
      EXPECT_TRUE(preparer_->Unprepare({{"train", name, uid}})[uid].ok());
    } else {
      EXPECT_EQ(result.status.code(), StatusCode::kInvalidArgument);
      EXPECT_NE(result.status.message().find("claim train/" + name), std::string::npos)
          << result.status.message();
      EXPECT_NE(result.status.message().find(c.error), std::string::npos) << result.status.message();
      EXPECT_FALSE(std::filesystem::exists(SpecPath(uid)));
    }
  }
}

TEST_F(ClaimPreparerTest, ARepeatAnswersTheSameWithoutWritesOrApiCalls) {
  ClaimRef ref = PutClaim("w", "22222222-0000-0000-0000-000000000002",
                          {{"efa", DevicesOfRoot("pci0000:55")[0]}});
  PrepareResult first = PrepareOne(ref);
  ASSERT_TRUE(first.status.ok()) << first.status.ToString();
  const int writes = cdi_->writes() + state_->writes();
  const size_t gets = ClaimGets();
  PrepareResult again = PrepareOne(ref);
  ASSERT_TRUE(again.status.ok());
  EXPECT_EQ(again.devices[0].cdi_device_ids, first.devices[0].cdi_device_ids);
  EXPECT_EQ(cdi_->writes() + state_->writes(), writes);
  EXPECT_EQ(ClaimGets(), gets);
}

// One pod, one container, two claims: the runtime keeps only the last CDI device's
// FI_EFA_IFACE, so every claim of the call names the devices of all of them (its own first).
// The claims are prepared concurrently; b's GET is held back a second (a 429 with
// Retry-After), so a and c wrote their specs before b was prepared: the lists must be complete
// when Prepare returns all the same. Each spec still injects only its own claim's nodes.
TEST_F(ClaimPreparerTest, ClaimsOfOneCallNameEachOthersEfasOwnFirst) {
  const std::vector<std::string> root = DevicesOfRoot("pci0000:44");
  ClaimRef a = PutClaim("a", "uid-pod-a", {{"efa", root[0]}, {"efa", root[1]}});
  ClaimRef b = PutClaim("b", "uid-pod-b", {{"efa", root[2]}});
  ClaimRef c = PutClaim("c", "uid-pod-c", {{"efa", root[3]}});
  server_.FailNext(1, 429, 1, "GET", "/apis/resource.k8s.io/v1/namespaces/train/resourceclaims/b");
  auto results = preparer_->Prepare({a, b, c});
  for (const auto& [uid, result] : results) ASSERT_TRUE(result.status.ok()) << uid;
  const std::string ra0 = RdmaOf(root[0]), ra1 = RdmaOf(root[1]), rb = RdmaOf(root[2]),
                    rc = RdmaOf(root[3]);
  EXPECT_EQ(IfaceOf(a.uid), ra0 + "," + ra1 + "," + rb + "," + rc);
  EXPECT_EQ(IfaceOf(b.uid), rb + "," + ra0 + "," + ra1 + "," + rc);
  EXPECT_EQ(IfaceOf(c.uid), rc + "," + ra0 + "," + ra1 + "," + rb);
  EXPECT_EQ(SpecNodes(b.uid).front(), NodeOf(DeviceNamed(root[2])));
  for (const std::string& node : SpecNodes(b.uid)) {
    EXPECT_EQ(node.find(DeviceNamed(root[0]).UverbsName() + " "), std::string::npos) << node;
  }
  // The checkpoints record the peers in request order.
  auto checkpoint = ParseCheckpoint(efadra::testing::ReadFileOrEmpty(CheckpointPath(b.uid)), "b");
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
  EXPECT_EQ(checkpoint->peer_claim_uids, (std::vector<std::string>{a.uid, c.uid}));
}

// The usual call holds one claim: its own devices only, and not a single write more than the
// checkpoint and the spec.
TEST_F(ClaimPreparerTest, ASingleClaimNamesOnlyItsOwnEfasWithNoExtraWrite) {
  const std::vector<std::string> root = DevicesOfRoot("pci0000:55");
  ClaimRef ref = PutClaim("alone", "uid-alone", {{"efa", root[0]}, {"efa", root[1]}});
  const int cdi_writes = cdi_->writes(), state_writes = state_->writes();
  ASSERT_TRUE(PrepareOne(ref).status.ok());
  EXPECT_EQ(IfaceOf(ref.uid), RdmaOf(root[0]) + "," + RdmaOf(root[1]));
  EXPECT_EQ(cdi_->writes() - cdi_writes, 1);
  EXPECT_EQ(state_->writes() - state_writes, 1);
  EXPECT_EQ(efadra::testing::ReadFileOrEmpty(CheckpointPath(ref.uid)).find("peerClaimUids"),
            std::string::npos);
}

// A restarted driver rebuilds every spec from the checkpoints: the lists must stay the union,
// whatever order the checkpoint files are listed in.
TEST_F(ClaimPreparerTest, ARestartKeepsTheUnionOfThePodsClaims) {
  const std::vector<std::string> root = DevicesOfRoot("pci0000:66");
  ClaimRef a = PutClaim("a", "uid-restart-a", {{"efa", root[0]}});
  ClaimRef b = PutClaim("b", "uid-restart-b", {{"efa", root[1]}});
  auto results = preparer_->Prepare({a, b});
  for (const auto& [uid, result] : results) ASSERT_TRUE(result.status.ok()) << uid;
  const std::string a_list = RdmaOf(root[0]) + "," + RdmaOf(root[1]);
  const std::string b_list = RdmaOf(root[1]) + "," + RdmaOf(root[0]);
  ASSERT_EQ(IfaceOf(a.uid), a_list);
  ASSERT_EQ(IfaceOf(b.uid), b_list);

  // Same boot, specs present: nothing differs, nothing is written.
  const int cdi_writes = cdi_->writes();
  std::vector<std::string> warnings;
  preparer_ = NewPreparer("boot-1", &warnings);
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  EXPECT_EQ(cdi_->writes(), cdi_writes);
  // /var/run/cdi wiped (a reboot): both rebuilt from the checkpoints alone.
  std::filesystem::remove(SpecPath(a.uid));
  std::filesystem::remove(SpecPath(b.uid));
  preparer_ = NewPreparer("boot-2", &warnings);
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  EXPECT_EQ(IfaceOf(a.uid), a_list);
  EXPECT_EQ(IfaceOf(b.uid), b_list);

  // A peer unprepared later leaves its name in the other spec (harmless, the pod is going), and
  // the next restart builds the list from the claims still prepared.
  ASSERT_TRUE(preparer_->Unprepare({b})[b.uid].ok());
  EXPECT_EQ(IfaceOf(a.uid), a_list);
  preparer_ = NewPreparer("boot-2");
  EXPECT_EQ(IfaceOf(a.uid), RdmaOf(root[0]));
}

// A claim that fails in the call contributes nothing; once the kubelet retries it alone and it
// is prepared, it and the claim prepared before name each other (the first one recorded it).
TEST_F(ClaimPreparerTest, AFailedClaimOfTheCallIsNotNamedUntilItsRetrySucceeds) {
  const std::vector<std::string> root = DevicesOfRoot("pci0000:77");
  ClaimRef good = PutClaim("good", "uid-batch-good", {{"efa", root[0]}});
  ClaimRef late = {"train", "late", "uid-batch-late"};  // not in the API yet: its GET fails
  auto results = preparer_->Prepare({good, late});
  ASSERT_TRUE(results[good.uid].status.ok()) << results[good.uid].status.ToString();
  ASSERT_EQ(results[late.uid].status.code(), StatusCode::kNotFound);
  EXPECT_EQ(IfaceOf(good.uid), RdmaOf(root[0]));
  EXPECT_FALSE(std::filesystem::exists(SpecPath(late.uid)));

  PutClaim("late", late.uid, {{"efa", root[1]}});
  ASSERT_TRUE(PrepareOne(late).status.ok());
  EXPECT_EQ(IfaceOf(late.uid), RdmaOf(root[1]) + "," + RdmaOf(root[0]));
  EXPECT_EQ(IfaceOf(good.uid), RdmaOf(root[0]) + "," + RdmaOf(root[1]));
  preparer_ = NewPreparer("boot-1");
  EXPECT_EQ(IfaceOf(late.uid), RdmaOf(root[1]) + "," + RdmaOf(root[0]));
  EXPECT_EQ(IfaceOf(good.uid), RdmaOf(root[0]) + "," + RdmaOf(root[1]));
}

// The pass that completes the lists writes specs too: when it cannot, the claim fails (naming
// it) rather than answer with a list that misses the pod's other EFAs, and the kubelet's retry
// completes it.
TEST_F(ClaimPreparerTest, ASpecTheListCannotBeCompletedInFailsTheClaimUntilARetry) {
  const std::vector<std::string> root = DevicesOfRoot("pci0000:88");
  ClaimRef a = PutClaim("a", "uid-full-a", {{"efa", root[0]}});
  ClaimRef b = PutClaim("b", "uid-full-b", {{"efa", root[1]}});
  // a's first spec is written before b is prepared; its second write, the pass's, fails.
  server_.FailNext(1, 429, 1, "GET", "/apis/resource.k8s.io/v1/namespaces/train/resourceclaims/b");
  cdi_->FailWrites(CdiSpecFileName(kDriver, a.uid), InternalError("injected: tmpfs full"),
                   /*pass_first=*/1);
  auto failed = preparer_->Prepare({a, b});
  ASSERT_FALSE(failed[a.uid].status.ok());
  EXPECT_NE(failed[a.uid].status.message().find("train/a"), std::string::npos)
      << failed[a.uid].status.message();
  EXPECT_NE(failed[a.uid].status.message().find("other claims"), std::string::npos)
      << failed[a.uid].status.message();
  EXPECT_TRUE(failed[b.uid].status.ok()) << failed[b.uid].status.ToString();
  cdi_->ClearFailures();
  auto retried = preparer_->Prepare({a});
  ASSERT_TRUE(retried[a.uid].status.ok()) << retried[a.uid].status.ToString();
  EXPECT_EQ(IfaceOf(a.uid), RdmaOf(root[0]) + "," + RdmaOf(root[1]));
  EXPECT_EQ(IfaceOf(b.uid), RdmaOf(root[1]) + "," + RdmaOf(root[0]));
}

TEST_F(ClaimPreparerTest, ThirtyTwoDevicesInOneClaim) {
  std::vector<AllocatedDevice> allocated;
  for (const auto& d : inventory_->devices) {
    allocated.push_back({"all", slices::DeviceName(d.pci_address)});
  }
  ClaimRef ref = PutClaim("big", "33333333-0000-0000-0000-000000000003", allocated);
  PrepareResult result = PrepareOne(ref);
  ASSERT_TRUE(result.status.ok()) << result.status.ToString();
  EXPECT_EQ(result.devices.size(), 32u);
  std::string problems = testing::ValidateCdiSpecs({SpecPath(ref.uid)});
  if (problems.rfind("SKIP:", 0) == 0) GTEST_SKIP() << "CDI schema check not run: " << problems;
  EXPECT_EQ(problems, "");
}

TEST_F(ClaimPreparerTest, PerClaimErrorsNameTheClaim) {
  const std::string device = DevicesOfRoot("pci0000:66")[0];
  server_.PutResourceClaim(AllocatedClaim("train", "replaced", "uid-in-api", {{"efa", device}}));
  nlohmann::json unallocated = AllocatedClaim("train", "pending", "uid-pending", {});
  unallocated["status"] = nlohmann::json::object();
  server_.PutResourceClaim(unallocated);
  PutClaim("ghost", "uid-ghost", {{"efa", "pci-0000-ff-00-0"}});
  PutClaim("foreign-pool", "uid-foreign", {{"efa", device, kDriver, "other-node"}});
  struct Case {
    ClaimRef ref;
    StatusCode code;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {{"train", "missing", "uid-missing"}, StatusCode::kNotFound, "train/missing"},
      {{"nope", "missing", "uid-ns"}, StatusCode::kNotFound, "nope/missing"},
      {{"train", "replaced", "uid-kubelet"}, StatusCode::kFailedPrecondition, "uid-in-api"},
      {{"train", "pending", "uid-pending"}, StatusCode::kFailedPrecondition, "not allocated"},
      {{"train", "ghost", "uid-ghost"}, StatusCode::kNotFound, "pci-0000-ff-00-0"},
      {{"train", "x", ""}, StatusCode::kInvalidArgument, "empty UID"},
      {{"train", "x", "../../etc"}, StatusCode::kInvalidArgument, "invalid characters"},
      {{"", "x", "uid-x"}, StatusCode::kInvalidArgument, "namespace and name"},
      {{"train", std::string(300, 'n'), "uid-long"}, StatusCode::kInvalidArgument, "too long"},
      // Namespace and name become URL path segments: nothing but DNS names may get there.
      {{"x/../..", "n", "uid-dots"}, StatusCode::kInvalidArgument, "not a DNS label"},
      {{"Train", "x", "uid-upper"}, StatusCode::kInvalidArgument, "not a DNS label"},
      {{"train-", "x", "uid-dash"}, StatusCode::kInvalidArgument, "not a DNS label"},
      {{"train", "a/../../nodes/n1", "uid-path"}, StatusCode::kInvalidArgument,
       "not a DNS subdomain"},
      {{"train", "a..b", "uid-empty-label"}, StatusCode::kInvalidArgument, "not a DNS subdomain"},
      {{"train", "a\nb", "uid-newline"}, StatusCode::kInvalidArgument, "not a DNS subdomain"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.ref.namespace_name + "/" + c.ref.name.substr(0, 20) + " " + c.ref.uid);
    PrepareResult result = PrepareOne(c.ref);
    EXPECT_EQ(result.status.code(), c.code) << result.status.ToString();
    EXPECT_NE(result.status.message().find(c.fragment), std::string::npos)
        << result.status.message();
    EXPECT_TRUE(result.devices.empty());
  }
  // Results for our driver but another node's pool are not ours: nothing to prepare.
  PrepareResult foreign = PrepareOne({"train", "foreign-pool", "uid-foreign"});
  EXPECT_TRUE(foreign.status.ok());
  EXPECT_TRUE(foreign.devices.empty());
  EXPECT_FALSE(std::filesystem::exists(SpecPath("uid-foreign")));
}

TEST_F(ClaimPreparerTest, ADeviceIsNeverPreparedForTwoClaims) {
  const std::string device = DevicesOfRoot("pci0000:77")[1];
  ClaimRef a = PutClaim("a", "uid-a", {{"efa", device}});
  ClaimRef b = PutClaim("b", "uid-b", {{"efa", device}});
  ClaimRef monitor = PutClaim("m", "uid-m", {{"efa", device, kDriver, kNode, /*admin=*/true}});
  ASSERT_TRUE(PrepareOne(a).status.ok());
  PrepareResult second = PrepareOne(b);
  EXPECT_EQ(second.status.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status.message().find("train/a"), std::string::npos) << second.status.message();
  EXPECT_TRUE(PrepareOne(monitor).status.ok()) << "admin access does not take the device";
  ASSERT_TRUE(preparer_->Unprepare({a})[a.uid].ok());
  EXPECT_TRUE(PrepareOne(b).status.ok()) << "free again once unprepared";
}

// A device that allows multiple allocations: each allocation carries its own shareID, so two
// claims on one EFA are both prepared, get distinct CDI devices, and one's unprepare leaves the
// other's spec and checkpoint; they survive a restart; a share never takes the device from an
// exclusive claim's later twin either (the scheduler never mixes the two for one device).
TEST_F(ClaimPreparerTest, SharesOfOneDeviceArePreparedSideBySide) {
  const std::string device = DevicesOfRoot("pci0000:77")[0];
  const std::string share_a = "3f0c6a7e-0000-4000-8000-00000000000a";
  const std::string share_b = "3f0c6a7e-0000-4000-8000-00000000000b";
  auto put_share = [&](const std::string& name, const std::string& uid, const std::string& share) {
    nlohmann::json claim = AllocatedClaim("train", name, uid, {{"efa", device}});
    claim["status"]["allocation"]["devices"]["results"][0]["shareID"] = share;
    server_.PutResourceClaim(claim);
    return ClaimRef{"train", name, uid};
  };
  ClaimRef a = put_share("sa", "uid-share-a", share_a);
  ClaimRef b = put_share("sb", "uid-share-b", share_b);
  PrepareResult first = PrepareOne(a);
  ASSERT_TRUE(first.status.ok()) << first.status.ToString();
  PrepareResult second = PrepareOne(b);
  ASSERT_TRUE(second.status.ok()) << "shares do not exclude each other: "
                                  << second.status.ToString();
  ASSERT_EQ(first.devices.size(), 1u);
  ASSERT_EQ(second.devices.size(), 1u);
  EXPECT_EQ(first.devices[0].share_id, share_a);
  EXPECT_EQ(second.devices[0].share_id, share_b);
  EXPECT_EQ(first.devices[0].cdi_device_ids,
            std::vector<std::string>{CdiDeviceId(kDriver, a.uid, device, share_a)});
  EXPECT_NE(first.devices[0].cdi_device_ids, second.devices[0].cdi_device_ids);
  auto spec = nlohmann::json::parse(efadra::testing::ReadFileOrEmpty(SpecPath(a.uid)));
  EXPECT_EQ(spec["devices"][0]["name"], a.uid + "-" + device + "-" + share_a);

  preparer_ = NewPreparer("boot-1");  // the shares come back from their checkpoints
  EXPECT_TRUE(PrepareOne(a).status.ok());
  EXPECT_TRUE(PrepareOne(b).status.ok());

  ASSERT_TRUE(preparer_->Unprepare({a})[a.uid].ok());
  EXPECT_FALSE(std::filesystem::exists(SpecPath(a.uid)));
  EXPECT_TRUE(std::filesystem::exists(SpecPath(b.uid))) << "the other share keeps its spec";
  EXPECT_TRUE(std::filesystem::exists(CheckpointPath(b.uid)));
  PrepareResult again = PrepareOne(b);
  ASSERT_TRUE(again.status.ok());
  EXPECT_EQ(again.devices[0].cdi_device_ids, second.devices[0].cdi_device_ids);
}

TEST_F(ClaimPreparerTest, UnprepareRemovesEverythingAndToleratesUnknownClaims) {
  ClaimRef ref = PutClaim("w", "uid-unprep", {{"efa", DevicesOfRoot("pci0000:88")[0]}});
  ASSERT_TRUE(PrepareOne(ref).status.ok());
  auto out = preparer_->Unprepare({ref, {"train", "never", "uid-never"}});
  EXPECT_TRUE(out[ref.uid].ok());
  EXPECT_TRUE(out["uid-never"].ok());
  EXPECT_FALSE(std::filesystem::exists(SpecPath(ref.uid)));
  EXPECT_FALSE(std::filesystem::exists(CheckpointPath(ref.uid)));
  EXPECT_TRUE(preparer_->Unprepare({ref})[ref.uid].ok()) << "twice is fine";
  EXPECT_TRUE(preparer_->PreparedClaimUids().empty());
}

TEST_F(ClaimPreparerTest, ARestartAnswersFromTheCheckpointAndRewritesAWipedSpec) {
  ClaimRef ref = PutClaim("w", "uid-restart", {{"efa", DevicesOfRoot("pci0000:99")[2]}});
  PrepareResult before = PrepareOne(ref);
  ASSERT_TRUE(before.status.ok());
  std::filesystem::remove(SpecPath(ref.uid));  // /var/run/cdi wiped
  preparer_ = NewPreparer("boot-1");
  EXPECT_TRUE(std::filesystem::exists(SpecPath(ref.uid))) << "rewritten at start";
  server_.DeleteResourceClaim("train", "w");  // the answer must not need the API any more
  PrepareResult after = PrepareOne(ref);
  ASSERT_TRUE(after.status.ok()) << after.status.ToString();
  EXPECT_EQ(after.devices[0].cdi_device_ids, before.devices[0].cdi_device_ids);
  EXPECT_EQ(after.devices[0].device_name, before.devices[0].device_name);
}

TEST_F(ClaimPreparerTest, ARebootRewritesSpecsAndRecordsTheNewBootId) {
  ClaimRef ref = PutClaim("w", "uid-reboot", {{"efa", DevicesOfRoot("pci0000:aa")[0]}});
  ASSERT_TRUE(PrepareOne(ref).status.ok());
  efadra::testing::WriteFileOrDie(SpecPath(ref.uid), "stale content from before the reboot");
  preparer_ = NewPreparer("boot-2");
  auto spec = nlohmann::json::parse(efadra::testing::ReadFileOrEmpty(SpecPath(ref.uid)), nullptr,
                                    false);
  ASSERT_FALSE(spec.is_discarded());
  EXPECT_EQ(spec["kind"], "dra.net/efa");
  EXPECT_NE(efadra::testing::ReadFileOrEmpty(CheckpointPath(ref.uid)).find("boot-2"),
            std::string::npos);
}

// After a reboot (or a module reload, then a driver restart) the kernel may number uverbs
// differently and give rdma_cm another minor. Restored specs are built from what the node has
// now: each names its device's current node and number, and no two claims share a char device.
TEST_F(ClaimPreparerTest, RestoredSpecsFollowRenumberedUverbsAndRdmaCm) {
  SetRdmaCm(10, 120);
  const discovery::EfaDevice a_before = inventory_->devices[0];
  const discovery::EfaDevice b_before = inventory_->devices[1];
  const std::string a_name = slices::DeviceName(a_before.pci_address);
  const std::string b_name = slices::DeviceName(b_before.pci_address);
  ClaimRef a = PutClaim("a", "uid-renum-a", {{"efa", a_name}});
  ClaimRef b = PutClaim("b", "uid-renum-b", {{"efa", b_name}});
  ASSERT_TRUE(PrepareOne(a).status.ok());
  ASSERT_TRUE(PrepareOne(b).status.ok());
  EXPECT_EQ(SpecNodes(a.uid), (std::vector<std::string>{NodeOf(a_before),
                                                        "/dev/infiniband/rdma_cm 10:120"}));

  for (const char* boot : {"boot-2", "boot-2"}) {  // a reboot, then a restart in the same boot
    SCOPED_TRACE(boot);
    SwapUverbs(DeviceNamed(a_name), DeviceNamed(b_name));
    SetRdmaCm(10, 57);
    preparer_ = NewPreparer(boot);
    const auto& a_now = DeviceNamed(a_name);
    const auto& b_now = DeviceNamed(b_name);
    EXPECT_EQ(SpecNodes(a.uid),
              (std::vector<std::string>{NodeOf(a_now), "/dev/infiniband/rdma_cm 10:57"}));
    EXPECT_EQ(SpecNodes(b.uid),
              (std::vector<std::string>{NodeOf(b_now), "/dev/infiniband/rdma_cm 10:57"}));
    std::set<std::string> uverbs;
    for (const auto& uid : {a.uid, b.uid}) uverbs.insert(SpecNodes(uid).front());
    EXPECT_EQ(uverbs.size(), 2u) << "two claims inject the same char device";
    EXPECT_TRUE(PrepareOne(a).status.ok());
  }
}

// The kernel renumbers while the driver runs: a claim prepared before still has the old number
// in its spec, so a new claim whose device now carries that number is refused, not given it.
TEST_F(ClaimPreparerTest, ADeviceNumberStillInAnotherClaimsSpecIsRefused) {
  const std::string x = slices::DeviceName(inventory_->devices[2].pci_address);
  const std::string y = slices::DeviceName(inventory_->devices[3].pci_address);
  const std::string x_number = std::to_string(inventory_->devices[2].uverbs_dev.major) + ":" +
                               std::to_string(inventory_->devices[2].uverbs_dev.minor);
  ClaimRef a = PutClaim("a", "uid-num-a", {{"efa", x}});
  ASSERT_TRUE(PrepareOne(a).status.ok());
  SwapUverbs(DeviceNamed(x), DeviceNamed(y));
  ClaimRef b = PutClaim("b", "uid-num-b", {{"efa", y}});
  PrepareResult refused = PrepareOne(b);
  EXPECT_EQ(refused.status.code(), StatusCode::kFailedPrecondition) << refused.status.ToString();
  EXPECT_NE(refused.status.message().find("train/a"), std::string::npos)
      << refused.status.message();
  EXPECT_NE(refused.status.message().find(x_number), std::string::npos)
      << refused.status.message();
  EXPECT_FALSE(std::filesystem::exists(SpecPath(b.uid)));
  ASSERT_TRUE(preparer_->Unprepare({a})[a.uid].ok());
  PrepareResult freed = PrepareOne(b);
  ASSERT_TRUE(freed.status.ok()) << freed.status.ToString();
  EXPECT_EQ(SpecNodes(b.uid).front(), NodeOf(DeviceNamed(y)));
}

// A device that is gone at restart (failed probe, removed) fails its claim by name; no spec
// with a number that may now belong to another device is left for the runtime.
TEST_F(ClaimPreparerTest, ARestoredClaimWhoseDeviceIsGoneFailsNamingClaimAndDevice) {
  const std::string gone = slices::DeviceName(inventory_->devices[4].pci_address);
  ClaimRef ref = PutClaim("w", "uid-gone", {{"efa", gone}});
  ASSERT_TRUE(PrepareOne(ref).status.ok());
  auto without = std::make_shared<discovery::Inventory>(*inventory_);
  without->devices.erase(without->devices.begin() + 4);
  const auto full = inventory_;
  inventory_ = without;
  std::vector<std::string> warnings;
  preparer_ = NewPreparer("boot-2", &warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("train/w"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find(gone), std::string::npos) << warnings[0];
  EXPECT_FALSE(std::filesystem::exists(SpecPath(ref.uid)));
  PrepareResult answer = PrepareOne(ref);
  EXPECT_EQ(answer.status.code(), StatusCode::kNotFound) << answer.status.ToString();
  EXPECT_NE(answer.status.message().find("train/w"), std::string::npos);
  EXPECT_NE(answer.status.message().find(gone), std::string::npos);
  EXPECT_TRUE(answer.devices.empty());
  EXPECT_EQ(preparer_->PreparedClaimUids(), std::vector<std::string>{ref.uid}) << "not lost";
  inventory_ = full;  // the device probes again
  PrepareResult back = PrepareOne(ref);
  ASSERT_TRUE(back.status.ok()) << back.status.ToString();
  ASSERT_EQ(back.devices.size(), 1u);
  EXPECT_EQ(back.devices[0].cdi_device_ids[0], CdiDeviceId(kDriver, ref.uid, gone));
  EXPECT_EQ(SpecNodes(ref.uid).front(), NodeOf(DeviceNamed(gone)));
}

// adminAccess survives a restart: the admin claim never becomes the device's owner, and the
// owner's reservation is never replaced by another claim's.
TEST_F(ClaimPreparerTest, AdminAccessIsKeptAcrossARestart) {
  const std::string device = DevicesOfRoot("pci0000:bb")[1];
  ClaimRef regular = PutClaim("a", "uid-adm-a", {{"efa", device}});
  ClaimRef monitor = PutClaim("m", "uid-adm-m", {{"efa", device, kDriver, kNode, true}});
  ASSERT_TRUE(PrepareOne(regular).status.ok());
  ASSERT_TRUE(PrepareOne(monitor).status.ok());
  preparer_ = NewPreparer("boot-1");
  EXPECT_TRUE(PrepareOne(regular).status.ok());
  EXPECT_TRUE(PrepareOne(monitor).status.ok());
  ClaimRef third = PutClaim("c", "uid-adm-c", {{"efa", device}});
  PrepareResult refused = PrepareOne(third);
  EXPECT_EQ(refused.status.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status.message().find("train/a "), std::string::npos)
      << "the owner is the regular claim: " << refused.status.message();
  ASSERT_TRUE(preparer_->Unprepare({regular})[regular.uid].ok());
  PrepareResult after = PrepareOne(third);
  EXPECT_TRUE(after.status.ok()) << "the admin claim does not own the device: "
                                 << after.status.ToString();
}

// Unprepare of a claim this process does not know (its restore failed, a downgrade skipped its
// newer file, a twin wrote it) still deletes its checkpoint and spec by UID, so the leftover
// never comes back after a restart to block its device.
TEST_F(ClaimPreparerTest, UnprepareOfAnUnknownClaimRemovesItsFilesByUid) {
  const std::string device = DevicesOfRoot("pci0000:44")[2];
  ClaimRef model = PutClaim("model", "uid-model", {{"efa", device}});
  ASSERT_TRUE(PrepareOne(model).status.ok());
  const std::string checkpoint = efadra::testing::ReadFileOrEmpty(CheckpointPath(model.uid));
  const std::string spec = efadra::testing::ReadFileOrEmpty(SpecPath(model.uid));
  ASSERT_TRUE(preparer_->Unprepare({model})[model.uid].ok());
  std::string future = checkpoint;
  future.replace(future.find("\"schemaVersion\": "), 18, "\"schemaVersion\": 9");
  struct Case {
    std::string name, uid, checkpoint;
    bool before_start;  // else written while the preparer runs (as a twin would)
  } cases[] = {
      {"corrupt", "uid-left-corrupt", "{not json", true},
      {"future schema", "uid-left-future", future, true},
      {"unknown to this process", model.uid, checkpoint, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto plant = [&] {
      efadra::testing::WriteFileOrDie(CheckpointPath(c.uid), c.checkpoint);
      efadra::testing::WriteFileOrDie(SpecPath(c.uid), spec);
    };
    if (c.before_start) {
      plant();
      preparer_ = NewPreparer("boot-1");
    } else {
      preparer_ = NewPreparer("boot-1");
      plant();
    }
    ClaimRef ref{"train", "left", c.uid};
    const int syncs = state_->directory_syncs();
    EXPECT_TRUE(preparer_->Unprepare({ref})[c.uid].ok());
    EXPECT_GT(state_->directory_syncs(), syncs) << "the removal is made durable";
    EXPECT_FALSE(std::filesystem::exists(CheckpointPath(c.uid)));
    EXPECT_FALSE(std::filesystem::exists(SpecPath(c.uid)));
    std::vector<std::string> warnings;
    preparer_ = NewPreparer("boot-1", &warnings);
    EXPECT_TRUE(warnings.empty()) << warnings.front();
    ClaimRef next = PutClaim("next", "uid-next", {{"efa", device}});
    PrepareResult free = PrepareOne(next);
    EXPECT_TRUE(free.status.ok()) << "the device is free: " << free.status.ToString();
    ASSERT_TRUE(preparer_->Unprepare({next})[next.uid].ok());
  }
}

// A checkpoint file whose name and content disagree on the claim UID is refused by name and
// never adopted (it would answer, and reserve devices, for a claim it was not written for).
TEST_F(ClaimPreparerTest, ACheckpointNamedForAnotherUidIsRefused) {
  const std::string device = DevicesOfRoot("pci0000:55")[3];
  ClaimRef ref = PutClaim("w", "uid-trust", {{"efa", device}});
  ASSERT_TRUE(PrepareOne(ref).status.ok());
  const std::string content = efadra::testing::ReadFileOrEmpty(CheckpointPath(ref.uid));
  ASSERT_TRUE(preparer_->Unprepare({ref})[ref.uid].ok());
  efadra::testing::WriteFileOrDie(CheckpointPath("uid-other"), content);
  std::vector<std::string> warnings;
  preparer_ = NewPreparer("boot-1", &warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("uid-other.json"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("uid-trust"), std::string::npos) << warnings[0];
  EXPECT_TRUE(preparer_->PreparedClaimUids().empty());
  EXPECT_FALSE(std::filesystem::exists(SpecPath(ref.uid)));
  ClaimRef next = PutClaim("next", "uid-next", {{"efa", device}});
  EXPECT_TRUE(PrepareOne(next).status.ok()) << "the device is free";
}

// A checkpoint written by a schema-1 driver (it stored the CDI spec, with the numbers of its
// boot) is migrated: its claim stays prepared and reserved, its spec is built afresh.
TEST_F(ClaimPreparerTest, ASchemaOneCheckpointIsMigratedAndItsStoredSpecIgnored) {
  const std::string uid = "7e57c1a1-0000-4000-8000-000000000001";
  const std::string device = "pci-0000-4f-00-0";
  const std::string fixture = efadra::testing::ReadFileOrEmpty(
      efadra::testing::TestDataDir() + "/checkpoints/schema1-" + device + ".json");
  ASSERT_NE(fixture.find("uverbs31"), std::string::npos) << "the fixture's stored spec";
  for (const char* boot : {"boot-0", "boot-1"}) {  // its own boot, and after a reboot
    SCOPED_TRACE(boot);
    std::filesystem::remove(SpecPath(uid));
    efadra::testing::WriteFileOrDie(CheckpointPath(uid), fixture);
    std::vector<std::string> warnings;
    preparer_ = NewPreparer(boot, &warnings);
    EXPECT_TRUE(warnings.empty()) << warnings.front();
    EXPECT_EQ(preparer_->PreparedClaimUids(), std::vector<std::string>{uid});
    EXPECT_EQ(SpecNodes(uid), std::vector<std::string>{NodeOf(DeviceNamed(device))});
    PrepareResult answer = PrepareOne({"train", "migrated", uid});
    ASSERT_TRUE(answer.status.ok()) << answer.status.ToString();
    ASSERT_EQ(answer.devices.size(), 1u);
    EXPECT_EQ(answer.devices[0].cdi_device_ids[0], CdiDeviceId(kDriver, uid, device));
    ClaimRef other = PutClaim("other", "uid-other", {{"efa", device}});
    EXPECT_EQ(PrepareOne(other).status.code(), StatusCode::kFailedPrecondition);
  }
}

TEST_F(ClaimPreparerTest, CorruptAndFutureCheckpointsAreReportedAndSkipped) {
  ClaimRef ref = PutClaim("w", "uid-good", {{"efa", DevicesOfRoot("pci0000:bb")[0]}});
  ASSERT_TRUE(PrepareOne(ref).status.ok());
  efadra::testing::WriteFileOrDie(dir_.Sub("state/checkpoints/uid-corrupt.json"), "{not json");
  std::string future = efadra::testing::ReadFileOrEmpty(CheckpointPath(ref.uid));
  future.replace(future.find("\"schemaVersion\": "), 18, "\"schemaVersion\": 7");
  efadra::testing::WriteFileOrDie(dir_.Sub("state/checkpoints/uid-future.json"), future);
  efadra::testing::WriteFileOrDie(dir_.Sub("state/checkpoints/.uid-x.json.tmp.1.0"), "partial");
  std::vector<std::string> warnings;
  preparer_ = NewPreparer("boot-1", &warnings);
  ASSERT_EQ(warnings.size(), 2u);
  const std::string all = warnings[0] + "\n" + warnings[1];
  EXPECT_NE(all.find("uid-corrupt.json"), std::string::npos) << all;
  EXPECT_NE(all.find("uid-future.json"), std::string::npos) << all;
  EXPECT_EQ(preparer_->PreparedClaimUids(), std::vector<std::string>{ref.uid});
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("state/checkpoints/.uid-x.json.tmp.1.0")));
}

TEST_F(ClaimPreparerTest, AFullDiskFailsTheClaimAndLeavesNothingBehind) {
  const std::string device = DevicesOfRoot("pci0000:44")[3];
  ClaimRef ref = PutClaim("w", "uid-disk", {{"efa", device}});
  state_->FailWrites("uid-disk", ResourceExhaustedError("No space left on device"));
  PrepareResult full = PrepareOne(ref);
  EXPECT_EQ(full.status.code(), StatusCode::kResourceExhausted) << full.status.ToString();
  EXPECT_NE(full.status.message().find("uid-disk"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(SpecPath(ref.uid)));
  EXPECT_TRUE(preparer_->PreparedClaimUids().empty()) << "the device reservation is dropped";

  state_->ClearFailures();
  cdi_->FailWrites("uid-disk", FailedPreconditionError("Read-only file system"));
  PrepareResult read_only = PrepareOne(ref);
  EXPECT_FALSE(read_only.status.ok());
  EXPECT_FALSE(std::filesystem::exists(CheckpointPath(ref.uid))) << "rolled back";

  cdi_->ClearFailures();
  EXPECT_TRUE(PrepareOne(ref).status.ok()) << "the kubelet's retry succeeds once the disk is fine";
}

TEST_F(ClaimPreparerTest, ACrashBetweenCheckpointAndSpecIsRepairedAtStart) {
  // What a process killed right after the durable checkpoint leaves behind: the checkpoint as
  // the preparer writes it, and no CDI spec. The claim is gone from the API too.
  const auto& device = inventory_->devices[5];
  const std::string name = slices::DeviceName(device.pci_address);
  ClaimCheckpoint checkpoint;
  checkpoint.claim = {"train", "w", "uid-crash"};
  checkpoint.boot_id = "boot-1";
  CheckpointDevice allocated;
  allocated.request_names = {"efa"};
  allocated.pool_name = kNode;
  allocated.device_name = name;
  allocated.pci_address = device.pci_address;
  checkpoint.devices = {allocated};
  efadra::testing::WriteFileOrDie(CheckpointPath("uid-crash"), SerializeCheckpoint(checkpoint));
  preparer_ = NewPreparer("boot-1");
  EXPECT_EQ(SpecNodes("uid-crash"), std::vector<std::string>{NodeOf(device)});
  PrepareResult answer = PrepareOne(checkpoint.claim);
  ASSERT_TRUE(answer.status.ok()) << answer.status.ToString();
  EXPECT_EQ(answer.devices[0].cdi_device_ids,
            std::vector<std::string>{CdiDeviceId(kDriver, "uid-crash", name)});
  // And the device stays reserved for it.
  ClaimRef other = PutClaim("other", "uid-other", {{"efa", name}});
  EXPECT_EQ(PrepareOne(other).status.code(), StatusCode::kFailedPrecondition);
}

// kill -9 at each step of a prepare, in a forked child: before the checkpoint write, after it
// (before the CDI spec), and after the spec (before the answer). A restarted preparer over the
// same directories then answers the claim exactly as an uninterrupted prepare does, leaves no
// temporary file behind, and keeps the device reserved.
TEST_F(ClaimPreparerTest, Kill9AtEachStepOfAPrepareLosesNothing) {
  const std::string device = DevicesOfRoot("pci0000:99")[0];
  ClaimRef reference = PutClaim("ref", "uid-ref", {{"efa", device}});
  PrepareResult expected = PrepareOne(reference);
  ASSERT_TRUE(expected.status.ok());
  ASSERT_TRUE(preparer_->Unprepare({reference})[reference.uid].ok());

  // Where the child dies: on which filesystem, at the first write whose path contains `path`.
  struct Step {
    const char* name;
    const char* filesystem;  // "state" or "cdi"
    const char* path;
    const char* when;  // "before" or "after" the write
  } steps[] = {
      {"before the checkpoint", "state", "checkpoints/", "before"},
      {"after the checkpoint", "state", "checkpoints/", "after"},
      {"after the CDI spec", "cdi", "dra.net-efa_", "after"},
  };
  int round = 0;
  for (const Step& step : steps) {
    SCOPED_TRACE(step.name);
    const std::string uid = "uid-kill-" + std::to_string(round++);
    ClaimRef claim = PutClaim("kill" + uid, uid, {{"efa", device}});
    preparer_.reset();
    // A separate process (fork + exec): a bare fork of this multi-threaded process can deadlock
    // in the child on a lock another thread held at the fork (ASan's allocator lock is not
    // fork-safe in GCC 12's runtime; it happened in CI).
    const std::vector<std::string> args = ::efadra::testing::TargetProgramArgv({
        EFADRA_CLAIMS_CRASH_CHILD, dir_.path(), server_.url(), claim.namespace_name,
        claim.name, claim.uid, step.filesystem, step.path, step.when});
    std::vector<char*> argv;
    for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    pid_t child = 0;
    ASSERT_EQ(::posix_spawn(&child, argv[0], nullptr, nullptr, argv.data(), environ), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;

    preparer_ = NewPreparer("boot-1");
    PrepareResult answer = PrepareOne(claim);
    ASSERT_TRUE(answer.status.ok()) << answer.status.ToString();
    ASSERT_EQ(answer.devices.size(), 1u);
    EXPECT_EQ(answer.devices[0].device_name, expected.devices[0].device_name);
    EXPECT_EQ(answer.devices[0].cdi_device_ids[0], CdiDeviceId(kDriver, uid, device));
    EXPECT_TRUE(std::filesystem::exists(SpecPath(uid)));
    for (const auto& dir : {dir_.Sub("cdi"), dir_.Sub("state/checkpoints")}) {
      for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        EXPECT_NE(entry.path().filename().string().front(), '.') << entry.path();
      }
    }
    ClaimRef other = PutClaim("other" + uid, "uid-other-" + uid, {{"efa", device}});
    EXPECT_EQ(PrepareOne(other).status.code(), StatusCode::kFailedPrecondition);
    ASSERT_TRUE(preparer_->Unprepare({claim})[uid].ok());
  }
}

TEST_F(ClaimPreparerTest, ClaimsArePreparedConcurrentlyAndOneClaimOnlyOnce) {
  std::vector<ClaimRef> refs;
  for (size_t i = 0; i < 16; ++i) {
    refs.push_back(PutClaim("c" + std::to_string(i), "uid-c" + std::to_string(i),
                            {{"efa", slices::DeviceName(inventory_->devices[i].pci_address)}}));
  }
  auto results = preparer_->Prepare(refs);
  ASSERT_EQ(results.size(), 16u);
  for (const auto& [uid, result] : results) EXPECT_TRUE(result.status.ok()) << uid;

  ClaimRef shared = PutClaim("shared", "uid-shared",
                             {{"efa", slices::DeviceName(inventory_->devices[20].pci_address)}});
  const int writes_before = state_->writes();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      if (PrepareOne(shared).status.ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(state_->writes() - writes_before, 1) << "one checkpoint for a claim shared by 8 pods";
}

TEST_F(ClaimPreparerTest, AnApiOutageFailsOnlyTheClaimsItHits) {
  ClaimRef good = PutClaim("good", "uid-good2", {{"efa", DevicesOfRoot("pci0000:66")[1]}});
  ASSERT_TRUE(PrepareOne(good).status.ok());  // prepared before the outage
  ClaimRef hit = PutClaim("hit", "uid-hit", {{"efa", DevicesOfRoot("pci0000:66")[2]}});
  server_.FailNext(10, 503, 0, "GET", "/apis/resource.k8s.io/v1/namespaces/train/resourceclaims/hit");
  auto results = preparer_->Prepare({good, hit});
  EXPECT_TRUE(results[good.uid].status.ok());
  EXPECT_EQ(results[hit.uid].status.code(), StatusCode::kUnavailable)
      << results[hit.uid].status.ToString();
  EXPECT_NE(results[hit.uid].status.message().find("train/hit"), std::string::npos);
}

TEST_F(ClaimPreparerTest, ThrottlingAndSlowResponsesDelayButDoNotFailPrepares) {
  const auto devices = DevicesOfRoot("pci0000:aa");
  // 429 with Retry-After: the client waits as told and the prepare succeeds.
  ClaimRef throttled = PutClaim("throttled", "uid-429", {{"efa", devices[0]}});
  server_.FailNext(1, 429, 1, "GET", "/apis/resource.k8s.io/v1/namespaces/train/resourceclaims/");
  PrepareResult result = PrepareOne(throttled);
  EXPECT_TRUE(result.status.ok()) << result.status.ToString();

  // A slow API server: concurrent claims all complete.
  server_.SetLatency(std::chrono::milliseconds(200));
  std::vector<ClaimRef> slow;
  for (size_t i = 1; i < 4; ++i) {
    slow.push_back(PutClaim("slow" + std::to_string(i), "uid-slow" + std::to_string(i),
                            {{"efa", devices[i]}}));
  }
  auto results = preparer_->Prepare(slow);
  server_.SetLatency(std::chrono::milliseconds(0));
  for (const auto& ref : slow) EXPECT_TRUE(results[ref.uid].status.ok()) << ref.uid;
}

TEST_F(ClaimPreparerTest, AServerErrorStormFailsTheClaimCleanlyAndARetrySucceeds) {
  ClaimRef claim = PutClaim("storm", "uid-storm", {{"efa", DevicesOfRoot("pci0000:bb")[0]}});
  // As many failures as the client makes attempts (2 in this fixture): the whole call fails.
  server_.FailNext(2, 500, 0, "GET", "/apis/resource.k8s.io/v1/namespaces/train/resourceclaims/");
  PrepareResult failed = PrepareOne(claim);
  EXPECT_EQ(failed.status.code(), StatusCode::kUnavailable) << failed.status.ToString();
  EXPECT_NE(failed.status.message().find("train/storm"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(CheckpointPath("uid-storm")));  // nothing half-prepared
  EXPECT_FALSE(std::filesystem::exists(SpecPath("uid-storm")));
  // The storm is over; the kubelet retries.
  PrepareResult retried = PrepareOne(claim);
  EXPECT_TRUE(retried.status.ok()) << retried.status.ToString();
}

// Plays the rolling-update twin: holds the flock on the shared lock file until released.
class TwinHoldingTheLock {
 public:
  explicit TwinHoldingTheLock(const std::string& path)
      : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    EXPECT_GE(fd_, 0) << path;
    EXPECT_EQ(::flock(fd_, LOCK_EX | LOCK_NB), 0) << path;
  }
  ~TwinHoldingTheLock() { Release(); }
  void Release() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

class RollingUpdatePreparerTest : public ClaimPreparerTest {
 protected:
  std::string LockPath() const { return dir_.Sub("serialize.lock"); }
  std::unique_ptr<ClaimPreparer> NewTwin() {
    PreparerOptions options = testing::FixturePreparerOptions(dir_.path(), "boot-1");
    options.shared_lock_path = LockPath();
    return std::make_unique<ClaimPreparer>(options, *client_, *cdi_, *state_,
                                           [this] { return inventory_; });
  }
};

// The twin may be in the middle of an atomic write: its temporary files are not leftovers
// until its lock is free.
TEST_F(RollingUpdatePreparerTest, StartWaitsForTheTwinsLockBeforeCleaningUp) {
  const std::string temporary =
      dir_.Sub("cdi/." + CdiSpecFileName(kDriver, "uid-twin") + ".tmp.1234");
  efadra::testing::WriteFileOrDie(temporary, "{}");
  TwinHoldingTheLock twin(LockPath());
  auto preparer = NewTwin();
  std::atomic<bool> started{false};
  std::thread start([&] {
    EXPECT_TRUE(preparer->Start().ok());
    started = true;
  });
  EXPECT_FALSE(efadra::testing::WaitFor([&] { return started.load(); },
                                        std::chrono::milliseconds(300)));
  EXPECT_TRUE(std::filesystem::exists(temporary)) << "removed under the twin's lock";
  twin.Release();
  start.join();
  EXPECT_FALSE(std::filesystem::exists(temporary)) << "a leftover once the lock is ours";
}

TEST_F(RollingUpdatePreparerTest, APrepareStillWaitingForTheLockAtTheDeadlineFailsNamingTheClaim) {
  auto preparer = NewTwin();
  ASSERT_TRUE(preparer->Start().ok());
  ClaimRef ref = PutClaim("late", "uid-late", {{"efa", DevicesOfRoot("pci0000:44")[0]}});
  TwinHoldingTheLock twin(LockPath());
  auto results =
      preparer->Prepare({ref}, std::chrono::steady_clock::now() + std::chrono::milliseconds(200));
  const Status& status = results[ref.uid].status;
  EXPECT_EQ(status.code(), StatusCode::kDeadlineExceeded) << status.ToString();
  EXPECT_NE(status.message().find("claim train/late (uid uid-late)"), std::string::npos)
      << status.message();
  EXPECT_NE(status.message().find(LockPath()), std::string::npos) << status.message();
  EXPECT_FALSE(std::filesystem::exists(CheckpointPath(ref.uid)));
  twin.Release();
  EXPECT_TRUE(preparer->Prepare({ref})[ref.uid].status.ok()) << "the kubelet's retry succeeds";
}

// A kubelet restart can empty the plugin dir, which holds the state dir in the chart's layout.
TEST_F(ClaimPreparerTest, AWipedCheckpointDirIsRecreatedWithTheClaimsStillPrepared) {
  const auto devices = DevicesOfRoot("pci0000:44");
  ClaimRef first = PutClaim("first", "uid-first", {{"efa", devices[0]}});
  ASSERT_TRUE(PrepareOne(first).status.ok());
  std::filesystem::remove_all(dir_.Sub("state"));

  ClaimRef second = PutClaim("second", "uid-second", {{"efa", devices[1]}});
  PrepareResult prepared = PrepareOne(second);
  EXPECT_TRUE(prepared.status.ok()) << prepared.status.ToString();
  EXPECT_TRUE(std::filesystem::exists(CheckpointPath(second.uid)));
  EXPECT_TRUE(std::filesystem::exists(CheckpointPath(first.uid)))
      << "the claim prepared before the wipe is still prepared";
  ClaimRef thief = PutClaim("thief", "uid-thief", {{"efa", devices[0]}});
  EXPECT_NE(PrepareOne(thief).status.message().find("already prepared for claim train/first"),
            std::string::npos);
  // And a restart still knows both.
  preparer_ = NewPreparer("boot-1");
  auto uids = preparer_->PreparedClaimUids();
  std::sort(uids.begin(), uids.end());
  EXPECT_EQ(uids, (std::vector<std::string>{"uid-first", "uid-second"}));
}

// /healthz: OK while the state dir can be written (a wipe is repaired by the probe itself),
// unavailable naming the directory while it cannot.
TEST_F(ClaimPreparerTest, CheckStateDirTellsWhetherTheStateDirCanBeWritten) {
  ClaimRef ref = PutClaim("w", "uid-w", {{"efa", DevicesOfRoot("pci0000:44")[0]}});
  ASSERT_TRUE(PrepareOne(ref).status.ok());
  EXPECT_TRUE(preparer_->CheckStateDir().ok());

  std::filesystem::remove_all(dir_.Sub("state/checkpoints"));
  Status repaired = preparer_->CheckStateDir();
  EXPECT_TRUE(repaired.ok()) << repaired.ToString();
  EXPECT_TRUE(std::filesystem::exists(CheckpointPath(ref.uid))) << "re-created by the probe";

  state_->FailWrites("/checkpoints", UnavailableError("Read-only file system"));
  // The probe file is written at most once a second; the answer changes with the next one.
  Status broken;
  EXPECT_TRUE(efadra::testing::WaitFor([&] {
    broken = preparer_->CheckStateDir();
    return !broken.ok();
  }));
  EXPECT_EQ(broken.code(), StatusCode::kUnavailable) << broken.ToString();
  EXPECT_NE(broken.message().find(dir_.Sub("state/checkpoints")), std::string::npos)
      << broken.message();
  EXPECT_NE(broken.message().find("Read-only file system"), std::string::npos);

  state_->ClearFailures();
  EXPECT_TRUE(efadra::testing::WaitFor([&] { return preparer_->CheckStateDir().ok(); }));
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("state/checkpoints/.write-probe")));
}

size_t Occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// GDRCopy's node, made the way its loader makes it: a char device with gdrdrv's dynamic major,
// minor 0. 0 when made; mknod's errno otherwise.
int MakeGdrdrvNode(const std::string& path, uint32_t major) {
  return ::mknod(path.c_str(), S_IFCHR | 0666, makedev(major, 0)) == 0 ? 0 : errno;
}

// --inject-gdrdrv on, the host has /dev/gdrdrv: every claim's spec-level edits carry it with
// the host's numbers, read at each prepare (a module reload gives it another major).
TEST_F(ClaimPreparerTest, InjectsGdrdrvWhenEnabledAndTheHostHasIt) {
  const std::string node = dir_.Sub("dev/gdrdrv");
  if (int err = MakeGdrdrvNode(node, 508); err != 0) {
    // Refused without CAP_MKNOD (an unprivileged container), like the other mknod tests.
    if (err == EPERM) GTEST_SKIP() << "mknod " << node << " needs root with CAP_MKNOD";
    FAIL() << "mknod " << node << ": " << std::strerror(err);
  }
  inject_gdrdrv_ = true;
  preparer_ = NewPreparer("boot-1");
  SetRdmaCm(10, 58);
  const auto& d = inventory_->devices[0];
  ClaimRef ref = PutClaim("gdr", "uid-gdr-1", {{"efa", slices::DeviceName(d.pci_address)}});
  std::string logs = LogsOf([&] { ASSERT_TRUE(PrepareOne(ref).status.ok()); });
  EXPECT_EQ(SpecNodes(ref.uid),
            (std::vector<std::string>{NodeOf(d), "/dev/infiniband/rdma_cm 10:58",
                                      "/dev/gdrdrv 508:0"}));
  auto spec = nlohmann::json::parse(efadra::testing::ReadFileOrEmpty(SpecPath(ref.uid)));
  EXPECT_EQ(spec["containerEdits"]["deviceNodes"][1]["hostPath"], node);
  EXPECT_EQ(Occurrences(logs, node), 1u) << logs;

  // Reloaded with another major: the next claim gets the new number.
  std::filesystem::remove(node);
  ASSERT_EQ(MakeGdrdrvNode(node, 237), 0);
  const auto& e = inventory_->devices[1];
  ClaimRef next = PutClaim("gdr2", "uid-gdr-2", {{"efa", slices::DeviceName(e.pci_address)}});
  ASSERT_TRUE(PrepareOne(next).status.ok());
  EXPECT_EQ(SpecNodes(next.uid).back(), "/dev/gdrdrv 237:0");
}

// On, but the host has no /dev/gdrdrv: the claims are prepared without it, and the missing
// node is logged once, naming it, not once per claim.
TEST_F(ClaimPreparerTest, WithoutGdrdrvOnTheHostClaimsPrepareAndItIsLoggedOnce) {
  inject_gdrdrv_ = true;
  preparer_ = NewPreparer("boot-1");
  SetRdmaCm(10, 58);
  const std::string node = dir_.Sub("dev/gdrdrv");
  ASSERT_FALSE(std::filesystem::exists(node));
  std::vector<ClaimRef> refs;
  std::string logs = LogsOf([&] {
    for (int i = 0; i < 3; ++i) {
      const auto& d = inventory_->devices[i];
      refs.push_back(PutClaim("c" + std::to_string(i), "uid-nogdr-" + std::to_string(i),
                              {{"efa", slices::DeviceName(d.pci_address)}}));
      PrepareResult result = PrepareOne(refs.back());
      EXPECT_TRUE(result.status.ok()) << result.status.ToString();
    }
  });
  for (size_t i = 0; i < refs.size(); ++i) {
    EXPECT_EQ(SpecNodes(refs[i].uid),
              (std::vector<std::string>{NodeOf(inventory_->devices[i]),
                                        "/dev/infiniband/rdma_cm 10:58"}));
  }
  EXPECT_EQ(Occurrences(logs, "has no " + node), 1u) << logs;
}

// Off (the default): never injected, even where the host has the node.
TEST_F(ClaimPreparerTest, GdrdrvIsNeverInjectedWhenDisabled) {
  const std::string node = dir_.Sub("dev/gdrdrv");
  if (int err = MakeGdrdrvNode(node, 508); err != 0) {
    // Refused without CAP_MKNOD (an unprivileged container), like the other mknod tests.
    if (err == EPERM) GTEST_SKIP() << "mknod " << node << " needs root with CAP_MKNOD";
    FAIL() << "mknod " << node << ": " << std::strerror(err);
  }
  ASSERT_FALSE(PreparerOptions().inject_gdrdrv);
  SetRdmaCm(10, 58);
  const auto& d = inventory_->devices[0];
  ClaimRef ref = PutClaim("nogdr", "uid-off-1", {{"efa", slices::DeviceName(d.pci_address)}});
  std::string logs = LogsOf([&] { ASSERT_TRUE(PrepareOne(ref).status.ok()); });
  EXPECT_EQ(SpecNodes(ref.uid),
            (std::vector<std::string>{NodeOf(d), "/dev/infiniband/rdma_cm 10:58"}));
  EXPECT_EQ(logs.find("gdrdrv"), std::string::npos) << logs;
}

// On, and something that is not a char device sits at /dev/gdrdrv (a regular file, a directory
// a hostPath mount made): an error naming it, logged once; the claims are prepared without it.
TEST_F(ClaimPreparerTest, AGdrdrvThatIsNoCharDeviceIsAnErrorButNotAFailedClaim) {
  inject_gdrdrv_ = true;
  preparer_ = NewPreparer("boot-1");
  SetRdmaCm(10, 58);
  const std::string node = dir_.Sub("dev/gdrdrv");
  for (bool directory : {false, true}) {
    SCOPED_TRACE(directory ? "directory" : "regular file");
    std::filesystem::remove_all(node);
    if (directory) {
      std::filesystem::create_directories(node);
    } else {
      efadra::testing::WriteFileOrDie(node, "");
    }
    std::vector<ClaimRef> refs;
    std::string logs = LogsOf([&] {
      for (int i = 0; i < 2; ++i) {
        const auto& d = inventory_->devices[(directory ? 2 : 0) + i];
        refs.push_back(PutClaim("bad" + std::to_string(i),
                                std::string("uid-bad-") + (directory ? "d" : "f") +
                                    std::to_string(i),
                                {{"efa", slices::DeviceName(d.pci_address)}}));
        PrepareResult result = PrepareOne(refs.back());
        EXPECT_TRUE(result.status.ok()) << result.status.ToString();
      }
    });
    for (const ClaimRef& ref : refs) {
      EXPECT_EQ(SpecNodes(ref.uid).size(), 2u) << ::testing::PrintToString(SpecNodes(ref.uid));
      EXPECT_EQ(SpecNodes(ref.uid).back(), "/dev/infiniband/rdma_cm 10:58");
    }
    if (!directory) {
      EXPECT_EQ(Occurrences(logs, node + " is not a character device"), 1u) << logs;
      EXPECT_NE(logs.find("error"), std::string::npos) << logs;
    } else {
      // Same state as before: already reported.
      EXPECT_EQ(Occurrences(logs, node), 0u) << logs;
    }
  }
}

}  // namespace
}  // namespace efadra::claims
