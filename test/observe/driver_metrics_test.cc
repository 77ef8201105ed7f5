#include "efadra/observe/driver_metrics.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "efadra/core/version.h"
#include "efadra/observe/api_request_observer.h"

namespace efadra::observe {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(DriverMetricsTest, RegistersTheWholeSet) {
  Registry registry;
  auto metrics = DriverMetrics::Create(registry);
  ASSERT_TRUE(metrics.ok()) << metrics.status().ToString();
  const std::string text = registry.Render();
  const struct {
    std::string name, type;
  } kFamilies[] = {
      {"efa_dra_prepare_total", "counter"},
      {"efa_dra_prepare_duration_seconds", "histogram"},
      {"efa_dra_unprepare_total", "counter"},
      {"efa_dra_unprepare_duration_seconds", "histogram"},
      {"efa_dra_published_devices", "gauge"},
      {"efa_dra_published_slices", "gauge"},
      {"efa_dra_discovery_duration_seconds", "histogram"},
      {"efa_dra_prepared_claims", "gauge"},
      {"efa_dra_device_plugin_conflict", "gauge"},
      {"efa_dra_build_info", "gauge"},
  };
  for (const auto& family : kFamilies) {
    SCOPED_TRACE(family.name);
    EXPECT_TRUE(Contains(text, "# TYPE " + family.name + " " + family.type + "\n")) << text;
    EXPECT_TRUE(Contains(text, "# HELP " + family.name + " ")) << text;
  }
  // Labelled families with no series yet render nothing until first use.
  EXPECT_FALSE(Contains(text, "efa_dra_api_requests_total"));
  EXPECT_FALSE(Contains(text, "efa_dra_device_healthy"));
  // Predeclared children make rates exist from the first scrape.
  EXPECT_TRUE(Contains(text, "efa_dra_prepare_total{api_version=\"v1\",result=\"ok\"} 0\n"));
  EXPECT_TRUE(
      Contains(text, "efa_dra_unprepare_total{api_version=\"v1beta1\",result=\"error\"} 0\n"));
  EXPECT_TRUE(Contains(text, std::string("efa_dra_build_info{version=\"") + kVersion +
                                 "\",git_commit=\"" + kGitCommit + "\"} 1\n"))
      << text;
}

TEST(DriverMetricsTest, RecordsPrepareAndUnprepare) {
  Registry registry;
  auto metrics = DriverMetrics::Create(registry);
  ASSERT_TRUE(metrics.ok());
  DriverMetrics& m = **metrics;
  m.RecordPrepare("v1", true, microseconds(300));
  m.RecordPrepare("v1", true, milliseconds(20));
  m.RecordPrepare("v1beta1", false, milliseconds(2));
  m.RecordPrepare("v9", true, milliseconds(1));  // not predeclared: still recorded
  m.RecordUnprepare("v1", true, microseconds(50));
  const std::string text = registry.Render();
  const std::string kWant[] = {
      "efa_dra_prepare_total{api_version=\"v1\",result=\"ok\"} 2\n",
      "efa_dra_prepare_total{api_version=\"v1\",result=\"error\"} 0\n",
      "efa_dra_prepare_total{api_version=\"v1beta1\",result=\"error\"} 1\n",
      "efa_dra_prepare_total{api_version=\"v9\",result=\"ok\"} 1\n",
      "efa_dra_prepare_duration_seconds_bucket{api_version=\"v1\",le=\"0.0005\"} 1\n",
      "efa_dra_prepare_duration_seconds_bucket{api_version=\"v1\",le=\"0.025\"} 2\n",
      "efa_dra_prepare_duration_seconds_count{api_version=\"v1\"} 2\n",
      "efa_dra_prepare_duration_seconds_count{api_version=\"v9\"} 1\n",
      "efa_dra_unprepare_total{api_version=\"v1\",result=\"ok\"} 1\n",
      "efa_dra_unprepare_duration_seconds_bucket{api_version=\"v1\",le=\"0.0001\"} 1\n",
  };
  for (const std::string& want : kWant) {
    SCOPED_TRACE(want);
    EXPECT_TRUE(Contains(text, want)) << text;
  }
}

TEST(DriverMetricsTest, GaugesAndDeviceHealth) {
  Registry registry;
  auto metrics = DriverMetrics::Create(registry);
  ASSERT_TRUE(metrics.ok());
  DriverMetrics& m = **metrics;
  int devices = 4;
  m.published_devices().SetFunction([&] { return static_cast<double>(devices); });
  m.published_slices().Set(1);
  m.prepared_claims().Inc();
  m.device_plugin_conflict().SetBool(true);
  m.SetDeviceHealthy("efa-0000-10-1c-0", true);
  m.SetDeviceHealthy("efa-0000-20-1c-0", false);
  m.RecordDiscovery(microseconds(1500));
  devices = 32;
  std::string text = registry.Render();
  for (const std::string& want : {
           std::string("efa_dra_published_devices 32\n"),
           std::string("efa_dra_published_slices 1\n"),
           std::string("efa_dra_prepared_claims 1\n"),
           std::string("efa_dra_device_plugin_conflict 1\n"),
           std::string("efa_dra_device_healthy{device=\"efa-0000-10-1c-0\"} 1\n"),
           std::string("efa_dra_device_healthy{device=\"efa-0000-20-1c-0\"} 0\n"),
           std::string("efa_dra_discovery_duration_seconds_bucket{le=\"0.001\"} 0\n"),
           std::string("efa_dra_discovery_duration_seconds_bucket{le=\"0.0025\"} 1\n"),
       }) {
    SCOPED_TRACE(want);
    EXPECT_TRUE(Contains(text, want)) << text;
  }
  m.ForgetDevice("efa-0000-20-1c-0");
  text = registry.Render();
  EXPECT_FALSE(Contains(text, "efa-0000-20-1c-0"));
  EXPECT_TRUE(Contains(text, "efa-0000-10-1c-0"));
  m.published_devices().SetFunction(nullptr);  // `devices` goes out of scope after this
}

TEST(DriverMetricsTest, CreateTwiceSharesAndConflictsFail) {
  Registry registry;
  auto first = DriverMetrics::Create(registry);
  auto second = DriverMetrics::Create(registry);
  ASSERT_TRUE(first.ok() && second.ok()) << second.status().ToString();
  (*first)->RecordPrepare("v1", true, microseconds(1));
  (*second)->RecordPrepare("v1", true, microseconds(1));
  EXPECT_TRUE(
      Contains(registry.Render(), "efa_dra_prepare_total{api_version=\"v1\",result=\"ok\"} 2\n"));

  Registry clashing;
  ASSERT_TRUE(clashing.Counter("efa_dra_published_devices", "Wrong type.").ok());
  auto failed = DriverMetrics::Create(clashing);
  EXPECT_EQ(failed.status().code(), StatusCode::kAlreadyExists);
  EXPECT_TRUE(Contains(failed.status().message(), "efa_dra_published_devices"));
}

TEST(ApiRequestObserverTest, FeedsApiRequestMetrics) {
  Registry registry;
  auto metrics = DriverMetrics::Create(registry);
  ASSERT_TRUE(metrics.ok());
  ApiRequestObserver adapter(**metrics);
  kube::RequestObserver& observer = adapter;  // used through the kube interface
  observer.OnRequest("GET", 200, microseconds(800));
  observer.OnRequest("GET", 200, microseconds(1200));
  observer.OnRequest("PUT", 409, microseconds(3000));
  observer.OnRequest("LIST", 0, microseconds(10000000));
  const std::string text = registry.Render();
  for (const std::string& want : {
           std::string("efa_dra_api_requests_total{verb=\"GET\",code=\"200\"} 2\n"),
           std::string("efa_dra_api_requests_total{verb=\"PUT\",code=\"409\"} 1\n"),
           std::string("efa_dra_api_requests_total{verb=\"LIST\",code=\"0\"} 1\n"),
           std::string(
               "efa_dra_api_request_duration_seconds_bucket{verb=\"GET\",le=\"0.001\"} 1\n"),
           std::string("efa_dra_api_request_duration_seconds_count{verb=\"GET\"} 2\n"),
           std::string("efa_dra_api_request_duration_seconds_bucket{verb=\"LIST\",le=\"10\"} 1\n"),
           std::string("efa_dra_api_request_duration_seconds_sum{verb=\"LIST\"} 10\n"),
       }) {
    SCOPED_TRACE(want);
    EXPECT_TRUE(Contains(text, want)) << text;
  }
}

}  // namespace
}  // namespace efadra::observe
