// discovery_bench: how long one discovery of a 32-EFA node takes (design.md §7: <= 5 ms) and
// how much memory a discover run needs. Builds the bundled p5.48xlarge tree into a temp dir
// (on /dev/shm unless TMPDIR is set),
// runs Discoverer::Discover() N times (default 2000, first 20 discarded as warm-up) and prints
// p50/p90/p99/max; then re-executes itself in a child that does one discovery and reports the
// child's peak RSS (getrusage RUSAGE_CHILDREN), so the figure is a fresh process's, not ours.
//
// Usage: discovery_bench [--runs N] [--topology p5.48xlarge]
#include <spawn.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "bench_support.h"
#include "efadra/core/filesystem.h"
#include "efadra/discovery/discoverer.h"
#include "efadra/sysfstree/bundled.h"
#include "efadra/sysfstree/tree_builder.h"

extern char** environ;

namespace {

using efadra::discovery::Discoverer;

int Fail(const std::string& message) {
  std::fprintf(stderr, "discovery_bench: %s\n", message.c_str());
  return 1;
}

// One discovery in this (fresh) process; the parent reads our peak RSS.
int ChildRun(const std::string& root) {
  auto sysfs = efadra::core::NewPosixFilesystem(root + "/sys");
  auto dev = efadra::core::NewPosixFilesystem(root + "/dev");
  auto inventory = Discoverer(*sysfs, *dev, nullptr).Discover();
  return inventory.ok() && !inventory->devices.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 2000;
  std::string topology_name = "p5.48xlarge";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--child" && i + 1 < argc) return ChildRun(argv[i + 1]);
    if (arg == "--runs" && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--topology" && i + 1 < argc) {
      topology_name = argv[++i];
    } else {
      return Fail("usage: discovery_bench [--runs N] [--topology INSTANCE-TYPE]");
    }
  }

  auto yaml = efadra::sysfstree::BundledTopology(topology_name);
  if (!yaml) return Fail("no bundled topology " + topology_name);
  auto topology = efadra::sysfstree::ParseTopology(*yaml);
  if (!topology.ok()) return Fail(topology.status().ToString());
  // sysfs lives in memory, so the tree goes on a tmpfs (/dev/shm) unless TMPDIR says otherwise;
  // on a disk filesystem path lookups cost more than they would on /sys.
  const char* tmp = std::getenv("TMPDIR");
  std::error_code ec;
  const std::string base = tmp != nullptr && *tmp != '\0'                  ? tmp
                           : std::filesystem::is_directory("/dev/shm", ec) ? "/dev/shm"
                                                                           : "/tmp";
  std::string dir = base + "/discovery-bench-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) return Fail("mkdtemp: " + std::string(strerror(errno)));
  efadra::Status built =
      efadra::sysfstree::BuildSysfsTree(*topology, dir + "/sys", dir + "/dev", {});
  if (!built.ok()) return Fail(built.ToString());

  auto sysfs = efadra::core::NewPosixFilesystem(dir + "/sys");
  auto dev = efadra::core::NewPosixFilesystem(dir + "/dev");
  Discoverer discoverer(*sysfs, *dev, nullptr);
  constexpr int kWarmup = 20;
  std::vector<double> micros;
  micros.reserve(static_cast<size_t>(runs));
  size_t devices = 0;
  for (int i = 0; i < runs + kWarmup; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto inventory = discoverer.Discover();
    const auto end = std::chrono::steady_clock::now();
    if (!inventory.ok()) return Fail(inventory.status().ToString());
    devices = inventory->devices.size();
    if (i >= kWarmup) {
      micros.push_back(std::chrono::duration<double, std::micro>(end - start).count());
    }
  }
  std::sort(micros.begin(), micros.end());

  // Peak RSS of a fresh process doing one discovery.
  pid_t child = 0;
  std::string self = "/proc/self/exe";
  char* child_argv[] = {self.data(), const_cast<char*>("--child"), dir.data(), nullptr};
  long child_rss_kib = -1;
  if (::posix_spawn(&child, self.c_str(), nullptr, nullptr, child_argv, environ) == 0) {
    int status = 0;
    ::waitpid(child, &status, 0);
    rusage usage{};
    ::getrusage(RUSAGE_CHILDREN, &usage);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) child_rss_kib = usage.ru_maxrss;
  }
  rusage self_usage{};
  ::getrusage(RUSAGE_SELF, &self_usage);

  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);

  std::printf(
      "discovery_bench: topology %s (tree under %s), %zu EFA devices, %d runs (+%d "
      "warm-up)\n",
      topology_name.c_str(), base.c_str(), devices, runs, kWarmup);
  std::printf("  discovery time   p50 %.3f ms   p90 %.3f ms   p99 %.3f ms   max %.3f ms\n",
              efadra::bench::Percentile(micros, 0.50) / 1000, efadra::bench::Percentile(micros, 0.90) / 1000,
              efadra::bench::Percentile(micros, 0.99) / 1000, micros.back() / 1000);
  std::printf("  peak RSS of a one-shot discover process: %.1f MiB\n", child_rss_kib / 1024.0);
  std::printf("  peak RSS of this bench process (tree build + %d runs): %.1f MiB\n", runs + kWarmup,
              self_usage.ru_maxrss / 1024.0);
  return 0;
}
