// Client on cpp-httplib's client (plain or TLS). A pool of httplib clients per Client, each
// holding one keep-alive connection, so connections are reused across calls; TLS contexts are
// set up here with OpenSSL (trust, host check, client certificate) rather than by httplib.
// httplib bounds single reads and writes only; one thread per Client (Interrupter) ends a
// request at its deadline, and a watch within kWatchPoll of its stop flag being set.
#include "efadra/kube/client.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <csignal>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "efadra/core/http_url.h"
#include "efadra/core/version.h"
#include "efadra/kube/watch_stream.h"

namespace efadra::kube {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kWatchPoll{50};
constexpr std::chrono::seconds kMaxRetryAfter{30};
constexpr std::string_view kJsonContentType = "application/json";
constexpr std::string_view kApplyPatchContentType = "application/apply-patch+yaml";

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

std::string DescribeBytes(size_t bytes) {
  if (bytes % (size_t{1} << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes) + " bytes";
}

// The oldest OpenSSL error of this thread (what failed first), and clears the queue so the
// next request starts clean.
std::string TakeOpenSslError() {
  const unsigned long first = ERR_get_error();
  ERR_clear_error();
  if (first == 0) return "";
  char text[256];
  ERR_error_string_n(first, text, sizeof(text));
  return text;
}

std::string DescribeTransportError(httplib::Error error) {
  switch (error) {
    case httplib::Error::Connection: return "cannot connect";
    case httplib::Error::ConnectionTimeout: return "connect timed out";
    case httplib::Error::Read: return "connection lost or timed out while reading the response";
    case httplib::Error::Write: return "connection lost or timed out while sending the request";
    case httplib::Error::SSLConnection: return "TLS handshake failed";
    case httplib::Error::SSLLoadingCerts: return "cannot load TLS trust";
    case httplib::Error::SSLServerVerification: return "server certificate not trusted";
    default: return "HTTP transport error " + httplib::to_string(error);
  }
}

// Percent-encodes everything but RFC 3986 unreserved characters (query values).
std::string UrlEncode(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  return out;
}

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Deleter {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct KeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

// Every certificate of a PEM bundle, in order; kInvalidArgument naming `field` if none.
Result<std::vector<X509Ptr>> ParseCertificates(const std::string& pem, const std::string& field) {
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> certs;
  while (bio) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    certs.push_back(std::move(cert));
  }
  ERR_clear_error();  // the read that ended the loop
  if (certs.empty()) return InvalidArgumentError(field + ": no PEM certificate");
  return certs;
}

// One pooled transport: an httplib client with (at most) one open keep-alive connection, and
// the CA bundle its TLS context trusts.
struct Transport {
  std::unique_ptr<httplib::ClientImpl> http;
  std::string ca_pem;
};

// What one attempt produced.
struct Response {
  std::optional<httplib::Error> transport_error;  // set when no complete response arrived
  std::string transport_detail;
  bool timed_out = false;
  Status setup;  // token or TLS setup failed before any request
  int http = 0;
  std::string body;
  int retry_after = -1;
  bool body_too_large = false;
};

// Ends requests blocked in httplib: httplib bounds each read and write by a timeout but not
// the whole exchange, and a read cannot be woken by a flag. A registered request whose deadline
// has passed, or whose stop flag is set, has its transport stopped (httplib shuts the socket
// down, so the blocked read fails at once). One thread per Client, started with the first
// request: it sleeps until the earliest deadline, and polls stop flags every kWatchPoll while a
// watch is open.
class Interrupter {
 public:
  Interrupter() = default;
  Interrupter(const Interrupter&) = delete;
  Interrupter& operator=(const Interrupter&) = delete;
  ~Interrupter() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  // Registers `http` for the lifetime of the object; it must outlive it.
  class Registration {
   public:
    Registration(Interrupter& owner, httplib::ClientImpl& http, Clock::time_point deadline,
                 const std::atomic<bool>* stop)
        : owner_(owner), id_(owner.Add(http, deadline, stop)) {}
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;
    ~Registration() { owner_.Remove(id_); }
    // Whether the deadline (not the stop flag) made the interrupter stop the request.
    bool deadline_passed() const { return owner_.DeadlinePassed(id_); }

   private:
    Interrupter& owner_;
    const uint64_t id_;
  };

 private:
  struct Entry {
    uint64_t id;
    httplib::ClientImpl* http;
    Clock::time_point deadline;
    const std::atomic<bool>* stop;
    bool deadline_passed = false;
    bool stopping = false;  // stop() is running outside the lock
  };

  uint64_t Add(httplib::ClientImpl& http, Clock::time_point deadline,
               const std::atomic<bool>* stop) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
    entries_.push_back(Entry{++last_id_, &http, deadline, stop});
    // Woken only when it would otherwise look too late: with a watch open it polls anyway, and
    // a request's deadline is usually later than the next poll.
    if (WakeTime(entries_.back()) < wake_at_) cv_.notify_all();
    return last_id_;
  }

  void Remove(uint64_t id) {
    std::unique_lock<std::mutex> lock(mu_);
    auto find = [&] {
      return std::find_if(entries_.begin(), entries_.end(),
                          [&](const Entry& e) { return e.id == id; });
    };
    // The transport may be released (or destroyed) once this returns.
    cv_.wait(lock, [&] {
      auto it = find();
      return it == entries_.end() || !it->stopping;
    });
    if (auto it = find(); it != entries_.end()) entries_.erase(it);
  }

  bool DeadlinePassed(uint64_t id) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Entry& e : entries_) {
      if (e.id == id) return e.deadline_passed;
    }
    return false;
  }

  // When the thread must look at `e` next: its deadline, or the next poll of its stop flag;
  // once stopped, the next round of stop() (not at once: the request is on its way out).
  static Clock::time_point WakeTime(const Entry& e) {
    const auto poll = Clock::now() + kWatchPoll;
    if (e.deadline_passed || (e.stop != nullptr && e.stop->load())) return poll;
    return e.stop != nullptr ? std::min(e.deadline, poll) : e.deadline;
  }

  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!quit_) {
      wake_at_ = Clock::time_point::max();
      for (const Entry& e : entries_) wake_at_ = std::min(wake_at_, WakeTime(e));
      if (wake_at_ == Clock::time_point::max()) {
        cv_.wait(lock);
      } else {
        cv_.wait_until(lock, wake_at_);
      }
      if (quit_) break;
      // stop() is called again every round while the condition holds: one that lands before
      // httplib has taken the socket for the request has nothing to shut down yet.
      std::vector<std::pair<uint64_t, httplib::ClientImpl*>> to_stop;
      const auto now = Clock::now();
      for (Entry& e : entries_) {
        const bool stopped = e.stop != nullptr && e.stop->load();
        const bool expired = now >= e.deadline;
        if (!stopped && !expired) continue;
        e.deadline_passed = e.deadline_passed || (expired && !stopped);
        e.stopping = true;  // Remove() waits, so e.http stays valid below
        to_stop.emplace_back(e.id, e.http);
      }
      if (to_stop.empty()) continue;
      // Outside the lock: stop() waits while httplib connects, and new requests must not.
      lock.unlock();
      for (const auto& [id, http] : to_stop) http->stop();
      lock.lock();
      for (Entry& e : entries_) e.stopping = false;
      cv_.notify_all();
    }
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Entry> entries_;
  uint64_t last_id_ = 0;
  Clock::time_point wake_at_ = Clock::time_point::min();  // when Run() looks next
  bool quit_ = false;
  std::thread thread_;
};

