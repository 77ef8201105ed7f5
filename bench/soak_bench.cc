// soak_bench: does `efa-dra-driver run` stay flat under a long stream of claims?
// Runs the real binary as a child on a generated p5.48xlarge tree (32 EFAs) against an
// in-process FakeApiServer and plays the kubelet over the real unix sockets: registers
// (GetInfo + NotifyRegistrationStatus), then for --seconds puts a fresh allocated
// ResourceClaim into the API, prepares it, unprepares it and deletes it, every --interval-ms.
// A fresh claim UID each cycle makes any per-claim state that is never dropped show up as
// growth. Every --sample-seconds it samples the child from /proc/<pid>/{status,stat,fd}.
//
// Prints: RSS start/end/max and drift, CPU per minute, fds and threads first vs last (no growth
// expected), prepare/unprepare counts and p50/p99 latency, API requests and writes in the steady
// part (ResourceSlice writes should be 0). docs/performance.md ("Soak") records the figures.
//
// Usage: soak_bench [--seconds 180] [--interval-ms 5] [--sample-seconds 5] [--resync 1s]
//                   [--cycles N] [--binary PATH]
//        --cycles N ends the soak after N prepare/unprepare cycles (or --seconds, if sooner)
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.h"
#include "kubelet_registration.h"
#include "dra/v1/api.grpc.pb.h"
#include "efadra/apidouble/fake_api_server.h"
#include "pluginregistration/v1/api.grpc.pb.h"

namespace {

using efadra::bench::Deadline;
using efadra::bench::Register;

namespace dra = k8s::io::kubelet::pkg::apis::dra::v1;
using Clock = std::chrono::steady_clock;

constexpr char kNode[] = "soak-node";
constexpr char kDriver[] = "dra.net";

using efadra::bench::Exited;
using efadra::bench::Percentile;
using efadra::bench::Spawn;
using efadra::bench::StopChild;

// One look at the child through /proc.
struct Sample {
  double at_s = 0;  // since the steady part began
  efadra::bench::ProcessSample process;
};

// An allocated resource.k8s.io/v1 ResourceClaim for one device of our pool (the shape of
// test/claims/claims_fixture.h AllocatedClaim).
nlohmann::json Claim(const std::string& name, const std::string& uid, const std::string& device) {
  return {{"apiVersion", "resource.k8s.io/v1"},
          {"kind", "ResourceClaim"},
          {"metadata", {{"namespace", "soak"}, {"name", name}, {"uid", uid}}},
          {"spec", {{"devices", {{"requests", nlohmann::json::array()}}}}},
          {"status",
           {{"allocation",
             {{"devices",
               {{"results",
                 {{{"request", "efa"},
                   {"driver", kDriver},
                   {"pool", kNode},
                   {"device", device}}}}}}}}}}};
}


}  // namespace

