#include "efadra/apidouble/fake_api_server.h"

#include <httplib.h>

#include <atomic>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "object_store.h"
#include "selectors.h"
#include "slice_validation.h"

namespace efadra::apidouble {
namespace {

using nlohmann::json;

// Watches hold a worker for their whole life; leave room for many at once plus idle
// keep-alive connections of pooled clients.
constexpr size_t kWorkerThreads = 64;
// How often an idle watch re-checks for stop/drop/deadline.
constexpr std::chrono::milliseconds kWatchPoll{50};

struct ResourceType {
  const char* resource;
  const char* group;  // "" for the core group
  const char* kind;
  bool namespaced;
  std::vector<std::string> field_labels;  // besides metadata.name / metadata.namespace
};

const std::vector<ResourceType>& ResourceTypes() {
  static const std::vector<ResourceType> kTypes = {
      {"resourceslices", "resource.k8s.io", "ResourceSlice", false, {"spec.driver", "spec.nodeName"}},
      {"resourceclaims", "resource.k8s.io", "ResourceClaim", true, {}},
      {"pods", "", "Pod", true, {"spec.nodeName"}},
      {"nodes", "", "Node", false, {"spec.unschedulable"}},
  };
  return kTypes;
}

const char* ReasonFor(int code) {
  switch (code) {
    case 400: return "BadRequest";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "NotFound";
    case 405: return "MethodNotAllowed";
    case 409: return "Conflict";
    case 410: return "Expired";
    case 422: return "Invalid";
    case 429: return "TooManyRequests";
    case 500: return "InternalError";
    case 503: return "ServiceUnavailable";
    case 504: return "Timeout";
    default: return "Unknown";
  }
}

json StatusObject(int code, const std::string& reason, const std::string& message,
                  json details = nullptr) {
  json status = {{"kind", "Status"},  {"apiVersion", "v1"},  {"metadata", json::object()},
                 {"status", "Failure"}, {"message", message}, {"reason", reason},
                 {"code", code}};
  if (!details.is_null()) status["details"] = std::move(details);
  return status;
}

std::string Now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The field manager of a write, as the API server derives it: the fieldManager parameter, else
// the User-Agent up to its first '/' ("efa-dra-driver/0.1.0 ..." -> "efa-dra-driver").
std::string FieldManager(const httplib::Request& req) {
  std::string manager = req.get_param_value("fieldManager");
  if (manager.empty()) {
    manager = req.get_header_value("User-Agent");
    manager = manager.substr(0, manager.find('/'));
  }
  return manager.empty() ? "unknown" : manager;
}

// Records `manager` in metadata.managedFields (one entry per manager and operation, as the API
// server keeps them), keeping the entries of earlier writers. The field sets themselves are not
// modelled: tests only ask who wrote an object.
void RecordManager(nlohmann::json& object, const std::string& manager, const std::string& api_version) {
  nlohmann::json& meta = object["metadata"];
  nlohmann::json entries = meta.value("managedFields", nlohmann::json::array());
  if (!entries.is_array()) entries = nlohmann::json::array();
  nlohmann::json entry = {{"manager", manager}, {"operation", "Update"}, {"apiVersion", api_version},
                          {"time", Now()}, {"fieldsType", "FieldsV1"}, {"fieldsV1", nlohmann::json::object()}};
  bool found = false;
  for (auto& existing : entries) {
    if (existing.value("manager", "") == manager && existing.value("operation", "") == "Update") {
      existing = entry;
      found = true;
    }
  }
  if (!found) entries.push_back(entry);
  meta["managedFields"] = std::move(entries);
}

// The API server stamps device taints that come without a time.
void StampTaints(json& slice) {
  if (!slice.contains("spec") || !slice["spec"].is_object()) return;
  auto devices = slice["spec"].find("devices");
  if (devices == slice["spec"].end() || !devices->is_array()) return;
  for (auto& device : *devices) {
    if (!device.is_object() || !device.contains("taints") || !device["taints"].is_array()) continue;
    for (auto& taint : device["taints"]) {
      if (taint.is_object() && !taint.contains("timeAdded")) taint["timeAdded"] = Now();
    }
  }
}

// A parsed REST path: /api/v1/... or /apis/<group>/v1/..., [namespaces/<ns>/]<resource>
// [/<name>[/<subresource>]].
struct Route {
  const ResourceType* type = nullptr;
  std::string ns;
  std::string name;
  std::string subresource;
};

std::vector<std::string> SplitPath(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start < path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    if (slash > start) parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

std::optional<Route> ParseRoute(const std::string& path) {
  std::vector<std::string> parts = SplitPath(path);
  std::string group;
  size_t i = 0;
  if (parts.size() >= 2 && parts[0] == "api" && parts[1] == "v1") {
    i = 2;
  } else if (parts.size() >= 3 && parts[0] == "apis" && parts[2] == "v1") {
    group = parts[1];
    i = 3;
  } else {
    return std::nullopt;
  }
  Route route;
  if (i + 1 < parts.size() && parts[i] == "namespaces") {
    route.ns = parts[i + 1];
    i += 2;
  }
  if (i >= parts.size()) return std::nullopt;
  for (const ResourceType& type : ResourceTypes()) {
    if (type.resource == parts[i] && type.group == group) route.type = &type;
  }
  if (route.type == nullptr) return std::nullopt;
  if (!route.ns.empty() && !route.type->namespaced) return std::nullopt;
  if (i + 1 < parts.size()) route.name = parts[i + 1];
  if (i + 2 < parts.size()) route.subresource = parts[i + 2];
  if (i + 3 < parts.size()) return std::nullopt;
  return route;
}

std::string GroupResource(const ResourceType& type) {
  return std::string(type.resource) + (type.group[0] != '\0' ? std::string(".") + type.group : "");
}

std::string ApiVersion(const ResourceType& type) {
  return type.group[0] != '\0' ? std::string(type.group) + "/v1" : "v1";
}

json Details(const ResourceType& type, const std::string& name) {
  json d = {{"name", name}, {"kind", type.resource}};
  if (type.group[0] != '\0') d["group"] = type.group;
  return d;
}

std::string MetaString(const json& object, const char* key) {
  auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) return "";
  auto it = meta->find(key);
  return it != meta->end() && it->is_string() ? it->get<std::string>() : "";
}

struct FailRule {
  int count;
  int status;
  int retry_after;
  std::string method;
  std::string prefix;
};

// An HTTP answer built by the handlers before it is written.
struct Reply {
  int status = 200;
  json body;
  std::vector<std::pair<std::string, std::string>> headers;
};

Reply Error(int code, const std::string& message, json details = nullptr,
            const std::string& reason = "") {
  return {code, StatusObject(code, reason.empty() ? ReasonFor(code) : reason, message,
                             std::move(details)), {}};
}

Reply NotFound(const ResourceType& type, const std::string& name) {
  return Error(404, GroupResource(type) + " \"" + name + "\" not found", Details(type, name));
}

}  // namespace

class FakeApiServer::Impl {
 public:
  explicit Impl(ServerOptions options) : options_(std::move(options)) {
    token_ = options_.bearer_token;
    if (const char* log = std::getenv("EFADRA_APIDOUBLE_REQUEST_LOG")) request_log_ = log;
  }

