// A real CDI consumer: podman (Debian's, with runc) reads a spec we wrote into /var/run/cdi and
// starts a container with `--device dra.net/efa=<name>`. The container must see exactly the
// allocated uverbs nodes, with the host's major:minor, and the spec's environment.
// Needs root (mknod, /var/run/cdi, podman storage) and podman + runc + busybox-static; where
// that is not possible the test is skipped with the reason.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "claims_fixture.h"
#include "efadra/claims/cdi_spec.h"
#include "efadra/slices/resource_slices.h"

namespace efadra::claims {
namespace {

struct CommandResult {
  int exit_code = -1;
  std::string output;
};

CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[512];
  while (std::fgets(buffer, sizeof(buffer), pipe) != nullptr) result.output += buffer;
  int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

constexpr char kImage[] = "localhost/efadra-busybox:test";
constexpr char kPodman[] =
    "podman --runtime /usr/sbin/runc run --rm --network none "
    "--ulimit nofile=20000:20000 --ulimit nproc=1000:1000";

// Why podman cannot run here, or "" when it can.
std::string PodmanUnavailableReason() {
  if (::geteuid() != 0) return "needs root (mknod, /var/run/cdi, podman storage)";
  for (const char* tool : {"/usr/bin/podman", "/usr/sbin/runc", "/bin/busybox"}) {
    if (!std::filesystem::exists(tool)) {
      return std::string(tool) + " is missing (apt-get install podman runc busybox-static)";
    }
  }
  return "";
}

// Imports a busybox-only image (no registry needed) unless it exists.
std::string EnsureImage(const efadra::testing::TempDir& dir) {
  if (RunCommand(std::string("podman image exists ") + kImage).exit_code == 0) return "";
  const std::string root = dir.Sub("image-root");
  std::filesystem::create_directories(root + "/bin");
  std::filesystem::copy_file("/bin/busybox", root + "/bin/busybox");
  for (const char* applet : {"sh", "ls", "stat", "env", "cat"}) {
    std::filesystem::create_symlink("busybox", root + "/bin/" + applet);
  }
  CommandResult imported =
      RunCommand("tar -C '" + root + "' -c . | podman import - " + std::string(kImage));
  return imported.exit_code == 0 ? "" : "podman import failed: " + imported.output;
}

// Why a container with our generated char devices cannot be started here, or "" when it can.
std::string ContainersUnavailableReason(const efadra::testing::TempDir& dir) {
  if (std::string reason = PodmanUnavailableReason(); !reason.empty()) return reason;
  struct stat st {};
  if (::stat(dir.Sub("dev/infiniband/uverbs0").c_str(), &st) != 0 || !S_ISCHR(st.st_mode)) {
    return "mknod of char devices was refused here (no CAP_MKNOD)";
  }
  if (std::string problem = EnsureImage(dir); !problem.empty()) return problem;
  // Whether podman can start any container here (cgroups, runtime), before our devices are in
  // play: from here on, a failed run is the CDI spec's fault and fails the test.
  if (CommandResult probe = RunCommand(std::string(kPodman) + " " + kImage + " sh -c :");
      probe.exit_code != 0) {
    return "podman cannot start containers here: " + probe.output;
  }
  return "";
}

// A spec in /var/run/cdi for the life of the object.
struct SpecFile {
  SpecFile(const std::string& uid, const nlohmann::json& spec)
      : path("/var/run/cdi/" + CdiSpecFileName("dra.net", uid)) {
    std::filesystem::create_directories("/var/run/cdi");
    efadra::testing::WriteFileOrDie(path, spec.dump(2));
  }
  ~SpecFile() { std::filesystem::remove(path); }
  SpecFile(const SpecFile&) = delete;
  SpecFile& operator=(const SpecFile&) = delete;
  const std::string path;
};

// Podman as the CDI consumer, on a p5.48xlarge tree with real char device nodes; skipped (with
// the reason) where podman or mknod is not available.
class CdiPodmanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string reason = PodmanUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
    inventory = testing::DiscoverBundled(dir, "p5.48xlarge", /*char_devices=*/true);
    if (std::string reason = ContainersUnavailableReason(dir); !reason.empty()) {
      GTEST_SKIP() << reason;
    }
  }

  // The first two EFAs on `pcie_root`, as CDI inputs.
  std::vector<CdiDeviceInput> TwoEfasOn(const std::string& pcie_root) const {
    std::vector<CdiDeviceInput> inputs;
    for (const auto& d : inventory->devices) {
      if (d.pcie_root == pcie_root && inputs.size() < 2) {
        inputs.push_back({slices::DeviceName(d.pci_address), &d, std::nullopt});
      }
    }
    return inputs;
  }

  efadra::testing::TempDir dir;
  std::shared_ptr<const discovery::Inventory> inventory;
};

