// Client on libcurl. One pool of easy handles per Client so connections are reused across
// calls (curl keeps the connection cache in the handle); watches use the multi interface so the
// stop flag is checked every 50 ms instead of curl's 1 s progress granularity.
#include "efadra/kube/client.h"

#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "efadra/core/version.h"
#include "efadra/kube/watch_stream.h"

namespace efadra::kube {
namespace {

using nlohmann::json;

constexpr std::chrono::milliseconds kWatchPoll{50};
constexpr std::chrono::seconds kMaxRetryAfter{30};
constexpr std::string_view kJsonContentType = "application/json";
constexpr std::string_view kApplyPatchContentType = "application/apply-patch+yaml";

std::once_flag g_curl_init;

const char* ReasonPhrase(long code) {
  switch (code) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
  }
}

StatusCode CodeForHttp(long http, bool post) {
  switch (http) {
    case 400: return StatusCode::kInvalidArgument;
    case 401: return StatusCode::kUnauthenticated;
    case 403: return StatusCode::kPermissionDenied;
    case 404: return StatusCode::kNotFound;
    case 409: return post ? StatusCode::kAlreadyExists : StatusCode::kAborted;
    case 410: return StatusCode::kOutOfRange;
    case 422: return StatusCode::kInvalidArgument;
    case 429: return StatusCode::kResourceExhausted;
    default: break;
  }
  if (http >= 500) return StatusCode::kUnavailable;
  return StatusCode::kUnknown;
}

// "<code> <phrase>: <Status.message>" (+ causes for 422).
std::string DescribeHttpError(long http, const std::string& body) {
  std::string msg = std::to_string(http);
  if (const char* phrase = ReasonPhrase(http); *phrase) msg += std::string(" ") + phrase;
  json status = json::parse(body, nullptr, false);
  if (!status.is_discarded() && status.is_object() && status.value("kind", "") == "Status") {
    std::string m = status.value("message", "");
    if (!m.empty()) msg += ": " + m;
  } else if (!body.empty()) {
    msg += ": " + body.substr(0, 256);
  }
  return msg;
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;

struct Response {
  CURLcode curl = CURLE_OK;
  std::string curl_error;
  long http = 0;
  std::string body;
  int retry_after = -1;
  size_t max_body = 0;
  bool body_too_large = false;
};

std::string DescribeBytes(size_t bytes) {
  if (bytes % (size_t{1} << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes) + " bytes";
}

// Returning less than the chunk makes curl abort the transfer (CURLE_WRITE_ERROR), so an
// oversized body is never accumulated.
size_t WriteToResponse(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<Response*>(user);
  const size_t len = size * n;
  if (r->body.size() + len > r->max_body) {
    r->body_too_large = true;
    return 0;
  }
  r->body.append(data, len);
  return len;
}

size_t HeaderCallback(char* data, size_t size, size_t n, void* user) {
  std::string_view line(data, size * n);
  constexpr std::string_view kRetry = "retry-after:";
  if (line.size() > kRetry.size()) {
    std::string lower(line.substr(0, kRetry.size()));
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == kRetry) {
      static_cast<Response*>(user)->retry_after =
          std::atoi(std::string(line.substr(kRetry.size())).c_str());
    }
  }
  return size * n;
}

std::string UrlEncode(const std::string& s) {
  char* e = curl_easy_escape(nullptr, s.c_str(), static_cast<int>(s.size()));
  std::string out = e ? e : "";
  curl_free(e);
  return out;
}

class CurlClient final : public Client {
 public:
  CurlClient(ClientConfig config, RetryPolicy retry) : config_(std::move(config)), retry_(retry) {
    if (config_.user_agent.empty()) config_.user_agent = std::string("efa-dra-driver/") + kVersion;
    if (!config_.filesystem) config_.filesystem = core::NewPosixFilesystem("/");
    while (!config_.server.empty() && config_.server.back() == '/') config_.server.pop_back();
    rng_.seed(std::random_device{}());
  }

  Result<json> Get(std::string_view path) override {
    return DoJson("GET", "GET", path, "", nullptr);
  }
  Result<json> List(std::string_view collection_path, const ListOptions& options) override {
    return DoJson("GET", "LIST", collection_path, Query(options, false), nullptr);
  }
  Result<json> Create(std::string_view collection_path, const json& object) override {
    return DoJson("POST", "POST", collection_path, "", &object);
  }
  Result<json> Update(std::string_view object_path, const json& object) override {
    return DoJson("PUT", "PUT", object_path, "", &object);
  }
  Status Delete(std::string_view object_path, const DeletePreconditions& pre) override {
    json body = {{"kind", "DeleteOptions"}, {"apiVersion", "v1"}};
    if (!pre.uid.empty()) body["preconditions"]["uid"] = pre.uid;
    if (!pre.resource_version.empty()) {
      body["preconditions"]["resourceVersion"] = pre.resource_version;
    }
    return DoJson("DELETE", "DELETE", object_path, "", &body).status();
  }
  Result<json> Apply(std::string_view object_path, const json& object,
                     std::string_view field_manager, bool force) override {
    if (field_manager.empty()) {
      return InvalidArgumentError("PATCH " + std::string(object_path) +
                                  ": server-side apply needs a field manager");
    }
    std::string query = "?fieldManager=" + UrlEncode(std::string(field_manager));
    if (force) query += "&force=true";
    // JSON is YAML, so the apply body is sent as JSON under the apply content type.
    return DoJson("PATCH", "PATCH", object_path, query, &object, kApplyPatchContentType);
  }

  Status Watch(std::string_view collection_path, const ListOptions& options,
               const std::function<bool(const WatchEvent&)>& on_event,
               const std::atomic<bool>& stop) override;

  void SetObserver(RequestObserver* observer) override { observer_ = observer; }

 private:
  static std::string Query(const ListOptions& o, bool watch) {
    std::vector<std::string> q;
    if (!o.field_selector.empty()) q.push_back("fieldSelector=" + UrlEncode(o.field_selector));
    if (!o.label_selector.empty()) q.push_back("labelSelector=" + UrlEncode(o.label_selector));
    if (watch) {
      q.push_back("watch=true");
      if (!o.resource_version.empty()) {
        q.push_back("resourceVersion=" + UrlEncode(o.resource_version));
      }
      q.push_back("timeoutSeconds=" + std::to_string(o.watch_timeout.count()));
    }
    std::string out;
    for (const auto& s : q) out += (out.empty() ? "?" : "&") + s;
    return out;
  }

  CurlPtr Acquire() {
    std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!pool_.empty()) {
        CurlPtr h = std::move(pool_.back());
        pool_.pop_back();
        curl_easy_reset(h.get());
        return h;
      }
    }
    return CurlPtr(curl_easy_init());
  }
  void Release(CurlPtr h) {
    std::lock_guard<std::mutex> lock(mu_);
    pool_.push_back(std::move(h));
  }

