// Prometheus metrics: a Registry of counter, gauge and histogram families with label sets,
// rendered in the text exposition format 0.0.4 (served by HttpServer at /metrics).
//
// Ownership: main() owns one Registry and hands `observe::Registry*` (or the DriverMetrics built
// on it, driver_metrics.h) to the modules that record. Families and their children live as long
// as the Registry; references returned by Registry::Counter()/WithLabels() stay valid until
// then, so hot paths may cache them.
//
// Thread safety: everything here may be used from any number of threads at once. Recording
// (Counter::Add, Gauge::Set, Histogram::Observe) is lock-free; counters are sharded per thread
// so concurrent increments from prepare calls do not bounce one cache line. WithLabels takes a
// shared lock (exclusive only the first time a label set is seen). Render takes the same locks
// briefly and runs gauge callbacks outside them.
//
// Usage:
//   auto family = registry.Counter("efa_dra_prepare_total", "Prepare calls.",
//                                  {"api_version", "result"});
//   if (!family.ok()) return family.status();
//   (*family)->WithLabels({"v1", "ok"}).Inc();
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "efadra/core/status.h"

namespace efadra::observe {

enum class MetricType { kCounter, kGauge, kHistogram };

// A monotonically increasing value (a count of events).
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  void Inc() { Add(1.0); }
  // Negative and NaN deltas are ignored: a counter never goes down.
  void Add(double delta);
  // The sum over all shards.
  double Value() const;

 private:
  static constexpr size_t kShards = 8;
  struct alignas(64) Shard {
    std::atomic<double> value{0.0};
  };
  std::array<Shard, kShards> shards_;
};

// A value that goes up and down, or is computed at scrape time by a callback.
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  void Inc() { Add(1.0); }
  void Dec() { Add(-1.0); }
  void SetBool(bool value) { Set(value ? 1.0 : 0.0); }

  // From now on Value() is `fn()`, called on the scraping thread (keep it fast and
  // thread-safe). An empty function returns to the stored value. When SetFunction returns, the
  // previous function is no longer running, so its captures may then be destroyed: owners of
  // captured objects call SetFunction(nullptr) before they go away.
  void SetFunction(std::function<double()> fn);

  double Value() const;

 private:
  std::atomic<double> value_{0.0};
  std::atomic<bool> has_function_{false};
  mutable std::mutex function_mu_;
  std::function<double()> function_;  // guarded by function_mu_
};

// Counts observations into buckets with fixed upper bounds (le, inclusive) plus +Inf.
class Histogram {
 public:
  // `upper_bounds` is owned by the family and outlives the histogram; strictly increasing and
  // finite (Registry validates).
  explicit Histogram(const std::vector<double>& upper_bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // NaN lands in the +Inf bucket (and makes the sum NaN), as in the Prometheus clients.
  void Observe(double value);
  // Observes the duration in seconds.
  void ObserveDuration(std::chrono::nanoseconds duration) {
    Observe(std::chrono::duration<double>(duration).count());
  }

  struct Snapshot {
    std::vector<double> upper_bounds;         // without +Inf
    std::vector<uint64_t> cumulative_counts;  // one per bound, then +Inf (== count)
    double sum = 0.0;
    uint64_t count = 0;
  };
  Snapshot Snap() const;

 private:
  const std::vector<double>& upper_bounds_;
  std::vector<std::atomic<uint64_t>> counts_;  // per bucket (not cumulative); last is +Inf
  std::atomic<double> sum_{0.0};
};

// The label values of one child, in the order of the family's label names.
using LabelValues = std::vector<std::string>;

// A metric name with its label names and one child per distinct label-value set.
// Instantiated for Counter, Gauge and Histogram (CounterFamily, GaugeFamily, HistogramFamily).
template <typename Child>
class Family {
 public:
  Family(std::string name, std::string help, MetricType type, std::vector<std::string> labels,
         std::vector<double> buckets);
  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;

