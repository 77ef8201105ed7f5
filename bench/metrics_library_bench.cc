// Our Prometheus registry (src/observe/metrics.cc) next to prometheus-cpp's core registry
// (prometheus::Registry + families + TextSerializer), in one process, so docs/dependencies.md
// can say with figures whether the library should replace the hand-written one.
//
// Only the core library is measured: the driver has its own HTTP server (observe/http_server),
// so prometheus-cpp's pull (civetweb) and push (curl) libraries would not be linked.
//
// Built only when prometheus-cpp is installed, which the default build does not need:
//   apt-get install -y prometheus-cpp-dev
//
//   build/bench/metrics_library_bench [--ops 2000000] [--batch 100] [--scrapes 2000]
//                                     [--devices 32] [--diff-lines 3]
//
// 1. Increment latency of a counter with labels, per call (ns): the cached child; the child
//    looked up by its label values each time (what DriverMetrics::RecordApiRequest does); the
//    cached child with two threads incrementing it at once.
// 2. Histogram observe (ns), cached child.
// 3. Scrape: render a registry shaped like DriverMetrics with --devices devices (ours:
//    Registry::Render; prometheus-cpp: Registry::Collect + TextSerializer::Serialize).
// 4. Memory: the heap each driver-shaped registry holds (mallinfo2), the resident KiB of the
//    prometheus-cpp mappings in this process (/proc/self/smaps), the library's size on disk and
//    the shared libraries it needs (ldd).
//
// Latencies are timed per batch of --batch calls (one clock read costs more than a call) and
// reported as p50/p90/p99 of the per-call time across batches. The two-thread rows also say for
// how much of the run both threads were actually running.
#include <malloc.h>
#include <time.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "bench_support.h"
#include "efadra/core/version.h"
#include "efadra/observe/driver_metrics.h"
#include "efadra/observe/metrics.h"