  // The bearer token (re-read from token_file on every request: projected tokens rotate and a
  // small file read is cheap next to a round trip).
  Result<std::string> Token() const {
    if (config_.token_file.empty()) return config_.token;
    auto content = config_.filesystem->ReadFile(config_.token_file);
    if (!content.ok()) {
      return content.status().WithContext("read token file " + config_.token_file);
    }
    std::string t = *content;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
    return t;
  }

  // ca_data, or the current content of ca_reload_file (re-read per request: a CA bundle is a
  // few KiB, cheap next to a round trip, and a check of size or mtime alone would miss an
  // in-place rewrite of the same size within one second).
  std::string CurrentCaData() const {
    if (config_.ca_reload_file.empty()) return config_.ca_data;
    auto content = config_.filesystem->ReadFile(config_.ca_reload_file);
    std::lock_guard<std::mutex> lock(ca_mu_);
    if (content.ok() && !content->empty()) {
      if (!reloaded_ca_.empty() && *content != reloaded_ca_) {
        spdlog::info("kube client: CA bundle {} changed; new connections trust the new one",
                     config_.filesystem->HostPath(config_.ca_reload_file));
      }
      reloaded_ca_ = std::move(content).value();
    } else if (reloaded_ca_.empty()) {
      return config_.ca_data;
    }
    return reloaded_ca_;
  }

