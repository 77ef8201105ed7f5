// Usage errors of the real binary: a mistyped subcommand names the valid ones and the closest.
#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace efadra::cmd {
namespace {

constexpr char kBinary[] = EFADRA_BINARY_DIR "/efa-dra-driver";

TEST(CliTest, MistypedSubcommandNamesTheValidOnesAndTheClosest) {
  struct Case {
    std::string typed, suggestion;
  };
  const Case cases[] = {{"discovr", "discover"}, {"stauts", "status"},  {"rnu", "run"},
                        {"verison", "version"},  {"dmeo", "demo"},      {"Status", "status"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.typed);
    auto run = testing::RunCommand(std::string(kBinary) + " " + c.typed + " 2>&1");
    EXPECT_EQ(run.exit_code, 2);
    EXPECT_NE(run.out.find("unknown command \"" + c.typed + "\""), std::string::npos) << run.out;
    EXPECT_NE(run.out.find("the commands are: run, discover, demo, status, version."),
              std::string::npos)
        << run.out;
    EXPECT_NE(run.out.find("Did you mean \"" + c.suggestion + "\"?"), std::string::npos)
        << run.out;
  }
  auto far = testing::RunCommand(std::string(kBinary) + " frobnicate 2>&1");
  EXPECT_EQ(far.exit_code, 2);
  EXPECT_EQ(far.out.find("Did you mean"), std::string::npos) << far.out;
  // Flags and real subcommands are untouched.
  EXPECT_EQ(testing::RunCommand(std::string(kBinary) + " version >/dev/null").exit_code, 0);
  EXPECT_EQ(testing::RunCommand(std::string(kBinary) + " --help >/dev/null").exit_code, 0);
}

// The sharing flags (shared by `run` and `discover --slices`) reach the published devices, from
// the flag and from the chart's environment variables; an out-of-range share count is a usage
// error naming the flag.
TEST(CliTest, SharingFlagsPublishSharedDevices) {
  const std::string discover = std::string(kBinary) + " discover --fixture p4d.24xlarge --slices -o json";
  auto shares_of = [](const std::string& out) {
    nlohmann::json doc = nlohmann::json::parse(out);
    const nlohmann::json& slice = doc["kind"] == "List" ? doc["items"][0] : doc;
    const nlohmann::json& device = slice["spec"]["devices"][0];
    return device.value("allowMultipleAllocations", false)
               ? device["capacity"]["dra.net/shares"]["value"].get<std::string>()
               : std::string("exclusive");
  };
  auto plain = testing::RunCommand(discover + " 2>/dev/null");
  ASSERT_EQ(plain.exit_code, 0);
  EXPECT_EQ(shares_of(plain.out), "exclusive");
  auto flagged = testing::RunCommand(discover + " --allow-multiple-allocations 2>/dev/null");
  ASSERT_EQ(flagged.exit_code, 0);
  EXPECT_EQ(shares_of(flagged.out), "2");
  auto from_env = testing::RunCommand("EFA_DRA_ALLOW_MULTIPLE_ALLOCATIONS=true EFA_DRA_SHARES_PER_DEVICE=5 " +
                                      discover + " 2>/dev/null");
  ASSERT_EQ(from_env.exit_code, 0);
  EXPECT_EQ(shares_of(from_env.out), "5");
  auto refused = testing::RunCommand(discover + " --allow-multiple-allocations --shares-per-device 0 2>&1");
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.out.find("--shares-per-device"), std::string::npos) << refused.out;
}

TEST(CliTest, PodUidMustBeAUuid) {
  testing::TempDir dir;
  testing::WriteFileOrDie(dir.Sub("boot_id"), "b0\n");
  const std::string run = std::string(kBinary) + " run --node-name n1 --boot-id-file " +
                          dir.Sub("boot_id") + " --kubeconfig " + dir.Sub("none") +
                          " --plugin-dir " + dir.Sub("plugin") + " --registrar-dir " +
                          dir.Sub("registry") + " --http-address 127.0.0.1:0";
  struct Case {
    std::string what, args, env, shown;
  };
  const Case kCases[] = {
      {"flag", " --pod-uid ../../x", "", "--pod-uid (or POD_UID) \"../../x\" is not a UUID"},
      {"env", "", "POD_UID=12345678-1234-1234-1234-12345678901", "is not a UUID"},
      {"env not hex", "", "POD_UID=1234567g-1234-1234-1234-123456789012", "\"1234567g-"},
      {"control characters", " --pod-uid \"$(printf 'a\\nb')\"", "", "\"a?b\""},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.what);
    auto result = testing::RunCommand("env -u KUBECONFIG " + c.env + " " + run + c.args + " 2>&1");
    EXPECT_EQ(result.exit_code, 2) << result.out;
    EXPECT_NE(result.out.find(c.shown), std::string::npos) << result.out;
  }
  // A valid one gets past the check (and fails later, on the missing kubeconfig).
  auto valid = testing::RunCommand("env -u KUBECONFIG " + run +
                                   " --pod-uid 0F8FAD5B-D9CB-469F-A165-70867728950E 2>&1");
  EXPECT_EQ(valid.out.find("UUID"), std::string::npos) << valid.out;
  EXPECT_NE(valid.out.find(dir.Sub("none")), std::string::npos) << valid.out;
}

TEST(CliTest, RelativePathsAreTakenAgainstTheWorkingDirectory) {
  testing::TempDir dir;
  testing::WriteFileOrDie(dir.Sub("ids/boot_id"), "b0\n");
  // The boot id is read (it is relative to the working directory, not to "/"), and the
  // kubeconfig after it is named by its absolute path.
  auto result = testing::RunCommand("cd " + dir.path() + " && env -u KUBECONFIG " + kBinary +
                                    " run --node-name n1 --boot-id-file ids/boot_id "
                                    "--kubeconfig kube/config --http-address 127.0.0.1:0 2>&1");
  EXPECT_EQ(result.exit_code, 1) << result.out;
  EXPECT_EQ(result.out.find("boot"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("kubeconfig " + dir.Sub("kube/config")), std::string::npos)
      << result.out;
}

// GDRCopy injection is opt-in, by flag or by the chart's environment variable.
TEST(CliTest, RunOffersGdrdrvInjectionByFlagAndEnv) {
  auto help = testing::RunCommand(std::string(kBinary) + " run --help 2>&1");
  EXPECT_EQ(help.exit_code, 0) << help.out;
  EXPECT_NE(help.out.find("--inject-gdrdrv"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("EFA_DRA_INJECT_GDRDRV"), std::string::npos) << help.out;
}

}  // namespace
}  // namespace efadra::cmd