  ~Impl() { Stop(); }

  Status Start() {
    std::lock_guard<std::mutex> lock(lifecycle_mu_);
    if (server_ != nullptr) return FailedPreconditionError("fake API server already started");
    if (!options_.tls_cert_file.empty()) {
      tls_ = true;
      auto ssl = std::make_unique<httplib::SSLServer>(
          options_.tls_cert_file.c_str(), options_.tls_key_file.c_str(),
          options_.client_ca_file.empty() ? nullptr : options_.client_ca_file.c_str());
      if (!ssl->is_valid()) {
        return InvalidArgumentError("fake API server: cannot load TLS certificate " +
                                    options_.tls_cert_file + " / key " + options_.tls_key_file +
                                    (options_.client_ca_file.empty()
                                         ? std::string()
                                         : " / client CA " + options_.client_ca_file));
      }
      server_ = std::move(ssl);
    } else {
      server_ = std::make_unique<httplib::Server>();
    }
    server_->new_task_queue = [] { return new httplib::ThreadPool(kWorkerThreads); };
    server_->set_keep_alive_max_count(100000);
    // httplib writes headers and body separately; without TCP_NODELAY Nagle + the client's
    // delayed ACK add ~40 ms to every response (Go's server, like the real one, sets it).
    server_->set_tcp_nodelay(true);
    auto handler = [this](const httplib::Request& req, httplib::Response& res) {
      Dispatch(req, res);
    };
    server_->Get(".*", handler);
    server_->Post(".*", handler);
    server_->Put(".*", handler);
    server_->Patch(".*", handler);
    server_->Delete(".*", handler);
    int port = server_->bind_to_any_port("127.0.0.1");
    if (port <= 0) {
      server_.reset();
      return UnavailableError("fake API server: cannot bind 127.0.0.1:0");
    }
    port_ = port;
    // bind_to_any_port already listens, so clients may connect before the accept loop runs.
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    // httplib's stop() is a no-op until the accept loop runs; wait for it so Stop() right after
    // Start() cannot hang.
    while (!server_->is_running()) std::this_thread::yield();
    return Status::Ok();
  }

  void Stop() {
    std::lock_guard<std::mutex> lock(lifecycle_mu_);
    if (server_ == nullptr) return;
    store_.Close();
    server_->stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
  }

