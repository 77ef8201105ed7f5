#include "http_request.h"

#include <gtest/gtest.h>

#include <string>

namespace efadra::observe::http {
namespace {

TEST(ParseRequestHeadTest, Table) {
  const RequestLimits limits{/*max_request_line=*/64, /*max_header_bytes=*/128,
                             /*max_headers=*/4};
  struct Case {
    std::string name;
    std::string received;
    ParseState state;
    int status;  // kRejected
    std::string method, path, query;
    bool has_body;
  };
  const Case kCases[] = {
      {"simple", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", ParseState::kComplete, 0, "GET",
       "/healthz", "", false},
      {"query", "GET /readyz?verbose&exclude=a HTTP/1.0\r\n\r\n", ParseState::kComplete, 0,
       "GET", "/readyz", "verbose&exclude=a", false},
      {"bare LF", "HEAD /metrics HTTP/1.1\nHost: x\n\n", ParseState::kComplete, 0, "HEAD",
       "/metrics", "", false},
      {"body by length", "POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
       ParseState::kComplete, 0, "POST", "/x", "", true},
      {"chunked", "POST /x HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
       ParseState::kComplete, 0, "POST", "/x", "", true},
      {"zero length", "GET /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", ParseState::kComplete, 0,
       "GET", "/x", "", false},
      {"empty", "", ParseState::kIncomplete, 0, "", "", "", false},
      {"half a line", "GET /heal", ParseState::kIncomplete, 0, "", "", "", false},
      {"no empty line yet", "GET / HTTP/1.1\r\nHost: x\r\n", ParseState::kIncomplete, 0, "", "",
       "", false},
      {"line too long, unfinished", "GET /" + std::string(70, 'a'), ParseState::kRejected, 431,
       "", "", "", false},
      {"line too long", "GET /" + std::string(70, 'a') + " HTTP/1.1\r\n\r\n",
       ParseState::kRejected, 431, "", "", "", false},
      {"too many headers", "GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\n",
       ParseState::kRejected, 431, "", "", "", false},
      {"header bytes, unfinished", "GET / HTTP/1.1\r\nX: " + std::string(200, 'v'),
       ParseState::kRejected, 431, "", "", "", false},
      {"header bytes", "GET / HTTP/1.1\r\nX: " + std::string(100, 'v') + "\r\nY: " +
                           std::string(30, 'v') + "\r\n\r\n",
       ParseState::kRejected, 431, "", "", "", false},
      {"no version", "GET /\r\n\r\n", ParseState::kRejected, 400, "", "", "", false},
      {"absolute form", "GET http://x/ HTTP/1.1\r\n\r\n", ParseState::kRejected, 400, "", "",
       "", false},
      {"bad method", "G(T / HTTP/1.1\r\n\r\n", ParseState::kRejected, 400, "", "", "", false},
      {"two spaces", "GET  / HTTP/1.1\r\n\r\n", ParseState::kRejected, 400, "", "", "", false},
      {"HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", ParseState::kRejected, 505, "", "", "", false},
      {"garbage version", "GET / HTTQ/1.1\r\n\r\n", ParseState::kRejected, 400, "", "", "",
       false},
      {"folded", "GET / HTTP/1.1\r\nA: 1\r\n  more\r\n\r\n", ParseState::kRejected, 400, "", "",
       "", false},
      {"no colon", "GET / HTTP/1.1\r\nA 1\r\n\r\n", ParseState::kRejected, 400, "", "", "",
       false},
      {"space before colon", "GET / HTTP/1.1\r\nA : 1\r\n\r\n", ParseState::kRejected, 400, "",
       "", "", false},
      {"bad length", "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", ParseState::kRejected,
       400, "", "", "", false},
      {"conflicting lengths", "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
       ParseState::kRejected, 400, "", "", "", false},
      {"length and chunked",
       "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
       ParseState::kRejected, 400, "", "", "", false},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    const ParseResult result = ParseRequestHead(c.received, limits);
    ASSERT_EQ(static_cast<int>(result.state), static_cast<int>(c.state)) << result.reason;
    if (c.state == ParseState::kRejected) {
      EXPECT_EQ(result.status, c.status) << result.reason;
      EXPECT_FALSE(result.reason.empty());
    }
    if (c.state == ParseState::kComplete) {
      EXPECT_EQ(result.head.method, c.method);
      EXPECT_EQ(result.head.path, c.path);
      EXPECT_EQ(result.head.query, c.query);
      EXPECT_EQ(result.head.has_body, c.has_body);
      // Only the body, if any, is left after the head.
      EXPECT_EQ(c.received.substr(result.head.head_bytes), c.name == "body by length" ? "abc" : "");
    }
  }
}

TEST(ParseRequestHeadTest, AnyBufferOfMaxHeadBytesIsDecided) {
  // The server reads at most MaxHeadBytes() per connection; every such buffer must parse to
  // complete or rejected, or a client could stall it with a full buffer.
  const RequestLimits limits{32, 64, 8};
  const std::string shapes[] = {
      std::string(limits.MaxHeadBytes(), 'a'),
      "GET / HTTP/1.1\r\n" + std::string(limits.MaxHeadBytes(), 'h'),
      "GET / HTTP/1.1\r\n" + std::string(limits.MaxHeadBytes(), '\n'),
      "GET /" + std::string(18, 'p') + " HTTP/1.1\r\n" + std::string(limits.MaxHeadBytes(), 'h'),
  };
  for (const std::string& shape : shapes) {
    const std::string received = shape.substr(0, limits.MaxHeadBytes());
    SCOPED_TRACE(received.substr(0, 40));
    EXPECT_NE(static_cast<int>(ParseRequestHead(received, limits).state),
              static_cast<int>(ParseState::kIncomplete));
  }
}

TEST(ParseQueryTest, Table) {
  using Params = std::vector<std::pair<std::string, std::string>>;
  struct Case {
    std::string query;
    Params params;
  };
  const Case kCases[] = {
      {"", {}},
      {"verbose", {{"verbose", ""}}},
      {"verbose=1&exclude=a&exclude=b%2Dc",
       {{"verbose", "1"}, {"exclude", "a"}, {"exclude", "b-c"}}},
      {"a+b=c+d", {{"a b", "c d"}}},
      {"&&x=%zz&y=%4", {{"x", "%zz"}, {"y", "%4"}}},
      {"k==v", {{"k", "=v"}}},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.query);
    EXPECT_EQ(ParseQuery(c.query), c.params);
  }
}

}  // namespace
}  // namespace efadra::observe::http