namespace {

using efadra::bench::Flags;
using efadra::bench::Percentile;
using Clock = std::chrono::steady_clock;

struct Quantiles {
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
  double overlap = -1;  // contended rows only
  double on_cpu = -1;
};

Quantiles Summarise(const std::vector<double>& values) {
  return {Percentile(values, 0.50), Percentile(values, 0.90), Percentile(values, 0.99)};
}


// Per-call nanoseconds of `op`, one sample per batch of `batch` calls.
std::vector<double> TimeBatches(long ops, long batch, const std::function<void(long)>& op) {
  std::vector<double> per_call;
  per_call.reserve(static_cast<size_t>(ops / batch));
  for (long done = 0; done + batch <= ops; done += batch) {
    const auto start = Clock::now();
    for (long i = 0; i < batch; ++i) op(done + i);
    const auto elapsed = std::chrono::duration<double, std::nano>(Clock::now() - start).count();
    per_call.push_back(elapsed / static_cast<double>(batch));
  }
  return per_call;
}

// Both threads run `op` at once (released together); the batches of both, pooled, and the share
// of the run during which both were running (on a loaded machine the scheduler may run them one
// after the other, and then nothing was contended: the figure says how far to trust the row).
struct Contended {
  std::vector<double> per_call;
  double overlap = 0;
  double on_cpu = 0;  // the lower of the two threads' CPU time / wall time
};

double ThreadCpuSeconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

Contended TimeContended(long ops, long batch, const std::function<void(long)>& op) {
  std::atomic<int> ready{0};
  std::vector<double> results[2];
  Clock::time_point start[2], end[2];
  double cpu[2] = {0, 0};
  auto worker = [&](int index) {
    ready.fetch_add(1);
    while (ready.load() < 2) {
    }
    const double cpu_start = ThreadCpuSeconds();
    start[index] = Clock::now();
    results[index] = TimeBatches(ops, batch, op);
    end[index] = Clock::now();
    cpu[index] = ThreadCpuSeconds() - cpu_start;
  };
  std::thread a(worker, 0);
  std::thread b(worker, 1);
  a.join();
  b.join();
  Contended out;
  const double both = std::chrono::duration<double>(std::min(end[0], end[1]) -
                                                    std::max(start[0], start[1])).count();
  const double whole = std::chrono::duration<double>(std::max(end[0], end[1]) -
                                                     std::min(start[0], start[1])).count();
  out.overlap = whole > 0 ? std::max(0.0, both) / whole : 0;
  for (int i = 0; i < 2; ++i) {
    const double wall = std::chrono::duration<double>(end[i] - start[i]).count();
    const double share = wall > 0 ? cpu[i] / wall : 0;
    out.on_cpu = i == 0 ? share : std::min(out.on_cpu, share);
  }
  out.per_call = std::move(results[0]);
  out.per_call.insert(out.per_call.end(), results[1].begin(), results[1].end());
  return out;
}

Quantiles Summarise(const Contended& run) {
  Quantiles q = Summarise(run.per_call);
  q.overlap = run.overlap;
  q.on_cpu = run.on_cpu;
  return q;
}

// The verbs and codes the driver's API client sees in steady state and on conflicts.
const std::vector<std::pair<std::string, std::string>>& ApiRequestLabels() {
  static const std::vector<std::pair<std::string, std::string>> labels = {
      {"GET", "200"},    {"GET", "404"},   {"LIST", "200"},   {"WATCH", "200"},
      {"WATCH", "0"},    {"POST", "201"},  {"POST", "409"},   {"PUT", "200"},
      {"PUT", "409"},    {"DELETE", "200"}, {"DELETE", "404"}, {"GET", "0"}};
  return labels;
}
const std::vector<std::string> kVerbs = {"GET", "LIST", "WATCH", "POST", "PUT", "DELETE"};
const std::vector<std::string> kReasons = {"forbidden", "invalid", "unsupported", "gave_up",
                                           "queue_full"};
const std::vector<std::string> kApiVersions = {"v1", "v1beta1"};

std::string DeviceName(long i) {
  char name[32];
  std::snprintf(name, sizeof(name), "pci-0000-%02lx-1c-0", 0x10 + i);
  return name;
}

// ---- the driver's metric set on each registry, every child created and given a value ----

std::unique_ptr<efadra::observe::DriverMetrics> FillOurs(efadra::observe::Registry& registry,
                                                         long devices) {
  auto metrics = efadra::observe::DriverMetrics::Create(registry);
  if (!metrics.ok()) {
    std::fprintf(stderr, "metrics_library_bench: DriverMetrics::Create: %s\n",
                 metrics.status().ToString().c_str());
    std::exit(1);
  }
  auto& m = **metrics;
  for (const auto& v : kApiVersions) {
    m.RecordPrepare(v, true, std::chrono::milliseconds(3));
    m.RecordPrepare(v, false, std::chrono::milliseconds(40));
    m.RecordUnprepare(v, true, std::chrono::milliseconds(2));
  }
  for (const auto& [verb, code] : ApiRequestLabels()) {
    m.RecordApiRequest(verb, std::stoi(code), std::chrono::milliseconds(7));
  }
  for (const auto& reason : kReasons) m.claim_status_failures_total().WithLabels({reason}).Inc();
  m.RecordDiscovery(std::chrono::milliseconds(12));
  for (long i = 0; i < devices; ++i) m.SetDeviceHealthy(DeviceName(i), true);
  m.published_devices().Set(static_cast<double>(devices));
  m.published_slices().Set(1);
  m.prepared_claims().Set(4);
  m.device_plugin_conflict().Set(0);
  return std::move(*metrics);
}

void FillTheirs(prometheus::Registry& registry, long devices) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  const prometheus::Histogram::BucketBoundaries buckets = efadra::observe::DefaultLatencyBuckets();
  auto& prepare_total =
      BuildCounter()
          .Name("efa_dra_prepare_total")
          .Help("Claims handled by NodePrepareResources, by DRA API version and result.")
          .Register(registry);
  auto& prepare_duration = BuildHistogram()
                               .Name("efa_dra_prepare_duration_seconds")
                               .Help("Time to prepare one claim (checkpoint and CDI spec written).")
                               .Register(registry);
  auto& unprepare_total =
      BuildCounter()
          .Name("efa_dra_unprepare_total")
          .Help("Claims handled by NodeUnprepareResources, by DRA API version and result.")
          .Register(registry);
  auto& unprepare_duration = BuildHistogram()
                                 .Name("efa_dra_unprepare_duration_seconds")
                                 .Help("Time to unprepare one claim.")
                                 .Register(registry);
  for (const auto& v : kApiVersions) {
    prepare_total.Add({{"api_version", v}, {"result", "ok"}}).Increment();
    prepare_total.Add({{"api_version", v}, {"result", "error"}}).Increment();
    unprepare_total.Add({{"api_version", v}, {"result", "ok"}}).Increment();
    unprepare_total.Add({{"api_version", v}, {"result", "error"}});
    auto& p = prepare_duration.Add({{"api_version", v}}, buckets);
    p.Observe(0.003);
    p.Observe(0.04);
    unprepare_duration.Add({{"api_version", v}}, buckets).Observe(0.002);
  }
  auto& api_total = BuildCounter()
                        .Name("efa_dra_api_requests_total")
                        .Help("Requests to the Kubernetes API server, by verb and HTTP status "
                              "code (0: no response).")
                        .Register(registry);
  auto& api_duration = BuildHistogram()
                           .Name("efa_dra_api_request_duration_seconds")
                           .Help("Latency of Kubernetes API server requests (watches: until the "
                                 "stream ends).")
                           .Register(registry);
  for (const auto& [verb, code] : ApiRequestLabels()) {
    api_total.Add({{"verb", verb}, {"code", code}}).Increment();
    api_duration.Add({{"verb", verb}}, buckets).Observe(0.007);
  }
  auto& failures = BuildCounter()
                       .Name("efa_dra_claim_status_failures_total")
                       .Help("Writes of ResourceClaim status.devices that were given up, by "
                             "reason (forbidden, invalid, unsupported, gave_up, queue_full); "
                             "prepares are unaffected.")
                       .Register(registry);
  for (const auto& reason : kReasons) failures.Add({{"reason", reason}}).Increment();
  BuildHistogram()
      .Name("efa_dra_discovery_duration_seconds")
      .Help("Time of one discovery pass over sysfs and the verbs devices.")
      .Register(registry)
      .Add({}, buckets)
      .Observe(0.012);
  auto& healthy = BuildGauge()
                      .Name("efa_dra_device_healthy")
                      .Help("1 if the EFA device is healthy, 0 if not.")
                      .Register(registry);
  for (long i = 0; i < devices; ++i) healthy.Add({{"device", DeviceName(i)}}).Set(1);
  // The same values FillOurs sets.
  const struct {
    const char* name;
    const char* help;
    double value;
  } plain[] = {{"efa_dra_published_devices",
                "Devices in the ResourceSlices this driver publishes for its node.",
                static_cast<double>(devices)},
               {"efa_dra_published_slices", "ResourceSlices this driver publishes for its node.",
                1},
               {"efa_dra_prepared_claims", "Claims currently prepared on this node.", 4},
               {"efa_dra_device_plugin_conflict",
                "1 if an EFA device plugin also advertises this node's devices (double "
                "allocation risk), else 0.",
                0}};
  for (const auto& gauge : plain) {
    BuildGauge().Name(gauge.name).Help(gauge.help).Register(registry).Add({}).Set(gauge.value);
  }
  BuildGauge()
      .Name("efa_dra_build_info")
      .Help("Build identity of the running binary (always 1).")
      .Register(registry)
      .Add({{"version", efadra::kVersion}, {"git_commit", efadra::kGitCommit}})
      .Set(1);
}

