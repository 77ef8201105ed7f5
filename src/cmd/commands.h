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

}  // namespace efadra::cmd
