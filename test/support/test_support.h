// Helpers shared by the test binaries: temporary directories and deadline polling.
// Tests never sleep for a fixed time: they poll a condition until a deadline.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace efadra::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + relative.
  std::string Sub(const std::string& relative) const;

 private:
  std::string path_;
};

// What is logged through spdlog's default logger while `body` runs.
std::string LogsOf(const std::function<void()>& body);

// Polls `condition` every few milliseconds until it returns true (-> true) or `timeout`
// passes (-> false).
bool WaitFor(const std::function<bool()>& condition,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Writes `content` to `path`, creating parent directories.
void WriteFileOrDie(const std::string& path, const std::string& content);

// The whole file, or "" if it cannot be read.
std::string ReadFileOrEmpty(const std::string& path);

// Runs `shell_command` with /bin/sh and collects its stdout (redirect 2>&1 for stderr too).
struct CommandResult {
  int exit_code = -1;  // -1 when it did not exit normally
  std::string out;
};
CommandResult RunCommand(const std::string& shell_command);

// The command line that runs `argv` (a program of this build) on this machine: `argv` itself,
// or, when the build cross-compiles, prefixed with CMAKE_CROSSCOMPILING_EMULATOR (qemu-user):
// the kernel here cannot exec the target's binaries, and ctest's emulator only wraps the test
// binary, not the programs it starts.
std::vector<std::string> TargetProgramArgv(std::vector<std::string> argv);
// The same as a /bin/sh command prefix: "" natively, else the emulator's path and a space.
std::string TargetProgramShellPrefix();

// The directory of test data (test/fixtures), and ../shared when present ("" otherwise).
std::string TestDataDir();
std::string SharedDir();

}  // namespace efadra::testing