  int port() const { return port_; }
  std::string url() const {
    return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
  }

  ObjectStore& store() { return store_; }

  void PutNode(const std::string& name, const std::string& uid) {
    json node = {{"apiVersion", "v1"},
                 {"kind", "Node"},
                 {"metadata", {{"name", name}, {"uid", uid}, {"creationTimestamp", Now()}}}};
    store_.Put("nodes", "", name, std::move(node));
  }

  // A namespaced object as another client (scheduler, kubelet) would have stored it.
  json PutNamespaced(const char* resource, const char* api_version, const char* kind,
                     json object) {
    std::string ns = MetaString(object, "namespace");
    if (ns.empty()) ns = "default";
    const std::string name = MetaString(object, "name");
    object["apiVersion"] = api_version;
    object["kind"] = kind;
    object["metadata"]["namespace"] = ns;
    if (MetaString(object, "uid").empty()) object["metadata"]["uid"] = store_.NewUid();
    if (MetaString(object, "creationTimestamp").empty()) {
      object["metadata"]["creationTimestamp"] = Now();
    }
    return store_.Put(resource, ns, name, std::move(object));
  }

  void FailNext(FailRule rule) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_rules_.push_back(std::move(rule));
  }
  void SetLatency(std::chrono::milliseconds latency) { latency_ms_ = latency.count(); }
  void SetConsumableCapacityGate(bool on) { consumable_capacity_ = on; }
  void SetBearerToken(const std::string& token) {
    std::lock_guard<std::mutex> lock(mu_);
    token_ = token;
  }
  std::vector<RecordedRequest> Requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  size_t WriteCount() const { return write_count_; }
  void ClearRequests() {
    std::lock_guard<std::mutex> lock(mu_);
    requests_.clear();
    write_count_ = 0;
  }

 private:
  void Dispatch(const httplib::Request& req, httplib::Response& res) {
    const bool watch = req.method == "GET" &&
                       (req.get_param_value("watch") == "true" || req.get_param_value("watch") == "1");
    if (req.method != "GET") ++write_count_;
    if (int64_t ms = latency_ms_.load(); ms > 0) {
      // Modelled network/server latency is the point here, not a test sleep.
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
    Reply reply = Handle(req, watch, res);
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::string query;
      size_t q = req.target.find('?');
      if (q != std::string::npos) query = req.target.substr(q + 1);
      requests_.push_back({req.method, req.path, query, reply.status, watch});
      if (!request_log_.empty()) {
        // Appended line by line (O_APPEND): test processes running in parallel share the file.
        std::ofstream(request_log_, std::ios::app)
            << json{{"method", req.method}, {"path", req.path}, {"watch", watch},
                    {"userAgent", req.get_header_value("User-Agent")},
                    {"status", reply.status}}.dump()
            << "\n";
      }
    }
    if (reply.status == 0) return;  // the watch already set up a streaming response
    res.status = reply.status;
    for (auto& [k, v] : reply.headers) res.set_header(k, v);
    res.set_content(reply.body.dump(), "application/json");
  }

