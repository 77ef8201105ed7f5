// efa-dra-driver: wires the subcommands; no logic lives here.
#include <iostream>

#include <CLI/CLI.hpp>

#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"efa-dra-driver: Kubernetes DRA driver for AWS Elastic Fabric Adapter devices"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  int exit_code = 0;
  efadra::cmd::AddRunCommand(app, exit_code);
  efadra::cmd::AddDiscoverCommand(app, exit_code);
  efadra::cmd::AddDemoCommand(app, exit_code);
  efadra::cmd::AddVersionCommand(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; anything else is a usage error (exit 2).
    return app.exit(e) == 0 ? 0 : 2;
  }
  return exit_code;
}
