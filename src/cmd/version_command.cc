#include <iostream>

#include "commands.h"
#include "efadra/core/version.h"

namespace efadra::cmd {

void AddVersionCommand(CLI::App& app, int& exit_code) {
  auto* command = app.add_subcommand("version", "Print version, git commit and build flags");
  command->callback([&exit_code] {
    std::cout << "efa-dra-driver " << kVersion << "\n"
              << "git commit: " << kGitCommit << "\n"
              << "build: " << kBuildType << ", " << kCompiler << ", C++20"
              << (kSanitizers[0] != '\0' ? std::string(", sanitizers: ") + kSanitizers : "")
              << "\n";
    exit_code = 0;
  });
}

}  // namespace efadra::cmd