  // Common options; `headers` must outlive the transfer.
  Status Setup(CURL* h, const std::string& method, const std::string& url,
               curl_slist** headers, std::chrono::milliseconds timeout,
               std::string_view content_type = kJsonContentType) const {
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, config_.user_agent.c_str());
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(std::min(config_.connect_timeout, timeout).count()));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    if (method != "GET") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (!config_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, config_.ca_file.c_str());
    // CURL_BLOB_COPY: curl keeps its own copy, so the bundle may change after this call.
    // A changed bundle also stops curl from reusing connections set up under the old one
    // (the blob is part of the SSL config a reused connection must match).
    const std::string ca_data = CurrentCaData();
    if (!ca_data.empty()) {
      curl_blob blob{const_cast<char*>(ca_data.data()), ca_data.size(), CURL_BLOB_COPY};
      curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
    }
    if (config_.insecure_skip_tls_verify) {
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (!config_.client_cert_file.empty()) {
      curl_easy_setopt(h, CURLOPT_SSLCERT, config_.client_cert_file.c_str());
    }
    if (!config_.client_key_file.empty()) {
      curl_easy_setopt(h, CURLOPT_SSLKEY, config_.client_key_file.c_str());
    }
    if (!config_.client_cert_data.empty()) {
      curl_blob blob{const_cast<char*>(config_.client_cert_data.data()),
                     config_.client_cert_data.size(), CURL_BLOB_COPY};
      curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &blob);
      curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (!config_.client_key_data.empty()) {
      curl_blob blob{const_cast<char*>(config_.client_key_data.data()),
                     config_.client_key_data.size(), CURL_BLOB_COPY};
      curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &blob);
      curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    }
    EFADRA_ASSIGN_OR_RETURN(std::string token, Token());
    *headers = curl_slist_append(*headers, "Accept: application/json");
    *headers = curl_slist_append(*headers, ("Content-Type: " + std::string(content_type)).c_str());
    if (!token.empty()) {
      *headers = curl_slist_append(*headers, ("Authorization: Bearer " + token).c_str());
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, *headers);
    return Status::Ok();
  }

  void Observe(std::string_view verb, long code, std::chrono::steady_clock::time_point start) {
    if (RequestObserver* o = observer_.load()) {
      o->OnRequest(verb, static_cast<int>(code),
                   std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::steady_clock::now() - start));
    }
  }

  Response Perform(const std::string& method, std::string_view verb, const std::string& url,
                   const std::string* body, std::string_view content_type) {
    Response r;
    r.max_body = config_.max_response_bytes;
    auto start = std::chrono::steady_clock::now();
    CurlPtr h = Acquire();
    curl_slist* headers = nullptr;
    Status setup = Setup(h.get(), method, url, &headers, config_.request_timeout, content_type);
    if (!setup.ok()) {
      r.curl = CURLE_READ_ERROR;
      r.curl_error = setup.message();
      curl_slist_free_all(headers);
      Release(std::move(h));
      return r;
    }
    if (body != nullptr) {
      curl_easy_setopt(h.get(), CURLOPT_POSTFIELDS, body->c_str());
      curl_easy_setopt(h.get(), CURLOPT_POSTFIELDSIZE, static_cast<long>(body->size()));
    }
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(h.get(), CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h.get(), CURLOPT_WRITEFUNCTION, WriteToResponse);
    curl_easy_setopt(h.get(), CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h.get(), CURLOPT_HEADERFUNCTION, HeaderCallback);
    curl_easy_setopt(h.get(), CURLOPT_HEADERDATA, &r);
    r.curl = curl_easy_perform(h.get());
    if (r.curl != CURLE_OK) {
      r.curl_error = errbuf[0] ? errbuf : curl_easy_strerror(r.curl);
    } else {
      curl_easy_getinfo(h.get(), CURLINFO_RESPONSE_CODE, &r.http);
    }
    curl_easy_setopt(h.get(), CURLOPT_ERRORBUFFER, nullptr);
    curl_slist_free_all(headers);
    Release(std::move(h));
    Observe(verb, r.http, start);
    return r;
  }

  std::chrono::milliseconds Backoff(int attempt) {
    // Full jitter: uniform in [0, min(cap, initial * 2^attempt)].
    int64_t ceiling = retry_.initial_backoff.count();
    for (int i = 0; i < attempt && ceiling < retry_.max_backoff.count(); ++i) ceiling *= 2;
    ceiling = std::min<int64_t>(ceiling, retry_.max_backoff.count());
    std::lock_guard<std::mutex> lock(mu_);
    return std::chrono::milliseconds(
        std::uniform_int_distribution<int64_t>(0, std::max<int64_t>(ceiling, 0))(rng_));
  }

  // `query` ("" or "?..." built by Query() from escaped values) is not part of the check.
  Result<json> DoJson(const std::string& method, std::string_view verb, std::string_view path,
                      const std::string& query, const json* object,
                      std::string_view content_type = kJsonContentType) {
    EFADRA_RETURN_IF_ERROR(ValidateRequestPath(path).WithContext(method));
    const std::string where = method + " " + std::string(path) + query;
    std::string body;
    if (object != nullptr) body = object->dump();
    const std::string url = config_.server + std::string(path) + query;
    const int attempts = std::max(1, retry_.max_attempts);
    Status last;
    for (int attempt = 0; attempt < attempts; ++attempt) {
      Response r = Perform(method, verb, url, object != nullptr ? &body : nullptr, content_type);
      bool retryable = false;
      if (r.body_too_large) {
        // Not retried: the next attempt would download the same body again.
        return ResourceExhaustedError(where + ": response from " + config_.server +
                                      " exceeds the limit of " +
                                      DescribeBytes(config_.max_response_bytes) +
                                      "; transfer aborted");
      }
      if (r.curl != CURLE_OK) {
        if (r.curl == CURLE_READ_ERROR && r.http == 0 && r.body.empty() &&
            r.curl_error.find("token") != std::string::npos) {
          return UnauthenticatedError(where + ": " + r.curl_error);
        }
        StatusCode code = r.curl == CURLE_OPERATION_TIMEDOUT ? StatusCode::kDeadlineExceeded
                                                             : StatusCode::kUnavailable;
        if (r.curl == CURLE_SSL_CACERT_BADFILE || r.curl == CURLE_SSL_CERTPROBLEM ||
            r.curl == CURLE_PEER_FAILED_VERIFICATION) {
          code = StatusCode::kUnavailable;
        }
        last = Status(code, where + ": " + r.curl_error + " (" + config_.server + ")");
        retryable = true;
      } else if (r.http >= 200 && r.http < 300) {
        json parsed = json::parse(r.body, nullptr, false);
        if (parsed.is_discarded()) {
          return InternalError(where + ": response is not JSON: " + r.body.substr(0, 128));
        }
        return parsed;
      } else {
        last = Status(CodeForHttp(r.http, method == "POST"),
                      where + ": " + DescribeHttpError(r.http, r.body));
        retryable = r.http == 429 || r.http >= 500;
      }
      if (!retryable || attempt + 1 >= attempts) break;
      std::chrono::milliseconds delay = Backoff(attempt);
      if (r.retry_after > 0) {
        delay = std::max<std::chrono::milliseconds>(
            delay, std::min<std::chrono::seconds>(std::chrono::seconds(r.retry_after),
                                                  kMaxRetryAfter));
      }
      std::this_thread::sleep_for(delay);
    }
    return last;
  }

  ClientConfig config_;
  RetryPolicy retry_;
  std::atomic<RequestObserver*> observer_{nullptr};
  mutable std::mutex ca_mu_;
  mutable std::string reloaded_ca_;  // last good content of ca_reload_file; guarded by ca_mu_
  std::mutex mu_;  // guards pool_ and rng_
  std::vector<CurlPtr> pool_;
  std::mt19937_64 rng_;
};

}  // namespace