class HttplibClient final : public Client {
 public:
  HttplibClient(ClientConfig config, core::HttpUrl url, RetryPolicy retry)
      : config_(std::move(config)), url_(std::move(url)), retry_(retry) {
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

  // Trust, host check and client certificate of a new TLS transport. OpenSSL verifies the
  // chain and the host (or IP) during the handshake, so a failure ends the handshake.
  Status SetUpTls(SSL_CTX* ctx, const std::string& ca_pem) const {
    if (ctx == nullptr) return InternalError("cannot create a TLS context: " + TakeOpenSslError());
    if (config_.insecure_skip_tls_verify) {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    } else {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
      X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx);
      unsigned char address[sizeof(in6_addr)];
      const bool is_ip = inet_pton(AF_INET, url_.host.c_str(), address) == 1 ||
                         inet_pton(AF_INET6, url_.host.c_str(), address) == 1;
      const int host_set = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, url_.host.c_str())
                                 : X509_VERIFY_PARAM_set1_host(param, url_.host.c_str(), 0);
      if (host_set != 1) {
        return InvalidArgumentError("server host " + url_.host + ": " + TakeOpenSslError());
      }
      if (config_.ca_file.empty() && ca_pem.empty()) {
        SSL_CTX_set_default_verify_paths(ctx);
      }
      if (!config_.ca_file.empty() &&
          SSL_CTX_load_verify_locations(ctx, config_.ca_file.c_str(), nullptr) != 1) {
        return InvalidArgumentError("certificate-authority " + config_.ca_file + ": " +
                                    TakeOpenSslError());
      }
      if (!ca_pem.empty()) {
        const std::string field = config_.ca_reload_file.empty()
                                      ? std::string("certificate-authority-data")
                                      : "CA bundle " + config_.ca_reload_file;
        EFADRA_ASSIGN_OR_RETURN(auto certs, ParseCertificates(ca_pem, field));
        X509_STORE* store = SSL_CTX_get_cert_store(ctx);
        for (const auto& cert : certs) {
          if (X509_STORE_add_cert(store, cert.get()) != 1) {
            // The same certificate twice in a bundle is harmless.
            if (ERR_GET_REASON(ERR_peek_last_error()) != X509_R_CERT_ALREADY_IN_HASH_TABLE) {
              return InvalidArgumentError("certificate-authority-data: " + TakeOpenSslError());
            }
            ERR_clear_error();
          }
        }
      }
    }
    if (!config_.client_cert_file.empty() &&
        SSL_CTX_use_certificate_chain_file(ctx, config_.client_cert_file.c_str()) != 1) {
      return InvalidArgumentError("client-certificate " + config_.client_cert_file + ": " +
                                  TakeOpenSslError());
    }
    if (!config_.client_cert_data.empty()) {
      EFADRA_ASSIGN_OR_RETURN(auto chain, ParseCertificates(config_.client_cert_data,
                                                            "client-certificate-data"));
      if (SSL_CTX_use_certificate(ctx, chain.front().get()) != 1) {
        return InvalidArgumentError("client-certificate-data: " + TakeOpenSslError());
      }
      for (size_t i = 1; i < chain.size(); ++i) {
        if (SSL_CTX_add1_chain_cert(ctx, chain[i].get()) != 1) {
          return InvalidArgumentError("client-certificate-data: " + TakeOpenSslError());
        }
      }
    }
    if (!config_.client_key_file.empty() &&
        SSL_CTX_use_PrivateKey_file(ctx, config_.client_key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return InvalidArgumentError("client-key " + config_.client_key_file + ": " +
                                  TakeOpenSslError());
    }
    if (!config_.client_key_data.empty()) {
      const std::string& pem = config_.client_key_data;
      std::unique_ptr<BIO, BioDeleter> bio(
          BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
      std::unique_ptr<EVP_PKEY, KeyDeleter> key(
          bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
      if (!key || SSL_CTX_use_PrivateKey(ctx, key.get()) != 1) {
        return InvalidArgumentError("client-key-data: " + TakeOpenSslError());
      }
    }
    const bool has_cert = !config_.client_cert_file.empty() || !config_.client_cert_data.empty();
    if (has_cert && SSL_CTX_check_private_key(ctx) != 1) {
      return InvalidArgumentError("client key does not match the client certificate: " +
                                  TakeOpenSslError());
    }
    return Status::Ok();
  }

  // A pooled transport set up for `ca_pem`, or a new one. Pooled transports set up for
  // another bundle are dropped: once the CA rotates, connections verified under the old one
  // are not reused.
  Result<std::unique_ptr<Transport>> Acquire(const std::string& ca_pem) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      while (!pool_.empty()) {
        std::unique_ptr<Transport> t = std::move(pool_.back());
        pool_.pop_back();
        if (t->ca_pem == ca_pem) return t;
      }
    }
    auto t = std::make_unique<Transport>();
    if (url_.tls) {
      auto tls = std::make_unique<httplib::SSLClient>(url_.host, url_.port);
      // Verification is OpenSSL's, set up on the context (SetUpTls), not httplib's.
      tls->enable_server_certificate_verification(false);
      EFADRA_RETURN_IF_ERROR(SetUpTls(tls->ssl_context(), ca_pem));
      t->http = std::move(tls);
    } else {
      t->http = std::make_unique<httplib::ClientImpl>(url_.host, url_.port);
    }
    t->ca_pem = ca_pem;  // also for http://, so that Acquire() matches it next time
    t->http->set_keep_alive(true);
    t->http->set_tcp_nodelay(true);
    // Paths are validated and queries escaped here; httplib must send them byte for byte.
    t->http->set_url_encode(false);
    return t;
  }
  void Release(std::unique_ptr<Transport> t) {
    std::lock_guard<std::mutex> lock(mu_);
    pool_.push_back(std::move(t));
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

  // The request line and headers every call sends; kUnauthenticated if the token is unreadable.
  Result<httplib::Request> NewRequest(const std::string& method, const std::string& path,
                                      std::string_view content_type) const {
    auto token = Token();
    if (!token.ok()) return UnauthenticatedError(token.status().message());
    httplib::Request request;
    request.method = method;
    request.path = url_.base_path + path;
    request.headers = {{"Accept", "application/json"},
                       {"Content-Type", std::string(content_type)},
                       {"User-Agent", config_.user_agent}};
    if (!token->empty()) request.headers.emplace("Authorization", "Bearer " + *token);
    return request;
  }

  void SetTimeouts(httplib::ClientImpl& http, std::chrono::milliseconds timeout) const {
    http.set_connection_timeout(std::min(config_.connect_timeout, timeout));
    http.set_read_timeout(timeout);
    http.set_write_timeout(timeout);
  }

  void Observe(std::string_view verb, long code, Clock::time_point start) {
    if (RequestObserver* o = observer_.load()) {
      o->OnRequest(verb, static_cast<int>(code),
                   std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start));
    }
  }

