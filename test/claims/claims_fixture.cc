#include "claims_fixture.h"

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>

namespace efadra::claims::testing {

std::string ValidateCdiSpecs(const std::vector<std::string>& paths) {
  if (!std::filesystem::exists("/usr/bin/python3") ||
      std::system("/usr/bin/python3 -c 'import jsonschema' >/dev/null 2>&1") != 0) {
    return "SKIP: /usr/bin/python3 with python3-jsonschema is not installed";
  }
  std::string command = std::string("/usr/bin/python3 ") + EFADRA_SOURCE_DIR +
                        "/test/claims/validate_cdi.py " + EFADRA_TEST_DATA_DIR +
                        "/cdi-schema-v1.1.0";
  for (const auto& path : paths) command += " '" + path + "'";
  command += " 2>&1";
  std::string output;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "cannot run " + command;
  char buffer[512];
  while (std::fgets(buffer, sizeof(buffer), pipe) != nullptr) output += buffer;
  int rc = ::pclose(pipe);
  if (rc != 0 && output.empty()) output = "validator exited with " + std::to_string(rc);
  return rc == 0 ? "" : output;
}

}  // namespace efadra::claims::testing
