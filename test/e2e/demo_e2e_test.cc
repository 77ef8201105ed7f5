// README's first command: `efa-dra-driver demo` runs the whole driver on a bundled fixture.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "support/test_support.h"

namespace efadra {
namespace {

std::string RunAndCapture(const std::string& command, int* exit_code) {
  std::string output;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return output;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  const int status = ::pclose(pipe);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return output;
}

TEST(DemoTest, WalksFromDiscoveryToACdiSpecAndBack) {
  efadra::testing::TempDir dir;
  int code = -1;
  const std::string out = RunAndCapture(std::string(EFADRA_BINARY_DIR) +
                                            "/efa-dra-driver demo --work-dir " + dir.Sub("w"),
                                        &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("32 EFA devices"), std::string::npos) << out;
  EXPECT_NE(out.find("32 devices"), std::string::npos) << out;  // one slice with all of them
  EXPECT_NE(out.find("versions v1.DRAPlugin v1beta1.DRAPlugin"), std::string::npos) << out;
  EXPECT_NE(out.find("pcieRoot pci0000:44 (4 devices)"), std::string::npos) << out;
  EXPECT_NE(out.find("\"cdiVersion\": \"0.5.0\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"path\": \"/dev/infiniband/uverbs3\""), std::string::npos) << out;
  EXPECT_EQ(out.find("uverbs4\""), std::string::npos) << out;  // only the allocated root
  EXPECT_NE(out.find("CDI spec removed"), std::string::npos) << out;
}

TEST(DemoTest, AnUnknownFixtureIsAClearError) {
  int code = -1;
  const std::string out = RunAndCapture(
      std::string(EFADRA_BINARY_DIR) + "/efa-dra-driver demo --fixture m7i.large 2>&1", &code);
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("no bundled topology for m7i.large"), std::string::npos) << out;
  EXPECT_NE(out.find("p5.48xlarge"), std::string::npos) << out;
}

}  // namespace
}  // namespace efadra