  Reply Handle(const httplib::Request& req, bool watch, httplib::Response& res) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!token_.empty() && req.get_header_value("Authorization") != "Bearer " + token_) {
        return Error(401, "Unauthorized");
      }
      for (auto it = fail_rules_.begin(); it != fail_rules_.end(); ++it) {
        if (!it->method.empty() && it->method != req.method) continue;
        if (!it->prefix.empty() && req.path.compare(0, it->prefix.size(), it->prefix) != 0) {
          continue;
        }
        Reply reply = Error(it->status, "injected failure " + std::to_string(it->status));
        if (it->retry_after > 0) {
          reply.headers.emplace_back("Retry-After", std::to_string(it->retry_after));
          reply.body["details"] = {{"retryAfterSeconds", it->retry_after}};
        }
        if (--it->count <= 0) fail_rules_.erase(it);
        return reply;
      }
    }
    std::optional<Route> route = ParseRoute(req.path);
    if (!route) return Error(404, "the server could not find the requested resource");
    const ResourceType& type = *route->type;
    if (req.method == "GET") {
      if (!route->name.empty()) return GetObject(*route);
      return watch ? Watch(req, *route, res) : List(req, *route);
    }
    if (req.method == "POST" && route->name.empty()) return Create(req, *route);
    if (req.method == "PUT" && !route->name.empty()) return Update(req, *route);
    if (req.method == "PATCH" && std::string(type.resource) == "resourceclaims" &&
        route->subresource == "status" && !route->name.empty()) {
      return ApplyClaimStatus(req, *route);
    }
    if (req.method == "DELETE") {
      return route->name.empty() ? DeleteCollection(req, *route) : Delete(req, *route);
    }
    return Error(405, req.method + " is not supported on " + GroupResource(type));
  }

  Reply GetObject(const Route& route) {
    if (!route.subresource.empty() && route.subresource != "status") {
      return Error(404, "the server could not find the requested resource");
    }
    auto object = store_.Get(route.type->resource, route.ns, route.name);
    if (!object) return NotFound(*route.type, route.name);
    return {200, *object, {}};
  }

  // Field and label selectors of a list/watch; nullopt + reply on a bad selector.
  struct Filter {
    Selector fields;
    Selector labels;
    bool Matches(const json& object) const {
      return MatchesFields(fields, object) && MatchesLabels(labels, object);
    }
  };
  std::optional<Filter> ParseFilter(const httplib::Request& req, const ResourceType& type,
                                    Reply* error) {
    Filter filter;
    auto fields = ParseFieldSelector(req.get_param_value("fieldSelector"));
    auto labels = ParseLabelSelector(req.get_param_value("labelSelector"));
    if (!fields.ok() || !labels.ok()) {
      *error = Error(400, !fields.ok() ? fields.status().message() : labels.status().message());
      return std::nullopt;
    }
    for (const Requirement& r : *fields) {
      bool known = r.key == "metadata.name" || (type.namespaced && r.key == "metadata.namespace");
      for (const auto& label : type.field_labels) known = known || r.key == label;
      if (!known || r.op == Requirement::Op::kExists || r.op == Requirement::Op::kNotExists) {
        *error = Error(400, "field label not supported: " + r.key);
        return std::nullopt;
      }
    }
    filter.fields = std::move(*fields);
    filter.labels = std::move(*labels);
    return filter;
  }

  Reply List(const httplib::Request& req, const Route& route) {
    Reply error;
    auto filter = ParseFilter(req, *route.type, &error);
    if (!filter) return error;
    int64_t version = 0;
    json items = json::array();
    for (json& object : store_.List(route.type->resource, route.ns, &version)) {
      if (filter->Matches(object)) items.push_back(std::move(object));
    }
    json list = {{"kind", std::string(route.type->kind) + "List"},
                 {"apiVersion", ApiVersion(*route.type)},
                 {"metadata", {{"resourceVersion", std::to_string(version)}}},
                 {"items", std::move(items)}};
    return {200, std::move(list), {}};
  }

  Reply Watch(const httplib::Request& req, const Route& route, httplib::Response& res) {
    Reply error;
    auto filter = ParseFilter(req, *route.type, &error);
    if (!filter) return error;
    struct WatchState {
      Filter filter;
      std::string resource;
      std::string ns;
      int64_t after = 0;
      uint64_t drop_generation = 0;
      std::chrono::steady_clock::time_point deadline;
      std::vector<std::string> initial;  // lines to send first
    };
    auto state = std::make_shared<WatchState>();
    state->filter = std::move(*filter);
    state->resource = route.type->resource;
    state->ns = route.ns;
    state->drop_generation = store_.DropGeneration();
    int timeout = 1800;
    if (req.has_param("timeoutSeconds")) {
      timeout = std::atoi(req.get_param_value("timeoutSeconds").c_str());
    }
    state->deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
    const std::string rv = req.get_param_value("resourceVersion");
    if (rv.empty() || rv == "0") {
      // "Get State and Start at Most Recent": synthetic ADDED for what exists now.
      for (json& object : store_.List(route.type->resource, route.ns, &state->after)) {
        if (!state->filter.Matches(object)) continue;
        state->initial.push_back(json{{"type", "ADDED"}, {"object", std::move(object)}}.dump() +
                                 "\n");
      }
    } else {
      char* end = nullptr;
      state->after = std::strtoll(rv.c_str(), &end, 10);
      if (end == rv.c_str() || *end != '\0') {
        return Error(400, "invalid resourceVersion \"" + rv + "\"");
      }
    }
    res.status = 200;
    res.set_chunked_content_provider(
        "application/json",
        [this, state](size_t /*offset*/, httplib::DataSink& sink) {
          for (const std::string& line : state->initial) sink.write(line.data(), line.size());
          state->initial.clear();
          auto now = std::chrono::steady_clock::now();
          if (now >= state->deadline) {
            sink.done();
            return true;
          }
          bool expired = false;
          bool ended = false;
          auto wait = std::min<std::chrono::milliseconds>(
              kWatchPoll,
              std::chrono::duration_cast<std::chrono::milliseconds>(state->deadline - now));
          std::vector<StoredEvent> events = store_.WaitEvents(
              state->resource, state->after, state->drop_generation, wait, &expired, &ended);
          if (expired) {
            json status = StatusObject(410, "Expired",
                                       "too old resource version: " +
                                           std::to_string(state->after));
            std::string line = json{{"type", "ERROR"}, {"object", status}}.dump() + "\n";
            sink.write(line.data(), line.size());
            sink.done();
            return true;
          }
          for (const StoredEvent& e : events) {
            state->after = e.resource_version;
            if (!state->ns.empty() && MetaString(e.object, "namespace") != state->ns) continue;
            if (!state->filter.Matches(e.object)) continue;
            std::string line = json{{"type", e.type}, {"object", e.object}}.dump() + "\n";
            if (!sink.write(line.data(), line.size())) return false;
          }
          if (ended) sink.done();
          return true;
        });
    return {0, nullptr, {}};
  }

  // Decodes the body; a reply on failure.
  std::optional<json> ParseBody(const httplib::Request& req, Reply* error) {
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      *error = Error(400, "the body of the request was in an unknown format - accepted media "
                          "types include: application/json");
      return std::nullopt;
    }
    return body;
  }

  // Shared by create and update of slices: decode check and unknown-field pruning.
  bool PrepareSlice(const httplib::Request& req, json& body, Reply* error,
                    std::vector<std::pair<std::string, std::string>>* warnings) {
    std::vector<std::string> decode = DecodeErrors(body);
    if (!decode.empty()) {
      *error = Error(400, decode.front());
      return false;
    }
    if (!consumable_capacity_) DropConsumableCapacityFields(body);
    std::vector<std::string> dropped = PruneUnknownFields(body);
    if (!dropped.empty() && req.get_param_value("fieldValidation") == "Strict") {
      std::string msg = "strict decoding error: ";
      for (size_t i = 0; i < dropped.size(); ++i) {
        msg += (i ? ", " : "") + std::string("unknown field \"") + dropped[i] + "\"";
      }
      *error = Error(400, msg);
      return false;
    }
    for (const std::string& field : dropped) {
      warnings->emplace_back("Warning", "299 - \"unknown field \\\"" + field + "\\\"\"");
    }
    return true;
  }

  Reply Invalid(const ResourceType& type, const std::string& name,
                const std::vector<FieldCause>& causes) {
    json list = json::array();
    std::string summary;
    for (const FieldCause& c : causes) {
      list.push_back({{"reason", c.reason}, {"message", c.message}, {"field", c.field}});
      summary += (summary.empty() ? "" : ", ") + c.field + ": " + c.message;
    }
    json details = Details(type, name);
    details["kind"] = type.kind;
    details["causes"] = std::move(list);
    return Error(422,
                 std::string(type.kind) + "." + type.group + " \"" + name + "\" is invalid: [" +
                     summary + "]",
                 std::move(details));
  }

  Reply Create(const httplib::Request& req, const Route& route) {
    const ResourceType& type = *route.type;
    Reply error;
    auto parsed = ParseBody(req, &error);
    if (!parsed) return error;
    json body = std::move(*parsed);
    std::vector<std::pair<std::string, std::string>> warnings;
    const bool slice = std::string(type.resource) == "resourceslices";
    if (slice && !PrepareSlice(req, body, &error, &warnings)) return error;
    if (!body.contains("metadata") || !body["metadata"].is_object()) body["metadata"] = json::object();
    json& meta = body["metadata"];
    if (type.namespaced) {
      const std::string ns = MetaString(body, "namespace");
      if (!ns.empty() && ns != route.ns) {
        return Error(400, "the namespace of the provided object does not match the namespace "
                          "sent on the request");
      }
      meta["namespace"] = route.ns;
    }
    std::string name = MetaString(body, "name");
    if (name.empty() && !MetaString(body, "generateName").empty()) {
      // The apiserver truncates a long prefix to 58 chars so the result fits 63.
      name = MetaString(body, "generateName").substr(0, 58) + store_.RandomSuffix();
    }
    meta["name"] = name;
    if (name.empty()) {
      return Invalid(type, "", {{"FieldValueRequired",
                                 "Required value: name or generateName is required",
                                 "metadata.name"}});
    }
    if (slice) {
      std::vector<FieldCause> causes = ValidateResourceSlice(body);
      if (!causes.empty()) return Invalid(type, name, causes);
      StampTaints(body);
    }
    body["apiVersion"] = ApiVersion(type);
    body["kind"] = type.kind;
    meta["uid"] = store_.NewUid();
    meta["creationTimestamp"] = Now();
    meta["generation"] = 1;
    meta.erase("resourceVersion");
    meta.erase("managedFields");
    RecordManager(body, FieldManager(req), ApiVersion(type));
    return store_.WithLock([&]() -> Reply {
      if (store_.GetLocked(type.resource, route.ns, name)) {
        return Error(409, GroupResource(type) + " \"" + name + "\" already exists",
                     Details(type, name), "AlreadyExists");
      }
      return {201, store_.PutLocked(type.resource, route.ns, name, body), warnings};
    });
  }

  Reply Update(const httplib::Request& req, const Route& route) {
    const ResourceType& type = *route.type;
    Reply error;
    auto parsed = ParseBody(req, &error);
    if (!parsed) return error;
    json body = std::move(*parsed);
    const bool status_only = route.subresource == "status";
    if (!route.subresource.empty() && !status_only) {
      return Error(404, "the server could not find the requested resource");
    }
    std::vector<std::pair<std::string, std::string>> warnings;
    const bool slice = std::string(type.resource) == "resourceslices";
    if (slice && !PrepareSlice(req, body, &error, &warnings)) return error;
    if (!body.contains("metadata") || !body["metadata"].is_object()) body["metadata"] = json::object();
    const std::string body_name = MetaString(body, "name");
    if (body_name != route.name) {
      return Error(400, "the name of the object (" + body_name +
                            ") does not match the name on the URL (" + route.name + ")");
    }
    return store_.WithLock([&]() -> Reply {
      auto stored = store_.GetLocked(type.resource, route.ns, route.name);
      if (!stored) return NotFound(type, route.name);
      const std::string rv = MetaString(body, "resourceVersion");
      const std::string uid = MetaString(body, "uid");
      const std::string conflict = "Operation cannot be fulfilled on " + GroupResource(type) +
                                   " \"" + route.name + "\": ";
      if (!uid.empty() && uid != MetaString(*stored, "uid")) {
        return Error(409, conflict + "Precondition failed: UID in precondition: " + uid +
                              ", UID in object meta: " + MetaString(*stored, "uid"),
                     Details(type, route.name));
      }
      // An empty resourceVersion is an unconditional update, as the real registry allows for
      // these types.
      if (!rv.empty() && rv != MetaString(*stored, "resourceVersion")) {
        return Error(409, conflict + "the object has been modified; please apply your changes "
                                     "to the latest version and try again",
                     Details(type, route.name));
      }
      json updated = *stored;
      if (status_only) {
        updated["status"] = body.value("status", json::object());
      } else {
        updated = body;
        updated["apiVersion"] = ApiVersion(type);
        updated["kind"] = type.kind;
        json& meta = updated["metadata"];
        for (const char* keep : {"uid", "creationTimestamp", "namespace", "managedFields"}) {
          if (stored->at("metadata").contains(keep)) meta[keep] = stored->at("metadata")[keep];
        }
        // Status is not writable through the main resource.
        if (stored->contains("status")) {
          updated["status"] = (*stored)["status"];
        } else {
          updated.erase("status");
        }
        int64_t generation = stored->at("metadata").value("generation", int64_t{1});
        if (updated.value("spec", json()) != stored->value("spec", json())) ++generation;
        meta["generation"] = generation;
      }
      RecordManager(updated, FieldManager(req), ApiVersion(type));
      if (slice) {
        std::vector<FieldCause> causes = ValidateResourceSliceUpdate(updated, *stored);
        if (!causes.empty()) return Invalid(type, route.name, causes);
        StampTaints(updated);
      }
      return {200, store_.PutLocked(type.resource, route.ns, route.name, updated), warnings};
    });
  }

  // Server-side apply of status.devices on resourceclaims/status, as much of it as a DRA driver
  // uses: the list is a map keyed by driver/pool/device/shareID, each manager owns the entries
  // it applied (recorded in its managedFields "Apply" entry), and an apply removes the entries
  // that manager owned before and no longer sends. Other status fields are left alone.
  Reply ApplyClaimStatus(const httplib::Request& req, const Route& route) {
    const ResourceType& type = *route.type;
    const std::string content_type = req.get_header_value("Content-Type");
    if (content_type.rfind("application/apply-patch+yaml", 0) != 0) {
      return Error(415, "PATCH on " + GroupResource(type) + "/status: the double supports only "
                                                            "application/apply-patch+yaml, got \"" +
                            content_type + "\"");
    }
    const std::string manager = req.get_param_value("fieldManager");
    if (manager.empty()) {
      return Error(400, "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: "
                        "is required for apply patch");
    }
    // JSON is YAML; the double reads only that form.
    json body = json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      return Error(400, "error decoding YAML: the double reads apply bodies in JSON form only");
    }
    if (MetaString(body, "name") != route.name) {
      return Error(400, "the name of the object (" + MetaString(body, "name") +
                            ") does not match the name on the URL (" + route.name + ")");
    }
    json applied = json::array();
    if (body.contains("status") && body["status"].is_object() &&
        body["status"].contains("devices")) {
      applied = body["status"]["devices"];
      if (!applied.is_array()) return Error(400, "status.devices: must be a list");
    }
    auto key_of = [](const json& d) {
      json key = {{"device", d.value("device", "")}, {"driver", d.value("driver", "")},
                  {"pool", d.value("pool", "")}};
      if (d.contains("shareID") && d["shareID"].is_string()) key["shareID"] = d["shareID"];
      return "k:" + key.dump();
    };
    std::vector<FieldCause> causes;
    for (size_t i = 0; i < applied.size(); ++i) {
      const json& d = applied[i];
      if (!d.is_object() || d.value("driver", "").empty() || d.value("pool", "").empty() ||
          d.value("device", "").empty()) {
        causes.push_back({"FieldValueRequired", "driver, pool and device are required",
                          "status.devices[" + std::to_string(i) + "]"});
        continue;
      }
      if (d.contains("conditions") && (!d["conditions"].is_array() || d["conditions"].size() > 8)) {
        causes.push_back({"FieldValueTooMany", "must have at most 8 items",
                          "status.devices[" + std::to_string(i) + "].conditions"});
      }
      if (d.contains("data") && (!d["data"].is_object() || d["data"].dump().size() > 10 * 1024)) {
        causes.push_back({"FieldValueInvalid", "must be a JSON object of at most 10Ki bytes",
                          "status.devices[" + std::to_string(i) + "].data"});
      }
    }
    if (!causes.empty()) return Invalid(type, route.name, causes);
    return store_.WithLock([&]() -> Reply {
      auto stored = store_.GetLocked(type.resource, route.ns, route.name);
      if (!stored) return NotFound(type, route.name);
      const std::string uid = MetaString(body, "uid");
      if (!uid.empty() && uid != MetaString(*stored, "uid")) {
        return Error(409, "Operation cannot be fulfilled on " + GroupResource(type) + " \"" +
                              route.name + "\": Precondition failed: UID in precondition: " +
                              uid + ", UID in object meta: " + MetaString(*stored, "uid"),
                     Details(type, route.name));
      }
      json updated = *stored;
      json& meta = updated["metadata"];
      json entries = meta.value("managedFields", json::array());
      if (!entries.is_array()) entries = json::array();
      std::set<std::string> owned_before, owned_by_others;
      for (const auto& e : entries) {
        if (e.value("operation", "") != "Apply") continue;
        const json devices = e.value("fieldsV1", json::object())
                                 .value("f:status", json::object())
                                 .value("f:devices", json::object());
        for (auto it = devices.begin(); it != devices.end(); ++it) {
          (e.value("manager", "") == manager ? owned_before : owned_by_others).insert(it.key());
        }
      }
      json devices = json::array();
      if (updated.contains("status") && updated["status"].is_object() &&
          updated["status"].value("devices", json()).is_array()) {
        devices = updated["status"]["devices"];
      }
      std::set<std::string> applied_keys;
      for (const auto& d : applied) applied_keys.insert(key_of(d));
      json kept = json::array();
      for (const auto& d : devices) {
        const std::string key = key_of(d);
        if (applied_keys.count(key)) continue;  // replaced below
        if (owned_before.count(key) && !owned_by_others.count(key)) continue;  // dropped
        kept.push_back(d);
      }
      for (const auto& d : applied) kept.push_back(d);
      if (kept.empty()) {
        if (updated.contains("status") && updated["status"].is_object()) {
          updated["status"].erase("devices");
        }
      } else {
        updated["status"]["devices"] = kept;
      }
      json owned = json::object();
      for (const auto& key : applied_keys) owned[key] = json::object({{".", json::object()}});
      json next = json::array();
      for (auto& e : entries) {
        if (e.value("manager", "") == manager && e.value("operation", "") == "Apply") continue;
        next.push_back(e);
      }
      if (!applied_keys.empty()) {
        next.push_back({{"manager", manager}, {"operation", "Apply"},
                        {"apiVersion", ApiVersion(type)}, {"time", Now()},
                        {"fieldsType", "FieldsV1"}, {"subresource", "status"},
                        {"fieldsV1", {{"f:status", {{"f:devices", owned}}}}}});
      }
      meta["managedFields"] = std::move(next);
      return {200, store_.PutLocked(type.resource, route.ns, route.name, updated), {}};
    });
  }

  Reply Delete(const httplib::Request& req, const Route& route) {
    const ResourceType& type = *route.type;
    json preconditions = json::object();
    if (!req.body.empty()) {
      json options = json::parse(req.body, nullptr, false);
      if (options.is_discarded() || !options.is_object()) {
        return Error(400, "the body of the request was in an unknown format");
      }
      preconditions = options.value("preconditions", json::object());
    }
    return store_.WithLock([&]() -> Reply {
      auto stored = store_.GetLocked(type.resource, route.ns, route.name);
      if (!stored) return NotFound(type, route.name);
      const std::string conflict = "Operation cannot be fulfilled on " + GroupResource(type) +
                                   " \"" + route.name + "\": Precondition failed: ";
      const std::string uid = preconditions.value("uid", "");
      if (!uid.empty() && uid != MetaString(*stored, "uid")) {
        return Error(409, conflict + "UID in precondition: " + uid +
                              ", UID in object meta: " + MetaString(*stored, "uid"),
                     Details(type, route.name));
      }
      const std::string rv = preconditions.value("resourceVersion", "");
      if (!rv.empty() && rv != MetaString(*stored, "resourceVersion")) {
        return Error(409, conflict + "ResourceVersion in precondition: " + rv +
                              ", ResourceVersion in object meta: " +
                              MetaString(*stored, "resourceVersion"),
                     Details(type, route.name));
      }
      store_.RemoveLocked(type.resource, route.ns, route.name);
      json details = Details(type, route.name);
      details["uid"] = MetaString(*stored, "uid");
      json ok = {{"kind", "Status"},   {"apiVersion", "v1"},   {"metadata", json::object()},
                 {"status", "Success"}, {"details", details}};
      return {200, ok, {}};
    });
  }

  Reply DeleteCollection(const httplib::Request& req, const Route& route) {
    Reply error;
    auto filter = ParseFilter(req, *route.type, &error);
    if (!filter) return error;
    json items = json::array();
    for (const json& object : store_.List(route.type->resource, route.ns, nullptr)) {
      if (!filter->Matches(object)) continue;
      auto removed = store_.Remove(route.type->resource, MetaString(object, "namespace"),
                                   MetaString(object, "name"));
      if (removed) items.push_back(std::move(*removed));
    }
    json list = {{"kind", std::string(route.type->kind) + "List"},
                 {"apiVersion", ApiVersion(*route.type)},
                 {"metadata", {{"resourceVersion", std::to_string(store_.CurrentVersion())}}},
                 {"items", std::move(items)}};
    return {200, std::move(list), {}};
  }

  ServerOptions options_;
  std::string request_log_;  // $EFADRA_APIDOUBLE_REQUEST_LOG, read once
  ObjectStore store_;

  std::mutex lifecycle_mu_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<int> port_{0};
  bool tls_ = false;

  mutable std::mutex mu_;  // guards token_, fail_rules_, requests_
  std::string token_;
  std::vector<FailRule> fail_rules_;
  std::vector<RecordedRequest> requests_;
  std::atomic<size_t> write_count_{0};
  std::atomic<int64_t> latency_ms_{0};
  std::atomic<bool> consumable_capacity_{true};
};

