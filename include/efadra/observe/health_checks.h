// HealthChecks: a named set of checks behind /healthz (liveness) or /readyz (readiness), with
// Kubernetes-style reports ("[+]name ok" / "[-]name failed: <category>").
//
// Ownership: HttpServer owns one set for liveness and one for readiness; modules add checks
// through it at wiring time (main), e.g.
//   server.readiness().Add("registered-with-kubelet", [&] { return plugin.RegistrationStatus(); });
// A check returns OK when healthy, or a Status whose message says why not. Checks run on the
// HTTP server thread for every probe: keep them cheap, non-blocking and thread-safe (read
// an atomic, not the API); a slow check delays every request.
//
// Reports go to anyone who can reach the HTTP port, so a failing check shows only its
// category, the lowercased status code ("unavailable", "failed precondition"), never the
// message, which may hold API URLs or response bodies. The message goes to the log: once when
// a check starts failing or its message changes, and "passes again" when it recovers, never
// per probe.
//
// Thread safety: all methods may be called from any thread; checks run outside the lock.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "efadra/core/status.h"

namespace efadra::observe {

struct CheckReport {
  bool ok = true;
  // "ok" when all pass and !verbose; otherwise one line per check and a last line
  // "<endpoint> check passed|failed".
  std::string body;
  std::vector<std::string> failed;  // names of failing checks, in registration order
};

class HealthChecks {
 public:
  // `endpoint` ("healthz", "readyz") names the set in reports and log lines.
  explicit HealthChecks(std::string endpoint) : endpoint_(std::move(endpoint)) {}
  HealthChecks(const HealthChecks&) = delete;
  HealthChecks& operator=(const HealthChecks&) = delete;

  // Adds a check, or replaces the one with the same name (keeping its position).
  void Add(std::string name, std::function<Status()> check);
  // Removes a check; a no-op for unknown names.
  void Remove(std::string_view name);

  // Runs every check (in registration order) except the excluded names, which are reported
  // as "[+]name excluded: ok".
  CheckReport Run(bool verbose, const std::set<std::string, std::less<>>& exclude = {});

  const std::string& endpoint() const { return endpoint_; }

 private:
  const std::string endpoint_;
  std::mutex mu_;
  std::vector<std::pair<std::string, std::function<Status()>>> checks_;  // guarded by mu_
  // Per check: the message it last failed with, nullopt while it passes. Guarded by mu_.
  std::map<std::string, std::optional<std::string>, std::less<>> last_;
};

}  // namespace efadra::observe
