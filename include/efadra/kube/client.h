// A small Kubernetes REST client on cpp-httplib + OpenSSL + nlohmann_json: exactly what a
// node-local DRA driver needs (GET/LIST/POST/PUT/DELETE/WATCH of a few resource types), with
// retries. Connects directly: no HTTP(S)_PROXY from the environment is used.
//
// Thread safety: a Client may be used from several threads at once (each call takes its own
// pooled connection); Watch() blocks its calling thread until the stream ends or is stopped.
// Creating a Client sets SIGPIPE to ignored for the process (a write to a connection the server
// closed must fail, not kill the driver).
//
// Errors: every failed call returns a Status whose message names the method, the path and
// the API's own Status message, e.g.
//   "PUT /apis/resource.k8s.io/v1/resourceslices/n1-dra.net-abcde: 409 Conflict: the object
//    has been modified; please apply your changes to the latest version"
// HTTP -> code: 400 kInvalidArgument, 401 kUnauthenticated, 403 kPermissionDenied,
// 404 kNotFound, 409 kAlreadyExists on POST / kAborted otherwise, 410 kOutOfRange (watch
// resourceVersion too old), 422 kInvalidArgument, 429 kResourceExhausted, 5xx kUnavailable,
// connection errors kUnavailable, timeouts kDeadlineExceeded.
#pragma once

#include <atomic>
#include <cstddef>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "efadra/core/filesystem.h"
#include "efadra/core/status.h"

namespace efadra::kube {

// How to reach and authenticate to the API server. Built from a kubeconfig or the in-cluster
// service account (config.h); plain data.
struct ClientConfig {
  std::string server;  // "https://10.0.0.1:443" or "http://127.0.0.1:8080"
  // Trust: a CA file or inline PEM; both empty -> system trust store.
  std::string ca_file;
  std::string ca_data;  // PEM (already base64-decoded)
  // A CA bundle read through `filesystem` before every request and used instead of ca_data
  // when readable: the in-cluster ca.crt is rewritten in place when the cluster CA rotates,
  // and a bundle read once at start-up would fail every connection after that. A read error
  // keeps the last good content (the kubelet swaps the file atomically, but be safe).
  std::string ca_reload_file;
  bool insecure_skip_tls_verify = false;
  // Client certificate authentication (files or inline PEM).
  std::string client_cert_file;
  std::string client_key_file;
  std::string client_cert_data;
  std::string client_key_data;
  // Bearer token: inline, or a file re-read whenever it changes (projected SA tokens rotate).
  std::string token;
  std::string token_file;
  // Bounds each whole request (connect, send, response head and body), not just each read.
  std::chrono::milliseconds request_timeout{std::chrono::seconds(10)};
  // TCP + TLS connect budget of each attempt (within request_timeout).
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(5)};
  // Reads token_file (re-read on every request so a rotated token is picked up at once).
  // Null -> the host filesystem. In-cluster configs set a rooted one (tests root it).
  std::shared_ptr<const core::Filesystem> filesystem;
  std::string user_agent;  // default "efa-dra-driver/<version>"
  // Memory caps: a response above them is an error naming the URL and the limit, and the
  // transfer is aborted as soon as the cap is passed, so a broken or hostile server cannot
  // make the driver allocate without bound. The largest thing the driver reads is this
  // node's ResourceSlice list (a handful of slices of <= 128 devices, well under 1 MiB) and an
  // API object is at most ~1.5 MiB (etcd's request limit), so 64 MiB per response and 16 MiB
  // per watch event leave a wide margin while bounding the worst case.
  size_t max_response_bytes = size_t{64} << 20;
  size_t max_watch_line_bytes = size_t{16} << 20;
  // Where this config came from, for messages ("kubeconfig /root/.kube/config context x").
  std::string source;
};

// Retries on 429, 5xx and network errors with capped exponential backoff and full jitter,
// honouring Retry-After. 409 and other 4xx are returned to the caller at once.
struct RetryPolicy {
  int max_attempts = 5;
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
};