Status ConsumeWatchChunk(std::string& pending, std::string_view chunk,
                         const std::function<bool(const WatchEvent&)>& on_event, bool* stopped) {
  pending.append(chunk);
  size_t pos;
  while ((pos = pending.find('\n')) != std::string::npos) {
    std::string line = pending.substr(0, pos);
    pending.erase(0, pos + 1);
    if (line.empty()) continue;
    // Only well-typed fields are read: json::value() throws on a mistyped one, and a throw
    // here would cross libcurl's C callback.
    json j = json::parse(line, nullptr, false);
    const auto type = j.is_object() ? j.find("type") : j.end();
    const auto object = j.is_object() ? j.find("object") : j.end();
    if (j.is_discarded() || !j.is_object() || (type != j.end() && !type->is_string()) ||
        (object != j.end() && !object->is_object())) {
      return DataLossError("watch event is not a JSON event object: " + line.substr(0, 128));
    }
    WatchEvent event{type != j.end() ? type->get<std::string>() : "",
                     object != j.end() ? *object : json::object()};
    const bool keep = on_event(event);
    if (event.type == "ERROR") {
      const auto code = event.object.find("code");
      const auto message = event.object.find("message");
      const long http = code != event.object.end() && code->is_number_integer()
                            ? code->get<long>() : 500;
      return Status(CodeForHttp(http, false),
                    "watch ERROR event: " + std::to_string(http) + " " +
                        (message != event.object.end() && message->is_string()
                             ? message->get<std::string>() : ""));
    }
    if (!keep) {
      *stopped = true;
      return Status::Ok();
    }
  }
  return Status::Ok();
}

