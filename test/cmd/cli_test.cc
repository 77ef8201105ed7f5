// Usage errors of the real binary: a mistyped subcommand names the valid ones and the closest.
#include <gtest/gtest.h>

#include <string>

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

}  // namespace
}  // namespace efadra::cmd
