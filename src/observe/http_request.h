// Parsing of an HTTP/1.x request head (request line and header fields, RFC 9112) for the
// observability server, with hard limits so that a client on the node network cannot make the
// server buffer or store more than a few KiB per connection. Pure functions over the bytes
// received so far; nothing here touches a socket. Private to observe.
//
// Thread safety: stateless; every function may be called from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace efadra::observe::http {

struct RequestLimits {
  size_t max_request_line = 4096;  // bytes, without the line end
  size_t max_header_bytes = 8192;  // the header lines after the request line, line ends included
  size_t max_headers = 64;         // header fields

  // A buffer this long always parses to complete or rejected, never incomplete: the most a
  // connection has to hold.
  size_t MaxHeadBytes() const { return max_request_line + 2 + max_header_bytes + 2; }
};

struct RequestHead {
  std::string method;  // "GET"
  std::string path;    // "/readyz", as sent (not percent-decoded)
  std::string query;   // "verbose&exclude=x", without the '?'; "" when absent
  size_t content_length = 0;
  bool has_body = false;  // Content-Length > 0 or Transfer-Encoding present
  size_t head_bytes = 0;  // from the request line through the empty line
};

enum class ParseState { kIncomplete, kComplete, kRejected };

struct ParseResult {
  ParseState state = ParseState::kIncomplete;
  RequestHead head;    // kComplete only
  int status = 0;      // kRejected: 400, 431 (too large) or 505
  std::string reason;  // kRejected: a fixed phrase for the log, e.g. "more than 64 headers"
};

// Parses the start of `received`. kIncomplete while the empty line that ends the head has not
// arrived and no limit is exceeded yet; kRejected with 431 as soon as the request line, the
// header bytes or the header count exceed `limits` (without waiting for the rest), 400 for a
// malformed line (no method/target/version, a target not starting with '/', a field without
// ':' or with a folded continuation, a bad or conflicting Content-Length), 505 for HTTP
// versions other than 1.0 and 1.1. Bare LF line ends are accepted. Header values are only
// inspected for Content-Length and Transfer-Encoding; none is stored.
ParseResult ParseRequestHead(std::string_view received, const RequestLimits& limits);

// "verbose&exclude=a&exclude=b%2Dc" -> {"verbose",""}, {"exclude","a"}, {"exclude","b-c"}, in
// order. Keys and values are percent-decoded, '+' decodes to a space, a malformed escape is
// kept as it is.
std::vector<std::pair<std::string, std::string>> ParseQuery(std::string_view query);

}  // namespace efadra::observe::http
