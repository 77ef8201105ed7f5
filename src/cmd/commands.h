// The subcommands of efa-dra-driver (design.md §5). Each Add*Command registers one
// subcommand on the CLI11 app; when it runs, it stores the process exit code in `exit_code`.
// Exit codes: 0 success, 1 bad input or runtime failure, 2 usage error.
#pragma once

#include <CLI/CLI.hpp>

namespace efadra::cmd {

void AddVersionCommand(CLI::App& app, int& exit_code);
void AddDiscoverCommand(CLI::App& app, int& exit_code);
void AddRunCommand(CLI::App& app, int& exit_code);
void AddDemoCommand(CLI::App& app, int& exit_code);
void AddStatusCommand(CLI::App& app, int& exit_code);

// $NODE_NAME, else the hostname, else "node".
std::string DefaultNodeName();

// Adds --log-format and -v to a subcommand and returns a function that applies them
// (sets up logging); call it first in the subcommand's callback.
struct LoggingFlags {
  std::string format = "text";
  int verbosity = 0;
};
void AddLoggingFlags(CLI::App& command, LoggingFlags& flags);
// Applies the flags; false (after printing one line) when they are invalid.
bool ApplyLoggingFlags(const LoggingFlags& flags);

// --allow-multiple-allocations and --shares-per-device (slices::SliceOptions::shares_per_device),
// the same for `run` and `discover --slices`.
struct SharingFlags {
  bool allow_multiple_allocations = false;
  int shares_per_device = 2;
  // What SliceOptions::shares_per_device gets: 0 while sharing is off.
  int SharesPerDevice() const { return allow_multiple_allocations ? shares_per_device : 0; }
};
void AddSharingFlags(CLI::App& command, SharingFlags& flags);

}  // namespace efadra::cmd
