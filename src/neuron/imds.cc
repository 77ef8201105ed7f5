// IMDSv2 instance-type query with libcurl. IMDSv2 is token based: a PUT returns a session token
// that the GET must carry; nodes configured "IMDSv2 required" answer 401 to a token-less GET, so
// v1 is never attempted.
#include "efadra/neuron/imds.h"

#include <curl/curl.h>

#include <memory>
#include <mutex>

namespace efadra::neuron {
namespace {

using Clock = std::chrono::steady_clock;

// The token only has to outlive the one GET that follows.
constexpr char kTokenTtlHeader[] = "X-aws-ec2-metadata-token-ttl-seconds: 60";
constexpr char kTokenHeaderPrefix[] = "X-aws-ec2-metadata-token: ";
constexpr char kTokenPath[] = "/latest/api/token";
constexpr char kInstanceTypePath[] = "/latest/meta-data/instance-type";
// IMDS answers are tiny; refuse anything that is clearly not one.
constexpr size_t kMaxBody = 4096;
constexpr size_t kMaxInstanceTypeLength = 64;

struct CurlDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

void GlobalInitOnce() {
  // curl_global_init is not guaranteed thread-safe on every libcurl build; do it once.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t AppendBody(char* data, size_t size, size_t count, void* user) {
  auto* body = static_cast<std::string*>(user);
  size_t bytes = size * count;
  if (body->size() + bytes > kMaxBody) return 0;  // makes curl fail with CURLE_WRITE_ERROR
  body->append(data, bytes);
  return bytes;
}

struct HttpAnswer {
  long status = 0;
  std::string body;
};

// One request; `what` ("PUT http://.../latest/api/token") prefixes every error.
Result<HttpAnswer> Perform(const std::string& method, const std::string& url,
                           const std::string& header, std::chrono::milliseconds timeout) {
  std::string what = method + " " + url;
  if (timeout.count() <= 0) return DeadlineExceededError(what + ": no time left");
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return InternalError(what + ": curl_easy_init failed");
  std::unique_ptr<curl_slist, SlistDeleter> headers(curl_slist_append(nullptr, header.c_str()));
  if (!headers) return InternalError(what + ": out of memory");

  HttpAnswer answer;
  char error_buffer[CURL_ERROR_SIZE] = {};
  CURL* h = curl.get();
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "PUT") {
    // An empty PUT body; without it curl would send no Content-Length and IMDS would wait.
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &AppendBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer.body);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout.count()));
  // Signals must not be used for timeouts in a multi-threaded daemon.
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  // The link-local IMDS address must never be sent to an HTTP(S)_PROXY from the environment.
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);

  CURLcode code = curl_easy_perform(h);
  if (code != CURLE_OK) {
    std::string detail = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code);
    if (code == CURLE_OPERATION_TIMEDOUT) {
      return DeadlineExceededError(what + ": no answer within " +
                                   std::to_string(timeout.count()) + "ms (" + detail + ")");
    }
    if (code == CURLE_WRITE_ERROR) {
      return InvalidArgumentError(what + ": answer longer than " + std::to_string(kMaxBody) +
                                  " bytes");
    }
    return UnavailableError(what + ": " + detail + " (is this an EC2 instance with IMDS?)");
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &answer.status);
  return answer;
}

Status StatusFor(const std::string& what, long status) {
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
  GlobalInitOnce();
  const auto deadline = Clock::now() + timeout;
  auto remaining = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  };
  std::string base = endpoint;
  while (!base.empty() && base.back() == '/') base.pop_back();
  const std::string context = "IMDS instance type from " + base;

  std::string token_url = base + kTokenPath;
  auto token = Perform("PUT", token_url, kTokenTtlHeader, remaining());
  if (!token.ok()) return token.status().WithContext(context);
  if (token->status != 200) return StatusFor("PUT " + token_url, token->status).WithContext(context);
  // The token goes into a header line: refuse anything that could break or inject headers.
  bool token_ok = !token->body.empty();
  for (char c : token->body) token_ok = token_ok && c > ' ' && c <= '~';
  if (!token_ok) {
    return UnavailableError("PUT " + token_url + ": empty or malformed token").WithContext(context);
  }

  std::string type_url = base + kInstanceTypePath;
  auto type =
      Perform("GET", type_url, std::string(kTokenHeaderPrefix) + token->body, remaining());
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
