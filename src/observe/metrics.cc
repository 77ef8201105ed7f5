#include "efadra/observe/metrics.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

namespace efadra::observe {
namespace {

// Each thread sticks to one shard, assigned round-robin on its first increment, so up to
// kShards concurrent writers never share a cache line.
size_t ThreadShard(size_t shards) {
  static std::atomic<size_t> next{0};
  thread_local const size_t index = next.fetch_add(1, std::memory_order_relaxed);
  return index % shards;
}

std::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string JoinLabels(const LabelValues& values) {
  std::string out;
  for (const auto& v : values) {
    if (!out.empty()) out += ",";
    out += v;
  }
  return out;
}

// Appends {a="x",b="y"[,le="0.1"]} (nothing when there are no labels at all).
void AppendLabels(std::string& out, const std::vector<std::string>& names,
                  const LabelValues& values, std::string_view le = {}) {
  if (names.empty() && le.empty()) return;
  out += '{';
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i];
    out += "=\"";
    out += EscapeLabelValue(values[i]);
    out += '"';
  }
  if (!le.empty()) {
    if (!names.empty()) out += ',';
    out += "le=\"";
    out += le;
    out += '"';
  }
  out += '}';
}

void AppendSample(std::string& out, std::string_view name, std::string_view suffix,
                  const std::vector<std::string>& label_names, const LabelValues& values,
                  double value, std::string_view le = {}) {
  out += name;
  out += suffix;
  AppendLabels(out, label_names, values, le);
  out += ' ';
  out += FormatMetricValue(value);
  out += '\n';
}

template <typename Child>
void AppendHeader(std::string& out, const Family<Child>& family) {
  out += "# HELP ";
  out += family.name();
  out += ' ';
  out += EscapeHelp(family.help());
  out += "\n# TYPE ";
  out += family.name();
  out += ' ';
  out += TypeName(family.type());
  out += '\n';
}

void RenderFamily(std::string& out, const CounterFamily& family) {
  auto children = family.Children();
  if (children.empty()) return;
  AppendHeader(out, family);
  for (const auto& [values, child] : children) {
    AppendSample(out, family.name(), "", family.label_names(), values, child->Value());
  }
}

void RenderFamily(std::string& out, const GaugeFamily& family) {
  auto children = family.Children();
  if (children.empty()) return;
  AppendHeader(out, family);
  for (const auto& [values, child] : children) {
    AppendSample(out, family.name(), "", family.label_names(), values, child->Value());
  }
}

void RenderFamily(std::string& out, const HistogramFamily& family) {
  auto children = family.Children();
  if (children.empty()) return;
  AppendHeader(out, family);
  for (const auto& [values, child] : children) {
    Histogram::Snapshot snap = child->Snap();
    for (size_t i = 0; i < snap.upper_bounds.size(); ++i) {
      AppendSample(out, family.name(), "_bucket", family.label_names(), values,
                   static_cast<double>(snap.cumulative_counts[i]),
                   FormatMetricValue(snap.upper_bounds[i]));
    }
    AppendSample(out, family.name(), "_bucket", family.label_names(), values,
                 static_cast<double>(snap.count), "+Inf");
    AppendSample(out, family.name(), "_sum", family.label_names(), values, snap.sum);
    AppendSample(out, family.name(), "_count", family.label_names(), values,
                 static_cast<double>(snap.count));
  }
}

}  // namespace

// ---- Counter, Gauge, Histogram ----

void Counter::Add(double delta) {
  if (!(delta > 0.0)) return;  // also rejects NaN
  shards_[ThreadShard(kShards)].value.fetch_add(delta, std::memory_order_relaxed);
}

double Counter::Value() const {
  double total = 0.0;
  for (const auto& shard : shards_) total += shard.value.load(std::memory_order_relaxed);
  return total;
}

void Gauge::SetFunction(std::function<double()> fn) {
  std::lock_guard<std::mutex> lock(function_mu_);
  has_function_.store(static_cast<bool>(fn), std::memory_order_release);
  function_ = std::move(fn);
}

double Gauge::Value() const {
  if (has_function_.load(std::memory_order_acquire)) {
    // Held while the function runs so SetFunction() can promise the old one has finished.
    std::lock_guard<std::mutex> lock(function_mu_);
    if (function_) return function_();
  }
  return value_.load(std::memory_order_relaxed);
}

Histogram::Histogram(const std::vector<double>& upper_bounds)
    : upper_bounds_(upper_bounds), counts_(upper_bounds.size() + 1) {}

void Histogram::Observe(double value) {
  size_t bucket = upper_bounds_.size();  // +Inf
  if (!std::isnan(value)) {
    // First bound >= value: buckets are "less than or equal" (le).
    bucket =
        static_cast<size_t>(std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) -
                            upper_bounds_.begin());
  }
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Snap() const {
  Snapshot snap;
  snap.upper_bounds = upper_bounds_;
  snap.cumulative_counts.reserve(counts_.size());
  uint64_t running = 0;
  for (const auto& count : counts_) {
    running += count.load(std::memory_order_relaxed);
    snap.cumulative_counts.push_back(running);
  }
  snap.count = running;
  snap.sum = sum_.load(std::memory_order_relaxed);
  return snap;
}

