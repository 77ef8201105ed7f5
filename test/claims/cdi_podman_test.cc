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

TEST(CdiPodmanTest, TheContainerSeesExactlyTheAllocatedEfas) {
  if (std::string reason = PodmanUnavailableReason(); !reason.empty()) GTEST_SKIP() << reason;
  efadra::testing::TempDir dir;
  auto inventory = testing::DiscoverBundled(dir, "p5.48xlarge", /*char_devices=*/true);
  struct stat st {};
  if (::stat(dir.Sub("dev/infiniband/uverbs0").c_str(), &st) != 0 || !S_ISCHR(st.st_mode)) {
    GTEST_SKIP() << "mknod of char devices was refused here (no CAP_MKNOD)";
  }
  if (std::string problem = EnsureImage(dir); !problem.empty()) GTEST_SKIP() << problem;
  // Whether podman can start any container here (cgroups, runtime), before our devices are in
  // play: from here on, a failed run is the CDI spec's fault and fails the test.
  if (CommandResult probe = RunCommand(std::string(kPodman) + " " + kImage + " sh -c :");
      probe.exit_code != 0) {
    GTEST_SKIP() << "podman cannot start containers here: " << probe.output;
  }

  // Two of the four EFAs on pci0000:55 (uverbs4..7): the container must see these two only.
  std::vector<CdiDeviceInput> inputs;
  for (const auto& d : inventory->devices) {
    if (d.pcie_root == "pci0000:55" && inputs.size() < 2) {
      inputs.push_back({slices::DeviceName(d.pci_address), &d, std::nullopt});
    }
  }
  ASSERT_EQ(inputs.size(), 2u);
  const std::string uid = "e2e" + std::to_string(::getpid()) + "-aaaa-bbbb";
  auto spec = BuildCdiSpec("dra.net", uid, inputs, dir.Sub("dev"), HostCharDevice{10, 58});
  // rdma_cm exists in the generated dev tree only when it was created as a char node.
  std::filesystem::create_directories("/var/run/cdi");
  const std::string spec_path = "/var/run/cdi/" + CdiSpecFileName("dra.net", uid);
  efadra::testing::WriteFileOrDie(spec_path, spec.dump(2));
  struct RemoveSpec {
    std::string path;
    ~RemoveSpec() { std::filesystem::remove(path); }
  } cleanup{spec_path};

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

}  // namespace
}  // namespace efadra::claims
