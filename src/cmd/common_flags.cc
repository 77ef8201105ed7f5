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

void AddSharingFlags(CLI::App& command, SharingFlags& flags) {
  command
      .add_flag("--allow-multiple-allocations", flags.allow_multiple_allocations,
                "Publish every EFA with allowMultipleAllocations, so several claims can share "
                "one (its bandwidth too); needs the DRAConsumableCapacity feature gate")
      ->envname("EFA_DRA_ALLOW_MULTIPLE_ALLOCATIONS");
  command
      .add_option("--shares-per-device", flags.shares_per_device,
                  "With --allow-multiple-allocations: the capacity <driver>/shares of each EFA; "
                  "a claim takes 1 unless it asks for more, so at most this many share one EFA")
      ->envname("EFA_DRA_SHARES_PER_DEVICE")
      ->check(CLI::Range(1, 256))
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
