// Process-wide logging setup on spdlog. Modules log with spdlog::info/warn/error (or LogEvent
// below for key/value fields) and the verbosity helpers; only main() calls SetupLogging.
//
// Verbosity is klog-style: -v 0 (default) logs what an operator needs (start, changes,
// errors), -v 2 adds per-request detail, -v 4 and up adds debugging detail (and spdlog::debug).
// Log one line per meaningful event and nothing at steady state (no per-probe or per-resync
// lines at -v 0).
//
// Formats: text "2026-01-02T03:04:05.678Z I message key=value", or JSON, one object per line:
//   {"ts":"2026-01-02T03:04:05.678901Z","level":"info","msg":"message","key":"value"}
// JSON lines are always valid JSON: quotes, backslashes and control characters are escaped and
// bytes that are not valid UTF-8 become U+FFFD.
//
// Thread safety: SetupLogging is called once by main() before other threads start (tests may
// call it again); everything else is safe from any thread.
#pragma once

#include <spdlog/spdlog.h>

#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "efadra/core/status.h"

namespace efadra::observe {

enum class LogFormat { kText, kJson };

// kInvalidArgument for a format other than "text" or "json".
Result<LogFormat> ParseLogFormat(std::string_view text);

// Logs go to stderr. JSON lines carry ts, level, msg (one object per line) plus any fields.
void SetupLogging(LogFormat format, int verbosity);

// The same, writing to `sink` (tests capture output with an ostream sink).
void SetupLogging(LogFormat format, int verbosity, spdlog::sink_ptr sink);

// The -v level set by SetupLogging (0 before).
int Verbosity();

// True when messages at klog level `level` should be logged.
inline bool VLogEnabled(int level) { return Verbosity() >= level; }
// klog spelling: `if (observe::V(2)) spdlog::info(...)`.
inline bool V(int level) { return VLogEnabled(level); }

// Logs at info level when -v >= level: `observe::VLog(2, "prepared claim {}", uid)`.
template <typename... Args>
void VLog(int level, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  if (VLogEnabled(level)) spdlog::info(fmt, std::forward<Args>(args)...);
}

// One key/value pair of a structured log line. Keys should be lowerCamel or snake_case words
// and avoid "ts", "level" and "msg".
struct LogField {
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const char* v) : key(k), value(v) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(v) {}
  template <typename T>
  requires std::is_arithmetic_v<T> LogField(std::string_view k, T v) : key(k), value(ToText(v)) {}

  std::string_view key;
  std::string value;

 private:
  template <typename T>
  static std::string ToText(T v) {
    if constexpr (std::is_same_v<T, bool>) {
      return v ? "true" : "false";
    } else {
      return fmt::to_string(v);
    }
  }
};

// Logs `msg` with fields through the default logger: in JSON they become members of the line's
// object, in text they follow the message as key=value (quoted when needed), e.g.
//   LogEvent(spdlog::level::info, "prepared claim", {{"claim", uid}, {"devices", 2}});
void LogEvent(spdlog::level::level_enum level, std::string_view msg,
              std::initializer_list<LogField> fields);

// Appends `text` as the inside of a JSON string: escapes quotes, backslashes and control
// characters, replaces invalid UTF-8 with U+FFFD. (Exposed for tests and other JSON writers.)
void AppendJsonEscaped(std::string_view text, std::string& out);

}  // namespace efadra::observe
