// health_latency_bench: how soon does the kubelet learn that an EFA port went DOWN, and what
// does watching for it cost?
// Runs the real `efa-dra-driver run` binary with default flags (--resync 60s,
// --health-poll-interval 2s) on a generated p5.48xlarge tree (32 EFAs) against an in-process
// FakeApiServer, registers the way the kubelet does and holds the kubelet's health stream
// (DRAResourceHealth NodeWatchResources) open. Then --flips times: rewrite one device's
// ports/1/state to "1: DOWN" in place (what the kernel's value change looks like to a reader)
// at a random phase of the poll, time until the stream says UNHEALTHY, flip it back and wait
// for HEALTHY. No uevent is sent and the rescan is 60 s away, so only the poll can see it.
//
// CPU: the driver's utime+stime over --idle-seconds of idleness (after --settle-seconds) with
// polling (default flags), then again for a second driver with --health-poll-interval 0; the difference is the poll's
// cost, as % of one core. Idle driver CPU on a shared machine is noisy, so the in-process cost
// of one HealthPoller::Poll() over the same 32 EFAs (mean of --polls calls) is printed too.
// docs/performance.md ("Device health latency") records the figures.
//
// Usage: health_latency_bench [--flips 50] [--idle-seconds 60] [--settle-seconds 10]
//                             [--polls 2000] [--binary PATH]
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.h"
#include "kubelet_registration.h"
#include "drahealth/v1alpha1/api.grpc.pb.h"
#include "efadra/apidouble/fake_api_server.h"
#include "efadra/core/filesystem.h"
#include "efadra/discovery/discoverer.h"
#include "efadra/discovery/health_poller.h"
#include "pluginregistration/v1/api.grpc.pb.h"

namespace {

using efadra::bench::Deadline;
using efadra::bench::Register;

using Clock = std::chrono::steady_clock;
using efadra::bench::Exited;
using efadra::bench::Percentile;
using efadra::bench::Spawn;
using efadra::bench::StopChild;

constexpr char kNode[] = "health-node";


// The health stream's latest word per device, with the time it arrived.
class HealthWatch {
 public:
  void Record(const v1alpha1::NodeWatchResourcesResponse& response) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& device : response.devices()) {
      health_[device.device().device_name()] = device.health();
    }
    changed_.notify_all();
  }
  // Blocks until `device` has `health`; false after `timeout`.
  bool Await(const std::string& device, v1alpha1::HealthStatus health,
             std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, timeout, [&] {
      auto it = health_.find(device);
      return it != health_.end() && it->second == health;
    });
  }
  std::vector<std::string> Devices() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> names;
    for (const auto& [name, health] : health_) names.push_back(name);
    return names;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, v1alpha1::HealthStatus> health_;
};

void WriteInPlace(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::trunc);
  out << content;
}

std::vector<std::string> DriverArgs(const std::string& binary, const std::string& dir,
                                    const std::string& name) {
  return {binary,         "run",
          "--node-name",  kNode,
          "--sysfs-root", dir + "/sys",
          "--dev-root",   dir + "/dev",
          "--kubeconfig", dir + "/kubeconfig",
          "--registrar-dir", dir + "/registry-" + name,
          "--plugin-dir", dir + "/plugins-" + name + "/dra.net",
          "--cdi-root",   dir + "/cdi-" + name,
          "--state-dir",  dir + "/state-" + name,
          "--boot-id-file", dir + "/boot_id",
          "--device-plugin-dir", dir + "/device-plugins",
          "--http-address", "127.0.0.1:0",
          "--log-format", "json"};
}

// Registers with the driver at `dir`/registry-`name` (within 30 s); the DRA endpoint or "".
std::string AwaitRegistration(pid_t pid, const std::string& dir, const std::string& name) {
  const auto start = Clock::now();
  while (Clock::now() - start < std::chrono::seconds(30) && !Exited(pid)) {
    std::string endpoint = Register(dir + "/registry-" + name + "/dra.net-reg.sock");
    if (!endpoint.empty()) return endpoint;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return "";
}

// The driver's CPU over `seconds` of idleness after `settle` seconds, as % of one core.
double IdleCpuPercent(pid_t pid, int settle, int seconds) {
  std::this_thread::sleep_for(std::chrono::seconds(settle));
  const auto before = efadra::bench::SampleProcess(pid);
  const auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  const auto after = efadra::bench::SampleProcess(pid);
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  return 100.0 * (after.cpu_s - before.cpu_s) / wall;
}

}  // namespace