namespace {

struct WatchSink {
  std::string buffer;
  size_t max_line = 0;
  const std::function<bool(const WatchEvent&)>* on_event = nullptr;
  bool stopped_by_callback = false;
  Status error;
  long http = 0;
  std::string error_body;
  CURL* handle = nullptr;
};

size_t WatchWrite(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<WatchSink*>(user);
  const size_t len = size * n;
  if (sink->http == 0) curl_easy_getinfo(sink->handle, CURLINFO_RESPONSE_CODE, &sink->http);
  if (sink->http != 200) {
    // Only the start of an error body is ever shown; the rest is dropped, not stored.
    constexpr size_t kMaxErrorBody = 64 * 1024;
    if (sink->error_body.size() < kMaxErrorBody) {
      sink->error_body.append(data, std::min(len, kMaxErrorBody - sink->error_body.size()));
    }
    return len;
  }
  Status parsed = ConsumeWatchChunk(sink->buffer, std::string_view(data, len), *sink->on_event,
                                    &sink->stopped_by_callback);
  if (!parsed.ok()) sink->error = std::move(parsed);
  if (!sink->error.ok() || sink->stopped_by_callback) return 0;  // aborts the transfer
  // What is left is the start of an event whose newline has not arrived yet.
  if (sink->buffer.size() > sink->max_line) {
    sink->error = ResourceExhaustedError("watch event exceeds the limit of " +
                                         DescribeBytes(sink->max_line) + "; stream aborted");
    return 0;
  }
  return len;
}

Status CurlClient::Watch(std::string_view collection_path, const ListOptions& options,
                         const std::function<bool(const WatchEvent&)>& on_event,
                         const std::atomic<bool>& stop) {
  EFADRA_RETURN_IF_ERROR(ValidateRequestPath(collection_path).WithContext("WATCH"));
  const std::string path = std::string(collection_path) + Query(options, true);
  const std::string where = "WATCH " + path;
  auto start = std::chrono::steady_clock::now();
  CurlPtr h = Acquire();
  curl_slist* headers = nullptr;
  // The stream may legitimately last the whole watch timeout; give the server a margin to end it.
  auto total = std::chrono::duration_cast<std::chrono::milliseconds>(options.watch_timeout) +
               config_.request_timeout;
  Status setup = Setup(h.get(), "GET", config_.server + path, &headers, total);
  if (!setup.ok()) {
    curl_slist_free_all(headers);
    return setup.WithContext(where);
  }
  WatchSink sink;
  sink.max_line = config_.max_watch_line_bytes;
  sink.on_event = &on_event;
  sink.handle = h.get();
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(h.get(), CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h.get(), CURLOPT_WRITEFUNCTION, WatchWrite);
  curl_easy_setopt(h.get(), CURLOPT_WRITEDATA, &sink);

  CURLM* multi = curl_multi_init();
  curl_multi_add_handle(multi, h.get());
  int running = 1;
  bool cancelled = false;
  while (running > 0) {
    if (stop.load()) {
      cancelled = true;
      break;
    }
    CURLMcode mc = curl_multi_perform(multi, &running);
    if (mc != CURLM_OK) break;
    if (running == 0) break;
    curl_multi_poll(multi, nullptr, 0, static_cast<int>(kWatchPoll.count()), nullptr);
  }
  CURLcode result = CURLE_OK;
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
    if (msg->msg == CURLMSG_DONE) result = msg->data.result;
  }
  if (sink.http == 0) curl_easy_getinfo(h.get(), CURLINFO_RESPONSE_CODE, &sink.http);
  curl_multi_remove_handle(multi, h.get());
  curl_multi_cleanup(multi);
  curl_easy_setopt(h.get(), CURLOPT_ERRORBUFFER, nullptr);
  curl_slist_free_all(headers);
  // A handle whose transfer was aborted midway is not put back: its connection is unusable.
  Observe("WATCH", sink.http, start);
  if (cancelled) return CancelledError(where + ": stopped");
  if (sink.stopped_by_callback) return Status::Ok();
  if (!sink.error.ok()) return sink.error.WithContext(where + " (" + config_.server + ")");
  if (sink.http != 0 && sink.http != 200) {
    return Status(CodeForHttp(sink.http, false),
                  where + ": " + DescribeHttpError(sink.http, sink.error_body));
  }
  if (result != CURLE_OK) {
    StatusCode code = result == CURLE_OPERATION_TIMEDOUT ? StatusCode::kDeadlineExceeded
                                                         : StatusCode::kUnavailable;
    return Status(code, where + ": " + (errbuf[0] ? errbuf : curl_easy_strerror(result)));
  }
  return Status::Ok();
}