  // The child for these label values (created on first use). Values may be any UTF-8
  // (escaped when rendered). A wrong number of values is a programming error: it is logged
  // once and a detached child that is never rendered is returned, so callers need no error path.
  Child& WithLabels(std::initializer_list<std::string_view> values);
  Child& WithLabels(const LabelValues& values);

  // Stops rendering this child (e.g. a device that went away). The child object stays alive,
  // so references held elsewhere remain valid; the next WithLabels() for the same values shows
  // it again with its old state.
  void Remove(const LabelValues& values);

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  const std::vector<double>& buckets() const { return buckets_; }  // histograms only

  // The visible children, sorted by label values (the order Render uses).
  std::vector<std::pair<LabelValues, const Child*>> Children() const;

 private:
  struct Entry {
    std::unique_ptr<Child> child;
    bool visible = true;
  };
  std::unique_ptr<Child> MakeChild() const;

  const std::string name_;
  const std::string help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
  const std::vector<double> buckets_;
  mutable std::shared_mutex mu_;
  std::map<LabelValues, Entry> children_;  // guarded by mu_
  std::unique_ptr<Child> detached_;        // for label-count mistakes; never rendered
  std::once_flag mismatch_logged_;
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

// Latency buckets in seconds from 0.1 ms to 10 s (prepare, API calls, discovery).
std::vector<double> DefaultLatencyBuckets();

// Prometheus naming rules (validated at registration).
// Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*. Label names: [a-zA-Z_][a-zA-Z0-9_]*, not starting
// with "__" (reserved). kInvalidArgument naming the offending name otherwise.
Status ValidateMetricName(std::string_view name);
Status ValidateLabelName(std::string_view name);

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registers a family, or returns the existing one when name, type, help, label names (and
  // buckets) all match, so two modules may ask for the same metric.
  // kInvalidArgument: bad metric or label name, duplicate label name, "le" on a histogram,
  //   histogram buckets not strictly increasing or NaN (+Inf is implied and may be omitted).
  // kAlreadyExists: the name is taken by a different definition.
  // A family without labels has its single child created at once, so it renders as 0 from
  // the first scrape; a labelled family renders nothing until a child exists.
  Result<CounterFamily*> Counter(std::string_view name, std::string_view help,
                                 std::vector<std::string> label_names = {});
  Result<GaugeFamily*> Gauge(std::string_view name, std::string_view help,
                             std::vector<std::string> label_names = {});
  Result<HistogramFamily*> Histogram(std::string_view name, std::string_view help,
                                     std::vector<std::string> label_names = {},
                                     std::vector<double> buckets = DefaultLatencyBuckets());

  // An unlabelled gauge whose value is fn() at scrape time (see Gauge::SetFunction).
  Result<observe::Gauge*> GaugeFunction(std::string_view name, std::string_view help,
                                        std::function<double()> fn);

  // All families in the text exposition format 0.0.4, sorted by name then label values.
  std::string Render() const;

 private:
  struct Entry {
    MetricType type;
    std::unique_ptr<CounterFamily> counter;
    std::unique_ptr<GaugeFamily> gauge;
    std::unique_ptr<HistogramFamily> histogram;
  };
  // Validates and checks for an existing family of the same definition.
  Status CheckDefinition(std::string_view name, MetricType type, std::string_view help,
                         const std::vector<std::string>& label_names,
                         const std::vector<double>* buckets, const Entry** existing) const;

  mutable std::mutex mu_;
  std::map<std::string, Entry, std::less<>> families_;  // guarded by mu_
};

// The Content-Type of Registry::Render() output.
inline constexpr char kExpositionContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// Exposition helpers, exposed for tests and for other renderers.
// A float the way the Prometheus Go client prints it: shortest round-trip digits, exponent
// form below 1e-4 and from 1e6 up ("1.5e+06"), "+Inf", "-Inf", "NaN".
std::string FormatMetricValue(double value);
// Label value escaping: backslash, double quote and newline.
std::string EscapeLabelValue(std::string_view value);
// HELP escaping: backslash and newline.
std::string EscapeHelp(std::string_view help);

}  // namespace efadra::observe
