// A rolling update's overlap with the real binary: two `efa-dra-driver run` processes in
// --pod-uid mode on one node (shared plugin directory) against one API double. Only the
// holder of <plugin-dir>/publish.lock writes ResourceSlices; the other stands by, and takes
// over when the holder is killed (the kernel drops a dead process's flock).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "claims/claims_fixture.h"
#include "e2e/driver_process.h"
#include "efadra/apidouble/fake_api_server.h"
#include "support/test_support.h"

namespace efadra {
namespace {

using efadra::testing::Child;
using efadra::testing::Kubeconfig;
using efadra::testing::ReadFileOrEmpty;
using efadra::testing::TempDir;
using efadra::testing::WaitFor;
using efadra::testing::WriteFileOrDie;

constexpr char kBinary[] = EFADRA_BINARY_DIR "/efa-dra-driver";
constexpr char kNode[] = "node-1";

TEST(SurgeE2eTest, OnlyTheLockHolderPublishesAndTheOtherTakesOver) {
  ASSERT_EQ(::access(kBinary, X_OK), 0) << kBinary << " is not built";
  apidouble::FakeApiServer server;
  ASSERT_TRUE(server.Start().ok());
  server.PutNode(kNode, "uid-node-1");
  TempDir shared;
  WriteFileOrDie(shared.Sub("kubeconfig"), Kubeconfig(server.url()));
  WriteFileOrDie(shared.Sub("boot_id"), "boot-1\n");
  // Each pod sees its own copy of the node's hardware; the new pod's copy has one port down,
  // so it would write the moment it published.
  TempDir old_node;
  TempDir new_node;
  claims::testing::DiscoverBundled(old_node);
  claims::testing::DiscoverBundled(new_node);
  bool changed = false;
  for (const auto& entry :
       std::filesystem::directory_iterator(new_node.Sub("sys/class/infiniband"))) {
    WriteFileOrDie((entry.path() / "ports/1/state").string(), "1: DOWN\n");
    changed = true;
    break;
  }
  ASSERT_TRUE(changed);

  auto args = [&](const TempDir& node, const std::string& uid) {
    return std::vector<std::string>{
        kBinary, "run", "--node-name", kNode, "--sysfs-root", node.Sub("sys"), "--dev-root",
        node.Sub("dev"), "--kubeconfig", shared.Sub("kubeconfig"), "--registrar-dir",
        shared.Sub("registry"), "--plugin-dir", shared.Sub("plugins/dra.net"), "--cdi-root",
        shared.Sub("cdi"), "--state-dir", shared.Sub("state"), "--boot-id-file",
        shared.Sub("boot_id"), "--device-plugin-dir", shared.Sub("device-plugins"),
        "--http-address", "127.0.0.1:0", "--resync", "100ms", "--pod-uid", uid,
        "--log-format", "json"};
  };
  const std::string old_log = shared.Sub("old.log");
  const std::string new_log = shared.Sub("new.log");
  auto old_pod = std::make_unique<Child>(
      args(old_node, "01d0d000-0000-4000-8000-000000000001"), old_log);
  ASSERT_TRUE(WaitFor([&] { return server.ResourceSlices().size() == 1; }))
      << ReadFileOrEmpty(old_log);
  const nlohmann::json published = server.ResourceSlices()[0]["spec"]["devices"];
  // The double records a request once it is answered, which may be after the store changed.
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& request : server.Requests()) {
      if (request.method == "POST") return true;
    }
    return false;
  }));
  server.ClearRequests();

  Child new_pod(args(new_node, "0e40d000-0000-4000-8000-000000000002"), new_log);
  ASSERT_TRUE(WaitFor([&] {
    return ReadFileOrEmpty(new_log).find("standing by") != std::string::npos;
  })) << ReadFileOrEmpty(new_log);
  // It decided before its first sync: nothing was written, the old pod's slice is as it was.
  for (const auto& request : server.Requests()) {
    if (request.method == "GET") continue;  // lists and watches
    ADD_FAILURE() << "slice write while both pods run: " << request.method << " "
                  << request.path;
  }
  EXPECT_EQ(server.ResourceSlices().at(0)["spec"]["devices"], published);

  // kill -9: no clean stop, the kernel drops the lock with the process.
  old_pod->Kill();
  EXPECT_TRUE(WaitFor([&] {
    const auto slices = server.ResourceSlices();
    return slices.size() == 1 && slices[0]["spec"]["devices"] != published;
  })) << ReadFileOrEmpty(new_log);
  EXPECT_NE(ReadFileOrEmpty(new_log).find("took over publishing"), std::string::npos)
      << ReadFileOrEmpty(new_log);
}

}  // namespace
}  // namespace efadra
