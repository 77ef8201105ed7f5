#include "efadra/observe/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

namespace efadra::observe {
namespace {

TEST(FormatMetricValueTest, MatchesPrometheusGoClient) {
  const double kInf = std::numeric_limits<double>::infinity();
  struct Case {
    double value;
    std::string want;
  };
  const Case kCases[] = {
      {0, "0"},
      {1, "1"},
      {-1.5, "-1.5"},
      {2.5, "2.5"},
      {0.1, "0.1"},
      {0.0001, "0.0001"},
      {0.00025, "0.00025"},
      {0.00001, "1e-05"},
      {100000, "100000"},
      {1e6, "1e+06"},
      {1234567, "1.234567e+06"},
      {1.7e9, "1.7e+09"},
      {kInf, "+Inf"},
      {-kInf, "-Inf"},
      {std::nan(""), "NaN"},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.want);
    EXPECT_EQ(FormatMetricValue(c.value), c.want);
  }
}

TEST(EscapeTest, LabelValuesAndHelp) {
  struct Case {
    std::string in, label, help;
  };
  const Case kCases[] = {
      {"plain", "plain", "plain"},
      {"a\\b", "a\\\\b", "a\\\\b"},
      {"say \"hi\"", "say \\\"hi\\\"", "say \"hi\""},
      {"two\nlines", "two\\nlines", "two\\nlines"},
      {"tab\tstays", "tab\tstays", "tab\tstays"},
      {"caf\xc3\xa9", "caf\xc3\xa9", "caf\xc3\xa9"},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.in);
    EXPECT_EQ(EscapeLabelValue(c.in), c.label);
    EXPECT_EQ(EscapeHelp(c.in), c.help);
  }
}

TEST(RegistryTest, RendersGoldenExposition) {
  Registry registry;
  auto requests = registry.Counter("efa_test_requests_total",
                                   "Requests by \"path\".\nSecond \\ line.", {"path", "code"});
  ASSERT_TRUE(requests.ok()) << requests.status().ToString();
  (*requests)->WithLabels({"/a\"b\\c\nd", "500"}).Inc();
  (*requests)->WithLabels({"/a", "200"}).Add(3);
  auto temperature = registry.Gauge("efa_test_temperature", "Temp.");
  ASSERT_TRUE(temperature.ok());
  (*temperature)->WithLabels({}).Set(-2.5);
  auto latency = registry.Histogram("efa_test_latency_seconds", "Latency.", {"op"}, {0.25, 0.5, 1});
  ASSERT_TRUE(latency.ok()) << latency.status().ToString();
  Histogram& read = (*latency)->WithLabels({"read"});
  read.Observe(0.125);
  read.Observe(0.5);
  read.Observe(4);

  const std::string kWant =
      "# HELP efa_test_latency_seconds Latency.\n"
      "# TYPE efa_test_latency_seconds histogram\n"
      "efa_test_latency_seconds_bucket{op=\"read\",le=\"0.25\"} 1\n"
      "efa_test_latency_seconds_bucket{op=\"read\",le=\"0.5\"} 2\n"
      "efa_test_latency_seconds_bucket{op=\"read\",le=\"1\"} 2\n"
      "efa_test_latency_seconds_bucket{op=\"read\",le=\"+Inf\"} 3\n"
      "efa_test_latency_seconds_sum{op=\"read\"} 4.625\n"
      "efa_test_latency_seconds_count{op=\"read\"} 3\n"
      "# HELP efa_test_requests_total Requests by \"path\".\\nSecond \\\\ line.\n"
      "# TYPE efa_test_requests_total counter\n"
      "efa_test_requests_total{path=\"/a\",code=\"200\"} 3\n"
      "efa_test_requests_total{path=\"/a\\\"b\\\\c\\nd\",code=\"500\"} 1\n"
      "# HELP efa_test_temperature Temp.\n"
      "# TYPE efa_test_temperature gauge\n"
      "efa_test_temperature -2.5\n";
  EXPECT_EQ(registry.Render(), kWant);
  // Deterministic: a second scrape of unchanged state is byte-identical.
  EXPECT_EQ(registry.Render(), kWant);
}

TEST(RegistryTest, UnlabelledHistogramAndEmptyFamilies) {
  Registry registry;
  auto h = registry.Histogram("h_seconds", "H.", {}, {1});
  ASSERT_TRUE(h.ok());
  auto labelled = registry.Counter("c_total", "C.", {"kind"});
  ASSERT_TRUE(labelled.ok());
  // The labelled counter has no child yet, so only the histogram (zeroed) renders.
  EXPECT_EQ(registry.Render(),
            "# HELP h_seconds H.\n"
            "# TYPE h_seconds histogram\n"
            "h_seconds_bucket{le=\"1\"} 0\n"
            "h_seconds_bucket{le=\"+Inf\"} 0\n"
            "h_seconds_sum 0\n"
            "h_seconds_count 0\n");
}

