// `efa-dra-driver demo`: discovery -> publishing -> kubelet prepare -> CDI spec on a bundled
// fixture, with no cluster (README's first command).
#include <iostream>
#include <memory>

#include <spdlog/spdlog.h>

#include "commands.h"
#include "efadra/demo/demo.h"

namespace efadra::cmd {

void AddDemoCommand(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<demo::DemoOptions>();
  auto logging = std::make_shared<LoggingFlags>();
  logging->verbosity = 0;
  auto* command = app.add_subcommand(
      "demo", "Run the driver end to end on a bundled instance topology, with no cluster");
  command->add_option("--fixture", options->instance_type, "Bundled instance type")
      ->capture_default_str();
  command->add_option("--work-dir", options->work_dir,
                      "Keep the generated tree, sockets and CDI spec here (default: a temporary "
                      "directory, removed at the end)");
  AddLoggingFlags(*command, *logging);
  command->callback([options, logging, &exit_code] {
    if (!ApplyLoggingFlags(*logging)) {
      exit_code = 2;
      return;
    }
    // The walkthrough is the output; the driver's own log lines only with -v.
    if (logging->verbosity == 0) spdlog::set_level(spdlog::level::warn);
    Status status = demo::RunDemo(*options, std::cout);
    if (!status.ok()) {
      std::cerr << "efa-dra-driver demo: " << status.message() << "\n";
      exit_code = 1;
      return;
    }
    exit_code = 0;
  });
}

}  // namespace efadra::cmd