struct ListOptions {
  std::string field_selector;   // "spec.driver=dra.net,spec.nodeName=node1"
  std::string label_selector;
  std::string resource_version;  // for watches: start after this version
  std::chrono::seconds watch_timeout{std::chrono::seconds(300)};  // timeoutSeconds of a watch
};

struct WatchEvent {
  std::string type;  // ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
  nlohmann::json object;
};

// Preconditions for DELETE (optimistic concurrency).
struct DeletePreconditions {
  std::string uid;
  std::string resource_version;
};

// Counts requests by verb and HTTP code (observability and benchmarks read it).
struct RequestObserver {
  virtual ~RequestObserver() = default;
  // verb: GET, LIST, WATCH, POST, PUT, PATCH, DELETE; code: HTTP status, 0 for transport errors.
  virtual void OnRequest(std::string_view verb, int code, std::chrono::microseconds latency) = 0;
};

// kInvalidArgument naming `path` unless it is "/" followed by non-empty segments of RFC 3986
// pchar (unreserved, sub-delims, ':' and '@'; no '%', so no encoded '/' either) none of which
// is "." or "..", optionally followed by an already-escaped "?query" (pchar, '/', '?', '%').
Status ValidateRequestPath(std::string_view path);

class Client {
 public:
  // kInvalidArgument if the config is unusable (no server, unreadable CA or client cert);
  // the message names the file or field.
  static Result<std::unique_ptr<Client>> Create(ClientConfig config, RetryPolicy retry = {});

  virtual ~Client() = default;

  // path is the full REST path, e.g. "/api/v1/nodes/node1". A path with an empty, "." or
  // ".." segment or a byte outside RFC 3986 pchar is refused with kInvalidArgument before
  // any request: callers build paths from API and kubelet text, and an HTTP client or proxy
  // may resolve "x/../.." into another resource. A response above max_response_bytes is
  // kResourceExhausted (not retried).
  virtual Result<nlohmann::json> Get(std::string_view path) = 0;
  // The List object ({"items": [...], "metadata": {"resourceVersion": ...}}).
  virtual Result<nlohmann::json> List(std::string_view collection_path,
                                      const ListOptions& options = {}) = 0;
  // POST; returns the stored object (with metadata.name filled from generateName).
  virtual Result<nlohmann::json> Create(std::string_view collection_path,
                                        const nlohmann::json& object) = 0;
  // PUT of the whole object (metadata.resourceVersion must be set); returns the stored object.
  virtual Result<nlohmann::json> Update(std::string_view object_path,
                                        const nlohmann::json& object) = 0;
  // DELETE; kNotFound if absent (callers that tolerate that check the code).
  virtual Status Delete(std::string_view object_path,
                        const DeletePreconditions& preconditions = {}) = 0;

  // Server-side apply: PATCH with Content-Type application/apply-patch+yaml,
  // ?fieldManager=<field_manager>[&force=true]; `object` holds only the fields this manager
  // owns (apiVersion, kind, metadata.name/namespace and the applied fields). Returns the
  // stored object. Same retries and error mapping as Update (409 = another manager owns a
  // field and force is false). Implementations that cannot apply answer kUnimplemented.
  virtual Result<nlohmann::json> Apply(std::string_view object_path,
                                       const nlohmann::json& object,
                                       std::string_view field_manager, bool force) {
    (void)object;
    (void)field_manager;
    (void)force;
    return Status(StatusCode::kUnimplemented,
                  "PATCH " + std::string(object_path) + ": server-side apply not supported");
  }

  // Streams watch events to on_event until the server closes the stream (OK), on_event returns
  // false (OK), `stop` becomes true (kCancelled, noticed within ~100 ms), or an error occurs.
  // No retry inside: the caller re-lists and re-watches.
  virtual Status Watch(std::string_view collection_path, const ListOptions& options,
                       const std::function<bool(const WatchEvent&)>& on_event,
                       const std::atomic<bool>& stop) = 0;

  // Optional; not owned; must outlive the client.
  virtual void SetObserver(RequestObserver* observer) = 0;
};

}  // namespace efadra::kube
