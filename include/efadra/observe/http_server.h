// HttpServer: the driver's observability endpoint (--http-address, default ":8080"), on
// cpp-httplib.
//
//   GET /healthz (/livez)  liveness checks:  200 "ok", or 500 with a line per check
//   GET /readyz            readiness checks: 200 "ok", or 503 with a line per check
//                          ("[+]name ok" / "[-]name failed: reason"; ?verbose lists them on
//                          success too; ?exclude=name skips a check, as in Kubernetes)
//   GET /metrics           Registry::Render(), Content-Type text/plain; version=0.0.4
// Only GET and HEAD: other methods on these paths get 405, unknown paths 404.
//
// Ownership: main() owns the server; the Registry passed in must outlive it. Checks are added
// through liveness()/readiness() before or after Start().
//
// Thread safety: Start/Stop from one owning thread; liveness()/readiness()/port() from any.
// Requests are served on the server's own threads (one acceptor, two workers).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "efadra/core/status.h"
#include "efadra/observe/health_checks.h"
#include "efadra/observe/metrics.h"

namespace httplib {
class Server;
}

namespace efadra::observe {

// A listen address: host "" means every interface (IPv6 dual-stack, or IPv4 only when the
// node has no IPv6); port 0 picks a free port.
struct HttpAddress {
  std::string host;  // "", "127.0.0.1", "::1" (no brackets), "localhost"
  uint16_t port = 0;

  // ":8080", "127.0.0.1:0", "[::1]:9090".
  std::string ToString() const;
};

// Parses ":8080", "127.0.0.1:0", "0.0.0.0:8080", "[::1]:9090", "[::]:8080", "localhost:8080".
// kInvalidArgument naming the input for anything else: no port, a port that is not a
// decimal 0..65535, an unbracketed IPv6 address, a malformed IP address or host name.
Result<HttpAddress> ParseHttpAddress(std::string_view text);

class HttpServer {
 public:
  // `registry` may be null (then /metrics is empty); not owned.
  explicit HttpServer(const Registry* registry);
  ~HttpServer();  // Stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Lets a second process of the same user listen on the same port (SO_REUSEPORT); call
  // before Start(). For the old and new driver pod of a rolling update on the host network,
  // which overlap for a few seconds on one port; connections are spread over both.
  void ShareListenPort(bool share) { share_port_ = share; }

  HealthChecks& liveness() { return liveness_; }
  HealthChecks& readiness() { return readiness_; }

  // Binds and starts serving on a background thread; returns once the server accepts
  // connections. kUnavailable naming the address when it cannot bind (in use, not a local
  // address); kFailedPrecondition if already started. May be called again after Stop().
  Status Start(const HttpAddress& address);

  // The bound port (the real one when started with port 0); 0 when not serving.
  uint16_t port() const { return port_.load(); }

  // Stops accepting and waits for in-flight requests; idempotent. Connections are not kept
  // alive between requests, so this returns within milliseconds unless a client is stalled
  // mid-request (bounded by a 2 s read timeout).
  void Stop();

 private:
  void Install(httplib::Server& server);

  const Registry* const registry_;
  HealthChecks liveness_{"healthz"};
  HealthChecks readiness_{"readyz"};
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> thread_done_{false};
  std::atomic<uint16_t> port_{0};
  bool share_port_ = false;
};

}  // namespace efadra::observe