bool IsPchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("-._~!$&'()*+,;=:@").find(static_cast<char>(c)) !=
         std::string_view::npos;
}

}  // namespace

Status ValidateRequestPath(std::string_view path) {
  auto refuse = [&](const std::string& why) {
    std::string shown;
    for (char c : path.substr(0, 256)) {
      const auto u = static_cast<unsigned char>(c);
      shown += u < 0x20 || u >= 0x7f ? '?' : c;
    }
    return InvalidArgumentError("request path \"" + shown + "\": " + why);
  };
  if (path.empty() || path[0] != '/') return refuse("does not start with '/'");
  // A query the caller added ("?fieldManager=...") is already escaped; it may use '/', '?'
  // and '%', but nothing that would end the request line or start a fragment.
  if (const size_t q = path.find('?'); q != std::string_view::npos) {
    for (char c : path.substr(q + 1)) {
      const auto u = static_cast<unsigned char>(c);
      if (!IsPchar(u) && c != '/' && c != '?' && c != '%') {
        return refuse("has a character not allowed in a query");
      }
    }
    path = path.substr(0, q);
  }
  size_t begin = 1;
  while (begin <= path.size()) {
    size_t end = path.find('/', begin);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view segment = path.substr(begin, end - begin);
    if (segment.empty()) return refuse("has an empty segment");
    if (segment == "." || segment == "..") {
      return refuse("has a \"" + std::string(segment) + "\" segment");
    }
    for (char c : segment) {
      if (!IsPchar(static_cast<unsigned char>(c))) {
        return refuse("has a character not allowed in a path segment");
      }
    }
    begin = end + 1;
  }
  return Status::Ok();
}

Result<std::unique_ptr<Client>> Client::Create(ClientConfig config, RetryPolicy retry) {
  if (config.server.empty()) {
    return InvalidArgumentError("kube client" +
                                (config.source.empty() ? "" : " (" + config.source + ")") +
                                ": no server URL");
  }
  if (config.server.rfind("http://", 0) != 0 && config.server.rfind("https://", 0) != 0) {
    return InvalidArgumentError("kube client" +
                                (config.source.empty() ? "" : " (" + config.source + ")") +
                                ": server \"" + config.server + "\" is not an http(s) URL");
  }
  auto host = core::NewPosixFilesystem("/");
  for (const auto& [field, file] :
       {std::pair<const char*, const std::string*>{"certificate-authority", &config.ca_file},
        {"client-certificate", &config.client_cert_file},
        {"client-key", &config.client_key_file}}) {
    if (file->empty()) continue;
    auto content = host->ReadFile(*file);
    if (!content.ok()) {
      return InvalidArgumentError("kube client" +
                                  (config.source.empty() ? "" : " (" + config.source + ")") +
                                  ": " + field + " " + *file + ": " + content.status().message());
    }
  }
  const bool has_cert = !config.client_cert_file.empty() || !config.client_cert_data.empty();
  const bool has_key = !config.client_key_file.empty() || !config.client_key_data.empty();
  if (has_cert != has_key) {
    return InvalidArgumentError("kube client" +
                                (config.source.empty() ? "" : " (" + config.source + ")") +
                                ": client certificate and key must be given together");
  }
  const std::string source = config.source.empty() ? config.server : config.source;
  if (config.insecure_skip_tls_verify) {
    spdlog::warn("kube client ({}): insecure-skip-tls-verify is set: the API server's "
                 "certificate is not checked, anyone on the path can impersonate it",
                 source);
  }
  const bool has_token = !config.token.empty() || !config.token_file.empty();
  if (has_token && config.server.rfind("http://", 0) == 0) {
    spdlog::warn("kube client ({}): a bearer token is sent over plain http:// to {}: anyone "
                 "on the path can read it",
                 source, config.server);
  }
  if (config.max_response_bytes == 0 || config.max_watch_line_bytes == 0) {
    return InvalidArgumentError("kube client: response and watch-event limits must be > 0");
  }
  return std::unique_ptr<Client>(new CurlClient(std::move(config), retry));
}

}  // namespace efadra::kube
