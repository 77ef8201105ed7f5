#include "http_request.h"

#include <optional>

namespace efadra::observe::http {
namespace {

// RFC 9110 tchar: the characters of a method or a field name.
bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
    case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

bool IsToken(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

// Visible ASCII only: no spaces, controls or bytes above 0x7e in a request target.
bool IsTargetChar(char c) { return c > 0x20 && c < 0x7f; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view TrimWhitespace(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// A Content-Length value: 1 to 18 decimal digits (no sign, no list).
std::optional<size_t> ParseLength(std::string_view text) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  size_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<size_t>(c - '0');
  }
  return value;
}

ParseResult Reject(int status, std::string reason) {
  ParseResult result;
  result.state = ParseState::kRejected;
  result.status = status;
  result.reason = std::move(reason);
  return result;
}

// The line starting at `start` without its line end, and the offset just past it; nullopt when
// its '\n' has not arrived yet.
std::optional<std::pair<std::string_view, size_t>> NextLine(std::string_view received,
                                                            size_t start) {
  const size_t end = received.find('\n', start);
  if (end == std::string_view::npos) return std::nullopt;
  std::string_view line = received.substr(start, end - start);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return std::make_pair(line, end + 1);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && HexValue(text[i + 1]) >= 0 &&
               HexValue(text[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

}  // namespace

ParseResult ParseRequestHead(std::string_view received, const RequestLimits& limits) {
  // The request line. Limits are checked before the line is complete, so a client that never
  // sends '\n' is refused once it has sent max_request_line bytes, not when memory runs out.
  auto request_line = NextLine(received, 0);
  if (!request_line) {
    if (received.size() > limits.max_request_line + 1) {
      return Reject(431, "request line too long");
    }
    return ParseResult{};
  }
  const std::string_view line = request_line->first;
  if (line.size() > limits.max_request_line) return Reject(431, "request line too long");
  const size_t first_space = line.find(' ');
  const size_t last_space = line.rfind(' ');
  if (first_space == std::string_view::npos || first_space == last_space) {
    return Reject(400, "malformed request line");
  }
  RequestHead head;
  head.method = std::string(line.substr(0, first_space));
  const std::string_view target = line.substr(first_space + 1, last_space - first_space - 1);
  const std::string_view version = line.substr(last_space + 1);
  if (!IsToken(head.method)) return Reject(400, "malformed method");
  if (target.empty() || target.front() != '/') return Reject(400, "request target not a path");
  for (char c : target) {
    if (!IsTargetChar(c)) return Reject(400, "malformed request target");
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return Reject(400, "malformed HTTP version");
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return Reject(505, "HTTP version not supported");
  }
  const size_t question = target.find('?');
  head.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) head.query = std::string(target.substr(question + 1));

  // Header fields: only counted and checked for framing, never stored.
  const size_t headers_start = request_line->second;
  size_t offset = headers_start;
  size_t count = 0;
  std::optional<size_t> content_length;
  bool transfer_encoding = false;
  while (true) {
    auto next = NextLine(received, offset);
    if (!next) {
      if (received.size() - headers_start > limits.max_header_bytes) {
        return Reject(431, "header fields too large");
      }
      return ParseResult{};
    }
    if (next->second - headers_start > limits.max_header_bytes) {
      return Reject(431, "header fields too large");
    }
    offset = next->second;
    const std::string_view field = next->first;
    if (field.empty()) break;
    if (++count > limits.max_headers) return Reject(431, "too many header fields");
    if (field.front() == ' ' || field.front() == '\t') {
      return Reject(400, "folded header field");
    }
    const size_t colon = field.find(':');
    if (colon == std::string_view::npos || !IsToken(field.substr(0, colon))) {
      return Reject(400, "malformed header field");
    }
    const std::string_view name = field.substr(0, colon);
    const std::string_view value = TrimWhitespace(field.substr(colon + 1));
    if (EqualsIgnoreCase(name, "content-length")) {
      const std::optional<size_t> length = ParseLength(value);
      if (!length || (content_length && *content_length != *length)) {
        return Reject(400, "bad content-length");
      }
      content_length = length;
    } else if (EqualsIgnoreCase(name, "transfer-encoding")) {
      transfer_encoding = true;
    }
  }
  // Both framings at once is the request-smuggling shape (RFC 9112 §6.1): refuse it.
  if (transfer_encoding && content_length) {
    return Reject(400, "both content-length and transfer-encoding");
  }
  head.content_length = content_length.value_or(0);
  head.has_body = transfer_encoding || head.content_length > 0;
  head.head_bytes = offset;
  ParseResult result;
  result.state = ParseState::kComplete;
  result.head = std::move(head);
  return result;
}

std::vector<std::pair<std::string, std::string>> ParseQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> params;
  size_t start = 0;
  while (start <= query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string_view::npos) end = query.size();
    const std::string_view param = query.substr(start, end - start);
    if (!param.empty()) {
      const size_t equals = param.find('=');
      if (equals == std::string_view::npos) {
        params.emplace_back(PercentDecode(param), std::string());
      } else {
        params.emplace_back(PercentDecode(param.substr(0, equals)),
                            PercentDecode(param.substr(equals + 1)));
      }
    }
    start = end + 1;
  }
  return params;
}

}  // namespace efadra::observe::http