TEST(RegistryTest, ConcurrentIncrementsSumExactly) {
  Registry registry;
  auto family = registry.Counter("efa_test_total", "Test.", {"result"});
  ASSERT_TRUE(family.ok());
  auto hist = registry.Histogram("efa_test_seconds", "Test.", {});
  ASSERT_TRUE(hist.ok());
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        (*family)->WithLabels({t % 2 == 0 ? "ok" : "error"}).Inc();
        (*hist)->WithLabels({}).Observe(0.001);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ((*family)->WithLabels({"ok"}).Value(), kThreads / 2 * kPerThread);
  EXPECT_EQ((*family)->WithLabels({"error"}).Value(), kThreads / 2 * kPerThread);
  EXPECT_EQ((*hist)->WithLabels({}).Snap().count, uint64_t{kThreads} * kPerThread);
  const std::string text = registry.Render();
  EXPECT_NE(text.find("efa_test_total{result=\"ok\"} 400000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("efa_test_seconds_count 800000\n"), std::string::npos) << text;
}

TEST(RegistryTest, RejectsInvalidNames) {
  struct Case {
    std::string name;
    std::vector<std::string> labels;
    bool histogram;
    bool valid;
  };
  const Case kCases[] = {
      {"efa_dra_prepare_total", {"api_version", "result"}, false, true},
      {"_private:sub", {"_x", "A9"}, false, true},
      {":colon_first", {}, false, true},
      {"", {}, false, false},
      {"1starts_with_digit", {}, false, false},
      {"has-dash", {}, false, false},
      {"has space", {}, false, false},
      {"caf\xc3\xa9", {}, false, false},
      {"ok_name", {""}, false, false},
      {"ok_name", {"__reserved"}, false, false},
      {"ok_name", {"has:colon"}, false, false},
      {"ok_name", {"9digit"}, false, false},
      {"ok_name", {"dup", "dup"}, false, false},
      {"ok_name", {"le"}, false, true},  // "le" is only reserved for histograms
      {"ok_hist", {"le"}, true, false},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name + " labels=" + std::to_string(c.labels.size()));
    Registry registry;
    Status status = c.histogram ? registry.Histogram(c.name, "help", c.labels).status()
                                : registry.Gauge(c.name, "help", c.labels).status();
    if (c.valid) {
      EXPECT_TRUE(status.ok()) << status.ToString();
    } else {
      EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
      EXPECT_FALSE(status.message().empty());
    }
  }
}

TEST(RegistryTest, RejectsBadBuckets) {
  const double kInf = std::numeric_limits<double>::infinity();
  struct Case {
    std::string what;
    std::vector<double> buckets;
    bool valid;
  };
  const Case kCases[] = {
      {"increasing", {0.1, 1, 10}, true}, {"only +Inf", {}, true},
      {"explicit +Inf", {1, kInf}, true}, {"decreasing", {1, 0.5}, false},
      {"duplicate", {1, 1}, false},       {"NaN", {std::nan("")}, false},
      {"-Inf", {-kInf, 1}, false},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.what);
    Registry registry;
    Status status = registry.Histogram("h", "help", {}, c.buckets).status();
    EXPECT_EQ(status.ok(), c.valid) << status.ToString();
  }
}