// ---- Family ----

template <typename Child>
Family<Child>::Family(std::string name, std::string help, MetricType type,
                      std::vector<std::string> labels, std::vector<double> buckets)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(labels)),
      buckets_(std::move(buckets)),
      detached_(MakeChild()) {
  if (label_names_.empty()) children_.emplace(LabelValues{}, Entry{MakeChild(), true});
}

template <typename Child>
std::unique_ptr<Child> Family<Child>::MakeChild() const {
  if constexpr (std::is_same_v<Child, Histogram>) {
    return std::make_unique<Histogram>(buckets_);
  } else {
    return std::make_unique<Child>();
  }
}

template <typename Child>
Child& Family<Child>::WithLabels(std::initializer_list<std::string_view> values) {
  LabelValues copy;
  copy.reserve(values.size());
  for (std::string_view v : values) copy.emplace_back(v);
  return WithLabels(copy);
}

template <typename Child>
Child& Family<Child>::WithLabels(const LabelValues& values) {
  if (values.size() != label_names_.size()) {
    std::call_once(mismatch_logged_, [&] {
      spdlog::error("metric {}: got {} label values ({}) for {} label names; not recorded", name_,
                    values.size(), JoinLabels(values), label_names_.size());
    });
    return *detached_;
  }
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    auto it = children_.find(values);
    if (it != children_.end() && it->second.visible) return *it->second.child;
  }
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto [it, inserted] = children_.try_emplace(values);
  if (inserted) it->second.child = MakeChild();
  it->second.visible = true;
  return *it->second.child;
}

template <typename Child>
void Family<Child>::Remove(const LabelValues& values) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = children_.find(values);
  if (it != children_.end()) it->second.visible = false;
}

