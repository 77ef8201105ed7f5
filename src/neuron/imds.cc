// IMDSv2 instance-type query on cpp-httplib's client. IMDSv2 is token based: a PUT returns a
// session token that the GET must carry; nodes configured "IMDSv2 required" answer 401 to a
// token-less GET, so v1 is never attempted.
#include "efadra/neuron/imds.h"

#include <httplib.h>

#include <csignal>
#include <memory>
#include <mutex>

#include "efadra/core/http_url.h"

namespace efadra::neuron {
namespace {

using Clock = std::chrono::steady_clock;

// The token only has to outlive the one GET that follows.
constexpr char kTokenTtlHeader[] = "X-aws-ec2-metadata-token-ttl-seconds";
constexpr char kTokenTtlSeconds[] = "60";
constexpr char kTokenHeader[] = "X-aws-ec2-metadata-token";
constexpr char kTokenPath[] = "/latest/api/token";
constexpr char kInstanceTypePath[] = "/latest/meta-data/instance-type";
// IMDS answers are tiny; refuse anything that is clearly not one.
constexpr size_t kMaxBody = 4096;
constexpr size_t kMaxInstanceTypeLength = 64;

struct HttpAnswer {
  int status = 0;
  std::string body;
};

// One request; `what` ("PUT http://.../latest/api/token") prefixes every error. httplib's
// client reads no proxy settings from the environment, so the link-local IMDS address is
// never sent to an HTTP(S)_PROXY, and it follows no redirects unless told to.
Result<HttpAnswer> Perform(const core::HttpUrl& endpoint, const std::string& method,
                           const std::string& what, const std::string& path,
                           const httplib::Headers& headers, std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) return DeadlineExceededError(what + ": no time left");
  // httplib writes with send() flags 0 (no MSG_NOSIGNAL): a peer that closed first would
  // otherwise kill the daemon with SIGPIPE.
  static std::once_flag ignore_sigpipe;
  std::call_once(ignore_sigpipe, [] { std::signal(SIGPIPE, SIG_IGN); });
  std::unique_ptr<httplib::ClientImpl> client;
  if (endpoint.tls) {
    client = std::make_unique<httplib::SSLClient>(endpoint.host, endpoint.port);
  } else {
    client = std::make_unique<httplib::ClientImpl>(endpoint.host, endpoint.port);
  }
  client->set_connection_timeout(timeout);
  client->set_read_timeout(timeout);
  client->set_write_timeout(timeout);
  client->set_url_encode(false);

  HttpAnswer answer;
  bool too_long = false;
  httplib::Request request;
  request.method = method;
  request.path = endpoint.base_path + path;
  request.headers = headers;
  request.response_handler = [&](const httplib::Response& response) {
    answer.status = response.status;
    return true;
  };
  request.content_receiver = [&](const char* data, size_t length, uint64_t, uint64_t) {
    if (answer.body.size() + length > kMaxBody) {
      too_long = true;
      return false;
    }
    answer.body.append(data, length);
    return true;
  };
  httplib::Response response;
  httplib::Error error = httplib::Error::Success;
  const auto start = Clock::now();
  if (client->send(request, response, error)) {
    answer.status = response.status;
    return answer;
  }
  if (too_long) {
    return InvalidArgumentError(what + ": answer longer than " + std::to_string(kMaxBody) +
                                " bytes");
  }
  // A read that waited out the timeout reports Error::Read, like a reset connection; the
  // elapsed time tells them apart.
  const bool timed_out = error == httplib::Error::ConnectionTimeout ||
                         ((error == httplib::Error::Read || error == httplib::Error::Write) &&
                          Clock::now() - start >= timeout);
  const std::string detail = httplib::to_string(error);
  if (timed_out) {
    return DeadlineExceededError(what + ": no answer within " + std::to_string(timeout.count()) +
                                 "ms (" + detail + ")");
  }
  return UnavailableError(what + ": " + detail + " (is this an EC2 instance with IMDS?)");
}

Status StatusFor(const std::string& what, int status) {
  std::string message = what + ": HTTP " + std::to_string(status);
  if (status == 401) return UnauthenticatedError(message + " (IMDSv2 token rejected)");
  if (status == 403) return PermissionDeniedError(message + " (IMDS disabled for this instance)");
  return UnavailableError(message);
}

bool IsPlausibleInstanceType(std::string_view s) {
  if (s.empty() || s.size() > kMaxInstanceTypeLength || s.find('.') == std::string_view::npos) {
    return false;
  }
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

Result<std::string> QueryImdsInstanceType(const std::string& endpoint,
                                          std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto remaining = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  };
  std::string base = endpoint;
  while (!base.empty() && base.back() == '/') base.pop_back();
  const std::string context = "IMDS instance type from " + base;
  auto url = core::ParseHttpUrl(base);
  if (!url.ok()) return url.status().WithContext(context);

  std::string token_url = base + kTokenPath;
  auto token = Perform(*url, "PUT", "PUT " + token_url, kTokenPath,
                       {{kTokenTtlHeader, kTokenTtlSeconds}}, remaining());
  if (!token.ok()) return token.status().WithContext(context);
  if (token->status != 200) return StatusFor("PUT " + token_url, token->status).WithContext(context);
  // The token goes into a header line: refuse anything that could break or inject headers.
  bool token_ok = !token->body.empty();
  for (char c : token->body) token_ok = token_ok && c > ' ' && c <= '~';
  if (!token_ok) {
    return UnavailableError("PUT " + token_url + ": empty or malformed token").WithContext(context);
  }

  std::string type_url = base + kInstanceTypePath;
  auto type = Perform(*url, "GET", "GET " + type_url, kInstanceTypePath,
                      {{kTokenHeader, token->body}}, remaining());
  if (!type.ok()) return type.status().WithContext(context);
  if (type->status != 200) return StatusFor("GET " + type_url, type->status).WithContext(context);
  std::string value = type->body;
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r' || value.back() == ' ')) {
    value.pop_back();
  }
  if (!IsPlausibleInstanceType(value)) {
    return InvalidArgumentError("GET " + type_url + ": \"" + value.substr(0, 80) +
                                "\" is not an instance type")
        .WithContext(context);
  }
  return value;
}

}  // namespace efadra::neuron
