// FakeApiServer: an in-process Kubernetes API double. A real HTTP(S) server on 127.0.0.1
// (port 0 = any free port) that stores objects in memory and behaves like kube-apiserver for
// what this driver uses: ResourceSlices (list/watch with field and label selectors, create with
// generateName, update with resourceVersion conflicts, delete with preconditions), Nodes and
// ResourceClaims (get). ResourceSlices are validated with the real limits and formats
// (contracts.md §0, §5.2) and rejected with 422 and field causes, as the real server does.
// Used by tests, benchmarks and `efa-dra-driver demo`.
//
// Thread safety: all methods may be called from any thread while the server runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "efadra/core/status.h"

namespace efadra::apidouble {

// With $EFADRA_APIDOUBLE_REQUEST_LOG set, each request is also appended to that file as one
// JSON line {"method", "path", "watch", "userAgent", "status"}, so a test harness can record
// what the drivers of many tests asked for (test/chart/rbac_requests_check.py checks it against
// the chart's RBAC).
struct ServerOptions {
  // TLS: serve HTTPS with this certificate and key (PEM files). Empty -> plain HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
  // When set, require a client certificate signed by this CA.
  std::string client_ca_file;
  // When set, require "Authorization: Bearer <token>" (401 otherwise). Changeable at runtime
  // with SetBearerToken to model token rotation.
  std::string bearer_token;
};

struct RecordedRequest {
  std::string method;  // GET, POST, PUT, DELETE
  std::string path;
  std::string query;
  int status = 0;
  bool watch = false;
};

class FakeApiServer {
 public:
  explicit FakeApiServer(ServerOptions options = {});
  ~FakeApiServer();
  FakeApiServer(const FakeApiServer&) = delete;
  FakeApiServer& operator=(const FakeApiServer&) = delete;

  // Binds 127.0.0.1:0 and serves on a background thread.
  Status Start();
  // Stops serving and closes open watches. Idempotent.
  void Stop();

  int port() const;
  // "http://127.0.0.1:<port>" or "https://127.0.0.1:<port>".
  std::string url() const;

  // --- State ---------------------------------------------------------------------------
  // Adds or replaces a Node with this name and UID.
  void PutNode(const std::string& name, const std::string& uid);
  // Adds or replaces a namespaced ResourceClaim (the object as JSON; uid and
  // resourceVersion are filled in when missing). Returns the stored object.
  nlohmann::json PutResourceClaim(const nlohmann::json& claim);
  void DeleteResourceClaim(const std::string& ns, const std::string& name);
  // Adds or replaces a Pod (as the kubelet reports it, status included).
  nlohmann::json PutPod(const nlohmann::json& pod);
  // All stored ResourceSlices, sorted by name.
  std::vector<nlohmann::json> ResourceSlices() const;
  // Deletes one slice as an outside actor would (the kubelet's wipe); watchers see DELETED.
  void DeleteResourceSlice(const std::string& name);
  // Deletes every slice, as the kubelet does at start.
  void DeleteAllResourceSlices();

  // --- Fault injection -------------------------------------------------------------------
  // The next `count` requests whose path starts with `path_prefix` (any if empty) and whose
  // method matches `method` (any if empty) fail with `http_status` (429, 500, 503, ...);
  // Retry-After is sent when retry_after_seconds > 0.
  void FailNext(int count, int http_status, int retry_after_seconds = 0,
                const std::string& method = "", const std::string& path_prefix = "");
  // Every response is delayed by this much (0 to stop).
  void SetLatency(std::chrono::milliseconds latency);
  // The DRAConsumableCapacity feature gate (beta, on by default in 1.36, and here). Off: slices
  // lose devices[].allowMultipleAllocations and capacity requestPolicy silently on create and
  // update, as the real server drops the fields of a disabled gate.
  void SetConsumableCapacityGate(bool on);
  // Closes every open watch stream now (clients must re-list and re-watch).
  void DropWatches();
  void SetBearerToken(const std::string& token);

  // --- Request log -----------------------------------------------------------------------
  std::vector<RecordedRequest> Requests() const;
  // POST, PUT, PATCH and DELETE requests seen (answered or not).
  size_t WriteCount() const;
  void ClearRequests();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace efadra::apidouble