template <typename Child>
std::vector<std::pair<LabelValues, const Child*>> Family<Child>::Children() const {
  std::vector<std::pair<LabelValues, const Child*>> out;
  std::shared_lock<std::shared_mutex> lock(mu_);
  out.reserve(children_.size());
  for (const auto& [values, entry] : children_) {
    if (entry.visible) out.emplace_back(values, entry.child.get());
  }
  return out;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---- names ----

std::vector<double> DefaultLatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

Status ValidateMetricName(std::string_view name) {
  bool ok = !name.empty() && (IsNameStart(name[0]) || name[0] == ':');
  for (size_t i = 1; ok && i < name.size(); ++i) {
    ok = IsNameStart(name[i]) || IsDigit(name[i]) || name[i] == ':';
  }
  if (!ok) {
    return InvalidArgumentError("metric name \"" + std::string(name) +
                                "\" does not match [a-zA-Z_:][a-zA-Z0-9_:]*");
  }
  return Status::Ok();
}

Status ValidateLabelName(std::string_view name) {
  bool ok = !name.empty() && IsNameStart(name[0]);
  for (size_t i = 1; ok && i < name.size(); ++i) ok = IsNameStart(name[i]) || IsDigit(name[i]);
  if (!ok) {
    return InvalidArgumentError("label name \"" + std::string(name) +
                                "\" does not match [a-zA-Z_][a-zA-Z0-9_]*");
  }
  if (name.substr(0, 2) == "__") {
    return InvalidArgumentError("label name \"" + std::string(name) +
                                "\" is reserved (starts with \"__\")");
  }
  return Status::Ok();
}

// ---- Registry ----

Status Registry::CheckDefinition(std::string_view name, MetricType type, std::string_view help,
                                 const std::vector<std::string>& label_names,
                                 const std::vector<double>* buckets, const Entry** existing) const {
  *existing = nullptr;
  EFADRA_RETURN_IF_ERROR(ValidateMetricName(name));
  std::set<std::string_view> seen;
  for (const auto& label : label_names) {
    EFADRA_RETURN_IF_ERROR(ValidateLabelName(label).WithContext("metric " + std::string(name)));
    if (!seen.insert(label).second) {
      return InvalidArgumentError("metric " + std::string(name) + ": label name \"" + label +
                                  "\" appears twice");
    }
    if (type == MetricType::kHistogram && label == "le") {
      return InvalidArgumentError("metric " + std::string(name) +
                                  ": label name \"le\" is reserved for histogram buckets");
    }
  }
  if (buckets != nullptr) {
    for (size_t i = 0; i < buckets->size(); ++i) {
      double b = (*buckets)[i];
      if (std::isnan(b) || (i > 0 && !((*buckets)[i - 1] < b))) {
        return InvalidArgumentError("metric " + std::string(name) +
                                    ": histogram buckets must be strictly increasing numbers");
      }
    }
  }
  auto it = families_.find(name);
  if (it == families_.end()) return Status::Ok();
  const Entry& entry = it->second;
  bool same = entry.type == type;
  if (same) {
    switch (type) {
      case MetricType::kCounter:
        same = entry.counter->help() == help && entry.counter->label_names() == label_names;
        break;
      case MetricType::kGauge:
        same = entry.gauge->help() == help && entry.gauge->label_names() == label_names;
        break;
      case MetricType::kHistogram:
        same = entry.histogram->help() == help && entry.histogram->label_names() == label_names &&
               entry.histogram->buckets() == *buckets;
        break;
    }
  }
  if (!same) {
    return AlreadyExistsError("metric " + std::string(name) +
                              " is already registered with a different type, help, labels "
                              "or buckets");
  }
  *existing = &entry;
  return Status::Ok();
}

Result<CounterFamily*> Registry::Counter(std::string_view name, std::string_view help,
                                         std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> lock(mu_);
  const Entry* existing = nullptr;
  EFADRA_RETURN_IF_ERROR(
      CheckDefinition(name, MetricType::kCounter, help, label_names, nullptr, &existing));
  if (existing != nullptr) return existing->counter.get();
  Entry entry{MetricType::kCounter, nullptr, nullptr, nullptr};
  entry.counter =
      std::make_unique<CounterFamily>(std::string(name), std::string(help), MetricType::kCounter,
                                      std::move(label_names), std::vector<double>{});
  return families_.emplace(std::string(name), std::move(entry)).first->second.counter.get();
}

Result<GaugeFamily*> Registry::Gauge(std::string_view name, std::string_view help,
                                     std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> lock(mu_);
  const Entry* existing = nullptr;
  EFADRA_RETURN_IF_ERROR(
      CheckDefinition(name, MetricType::kGauge, help, label_names, nullptr, &existing));
  if (existing != nullptr) return existing->gauge.get();
  Entry entry{MetricType::kGauge, nullptr, nullptr, nullptr};
  entry.gauge =
      std::make_unique<GaugeFamily>(std::string(name), std::string(help), MetricType::kGauge,
                                    std::move(label_names), std::vector<double>{});
  return families_.emplace(std::string(name), std::move(entry)).first->second.gauge.get();
}

Result<HistogramFamily*> Registry::Histogram(std::string_view name, std::string_view help,
                                             std::vector<std::string> label_names,
                                             std::vector<double> buckets) {
  // +Inf is always the last bucket; accept it spelled out but store only the finite bounds.
  if (!buckets.empty() && std::isinf(buckets.back()) && buckets.back() > 0) buckets.pop_back();
  for (double b : buckets) {
    if (std::isinf(b)) {
      return InvalidArgumentError("metric " + std::string(name) +
                                  ": histogram buckets must be finite (+Inf is implied)");
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  const Entry* existing = nullptr;
  EFADRA_RETURN_IF_ERROR(
      CheckDefinition(name, MetricType::kHistogram, help, label_names, &buckets, &existing));
  if (existing != nullptr) return existing->histogram.get();
  Entry entry{MetricType::kHistogram, nullptr, nullptr, nullptr};
  entry.histogram = std::make_unique<HistogramFamily>(std::string(name), std::string(help),
                                                      MetricType::kHistogram,
                                                      std::move(label_names), std::move(buckets));
  return families_.emplace(std::string(name), std::move(entry)).first->second.histogram.get();
}

Result<observe::Gauge*> Registry::GaugeFunction(std::string_view name, std::string_view help,
                                                std::function<double()> fn) {
  EFADRA_ASSIGN_OR_RETURN(GaugeFamily * family, Gauge(name, help));
  observe::Gauge& gauge = family->WithLabels(LabelValues{});
  gauge.SetFunction(std::move(fn));
  return &gauge;
}

std::string Registry::Render() const {
  // Collect the families first: they are never removed, so the pointers stay valid after the
  // lock is dropped and gauge callbacks never run under the registry lock.
  std::vector<const Entry*> entries;
  {
    std::lock_guard<std::mutex> lock(mu_);
    entries.reserve(families_.size());
    for (const auto& [name, entry] : families_) entries.push_back(&entry);
  }
  std::string out;
  for (const Entry* entry : entries) {
    switch (entry->type) {
      case MetricType::kCounter:
        RenderFamily(out, *entry->counter);
        break;
      case MetricType::kGauge:
        RenderFamily(out, *entry->gauge);
        break;
      case MetricType::kHistogram:
        RenderFamily(out, *entry->histogram);
        break;
    }
  }
  return out;
}

// ---- formatting ----

std::string FormatMetricValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == 0.0) return "0";
  // Go's strconv.FormatFloat(v, 'g', -1, 64), which the Prometheus clients use: the shortest
  // digits that round-trip, in exponent form when the decimal exponent is < -4 or >= 6
  // (hence "1e+06" but "100000"). std::to_chars gives the same shortest digits.
  char buf[64];
  auto sci = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  std::string_view text(buf, static_cast<size_t>(sci.ptr - buf));
  size_t e = text.find('e');
  int exponent = 0;
  std::from_chars(text.data() + e + (text[e + 1] == '+' ? 2 : 1), text.data() + text.size(),
                  exponent);
  if (exponent < -4 || exponent >= 6) return std::string(text);
  auto fixed = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::fixed);
  return std::string(buf, static_cast<size_t>(fixed.ptr - buf));
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace efadra::observe
