// publish_bench: what `efa-dra-driver run` costs the API server and the node.
//  1. time from process start (fork+exec) to the first ResourceSlice accepted by a local
//     FakeApiServer, on a generated p5.48xlarge tree (32 EFAs), p50/p99 over --runs runs;
//  2. during a steady window of --seconds (after the first publish): API requests and writes
//     made (goal: 0 writes), CPU time and resident memory of the driver process.
// Prints the figures; docs/performance.md ("Publishing") records them.
//
// Usage: publish_bench [--runs N] [--seconds S] [--resync 1s] [--binary PATH]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.h"
#include "efadra/apidouble/fake_api_server.h"

namespace {

using Clock = std::chrono::steady_clock;
using efadra::bench::Percentile;
using efadra::bench::SampleProcess;
using efadra::bench::Spawn;
using efadra::bench::StopChild;

}  // namespace

int main(int argc, char** argv) {
  const efadra::bench::Flags flags(argc, argv);
  const int runs = static_cast<int>(flags.Long("--runs", 20));
  const int seconds = static_cast<int>(flags.Long("--seconds", 60));
  const std::string resync = flags.String("--resync", "1s");
  const std::string binary = efadra::bench::DriverBinary("publish_bench", flags, argv[0]);

  efadra::apidouble::FakeApiServer server;
  if (!server.Start().ok()) return 1;
  server.PutNode("bench-node", "uid-bench-node");
  const std::string dir =
      efadra::bench::MakeScratchNode("publish-bench", "p5.48xlarge", server.url());
  const std::vector<std::string> args = {
      binary, "run", "--node-name", "bench-node", "--sysfs-root", dir + "/sys", "--dev-root",
      dir + "/dev", "--kubeconfig", dir + "/kubeconfig", "--resync", resync, "--http-address",
      "127.0.0.1:0",
      // Everything the kubelet side writes stays in the scratch directory.
      "--registrar-dir", dir + "/registry", "--plugin-dir", dir + "/plugin", "--cdi-root",
      dir + "/cdi", "--device-plugin-dir", dir + "/device-plugins"};
  const std::string log = dir + "/driver.log";

  // 1. Start to first slice accepted.
  std::vector<double> start_ms;
  for (int run = 0; run < runs; ++run) {
    server.DeleteAllResourceSlices();
    const auto begin = Clock::now();
    const pid_t pid = Spawn(args, log);
    while (server.ResourceSlices().empty()) {
      if (Clock::now() - begin > std::chrono::seconds(20)) {
        std::fprintf(stderr, "publish_bench: no slice after 20 s; see %s\n", log.c_str());
        StopChild(pid);
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    start_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - begin).count());
    StopChild(pid);
  }

  // 2. Steady window.
  server.DeleteAllResourceSlices();
  const pid_t pid = Spawn(args, log);
  while (server.ResourceSlices().empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // Let the first-publish follow-ups (watch establishment) settle before measuring.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  server.ClearRequests();
  const double cpu_before = SampleProcess(pid).cpu_s;
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  const auto after = SampleProcess(pid);
  const double cpu = after.cpu_s - cpu_before;
  const long rss = after.rss_kib;
  const long hwm = after.hwm_kib;
  const auto requests = server.Requests();
  size_t non_watch = 0;
  for (const auto& r : requests) non_watch += r.watch ? 0 : 1;
  const size_t writes = server.WriteCount();
  const auto stop_begin = Clock::now();
  const int code = StopChild(pid);
  const double stop_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - stop_begin).count();

  std::printf("publish_bench: p5.48xlarge tree (32 EFA), FakeApiServer on %s, resync %s\n",
              server.url().c_str(), resync.c_str());
  std::printf("start to first slice accepted: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d runs)\n",
              Percentile(start_ms, 0.5), Percentile(start_ms, 0.99),
              *std::max_element(start_ms.begin(), start_ms.end()), runs);
  std::printf("steady window %d s: %zu API requests (%zu non-watch), %zu writes\n", seconds,
              requests.size(), non_watch, writes);
  std::printf("steady window %d s: CPU %.3f s (%.3f%% of one core), RSS %ld KiB (peak %ld KiB)\n",
              seconds, cpu, 100.0 * cpu / seconds, rss, hwm);
  std::printf("SIGTERM to exit: %.1f ms, exit code %d\n", stop_ms, code);
  std::filesystem::remove_all(dir);
  return writes == 0 && code == 0 ? 0 : 1;
}