int main(int argc, char** argv) {
  const efadra::bench::Flags flags(argc, argv);
  const int flips = static_cast<int>(flags.Long("--flips", 50));
  const int idle_seconds = static_cast<int>(flags.Long("--idle-seconds", 60));
  const int polls = static_cast<int>(flags.Long("--polls", 2000));
  const int settle_seconds = static_cast<int>(flags.Long("--settle-seconds", 10));
  const std::string binary = efadra::bench::DriverBinary("health_latency_bench", flags, argv[0]);

  efadra::apidouble::FakeApiServer server;
  if (!server.Start().ok()) return 1;
  server.PutNode(kNode, "uid-health-node");
  const std::string dir =
      efadra::bench::MakeScratchNode("health-latency-bench", "p5.48xlarge", server.url());
  std::ofstream(dir + "/boot_id") << "health-boot\n";

  // The in-process poll cost first, while nothing else runs.
  auto sysfs = efadra::core::NewPosixFilesystem(dir + "/sys");
  auto dev = efadra::core::NewPosixFilesystem(dir + "/dev");
  auto inventory = efadra::discovery::Discoverer(*sysfs, *dev, nullptr).Discover();
  if (!inventory.ok() || inventory->devices.size() != 32) {
    std::fprintf(stderr, "health_latency_bench: the generated tree does not have 32 EFAs\n");
    return 1;
  }
  double poll_us = 0;
  {
    efadra::discovery::HealthPoller poller(*sysfs, *dev);
    poller.Track(inventory->devices);
    (void)poller.Poll();  // opens the files
    const auto cpu_before = efadra::bench::SampleProcess(0).cpu_s;
    for (int i = 0; i < polls; ++i) (void)poller.Poll();
    const auto cpu_after = efadra::bench::SampleProcess(0).cpu_s;
    poll_us = 1e6 * (cpu_after - cpu_before) / std::max(1, polls);
  }
  std::map<std::string, std::string> rdma_of;  // slice device name -> RDMA name
  for (const auto& device : inventory->devices) {
    std::string name = "pci-" + device.pci_address;
    std::replace(name.begin(), name.end(), ':', '-');
    std::replace(name.begin(), name.end(), '.', '-');
    rdma_of[name] = device.rdma_device;
  }

  // Latency, with default flags.
  const std::string log = dir + "/driver.log";
  const pid_t pid = Spawn(DriverArgs(binary, dir, "polling"), log);
  auto fail = [&](const std::string& what, pid_t child) {
    std::fprintf(stderr, "health_latency_bench: %s; driver log %s\n", what.c_str(), log.c_str());
    if (!Exited(child)) StopChild(child);
    return 1;
  };
  const std::string endpoint = AwaitRegistration(pid, dir, "polling");
  if (endpoint.empty()) return fail("not registered in 30 s", pid);

  HealthWatch watch;
  auto stub = v1alpha1::DRAResourceHealth::NewStub(
      grpc::CreateChannel("unix:" + endpoint, grpc::InsecureChannelCredentials()));
  grpc::ClientContext stream_context;
  auto reader = stub->NodeWatchResources(&stream_context, v1alpha1::NodeWatchResourcesRequest());
  std::thread stream([&] {
    v1alpha1::NodeWatchResourcesResponse response;
    while (reader->Read(&response)) watch.Record(response);
  });
  auto finish_stream = [&] {
    stream_context.TryCancel();
    stream.join();
  };
  const auto first = Clock::now();
  while (watch.Devices().size() < 32 && Clock::now() - first < std::chrono::seconds(30)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const std::vector<std::string> devices = watch.Devices();
  if (devices.size() != 32) {
    finish_stream();
    return fail("the health stream lists " + std::to_string(devices.size()) + " devices, not 32",
                pid);
  }

  std::mt19937 random(12345);
  std::uniform_int_distribution<int> phase_ms(0, 2000);
  std::vector<double> down_ms, up_ms;
  int missed = 0;
  for (int i = 0; i < flips; ++i) {
    const std::string& device = devices[static_cast<size_t>(i) % devices.size()];
    const std::string state = dir + "/sys/class/infiniband/" + rdma_of[device] + "/ports/1/state";
    std::this_thread::sleep_for(std::chrono::milliseconds(phase_ms(random)));
    const auto down_at = Clock::now();
    WriteInPlace(state, "1: DOWN\n");
    if (!watch.Await(device, v1alpha1::UNHEALTHY, std::chrono::seconds(30))) {
      ++missed;
    } else {
      down_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - down_at).count());
    }
    const auto up_at = Clock::now();
    WriteInPlace(state, "4: ACTIVE\n");
    if (!watch.Await(device, v1alpha1::HEALTHY, std::chrono::seconds(30))) {
      ++missed;
    } else {
      up_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - up_at).count());
    }
  }
  finish_stream();

  const double cpu_polling = IdleCpuPercent(pid, settle_seconds, idle_seconds);
  StopChild(pid);

  const pid_t quiet = Spawn(
      [&] {
        auto args = DriverArgs(binary, dir, "quiet");
        args.push_back("--health-poll-interval");
        args.push_back("0");
        return args;
      }(),
      log);
  if (AwaitRegistration(quiet, dir, "quiet").empty()) return fail("second driver", quiet);
  const double cpu_quiet = IdleCpuPercent(quiet, settle_seconds, idle_seconds);
  StopChild(quiet);

  std::printf("health_latency_bench: p5.48xlarge (32 EFAs), default flags (--resync 60s, "
              "--health-poll-interval 2s)\n");
  std::printf("  port DOWN -> UNHEALTHY on the health stream: n=%zu p50 %.0f ms  p99 %.0f ms  "
              "max %.0f ms\n",
              down_ms.size(), Percentile(down_ms, 0.5), Percentile(down_ms, 0.99),
              down_ms.empty() ? 0.0 : *std::max_element(down_ms.begin(), down_ms.end()));
  std::printf("  port ACTIVE -> HEALTHY:                      n=%zu p50 %.0f ms  p99 %.0f ms\n",
              up_ms.size(), Percentile(up_ms, 0.5), Percentile(up_ms, 0.99));
  std::printf("  flips not seen within 30 s: %d\n", missed);
  std::printf("  idle driver CPU over %d s: polling %.3f %% of a core, "
              "--health-poll-interval 0 %.3f %%, difference %.3f %%\n",
              idle_seconds, cpu_polling, cpu_quiet, cpu_polling - cpu_quiet);
  std::printf("  one HealthPoller::Poll() of 32 EFAs in process: %.1f us CPU (mean of %d) = "
              "%.4f %% of a core at 2 s\n",
              poll_us, polls, poll_us / 2e6 * 100.0);
  return missed == 0 ? 0 : 1;
}
