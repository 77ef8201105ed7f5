// publish_bench: what `efa-dra-driver run` costs the API server and the node.
//  1. time from process start (fork+exec) to the first ResourceSlice accepted by a local
//     FakeApiServer, on a generated p5.48xlarge tree (32 EFAs), p50/p99 over --runs runs;
//  2. during a steady window of --seconds (after the first publish): API requests and writes
//     made (goal: 0 writes), CPU time and resident memory of the driver process.
// Prints the figures; docs/performance.md ("Publishing") records them.
//
// Usage: publish_bench [--runs N] [--seconds S] [--resync 1s] [--binary PATH]
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "efadra/apidouble/fake_api_server.h"
#include "efadra/sysfstree/bundled.h"
#include "efadra/sysfstree/topology.h"
#include "efadra/sysfstree/tree_builder.h"

namespace {

using Clock = std::chrono::steady_clock;

pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    FILE* out = std::fopen(log.c_str(), "a");
    if (out != nullptr) ::dup2(::fileno(out), 2);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

int StopChild(pid_t pid) {
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// utime + stime of `pid` in seconds (/proc/<pid>/stat fields 14 and 15).
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// A "VmRSS:" / "VmHWM:" line of /proc/<pid>/status, in KiB.
long StatusKib(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::strtol(line.c_str() + key.size(), nullptr, 10);
  }
  return -1;
}

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  if (values.empty()) return 0;
  const size_t index = std::min(
      values.size() - 1, static_cast<size_t>(p * static_cast<double>(values.size() - 1) + 0.5));
  return values[index];
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 20;
  int seconds = 60;
  std::string resync = "1s";
  std::string binary =
      std::filesystem::path(argv[0]).parent_path().parent_path() / "efa-dra-driver";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--runs")
      runs = std::atoi(argv[i + 1]);
    else if (flag == "--seconds")
      seconds = std::atoi(argv[i + 1]);
    else if (flag == "--resync")
      resync = argv[i + 1];
    else if (flag == "--binary")
      binary = argv[i + 1];
  }
  if (::access(binary.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "publish_bench: %s is not built (use --binary)\n", binary.c_str());
    return 1;
  }

  char dir_template[] = "/tmp/publish-bench-XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  const auto yaml = efadra::sysfstree::BundledTopology("p5.48xlarge");
  auto topology = yaml ? efadra::sysfstree::ParseTopology(*yaml)
                       : efadra::Result<efadra::sysfstree::Topology>(
                             efadra::NotFoundError("p5.48xlarge not bundled"));
  if (!topology.ok() ||
      !efadra::sysfstree::BuildSysfsTree(*topology, dir + "/sys", dir + "/dev").ok()) {
    std::fprintf(stderr, "publish_bench: cannot build the p5 tree\n");
    return 1;
  }

  efadra::apidouble::FakeApiServer server;
  if (!server.Start().ok()) return 1;
  server.PutNode("bench-node", "uid-bench-node");
  {
    std::ofstream kubeconfig(dir + "/kubeconfig");
    kubeconfig << "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n"
               << "  cluster:\n    server: " << server.url()
               << "\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n"
               << "users:\n- name: u\n  user:\n    token: t\n";
  }
  const std::vector<std::string> args = {
      binary,       "run",        "--node-name",    "bench-node",   "--sysfs-root",
      dir + "/sys", "--dev-root", dir + "/dev",     "--kubeconfig", dir + "/kubeconfig",
      "--resync",   resync,       "--http-address", "127.0.0.1:0",
      // Everything the kubelet side writes stays in the scratch directory.
      "--registrar-dir", dir + "/registry", "--plugin-dir", dir + "/plugin",
      "--cdi-root", dir + "/cdi", "--device-plugin-dir", dir + "/device-plugins"};
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
  const double cpu_before = CpuSeconds(pid);
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  const double cpu = CpuSeconds(pid) - cpu_before;
  const long rss = StatusKib(pid, "VmRSS:");
  const long hwm = StatusKib(pid, "VmHWM:");
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
