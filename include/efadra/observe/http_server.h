// HttpServer: the driver's observability endpoint (--http-address, default ":8080").
//
//   GET /healthz (/livez)  liveness checks:  200 "ok", or 500 with a line per check
//   GET /readyz            readiness checks: 200 "ok", or 503 with a line per check
//                          ("[+]name ok" / "[-]name failed: <category>"; ?verbose lists them
//                          on success too; ?exclude=name skips a check, as in Kubernetes)
//   GET /metrics           Registry::Render(), Content-Type text/plain; version=0.0.4
// Only GET and HEAD: other methods on these paths get 405, unknown paths 404. One request per
// connection ("Connection: close").
//
// The port is open to the whole node network (hostNetwork), so every client is treated as
// possibly hostile (HttpServerOptions): request line, header bytes and header count are
// bounded (431, then close), each connection has one total deadline from accept to the last
// response byte, and the number of open connections is capped. One event-driven thread
// (epoll) serves every connection, so clients that send slowly or not at all cost a file
// descriptor and a few KiB each, never a thread, and probes keep being answered.
//
// Ownership: main() owns the server; the Registry passed in must outlive it. Checks are added
// through liveness()/readiness() before or after Start(); they run on the server thread.
//
// Thread safety: Start/Stop from one owning thread; liveness()/readiness()/port() from any.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "efadra/core/status.h"
#include "efadra/observe/health_checks.h"
#include "efadra/observe/metrics.h"

namespace efadra::observe {
namespace http {
class EventLoop;
struct RequestHead;
}  // namespace http

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

// Limits against clients on the node network. The defaults leave room for the kubelet's
// probes and a Prometheus scraper many times over.
struct HttpServerOptions {
  size_t max_request_line = 4096;  // bytes; longer -> 431
  size_t max_header_bytes = 8192;  // all header lines together; more -> 431
  size_t max_headers = 64;         // header fields; more -> 431
  // From accept to the last byte of the response; a connection still open then is closed
  // (408 when no response was started), however steadily the client trickles bytes.
  std::chrono::milliseconds request_timeout{5000};
  // Open connections. At the cap a new connection closes the oldest one still sending its
  // request, so idle floods cannot lock probes out; when every connection is already being
  // answered, the new one gets 503 and is closed.
  size_t max_connections = 256;
};

class HttpServer {
 public:
  // `registry` may be null (then /metrics is empty); not owned.
  explicit HttpServer(const Registry* registry, HttpServerOptions options = {});
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
  // address); kFailedPrecondition if already started; kInternal if epoll cannot be set up.
  // May be called again after Stop().
  Status Start(const HttpAddress& address);

  // The bound port (the real one when started with port 0); 0 when not serving.
  uint16_t port() const { return port_.load(); }

  // Stops accepting, closes every connection (a response still being written to a slow
  // client is dropped) and joins the server thread; idempotent. Returns within milliseconds:
  // requests are answered without blocking, so no client can hold it up.
  void Stop();

 private:
  // The whole response to one parsed request; runs on the server thread.
  std::string Respond(const http::RequestHead& head);

  const Registry* const registry_;
  const HttpServerOptions options_;
  HealthChecks liveness_{"healthz"};
  HealthChecks readiness_{"readyz"};
  std::unique_ptr<http::EventLoop> loop_;  // set while serving
  std::thread thread_;
  std::atomic<uint16_t> port_{0};
  bool share_port_ = false;
};

}  // namespace efadra::observe
