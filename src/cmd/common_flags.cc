#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "commands.h"
#include "efadra/observe/logging.h"

namespace efadra::cmd {

void AddLoggingFlags(CLI::App& command, LoggingFlags& flags) {
  command.add_option("--log-format", flags.format, "Log format: text or json")
      ->envname("EFA_DRA_LOG_FORMAT")
      ->capture_default_str();
  command.add_option("-v,--v", flags.verbosity, "Log verbosity (klog style: 0, 2, 4, ...)")
      ->envname("EFA_DRA_V")
      ->capture_default_str();
}

bool ApplyLoggingFlags(const LoggingFlags& flags) {
  auto format = observe::ParseLogFormat(flags.format);
  if (!format.ok()) {
    std::cerr << "efa-dra-driver: " << format.status().message() << "\n";
    return false;
  }
  observe::SetupLogging(*format, flags.verbosity);
  return true;
}

std::string DefaultNodeName() {
  if (const char* env = std::getenv("NODE_NAME"); env != nullptr && *env != '\0') return env;
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) == 0 && host[0] != '\0') return host;
  return "node";
}

}  // namespace efadra::cmd
