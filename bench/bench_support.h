// Helpers the benchmark programs share: percentiles, a driver child process and what /proc
// says about it, and the scratch node (generated sysfs tree + kubeconfig) the driver runs on.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <utility>
#include <string>
#include <vector>

namespace efadra::bench {

// The command line's `--name value` pairs.
class Flags {
 public:
  Flags(int argc, char** argv);
  std::string String(const std::string& name, const std::string& fallback) const;
  long Long(const std::string& name, long fallback) const;

 private:
  std::map<std::string, std::string> values_;
};

// The efa-dra-driver binary to run: --binary, else the one in the build dir above this bench's
// directory. Exits the program with a message naming `bench` when it is not executable.
std::string DriverBinary(const std::string& bench, const Flags& flags, const char* argv0);

// The p-quantile (0..1) of `values` by the nearest-rank method; 0 when empty.
double Percentile(std::vector<double> values, double p);

// fork+exec of args[0] with stderr appended to `log`.
pid_t Spawn(const std::vector<std::string>& args, const std::string& log);
// SIGTERM and wait; the exit code, or -1 when the child died of a signal.
int StopChild(pid_t pid);
// True once the child has exited (reaps it).
bool Exited(pid_t pid);

// What /proc says about a process.
struct ProcessSample {
  long rss_kib = 0;  // VmRSS
  long hwm_kib = 0;  // VmHWM, the peak RSS
  long threads = 0;  // Threads
  double cpu_s = 0;  // utime + stime
  long fds = 0;      // entries of /proc/<pid>/fd
};
// `pid` 0 samples this process.
ProcessSample SampleProcess(pid_t pid);

// Where a process's resident memory is (/proc/<pid>/smaps_rollup and smaps): the anonymous /
// file-backed split, and the resident KiB of each mapped file (anonymous mappings as "[anon]"),
// so the clean shared-library pages can be told apart from what the process allocated.
struct MemorySplit {
  long rss_kib = 0;
  long anonymous_kib = 0;
  long file_kib = 0;  // rss - anonymous
  std::map<std::string, std::pair<long, long>> by_mapping;  // name -> {Rss, Anonymous} KiB
};
MemorySplit SampleMemory(pid_t pid);
// Calls fn(mapping path, field name, KiB) for every "Name: N kB" field of every mapping in an
// smaps file (/proc/<pid>/smaps); the path is "" for anonymous mappings.
void ForEachSmapsField(const std::string& smaps_file,
                       const std::function<void(const std::string&, const std::string&, long)>& fn);
// Prints the split and the `top` largest mappings, one per line, under `title`.
void PrintMemory(const char* title, const MemorySplit& memory, size_t top);

// A directory under /tmp holding the sysfs and dev trees of a bundled instance type
// (<dir>/sys, <dir>/dev) and a kubeconfig for `server_url` (<dir>/kubeconfig). Exits the
// program with a message naming `bench` when the tree cannot be built.
std::string MakeScratchNode(const std::string& bench, const std::string& instance_type,
                            const std::string& server_url);

}  // namespace efadra::bench