std::string RenderTheirs(const prometheus::Registry& registry) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry.Collect());
  return out.str();
}

// Heap bytes in use (glibc's allocator), to price a registry's data structures.
long HeapBytes() { return static_cast<long>(mallinfo2().uordblks); }

// The sample lines of an exposition (comments dropped), as a set: the two libraries order
// children differently, so this is what "the same output" can mean before formatting.
std::set<std::string> SampleLines(const std::string& text) {
  std::set<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') lines.insert(line);
  }
  return lines;
}

// The resident memory of the mappings whose path contains `needle`, from /proc/self/smaps.
struct MappingMemory {
  std::set<std::string> paths;
  long rss = 0, pss = 0, shared_clean = 0, shared_dirty = 0, private_clean = 0,
       private_dirty = 0, size = 0;
};

MappingMemory SampleMappings(const std::string& needle) {
  MappingMemory m;
  const std::map<std::string, long MappingMemory::*> wanted = {
      {"Size", &MappingMemory::size},
      {"Rss", &MappingMemory::rss},
      {"Pss", &MappingMemory::pss},
      {"Shared_Clean", &MappingMemory::shared_clean},
      {"Shared_Dirty", &MappingMemory::shared_dirty},
      {"Private_Clean", &MappingMemory::private_clean},
      {"Private_Dirty", &MappingMemory::private_dirty}};
  efadra::bench::ForEachSmapsField(
      "/proc/self/smaps", [&](const std::string& path, const std::string& field, long kib) {
        if (path.find(needle) == std::string::npos) return;
        m.paths.insert(path);
        if (auto it = wanted.find(field); it != wanted.end()) m.*(it->second) += kib;
      });
  return m;
}