int main(int argc, char** argv) {
  const efadra::bench::Flags flags(argc, argv);
  const int seconds = static_cast<int>(flags.Long("--seconds", 180));
  const int interval_ms = static_cast<int>(flags.Long("--interval-ms", 5));
  const long max_cycles = flags.Long("--cycles", 0);  // 0: until --seconds
  const int sample_seconds = std::max(1, static_cast<int>(flags.Long("--sample-seconds", 5)));
  const std::string resync = flags.String("--resync", "1s");
  const std::string binary = efadra::bench::DriverBinary("soak_bench", flags, argv[0]);

  efadra::apidouble::FakeApiServer server;
  if (!server.Start().ok()) return 1;
  server.PutNode(kNode, "uid-soak-node");
  const std::string dir = efadra::bench::MakeScratchNode("soak-bench", "p5.48xlarge", server.url());
  std::ofstream(dir + "/boot_id") << "soak-boot\n";
  const std::vector<std::string> args = {binary,
                                         "run",
                                         "--node-name",
                                         kNode,
                                         "--sysfs-root",
                                         dir + "/sys",
                                         "--dev-root",
                                         dir + "/dev",
                                         "--kubeconfig",
                                         dir + "/kubeconfig",
                                         "--registrar-dir",
                                         dir + "/registry",
                                         "--plugin-dir",
                                         dir + "/plugins/dra.net",
                                         "--cdi-root",
                                         dir + "/cdi",
                                         "--state-dir",
                                         dir + "/state",
                                         "--boot-id-file",
                                         dir + "/boot_id",
                                         "--device-plugin-dir",
                                         dir + "/device-plugins",
                                         "--http-address",
                                         "127.0.0.1:0",
                                         "--resync",
                                         resync,
                                         "--log-format",
                                         "json"};
  const std::string log = dir + "/driver.log";
  const pid_t pid = Spawn(args, log);
  auto fail = [&](const char* what) {
    std::fprintf(stderr, "soak_bench: %s; driver log %s\n", what, log.c_str());
    if (!Exited(pid)) StopChild(pid);
    return 1;
  };

  // Register the way the kubelet does once the registration socket is served, and wait for the
  // first slice: the steady part starts after both.
  std::string endpoint;
  const auto start = Clock::now();
  while (endpoint.empty() || server.ResourceSlices().empty()) {
    if (Clock::now() - start > std::chrono::seconds(30)) return fail("not registered in 30 s");
    if (Exited(pid)) return fail("the driver exited");
    if (endpoint.empty()) endpoint = Register(dir + "/registry/dra.net-reg.sock");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::vector<std::string> devices;
  for (const auto& slice : server.ResourceSlices()) {
    for (const auto& device : slice["spec"].value("devices", nlohmann::json::array())) {
      devices.push_back(device.value("name", ""));
    }
  }
  if (devices.empty()) return fail("the slice has no devices");
  // Let the first-publish follow-ups (watch establishment) settle before measuring.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  server.ClearRequests();
  const efadra::bench::MemorySplit memory_at_start = efadra::bench::SampleMemory(pid);

  // Sampler.
  std::vector<Sample> samples;
  std::mutex samples_mu;
  std::atomic<bool> done{false};
  const auto steady = Clock::now();
  auto since = [&] { return std::chrono::duration<double>(Clock::now() - steady).count(); };
  std::thread sampler([&] {
    auto next = steady;
    while (!done.load()) {
      {
        std::lock_guard<std::mutex> lock(samples_mu);
        samples.push_back({since(), efadra::bench::SampleProcess(pid)});
      }
      next += std::chrono::seconds(sample_seconds);
      while (!done.load() && Clock::now() < next) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  });

  // The kubelet keeps one connection to the plugin; so does this loop.
  auto stub = dra::DRAPlugin::NewStub(
      grpc::CreateChannel("unix:" + endpoint, grpc::InsecureChannelCredentials()));
  std::vector<double> prepare_ms, unprepare_ms;
  size_t errors = 0;
  std::string first_error;
  auto error = [&](const std::string& message) {
    if (errors++ == 0) first_error = message;
  };
  const auto end = steady + std::chrono::seconds(seconds);
  long cycles_run = 0;
  for (long cycle = 0; Clock::now() < end && (max_cycles == 0 || cycle < max_cycles); ++cycle) {
    cycles_run = cycle + 1;
    if (Exited(pid)) {
      done = true;
      sampler.join();
      return fail("the driver exited during the soak");
    }
    const std::string name = "claim-" + std::to_string(cycle);
    const std::string uid = "uid-soak-" + std::to_string(cycle);
    server.PutResourceClaim(Claim(name, uid, devices[static_cast<size_t>(cycle) % devices.size()]));

    dra::NodePrepareResourcesRequest prepare;
    auto* claim = prepare.add_claims();
    claim->set_namespace_("soak");
    claim->set_name(name);
    claim->set_uid(uid);
    dra::NodePrepareResourcesResponse prepared;
    auto t0 = Clock::now();
    grpc::Status status =
        stub->NodePrepareResources(Deadline(std::chrono::seconds(45)).get(), prepare, &prepared);
    prepare_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (!status.ok()) {
      error("prepare " + uid + ": " + status.error_message());
    } else if (!prepared.claims().at(uid).error().empty()) {
      error("prepare " + uid + ": " + prepared.claims().at(uid).error());
    }

    dra::NodeUnprepareResourcesRequest unprepare;
    auto* ref = unprepare.add_claims();
    ref->set_namespace_("soak");
    ref->set_name(name);
    ref->set_uid(uid);
    dra::NodeUnprepareResourcesResponse unprepared;
    t0 = Clock::now();
    status = stub->NodeUnprepareResources(Deadline(std::chrono::seconds(45)).get(), unprepare,
                                          &unprepared);
    unprepare_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (!status.ok()) {
      error("unprepare " + uid + ": " + status.error_message());
    } else if (!unprepared.claims().at(uid).error().empty()) {
      error("unprepare " + uid + ": " + unprepared.claims().at(uid).error());
    }
    server.DeleteResourceClaim("soak", name);
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
  }
  {
    std::lock_guard<std::mutex> lock(samples_mu);
    samples.push_back({since(), efadra::bench::SampleProcess(pid)});
  }
  done = true;
  sampler.join();

  const efadra::bench::MemorySplit memory_at_end = efadra::bench::SampleMemory(pid);
  const auto requests = server.Requests();
  size_t slice_writes = 0, claim_gets = 0;
  for (const auto& r : requests) {
    const bool slice = r.path.find("/resourceslices") != std::string::npos;
    if (slice && r.method != "GET") ++slice_writes;
    if (r.method == "GET" && r.path.find("/resourceclaims/") != std::string::npos) ++claim_gets;
  }
  const size_t writes = server.WriteCount();
  const int code = StopChild(pid);

  const Sample& first = samples.front();
  const Sample& last = samples.back();
  long max_rss = 0;
  for (const Sample& s : samples) max_rss = std::max(max_rss, s.process.rss_kib);
  // The RSS after the first minute is the baseline for drift: the first minute grows arenas
  // and gRPC's pools to their working size.
  const Sample* warm = &first;
  for (const Sample& s : samples) {
    if (s.at_s >= 60 && warm == &first) warm = &s;
  }
  auto per_minute = [](double amount, double from_s, double to_s) {
    return to_s > from_s ? amount * 60.0 / (to_s - from_s) : 0.0;
  };
  const long drift = last.process.rss_kib - first.process.rss_kib;
  const long warm_drift = last.process.rss_kib - warm->process.rss_kib;
  const double cpu = last.process.cpu_s - first.process.cpu_s;
  const double cpu_per_minute = per_minute(cpu, first.at_s, last.at_s);

  std::printf("soak_bench: p5.48xlarge tree (%zu devices), FakeApiServer on %s, resync %s\n",
              devices.size(), server.url().c_str(), resync.c_str());
  std::printf("steady part: %.0f s, %ld cycles, a fresh claim prepared+unprepared every %d ms + "
              "latency\n", last.at_s, cycles_run, interval_ms);
  std::printf("samples every %d s (%zu):\n  t(s)   RSS(KiB)  CPU(s)  fds  threads\n",
              sample_seconds, samples.size());
  for (const Sample& s : samples) {
    std::printf("  %5.0f  %8ld  %6.2f  %3ld  %3ld\n", s.at_s, s.process.rss_kib, s.process.cpu_s,
                s.process.fds, s.process.threads);
  }
  std::printf(
      "RSS: start %ld KiB, end %ld KiB, max %ld KiB, drift %+ld KiB (%+.1f KiB/min); "
      "after the first minute %+ld KiB (%+.1f KiB/min)\n",
      first.process.rss_kib, last.process.rss_kib, max_rss, drift,
      per_minute(static_cast<double>(drift), first.at_s, last.at_s), warm_drift,
      per_minute(static_cast<double>(warm_drift), warm->at_s, last.at_s));
  std::printf("CPU: %.2f s = %.2f s per minute (%.1f%% of one core)\n", cpu, cpu_per_minute,
              100.0 * cpu_per_minute / 60.0);
  std::printf("fds: first %ld, last %ld; threads: first %ld, last %ld\n", first.process.fds,
              last.process.fds, first.process.threads, last.process.threads);
  std::printf("prepare: %zu calls, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", prepare_ms.size(),
              Percentile(prepare_ms, 0.5), Percentile(prepare_ms, 0.99),
              prepare_ms.empty() ? 0.0 : *std::max_element(prepare_ms.begin(), prepare_ms.end()));
  std::printf(
      "unprepare: %zu calls, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", unprepare_ms.size(),
      Percentile(unprepare_ms, 0.5), Percentile(unprepare_ms, 0.99),
      unprepare_ms.empty() ? 0.0 : *std::max_element(unprepare_ms.begin(), unprepare_ms.end()));
  std::printf("errors: %zu%s%s\n", errors, errors > 0 ? ", first: " : "", first_error.c_str());
  std::printf(
      "API in the steady part: %zu requests (%zu claim GETs), %zu writes, "
      "%zu ResourceSlice writes\n",
      requests.size(), claim_gets, writes, slice_writes);
  efadra::bench::PrintMemory("memory after start", memory_at_start, 15);
  efadra::bench::PrintMemory("memory after the soak's cycles", memory_at_end, 15);
  std::printf("SIGTERM: exit code %d\n", code);
  std::filesystem::remove_all(dir);
  return 0;
}
