#include "efadra/observe/logging.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "efadra/observe/health_checks.h"

namespace efadra::observe {
namespace {

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Routes the default logger into a string for one test and restores the previous one after.
class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = spdlog::default_logger(); }
  void TearDown() override {
    SetupLogging(LogFormat::kText, 0, std::make_shared<spdlog::sinks::ostream_sink_mt>(out_));
    spdlog::set_default_logger(saved_);
  }
  void Capture(LogFormat format, int verbosity) {
    out_.str("");
    SetupLogging(format, verbosity, std::make_shared<spdlog::sinks::ostream_sink_mt>(out_));
  }
  std::vector<std::string> Captured() const { return Lines(out_.str()); }

  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> saved_;
};

TEST(ParseLogFormatTest, Table) {
  struct Case {
    std::string text;
    bool ok;
    LogFormat format;
  };
  const Case kCases[] = {{"text", true, LogFormat::kText},
                         {"json", true, LogFormat::kJson},
                         {"JSON", false, LogFormat::kText},
                         {"", false, LogFormat::kText},
                         {"logfmt", false, LogFormat::kText}};
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.text);
    auto format = ParseLogFormat(c.text);
    ASSERT_EQ(format.ok(), c.ok);
    if (c.ok) {
      EXPECT_EQ(*format, c.format);
    } else {
      EXPECT_EQ(format.status().code(), StatusCode::kInvalidArgument);
      EXPECT_NE(format.status().message().find("\"" + c.text + "\""), std::string::npos);
    }
  }
}

TEST_F(LoggingTest, JsonLinesAreValidJsonForAnyMessage) {
  struct Case {
    std::string what, message, decoded;
  };
  const std::string kReplacement = "\xef\xbf\xbd";  // U+FFFD
  const Case kCases[] = {
      {"plain", "discovered 32 devices", "discovered 32 devices"},
      {"quotes", "claim \"ns/a\" failed", "claim \"ns/a\" failed"},
      {"backslash", "path C:\\x\\", "path C:\\x\\"},
      {"newline and tab", "line1\nline2\tcol\r", "line1\nline2\tcol\r"},
      {"control bytes", std::string("a\x01z\x1f\x7f", 5), std::string("a\x01z\x1f\x7f", 5)},
      {"NUL", std::string("a\0b", 3), std::string("a\0b", 3)},
      {"valid UTF-8", "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80",
       "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80"},
      {"invalid bytes", "bad \xff\xfe end", "bad " + kReplacement + kReplacement + " end"},
      {"truncated sequence", "cut \xe2\x82", "cut " + kReplacement + kReplacement},
      {"overlong slash", "\xc0\xaf", kReplacement + kReplacement},
      {"surrogate", "\xed\xa0\x80", kReplacement + kReplacement + kReplacement},
      {"above U+10FFFF", "\xf4\x90\x80\x80",
       kReplacement + kReplacement + kReplacement + kReplacement},
      {"braces", "{\"json\": [1,2]}", "{\"json\": [1,2]}"},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.what);
    Capture(LogFormat::kJson, 0);
    spdlog::warn("{}", c.message);
    std::vector<std::string> lines = Captured();
    ASSERT_EQ(lines.size(), 1u) << out_.str();  // one event, one line
    auto json = nlohmann::json::parse(lines[0], nullptr, false);
    ASSERT_FALSE(json.is_discarded()) << lines[0];
    EXPECT_EQ(json["msg"], c.decoded);
    EXPECT_EQ(json["level"], "warning");
    EXPECT_TRUE(std::regex_match(json["ts"].get<std::string>(),
                                 std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)")))
        << json["ts"];
  }
}

TEST_F(LoggingTest, JsonEventsCarryFields) {
  Capture(LogFormat::kJson, 0);
  LogEvent(spdlog::level::info, "prepared claim",
           {{"claim", "ns/web-0\"x\""}, {"devices", 2}, {"ok", true}, {"bad", "\xff"}});
  spdlog::info("after");  // fields do not leak into the next line
  std::vector<std::string> lines = Captured();
  ASSERT_EQ(lines.size(), 2u) << out_.str();
  auto json = nlohmann::json::parse(lines[0], nullptr, false);
  ASSERT_FALSE(json.is_discarded()) << lines[0];
  EXPECT_EQ(json["msg"], "prepared claim");
  EXPECT_EQ(json["level"], "info");
  EXPECT_EQ(json["claim"], "ns/web-0\"x\"");
  EXPECT_EQ(json["devices"], "2");
  EXPECT_EQ(json["ok"], "true");
  EXPECT_EQ(json["bad"], "\xef\xbf\xbd");
  auto next = nlohmann::json::parse(lines[1], nullptr, false);
  ASSERT_FALSE(next.is_discarded());
  EXPECT_EQ(next.size(), 3u) << lines[1];  // ts, level, msg
}