FakeApiServer::FakeApiServer(ServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
FakeApiServer::~FakeApiServer() = default;

Status FakeApiServer::Start() { return impl_->Start(); }
void FakeApiServer::Stop() { impl_->Stop(); }
int FakeApiServer::port() const { return impl_->port(); }
std::string FakeApiServer::url() const { return impl_->url(); }

void FakeApiServer::PutNode(const std::string& name, const std::string& uid) {
  impl_->PutNode(name, uid);
}
nlohmann::json FakeApiServer::PutResourceClaim(const nlohmann::json& claim) {
  return impl_->PutNamespaced("resourceclaims", "resource.k8s.io/v1", "ResourceClaim", claim);
}
nlohmann::json FakeApiServer::PutPod(const nlohmann::json& pod) {
  return impl_->PutNamespaced("pods", "v1", "Pod", pod);
}
void FakeApiServer::DeleteResourceClaim(const std::string& ns, const std::string& name) {
  impl_->store().Remove("resourceclaims", ns, name);
}
std::vector<nlohmann::json> FakeApiServer::ResourceSlices() const {
  return impl_->store().List("resourceslices", "", nullptr);
}
void FakeApiServer::DeleteResourceSlice(const std::string& name) {
  impl_->store().Remove("resourceslices", "", name);
}
void FakeApiServer::DeleteAllResourceSlices() {
  for (const auto& slice : ResourceSlices()) {
    impl_->store().Remove("resourceslices", "", MetaString(slice, "name"));
  }
}

void FakeApiServer::FailNext(int count, int http_status, int retry_after_seconds,
                             const std::string& method, const std::string& path_prefix) {
  if (count <= 0) return;
  impl_->FailNext({count, http_status, retry_after_seconds, method, path_prefix});
}
void FakeApiServer::SetLatency(std::chrono::milliseconds latency) { impl_->SetLatency(latency); }
void FakeApiServer::SetConsumableCapacityGate(bool on) { impl_->SetConsumableCapacityGate(on); }
void FakeApiServer::DropWatches() { impl_->store().DropWatches(); }
void FakeApiServer::SetBearerToken(const std::string& token) { impl_->SetBearerToken(token); }
std::vector<RecordedRequest> FakeApiServer::Requests() const { return impl_->Requests(); }
size_t FakeApiServer::WriteCount() const { return impl_->WriteCount(); }
void FakeApiServer::ClearRequests() { impl_->ClearRequests(); }

}  // namespace efadra::apidouble