  // Sends `request` and fills in the transport outcome. httplib bounds each read and write by
  // the timeouts; the interrupter bounds the whole exchange by `timeout` and ends it early
  // when `stop` (may be null) is set.
  bool Send(httplib::ClientImpl& http, httplib::Request& request,
            std::chrono::milliseconds timeout, Clock::time_point start,
            const std::atomic<bool>* stop, Response* r) {
    httplib::Response response;
    httplib::Error error = httplib::Error::Success;
    Interrupter::Registration registration(interrupter_, http, start + timeout, stop);
    ERR_clear_error();
    if (http.send(request, response, error)) {
      r->http = response.status;
      return true;
    }
    r->transport_error = error;
    r->transport_detail = TakeOpenSslError();
    // A read that waited out the timeout reports Error::Read, like a lost connection; the
    // elapsed time tells them apart.
    r->timed_out = registration.deadline_passed() ||
                   error == httplib::Error::ConnectionTimeout ||
                   ((error == httplib::Error::Read || error == httplib::Error::Write) &&
                    Clock::now() - start >= timeout);
    return false;
  }

  Response Perform(const std::string& method, std::string_view verb, const std::string& path,
                   const std::string* body, std::string_view content_type) {
    Response r;
    const auto start = Clock::now();
    auto request = NewRequest(method, path, content_type);
    if (!request.ok()) {
      r.setup = request.status();
      return r;
    }
    auto transport = Acquire(CurrentCaData());
    if (!transport.ok()) {
      r.setup = transport.status();
      return r;
    }
    httplib::ClientImpl& http = *(*transport)->http;
    const std::chrono::milliseconds timeout = config_.request_timeout;
    SetTimeouts(http, timeout);
    if (body != nullptr) request->body = *body;
    request->response_handler = [&](const httplib::Response& response) {
      r.http = response.status;
      if (response.has_header("Retry-After")) {
        r.retry_after = std::atoi(response.get_header_value("Retry-After").c_str());
      }
      return true;
    };
    // Returning false aborts the transfer, so an oversized body is never accumulated.
    request->content_receiver = [&](const char* data, size_t length, uint64_t, uint64_t) {
      if (r.body.size() + length > config_.max_response_bytes) {
        r.body_too_large = true;
        return false;
      }
      r.body.append(data, length);
      return true;
    };
    if (!Send(http, *request, timeout, start, nullptr, &r)) r.http = 0;
    Release(std::move(*transport));
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

  std::string TransportMessage(const Response& r) const {
    std::string message = DescribeTransportError(*r.transport_error);
    if (!r.transport_detail.empty()) message += ": " + r.transport_detail;
    return message + " (" + config_.server + ")";
  }

  // `query` ("" or "?..." built by Query() from escaped values) is not part of the check.
  Result<json> DoJson(const std::string& method, std::string_view verb, std::string_view path,
                      const std::string& query, const json* object,
                      std::string_view content_type = kJsonContentType) {
    EFADRA_RETURN_IF_ERROR(ValidateRequestPath(path).WithContext(method));
    const std::string where = method + " " + std::string(path) + query;
    std::string body;
    if (object != nullptr) body = object->dump();
    const std::string target = std::string(path) + query;
    const int attempts = std::max(1, retry_.max_attempts);
    Status last;
    for (int attempt = 0; attempt < attempts; ++attempt) {
      Response r = Perform(method, verb, target, object != nullptr ? &body : nullptr,
                           content_type);
      bool retryable = false;
      if (!r.setup.ok()) {
        // An unreadable token or an unusable TLS setup: the next attempt would fail the same.
        const StatusCode code = r.setup.code() == StatusCode::kUnauthenticated
                                    ? StatusCode::kUnauthenticated
                                    : StatusCode::kUnavailable;
        return Status(code, where + ": " + r.setup.message());
      }
      if (r.body_too_large) {
        // Not retried: the next attempt would download the same body again.
        return ResourceExhaustedError(where + ": response from " + config_.server +
                                      " exceeds the limit of " +
                                      DescribeBytes(config_.max_response_bytes) +
                                      "; transfer aborted");
      }
      if (r.transport_error) {
        const StatusCode code =
            r.timed_out ? StatusCode::kDeadlineExceeded : StatusCode::kUnavailable;
        last = Status(code, where + ": " + TransportMessage(r));
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
  const core::HttpUrl url_;
  RetryPolicy retry_;
  std::atomic<RequestObserver*> observer_{nullptr};
  mutable std::mutex ca_mu_;
  mutable std::string reloaded_ca_;  // last good content of ca_reload_file; guarded by ca_mu_
  std::mutex mu_;  // guards pool_ and rng_
  std::vector<std::unique_ptr<Transport>> pool_;
  std::mt19937_64 rng_;
  Interrupter interrupter_;
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
    // here would unwind through httplib's read loop and out of Watch.
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

Status HttplibClient::Watch(std::string_view collection_path, const ListOptions& options,
                            const std::function<bool(const WatchEvent&)>& on_event,
                            const std::atomic<bool>& stop) {
  EFADRA_RETURN_IF_ERROR(ValidateRequestPath(collection_path).WithContext("WATCH"));
  const std::string path = std::string(collection_path) + Query(options, true);
  const std::string where = "WATCH " + path;
  const auto start = Clock::now();
  if (stop.load()) return CancelledError(where + ": stopped");
  auto request = NewRequest("GET", path, kJsonContentType);
  if (!request.ok()) return request.status().WithContext(where);
  auto transport = Acquire(CurrentCaData());
  if (!transport.ok()) return UnavailableError(transport.status().message()).WithContext(where);
  httplib::ClientImpl& http = *(*transport)->http;
  // The stream may legitimately last the whole watch timeout, quiet for most of it; give the
  // server a margin to end it.
  const auto total = std::chrono::duration_cast<std::chrono::milliseconds>(options.watch_timeout) +
                     config_.request_timeout;
  SetTimeouts(http, total);

  std::string pending;  // the unfinished last line
  bool stopped_by_callback = false;
  Status stream_error;
  std::string error_body;
  Response r;
  request->response_handler = [&](const httplib::Response& response) {
    r.http = response.status;
    return true;
  };
  // Returning false aborts the transfer.
  request->content_receiver = [&](const char* data, size_t length, uint64_t, uint64_t) {
    if (stop.load()) return false;
    if (r.http != 200) {
      // Only the start of an error body is ever shown; the rest is dropped, not stored.
      constexpr size_t kMaxErrorBody = 64 * 1024;
      if (error_body.size() < kMaxErrorBody) {
        error_body.append(data, std::min(length, kMaxErrorBody - error_body.size()));
      }
      return true;
    }
    stream_error = ConsumeWatchChunk(pending, std::string_view(data, length), on_event,
                                     &stopped_by_callback);
    if (!stream_error.ok() || stopped_by_callback) return false;
    // What is left is the start of an event whose newline has not arrived yet.
    if (pending.size() > config_.max_watch_line_bytes) {
      stream_error = ResourceExhaustedError("watch event exceeds the limit of " +
                                            DescribeBytes(config_.max_watch_line_bytes) +
                                            "; stream aborted");
      return false;
    }
    return true;
  };
  const bool completed = Send(http, *request, total, start, &stop, &r);
  // A transport whose stream was cut midway has had its connection closed by httplib; only a
  // stream the server ended cleanly leaves a connection worth keeping.
  if (completed) Release(std::move(*transport));
  Observe("WATCH", r.http, start);
  if (!completed && stop.load()) return CancelledError(where + ": stopped");
  if (stopped_by_callback) return Status::Ok();
  if (!stream_error.ok()) return stream_error.WithContext(where + " (" + config_.server + ")");
  if (r.http != 0 && r.http != 200) {
    return Status(CodeForHttp(r.http, false), where + ": " + DescribeHttpError(r.http, error_body));
  }
  if (!completed) {
    const StatusCode code = r.timed_out ? StatusCode::kDeadlineExceeded : StatusCode::kUnavailable;
    return Status(code, where + ": " + TransportMessage(r));
  }
  return Status::Ok();
}

namespace {


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
  auto url = core::ParseHttpUrl(config.server);
  if (!url.ok()) {
    return InvalidArgumentError("kube client" +
                                (config.source.empty() ? "" : " (" + config.source + ")") +
                                ": server " + url.status().message());
  }
  // httplib writes plain-HTTP requests with send() flags 0 and TLS ones through OpenSSL's
  // socket BIO (write()); a server that closed the connection first would otherwise kill the
  // daemon with SIGPIPE instead of failing the request with EPIPE.
  static std::once_flag ignore_sigpipe;
  std::call_once(ignore_sigpipe, [] { std::signal(SIGPIPE, SIG_IGN); });
  return std::unique_ptr<Client>(new HttplibClient(std::move(config), std::move(url).value(), retry));
}

}  // namespace efadra::kube