TEST_F(LoggingTest, TextEventsAppendKeyValues) {
  Capture(LogFormat::kText, 0);
  LogEvent(
      spdlog::level::warn, "slice publish retried",
      {{"slice", "node1-dra.net-x"}, {"attempt", 3}, {"reason", "409 Conflict"}, {"empty", ""}});
  std::vector<std::string> lines = Captured();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(std::regex_match(
      lines[0], std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z W slice publish retried )"
                           R"(slice=node1-dra.net-x attempt=3 reason="409 Conflict" empty="")")))
      << lines[0];
}

TEST_F(LoggingTest, TextLinesEscapeControlCharactersOfAnyMessage) {
  // API text (an error body, an object name) must not be able to start a forged log line.
  struct Case {
    std::string what, message, shown;
  };
  const Case kCases[] = {
      {"plain", "discovered 32 devices", "discovered 32 devices"},
      {"forged line", "409 Conflict: x\n2026-01-01T00:00:00.000Z I claim prepared",
       "409 Conflict: x\\n2026-01-01T00:00:00.000Z I claim prepared"},
      {"carriage return and tab", "a\rb\tc", "a\\rb\\tc"},
      {"escape sequence", "red \x1b[31m", "red \\x1b[31m"},
      {"NUL and DEL", std::string("a\0b\x7f", 4), "a\\x00b\\x7f"},
      {"backslash stays", "C:\\x", "C:\\x"},
      {"UTF-8 stays", "caf\xc3\xa9", "caf\xc3\xa9"},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.what);
    Capture(LogFormat::kText, 0);
    spdlog::warn("publish ResourceSlices: {}", c.message);
    std::vector<std::string> lines = Captured();
    ASSERT_EQ(lines.size(), 1u) << out_.str();
    const std::string suffix = " W publish ResourceSlices: " + c.shown;
    ASSERT_GE(lines[0].size(), suffix.size());
    EXPECT_EQ(lines[0].substr(lines[0].size() - suffix.size()), suffix) << lines[0];
    EXPECT_EQ(lines[0].find('\r'), std::string::npos);
  }
}

TEST_F(LoggingTest, VerbosityGatesVLogAndDebug) {
  struct Case {
    int verbosity;
    bool v2, v4, debug;
  };
  const Case kCases[] = {{0, false, false, false},
                         {2, true, false, false},
                         {4, true, true, true},
                         {6, true, true, true}};
  for (const Case& c : kCases) {
    SCOPED_TRACE("-v " + std::to_string(c.verbosity));
    Capture(LogFormat::kText, c.verbosity);
    EXPECT_EQ(Verbosity(), c.verbosity);
    EXPECT_EQ(V(2), c.v2);
    EXPECT_EQ(V(4), c.v4);
    VLog(2, "detail {}", 2);
    VLog(4, "detail {}", 4);
    spdlog::debug("debug line");
    spdlog::info("always");
    const std::string text = out_.str();
    EXPECT_EQ(text.find("detail 2") != std::string::npos, c.v2) << text;
    EXPECT_EQ(text.find("detail 4") != std::string::npos, c.v4) << text;
    EXPECT_EQ(text.find("debug line") != std::string::npos, c.debug) << text;
    EXPECT_NE(text.find(" I always\n"), std::string::npos) << text;
  }
}

TEST_F(LoggingTest, HealthCheckTransitionsAreLoggedOnce) {
  // The probe endpoints run checks every few seconds; only state changes may reach the log.
  Capture(LogFormat::kJson, 0);
  bool ok = true;
  HealthChecks checks("readyz");
  checks.Add("first-slice-published",
             [&]() -> Status { return ok ? Status::Ok() : UnavailableError("no slice yet"); });
  for (int i = 0; i < 3; ++i) (void)checks.Run(false);
  ok = false;
  for (int i = 0; i < 3; ++i) (void)checks.Run(false);
  ok = true;
  for (int i = 0; i < 3; ++i) (void)checks.Run(false);
  std::vector<std::string> lines = Captured();
  ASSERT_EQ(lines.size(), 2u) << out_.str();
  EXPECT_NE(lines[0].find("first-slice-published failed: no slice yet"), std::string::npos);
  EXPECT_NE(lines[1].find("first-slice-published passes again"), std::string::npos);
}

}  // namespace
}  // namespace efadra::observe