TEST_F(CdiPodmanTest, TheContainerSeesExactlyTheAllocatedEfas) {
  // Two of the four EFAs on pci0000:55 (uverbs4..7): the container must see these two only.
  std::vector<CdiDeviceInput> inputs = TwoEfasOn("pci0000:55");
  ASSERT_EQ(inputs.size(), 2u);
  const std::string uid = "e2e" + std::to_string(::getpid()) + "-aaaa-bbbb";
  auto spec = BuildCdiSpec("dra.net", uid, inputs, dir.Sub("dev"), HostCharDevice{10, 58});
  // rdma_cm exists in the generated dev tree only when it was created as a char node.
  SpecFile spec_file(uid, spec);

  std::string command = kPodman;
  for (const auto& input : inputs) {
    command += " --device " + CdiDeviceId("dra.net", uid, input.device_name);
  }
  command += std::string(" ") + kImage +
             " sh -c 'stat -c \"%n %t:%T\" /dev/infiniband/*; env | grep ^FI_EFA_IFACE='";
  CommandResult run = RunCommand(command);
  ASSERT_EQ(run.exit_code, 0) << command << "\n" << run.output;

  std::set<std::string> nodes;
  std::string env;
  std::istringstream lines(run.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("/dev/infiniband/", 0) == 0) nodes.insert(line);
    if (line.rfind("FI_EFA_IFACE=", 0) == 0) env = line;
  }
  std::set<std::string> expected;
  char hex[64];
  for (const auto& input : inputs) {
    std::snprintf(hex, sizeof(hex), "%x:%x", input.device->uverbs_dev.major,
                  input.device->uverbs_dev.minor);
    expected.insert("/dev/infiniband/" + input.device->UverbsName() + " " + hex);
  }
  expected.insert("/dev/infiniband/rdma_cm a:3a");
  EXPECT_EQ(nodes, expected) << run.output;
  EXPECT_EQ(env, "FI_EFA_IFACE=" + inputs[0].device->rdma_device + "," +
                     inputs[1].device->rdma_device);
}

// One container with a device of each of two claims. The runtime applies both specs' edits and
// the later FI_EFA_IFACE replaces the earlier: with per-claim lists the container would be told
// only one claim's EFA. With each list naming the other claim's devices (what the preparer
// writes for the claims of one pod) the value is the union, whichever device comes last.
TEST_F(CdiPodmanTest, TwoClaimsInOneContainerGetTheUnionOfTheirEfas) {
  std::vector<CdiDeviceInput> efas = TwoEfasOn("pci0000:66");
  ASSERT_EQ(efas.size(), 2u);
  const std::string a_rdma = efas[0].device->rdma_device, b_rdma = efas[1].device->rdma_device;
  const std::string tag = std::to_string(::getpid());
  const std::string a_uid = "e2e" + tag + "-claim-a", b_uid = "e2e" + tag + "-claim-b";

  // The FI_EFA_IFACE and the uverbs nodes the container gets with devices `ids`, in order.
  auto run = [&](const std::vector<std::string>& ids, std::set<std::string>* nodes) {
    std::string command = kPodman;
    for (const std::string& id : ids) command += " --device " + id;
    command += std::string(" ") + kImage +
               " sh -c 'ls /dev/infiniband; env | grep ^FI_EFA_IFACE='";
    CommandResult result = RunCommand(command);
    EXPECT_EQ(result.exit_code, 0) << command << "\n" << result.output;
    std::string env;
    std::istringstream lines(result.output);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("FI_EFA_IFACE=", 0) == 0) env = line.substr(13);
      if (line.rfind("uverbs", 0) == 0 && nodes != nullptr) nodes->insert(line);
    }
    return env;
  };
  const std::string a_id = CdiDeviceId("dra.net", a_uid, efas[0].device_name);
  const std::string b_id = CdiDeviceId("dra.net", b_uid, efas[1].device_name);
  {
    // Lists of their own claim only: the last device's spec wins (why peers are needed).
    SpecFile a(a_uid, BuildCdiSpec("dra.net", a_uid, {efas[0]}, dir.Sub("dev"), std::nullopt));
    SpecFile b(b_uid, BuildCdiSpec("dra.net", b_uid, {efas[1]}, dir.Sub("dev"), std::nullopt));
    const std::string a_then_b = run({a_id, b_id}, nullptr);
    const std::string b_then_a = run({b_id, a_id}, nullptr);
    EXPECT_TRUE((a_then_b == a_rdma || a_then_b == b_rdma) && b_then_a != a_then_b)
        << "the runtime should keep one claim's value, the later one: " << a_then_b << " / "
        << b_then_a;
  }
  SpecFile a(a_uid, BuildCdiSpec("dra.net", a_uid, {efas[0]}, dir.Sub("dev"), std::nullopt,
                                 std::nullopt, {b_rdma}));
  SpecFile b(b_uid, BuildCdiSpec("dra.net", b_uid, {efas[1]}, dir.Sub("dev"), std::nullopt,
                                 std::nullopt, {a_rdma}));
  std::set<std::string> nodes;
  const std::string a_then_b = run({a_id, b_id}, &nodes);
  const std::string b_then_a = run({b_id, a_id}, nullptr);
  for (const std::string& value : {a_then_b, b_then_a}) {
    EXPECT_TRUE(value == a_rdma + "," + b_rdma || value == b_rdma + "," + a_rdma) << value;
  }
  EXPECT_EQ(nodes, (std::set<std::string>{efas[0].device->UverbsName(),
                                          efas[1].device->UverbsName()}));
  // A container with only claim a's device is told about b's EFA but has no node for it.
  std::set<std::string> only_a;
  EXPECT_EQ(run({a_id}, &only_a), a_rdma + "," + b_rdma);
  EXPECT_EQ(only_a, std::set<std::string>{efas[0].device->UverbsName()});
}

}  // namespace
}  // namespace efadra::claims