std::string Run(const std::string& command) {
  std::string out;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buf[512];
    while (std::fgets(buf, sizeof(buf), pipe) != nullptr) out += buf;
    ::pclose(pipe);
  }
  return out;
}

void PrintRow(const char* what, Quantiles ours, Quantiles theirs, const char* unit) {
  std::printf("  %-44s %8.1f %8.1f %8.1f   %8.1f %8.1f %8.1f  %s", what, ours.p50, ours.p90,
              ours.p99, theirs.p50, theirs.p90, theirs.p99, unit);
  if (ours.overlap >= 0) {
    std::printf("  (both threads alive %.0f%% / %.0f%% of the run, each on a CPU >= %.0f%% / "
                "%.0f%% of its run)",
                100 * ours.overlap, 100 * theirs.overlap, 100 * ours.on_cpu, 100 * theirs.on_cpu);
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags(argc, argv);
  const long ops = flags.Long("--ops", 2000000);
  const long batch = std::max(1L, flags.Long("--batch", 100));
  const long scrapes = std::max(1L, flags.Long("--scrapes", 2000));
  const long devices = std::max(1L, flags.Long("--devices", 32));
  const size_t diff_lines = static_cast<size_t>(std::max(0L, flags.Long("--diff-lines", 3)));

  // ---- recording ----
  efadra::observe::Registry ours;
  auto ours_family = ours.Counter("bench_total", "Bench counter.", {"verb", "code"});
  auto ours_hist_family = ours.Histogram("bench_seconds", "Bench histogram.", {"verb"});
  if (!ours_family.ok() || !ours_hist_family.ok()) {
    std::fprintf(stderr, "metrics_library_bench: cannot register the bench families\n");
    return 1;
  }
  efadra::observe::Counter& ours_counter = (*ours_family)->WithLabels({"GET", "200"});
  efadra::observe::Histogram& ours_hist = (*ours_hist_family)->WithLabels({"GET"});

  prometheus::Registry theirs;
  auto& theirs_family = prometheus::BuildCounter().Name("bench_total").Help("Bench counter.")
                            .Register(theirs);
  auto& theirs_hist_family = prometheus::BuildHistogram().Name("bench_seconds")
                                 .Help("Bench histogram.").Register(theirs);
  prometheus::Counter& theirs_counter = theirs_family.Add({{"verb", "GET"}, {"code", "200"}});
  prometheus::Histogram& theirs_hist =
      theirs_hist_family.Add({{"verb", "GET"}}, efadra::observe::DefaultLatencyBuckets());

  // Observed values spread over the buckets (0.05 ms .. ~20 s), precomputed.
  std::vector<double> values(1024);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.00005 * std::pow(1.013, double(i));
  auto value = [&](long i) { return values[static_cast<size_t>(i) & 1023]; };

  // Warm up both (code paths, allocations), then measure.
  for (int i = 0; i < 10000; ++i) {
    ours_counter.Inc();
    theirs_counter.Increment();
  }

  const long lookup_ops = ops / 10;  // lookups are ~10x slower; keep the run short
  struct Measured {
    const char* what;
    Quantiles ours, theirs;
  };
  std::vector<Measured> rows;
  rows.push_back({"counter Inc, cached child, 1 thread",
                  Summarise(TimeBatches(ops, batch, [&](long) { ours_counter.Inc(); })),
                  Summarise(TimeBatches(ops, batch, [&](long) { theirs_counter.Increment(); }))});
  rows.push_back(
      {"counter Inc, cached child, 2 threads",
       Summarise(TimeContended(ops, batch, [&](long) { ours_counter.Inc(); })),
       Summarise(TimeContended(ops, batch, [&](long) { theirs_counter.Increment(); }))});
  rows.push_back(
      {"counter lookup {verb,code} + Inc, 1 thread",
       Summarise(TimeBatches(lookup_ops, batch,
                             [&](long) { (*ours_family)->WithLabels({"GET", "200"}).Inc(); })),
       Summarise(TimeBatches(lookup_ops, batch, [&](long) {
         theirs_family.Add({{"verb", "GET"}, {"code", "200"}}).Increment();
       }))});
  rows.push_back(
      {"counter lookup {verb,code} + Inc, 2 threads",
       Summarise(TimeContended(lookup_ops, batch,
                               [&](long) { (*ours_family)->WithLabels({"GET", "200"}).Inc(); })),
       Summarise(TimeContended(lookup_ops, batch, [&](long) {
         theirs_family.Add({{"verb", "GET"}, {"code", "200"}}).Increment();
       }))});
  rows.push_back(
      {"histogram Observe, cached child, 1 thread",
       Summarise(TimeBatches(ops, batch, [&](long i) { ours_hist.Observe(value(i)); })),
       Summarise(TimeBatches(ops, batch, [&](long i) { theirs_hist.Observe(value(i)); }))});
  rows.push_back(
      {"histogram Observe, cached child, 2 threads",
       Summarise(TimeContended(ops, batch, [&](long i) { ours_hist.Observe(value(i)); })),
       Summarise(TimeContended(ops, batch, [&](long i) { theirs_hist.Observe(value(i)); }))});

  // Both ran the same calls, so both must hold the same count, else a timing measured nothing.
  std::printf("counts after the run: ours %.0f, prometheus-cpp %.0f (must be equal)\n",
              ours_counter.Value(), theirs_counter.Value());
  if (ours_counter.Value() != theirs_counter.Value()) {
    std::fprintf(stderr, "metrics_library_bench: the two counters disagree\n");
    return 1;
  }

  // ---- scrape of a driver-shaped registry ----
  const long heap_before_ours = HeapBytes();
  auto driver_ours = std::make_unique<efadra::observe::Registry>();
  auto driver_metrics = FillOurs(*driver_ours, devices);
  const long heap_ours = HeapBytes() - heap_before_ours;
  const long heap_before_theirs = HeapBytes();
  auto driver_theirs = std::make_unique<prometheus::Registry>();
  FillTheirs(*driver_theirs, devices);
  const long heap_theirs = HeapBytes() - heap_before_theirs;

  std::string text_ours = driver_ours->Render();
  std::string text_theirs = RenderTheirs(*driver_theirs);
  std::vector<double> scrape_ours, scrape_theirs;
  size_t bytes_ours = 0, bytes_theirs = 0;
  for (long i = 0; i < scrapes; ++i) {
    auto start = Clock::now();
    std::string a = driver_ours->Render();
    scrape_ours.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    start = Clock::now();
    std::string b = RenderTheirs(*driver_theirs);
    scrape_theirs.push_back(
        std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    bytes_ours = a.size();
    bytes_theirs = b.size();
  }
  rows.push_back({"scrape (render) of the driver's set", Summarise(scrape_ours),
                  Summarise(scrape_theirs)});

  std::printf("\nmetrics_library_bench: --ops %ld --batch %ld --scrapes %ld --devices %ld\n", ops,
              batch, scrapes, devices);
  std::printf("  %-44s %8s %8s %8s   %8s %8s %8s\n", "", "ours p50", "p90", "p99", "prom p50",
              "p90", "p99");
  for (size_t i = 0; i < rows.size(); ++i) {
    PrintRow(rows[i].what, rows[i].ours, rows[i].theirs, i + 1 == rows.size() ? "us" : "ns");
  }

  const auto lines_ours = SampleLines(text_ours);
  const auto lines_theirs = SampleLines(text_theirs);
  std::vector<std::string> only_ours, only_theirs;
  std::set_difference(lines_ours.begin(), lines_ours.end(), lines_theirs.begin(),
                      lines_theirs.end(), std::back_inserter(only_ours));
  std::set_difference(lines_theirs.begin(), lines_theirs.end(), lines_ours.begin(),
                      lines_ours.end(), std::back_inserter(only_theirs));
  std::printf("\ndriver-shaped registry (%ld devices): %zu sample lines ours, %zu prometheus-cpp; "
              "%zu bytes ours, %zu prometheus-cpp\n",
              devices, lines_ours.size(), lines_theirs.size(), bytes_ours, bytes_theirs);
  std::printf("  sample lines that differ: %zu only in ours, %zu only in prometheus-cpp; e.g.\n",
              only_ours.size(), only_theirs.size());
  for (size_t i = 0; i < diff_lines && i < only_ours.size(); ++i) {
    std::printf("    ours: %s\n", only_ours[i].c_str());
  }
  for (size_t i = 0; i < diff_lines && i < only_theirs.size(); ++i) {
    std::printf("    prom: %s\n", only_theirs[i].c_str());
  }
  std::printf("  heap held by the registry: ours %.1f KiB, prometheus-cpp %.1f KiB\n",
              heap_ours / 1024.0, heap_theirs / 1024.0);

  // ---- the library's footprint ----
  const MappingMemory lib = SampleMappings("prometheus");
  std::printf("\nprometheus-cpp mappings in this process (after every path above ran):\n");
  for (const auto& path : lib.paths) {
    struct stat st {};
    char real[4096];
    const char* resolved = ::realpath(path.c_str(), real) != nullptr ? real : path.c_str();
    ::stat(resolved, &st);
    std::printf("  %s: %ld bytes on disk\n", resolved, static_cast<long>(st.st_size));
  }
  std::printf("  mapped %ld KiB; Rss %ld KiB = shared %ld (clean %ld + dirty %ld) + private %ld "
              "(clean %ld + dirty %ld); Pss %ld KiB\n",
              lib.size, lib.rss, lib.shared_clean + lib.shared_dirty, lib.shared_clean,
              lib.shared_dirty, lib.private_clean + lib.private_dirty, lib.private_clean,
              lib.private_dirty, lib.pss);
  const auto process = efadra::bench::SampleProcess(0);
  std::printf("  this process: VmRSS %ld KiB\n", process.rss_kib);
  for (const auto& path : lib.paths) {
    std::printf("  ldd %s:\n%s", path.c_str(), Run("ldd '" + path + "' 2>&1").c_str());
  }
  return 0;
}
