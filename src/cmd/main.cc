// efa-dra-driver: wires the subcommands; no logic lives here.
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "command_hint.h"
#include "commands.h"
#include "efadra/core/malloc_arenas.h"

int main(int argc, char** argv) {
  // Before any thread exists: the daemon's resident memory (docs/performance.md, "Footprint").
  efadra::core::LimitMallocArenas(2);
  CLI::App app{"efa-dra-driver: Kubernetes DRA driver for AWS Elastic Fabric Adapter devices"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  int exit_code = 0;
  efadra::cmd::AddRunCommand(app, exit_code);
  efadra::cmd::AddDiscoverCommand(app, exit_code);
  efadra::cmd::AddDemoCommand(app, exit_code);
  efadra::cmd::AddStatusCommand(app, exit_code);
  efadra::cmd::AddVersionCommand(app, exit_code);
  // CLI11 would report a mistyped subcommand as an unexpected argument; name the valid ones.
  if (argc > 1 && argv[1][0] != '-') {
    std::vector<std::string> known;
    for (const CLI::App* command : app.get_subcommands({})) known.push_back(command->get_name());
    if (std::find(known.begin(), known.end(), argv[1]) == known.end()) {
      std::cerr << "efa-dra-driver: " << efadra::cmd::UnknownCommandMessage(argv[1], known)
                << "\nRun 'efa-dra-driver --help' for usage.\n";
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; anything else is a usage error (exit 2).
    return app.exit(e) == 0 ? 0 : 2;
  }
  return exit_code;
}