TEST(RegistryTest, SameDefinitionReturnsSameFamily) {
  Registry registry;
  auto a = registry.Counter("x_total", "X.", {"k"});
  auto b = registry.Counter("x_total", "X.", {"k"});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(registry.Counter("x_total", "Other help.", {"k"}).status().code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(registry.Counter("x_total", "X.", {"j"}).status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(registry.Gauge("x_total", "X.", {"k"}).status().code(), StatusCode::kAlreadyExists);
  auto h1 = registry.Histogram("h", "H.", {}, {1, 2});
  ASSERT_TRUE(h1.ok());
  EXPECT_EQ(registry.Histogram("h", "H.", {}, {1, 3}).status().code(), StatusCode::kAlreadyExists);
}

TEST(HistogramTest, BucketBoundariesAreInclusive) {
  const std::vector<double> bounds = {1, 2, 5};
  struct Case {
    std::string what;
    std::vector<double> observations;
    std::vector<uint64_t> cumulative;  // le=1, le=2, le=5, +Inf
    double sum;
  };
  const Case kCases[] = {
      {"none", {}, {0, 0, 0, 0}, 0},
      {"below first", {0.5, -3}, {2, 2, 2, 2}, -2.5},
      {"on the bounds", {1, 2, 5}, {1, 2, 3, 3}, 8},
      {"between", {1.5, 4.75}, {0, 1, 2, 2}, 6.25},
      {"above last", {5.5, 1000}, {0, 0, 0, 2}, 1005.5},
      {"mixed", {0.5, 1, 1.5, 2, 5, 7}, {2, 4, 5, 6}, 17},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.what);
    Histogram histogram(bounds);
    for (double v : c.observations) histogram.Observe(v);
    Histogram::Snapshot snap = histogram.Snap();
    EXPECT_EQ(snap.upper_bounds, bounds);
    EXPECT_EQ(snap.cumulative_counts, c.cumulative);
    EXPECT_EQ(snap.count, c.observations.size());
    EXPECT_DOUBLE_EQ(snap.sum, c.sum);
  }
}

TEST(HistogramTest, NanGoesToInfBucketAndDurationsAreSeconds) {
  static const std::vector<double> kBounds = {0.001, 1};
  Histogram h(kBounds);
  h.Observe(std::nan(""));
  h.ObserveDuration(std::chrono::microseconds(500));
  h.ObserveDuration(std::chrono::milliseconds(2));
  Histogram::Snapshot snap = h.Snap();
  EXPECT_EQ(snap.cumulative_counts, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_TRUE(std::isnan(snap.sum));
}

TEST(HistogramTest, DefaultLatencyBucketsSpanTenthMillisecondToTenSeconds) {
  std::vector<double> buckets = DefaultLatencyBuckets();
  ASSERT_GE(buckets.size(), 10u);
  EXPECT_DOUBLE_EQ(buckets.front(), 0.0001);
  EXPECT_DOUBLE_EQ(buckets.back(), 10);
  EXPECT_TRUE(std::is_sorted(buckets.begin(), buckets.end()));
  EXPECT_EQ(std::adjacent_find(buckets.begin(), buckets.end()), buckets.end());
}

TEST(FamilyTest, RemoveHidesChildAndWithLabelsRevivesIt) {
  Registry registry;
  auto healthy = registry.Gauge("efa_test_healthy", "H.", {"device"});
  ASSERT_TRUE(healthy.ok());
  Gauge& efa0 = (*healthy)->WithLabels({"efa0"});
  efa0.Set(1);
  (*healthy)->WithLabels({"efa1"}).Set(0);
  (*healthy)->Remove({"efa0"});
  std::string text = registry.Render();
  EXPECT_EQ(text.find("efa0"), std::string::npos) << text;
  EXPECT_NE(text.find("efa_test_healthy{device=\"efa1\"} 0\n"), std::string::npos) << text;
  // The old reference is still valid; using WithLabels again shows the same child.
  efa0.Set(1);
  EXPECT_EQ(&(*healthy)->WithLabels({"efa0"}), &efa0);
  text = registry.Render();
  EXPECT_NE(text.find("efa_test_healthy{device=\"efa0\"} 1\n"), std::string::npos) << text;
}

TEST(FamilyTest, WrongLabelCountIsNotRendered) {
  Registry registry;
  auto family = registry.Counter("efa_test_total", "T.", {"a", "b"});
  ASSERT_TRUE(family.ok());
  (*family)->WithLabels({"only-one"}).Inc();
  (*family)->WithLabels({"x", "y", "z"}).Inc();
  EXPECT_EQ(registry.Render(), "");
  (*family)->WithLabels({"x", "y"}).Inc();
  EXPECT_NE(registry.Render().find("efa_test_total{a=\"x\",b=\"y\"} 1\n"), std::string::npos);
}

TEST(GaugeTest, FunctionIsEvaluatedAtScrape) {
  Registry registry;
  double devices = 3;
  auto gauge = registry.GaugeFunction("efa_test_devices", "Devices.", [&] { return devices; });
  ASSERT_TRUE(gauge.ok()) << gauge.status().ToString();
  EXPECT_NE(registry.Render().find("efa_test_devices 3\n"), std::string::npos);
  devices = 32;
  EXPECT_NE(registry.Render().find("efa_test_devices 32\n"), std::string::npos);
  // Clearing the function returns to the stored value.
  (*gauge)->SetFunction(nullptr);
  (*gauge)->Set(7);
  EXPECT_NE(registry.Render().find("efa_test_devices 7\n"), std::string::npos);
}

TEST(CounterTest, IgnoresNegativeAndNan) {
  Counter counter;
  counter.Add(2.5);
  counter.Add(-1);
  counter.Add(std::nan(""));
  counter.Inc();
  EXPECT_EQ(counter.Value(), 3.5);
}

TEST(GaugeTest, SetIncDec) {
  Gauge gauge;
  gauge.Set(5);
  gauge.Inc();
  gauge.Dec();
  gauge.Dec();
  gauge.Add(0.5);
  EXPECT_EQ(gauge.Value(), 4.5);
  gauge.SetBool(true);
  EXPECT_EQ(gauge.Value(), 1);
}

}  // namespace
}  // namespace efadra::observe
