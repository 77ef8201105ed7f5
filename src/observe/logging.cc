#include "efadra/observe/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <memory>
#include <vector>

namespace efadra::observe {
namespace {

std::atomic<int> g_verbosity{0};
std::atomic<bool> g_json{false};

// The fields of the LogEvent() call running on this thread. spdlog's synchronous logger formats
// on the calling thread inside log(), so the JSON formatter can read them there; this keeps
// fields out of the text payload (where they would be escaped into "msg").
thread_local const std::initializer_list<LogField>* t_fields = nullptr;

// Length of the well-formed UTF-8 sequence starting at s[i] (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF), or 0 if it is not one.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  auto cont = [&](size_t k, unsigned char lo = 0x80, unsigned char hi = 0xbf) {
    return k < s.size() && byte(k) >= lo && byte(k) <= hi;
  };
  unsigned char c = byte(i);
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) return cont(i + 1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    unsigned char lo = c == 0xe0 ? 0xa0 : 0x80;
    unsigned char hi = c == 0xed ? 0x9f : 0xbf;
    return cont(i + 1, lo, hi) && cont(i + 2) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    unsigned char lo = c == 0xf0 ? 0x90 : 0x80;
    unsigned char hi = c == 0xf4 ? 0x8f : 0xbf;
    return cont(i + 1, lo, hi) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

// spdlog has no JSON formatter of its own; this writes the whole line so that every byte of it
// is under our control (see AppendJsonEscaped).
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    using std::chrono::duration_cast;
    using std::chrono::microseconds;
    const auto since_epoch = duration_cast<microseconds>(msg.time.time_since_epoch()).count();
    const std::time_t seconds = static_cast<std::time_t>(since_epoch / 1000000);
    std::tm tm{};
    gmtime_r(&seconds, &tm);
    std::string line = fmt::format(
        "{{\"ts\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z\",\"level\":\"", tm.tm_year + 1900,
        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, since_epoch % 1000000);
    auto level = spdlog::level::to_string_view(msg.level);
    line.append(level.data(), level.size());
    line += "\",\"msg\":\"";
    AppendJsonEscaped(std::string_view(msg.payload.data(), msg.payload.size()), line);
    line += '"';
    if (t_fields != nullptr) {
      for (const LogField& field : *t_fields) {
        line += ",\"";
        AppendJsonEscaped(field.key, line);
        line += "\":\"";
        AppendJsonEscaped(field.value, line);
        line += '"';
      }
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

// The text format's message (%*): one event is one line, whatever the API or sysfs put into
// the text (an error body, an object name), so control characters are written as escapes. A
// backslash stays as it is: the line is for people, and a literal "\n" cannot break it.
class EscapedPayload final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static constexpr char kHex[] = "0123456789abcdef";
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      const auto u = static_cast<unsigned char>(c);
      if (u >= 0x20 && u != 0x7f) {
        dest.push_back(c);
        continue;
      }
      const char* escaped = u == '\n' ? "\\n" : u == '\r' ? "\\r" : u == '\t' ? "\\t" : nullptr;
      if (escaped != nullptr) {
        dest.append(escaped, escaped + 2);
      } else {
        const char hex[4] = {'\\', 'x', kHex[u >> 4], kHex[u & 0xf]};
        dest.append(hex, hex + 4);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<EscapedPayload>();
  }
};

bool NeedsQuotes(std::string_view value) {
  if (value.empty()) return true;
  for (char c : value) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '"' || c == '=' || c == '\\') return true;
  }
  return false;
}

}  // namespace

void AppendJsonEscaped(std::string_view text, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        ++i;
        continue;
      case '\\':
        out += "\\\\";
        ++i;
        continue;
      case '\n':
        out += "\\n";
        ++i;
        continue;
      case '\t':
        out += "\\t";
        ++i;
        continue;
      case '\r':
        out += "\\r";
        ++i;
        continue;
      default:
        break;
    }
    if (c < 0x20 || c == 0x7f) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
      ++i;
      continue;
    }
    size_t length = Utf8SequenceLength(text, i);
    if (length == 0) {
      // A JSON parser rejects the whole line for one bad byte (a sysfs string, a truncated
      // name); replace just that byte so the rest of the event survives.
      out += "\\ufffd";
      ++i;
      continue;
    }
    out.append(text.data() + i, length);
    i += length;
  }
}

Result<LogFormat> ParseLogFormat(std::string_view text) {
  if (text == "text") return LogFormat::kText;
  if (text == "json") return LogFormat::kJson;
  return InvalidArgumentError("--log-format must be text or json, not \"" + std::string(text) +
                              "\"");
}

void SetupLogging(LogFormat format, int verbosity) {
  SetupLogging(format, verbosity, std::make_shared<spdlog::sinks::stderr_sink_mt>());
}

void SetupLogging(LogFormat format, int verbosity, spdlog::sink_ptr sink) {
  g_verbosity = verbosity;
  g_json = format == LogFormat::kJson;
  auto logger = std::make_shared<spdlog::logger>("efa-dra-driver", std::move(sink));
  if (format == LogFormat::kJson) {
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<EscapedPayload>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %L %*");
    logger->set_formatter(std::move(formatter));
  }
  logger->set_level(verbosity >= 4 ? spdlog::level::debug : spdlog::level::info);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

int Verbosity() { return g_verbosity.load(std::memory_order_relaxed); }

void LogEvent(spdlog::level::level_enum level, std::string_view msg,
              std::initializer_list<LogField> fields) {
  spdlog::logger* logger = spdlog::default_logger_raw();
  if (logger == nullptr || !logger->should_log(level)) return;
  if (g_json.load(std::memory_order_relaxed)) {
    t_fields = &fields;
    logger->log(level, "{}", msg);
    t_fields = nullptr;
    return;
  }
  // Text: klog's structured style, `message key=value key2="two words"`.
  std::string line(msg);
  for (const LogField& field : fields) {
    line += ' ';
    line += field.key;
    line += '=';
    if (NeedsQuotes(field.value)) {
      line += '"';
      AppendJsonEscaped(field.value, line);
      line += '"';
    } else {
      line += field.value;
    }
  }
  logger->log(level, "{}", line);
}

}  // namespace efadra::observe
