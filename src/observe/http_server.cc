#include "efadra/observe/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <system_error>
#include <utility>
#include <vector>

#include "http_event_loop.h"
#include "http_request.h"

namespace efadra::observe {
namespace {

constexpr char kTextPlain[] = "text/plain; charset=utf-8";

bool IsHostNameLabelChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

// RFC 1123 host name: dot-separated labels of letters, digits and '-', not starting or ending
// with '-', each at most 63 characters.
bool IsHostName(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  size_t start = 0;
  while (start <= host.size()) {
    size_t end = host.find('.', start);
    if (end == std::string_view::npos) end = host.size();
    std::string_view label = host.substr(start, end - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!IsHostNameLabelChar(c)) return false;
    }
    start = end + 1;
  }
  return true;
}

bool LooksNumeric(std::string_view host) {
  return host.find_first_not_of("0123456789.") == std::string_view::npos;
}

bool IsPath(const std::string& path) {
  return path == "/healthz" || path == "/livez" || path == "/readyz" || path == "/metrics";
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

// A whole response; HEAD gets the headers of the GET, without the body.
std::string BuildResponse(int status, std::string_view content_type, const std::string& body,
                          bool head_only, std::string_view extra_headers = {}) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(ReasonPhrase(status)) +
                    "\r\nContent-Type: " + std::string(content_type) +
                    "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  out += extra_headers;
  out += "Connection: close\r\n\r\n";
  if (!head_only) out += body;
  return out;
}

std::string HealthResponse(HealthChecks& checks, int failure_status, const http::RequestHead& head,
                           bool head_only) {
  bool verbose = false;
  std::set<std::string, std::less<>> exclude;
  for (auto& [key, value] : http::ParseQuery(head.query)) {
    if (key == "verbose") verbose = true;
    if (key == "exclude") exclude.insert(std::move(value));
  }
  CheckReport report = checks.Run(verbose, exclude);
  return BuildResponse(report.ok ? 200 : failure_status, kTextPlain, report.body, head_only,
                       "X-Content-Type-Options: nosniff\r\n");
}

// A socket bound to `address` and listening, non-blocking; -1 with errno set.
int ListenOn(const sockaddr* address, socklen_t length, bool share_port) {
  const int fd = ::socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int yes = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  // No SO_REUSEPORT by default: a second process on the same port must fail to bind, not
  // silently share it. Only a rolling-update pair shares on purpose.
  if (share_port) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &yes, sizeof(yes));
  if (address->sa_family == AF_INET6) {
    // ":8080" binds "::" and must also accept IPv4 (kubelet probes the pod IP).
    int no = 0;
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof(no));
  }
  // The backlog absorbs a connection flood between two accept batches of the loop; when it
  // overflows the kernel drops SYNs, and a probe among them waits for its SYN to be resent
  // (1 s). 4096 is the kernel's default cap (net.core.somaxconn); pending connections cost
  // kernel memory, not ours.
  if (::bind(fd, address, length) != 0 || ::listen(fd, 4096) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

// Binds the first usable address of `address.host` ("" = "::", or "0.0.0.0" where IPv6 is
// off). The listening fd, or kUnavailable naming the address and why.
Result<int> Listen(const HttpAddress& address, bool share_port) {
  std::vector<std::string> hosts = address.host.empty() ? std::vector<std::string>{"::", "0.0.0.0"}
                                                        : std::vector<std::string>{address.host};
  std::string why = "cannot bind (not a local address?)";
  const std::string port = std::to_string(address.port);
  for (const std::string& host : hosts) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const int resolved = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
    if (resolved != 0) {
      why = std::string("cannot resolve ") + host + ": " + ::gai_strerror(resolved);
      continue;
    }
    int fd = -1;
    for (addrinfo* ai = found; ai != nullptr && fd < 0; ai = ai->ai_next) {
      fd = ListenOn(ai->ai_addr, ai->ai_addrlen, share_port);
      if (fd < 0) why = std::system_category().message(errno);
    }
    ::freeaddrinfo(found);
    if (fd >= 0) return fd;
  }
  return UnavailableError("http server: listen on " + address.ToString() + ": " + why);
}

uint16_t BoundPort(int fd) {
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0) return 0;
  if (bound.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
}

}  // namespace

std::string HttpAddress::ToString() const {
  std::string host_part = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return host_part + ":" + std::to_string(port);
}

Result<HttpAddress> ParseHttpAddress(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return InvalidArgumentError("--http-address \"" + std::string(text) +
                                "\": " + std::string(why) +
                                " (want host:port, :port or [ipv6]:port, e.g. :8080)");
  };
  if (text.empty()) return bad("empty");
  HttpAddress address;
  std::string_view port;
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("missing ']' after the IPv6 address");
    std::string host(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return bad("missing :port after ']'");
    in6_addr parsed{};
    if (host.empty() || inet_pton(AF_INET6, host.c_str(), &parsed) != 1) {
      return bad("\"" + host + "\" is not an IPv6 address");
    }
    address.host = std::move(host);
    port = rest.substr(1);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("missing :port");
    std::string host(text.substr(0, colon));
    if (host.find(':') != std::string::npos) {
      return bad("IPv6 addresses must be in brackets, e.g. [::1]:8080");
    }
    if (!host.empty()) {
      if (LooksNumeric(host)) {
        in_addr parsed{};
        if (inet_pton(AF_INET, host.c_str(), &parsed) != 1) {
          return bad("\"" + host + "\" is not an IPv4 address");
        }
      } else if (!IsHostName(host)) {
        return bad("\"" + host + "\" is not a host name");
      }
    }
    address.host = std::move(host);
    port = text.substr(colon + 1);
  }
  if (port.empty()) return bad("missing port");
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos) {
    return bad("port \"" + std::string(port) + "\" is not a number from 0 to 65535");
  }
  unsigned value = 0;
  for (char c : port) value = value * 10 + static_cast<unsigned>(c - '0');
  if (value > 65535) return bad("port " + std::string(port) + " is above 65535");
  address.port = static_cast<uint16_t>(value);
  return address;
}

HttpServer::HttpServer(const Registry* registry, HttpServerOptions options)
    : registry_(registry), options_(options) {}

HttpServer::~HttpServer() { Stop(); }

std::string HttpServer::Respond(const http::RequestHead& head) {
  const bool head_only = head.method == "HEAD";
  if (head.method != "GET" && !head_only) {
    if (IsPath(head.path)) {
      return BuildResponse(405, kTextPlain, "405 method not allowed\n", false,
                           "Allow: GET, HEAD\r\n");
    }
    return BuildResponse(404, kTextPlain, "404 page not found\n", false);
  }
  if (head.path == "/healthz" || head.path == "/livez") {
    return HealthResponse(liveness_, 500, head, head_only);
  }
  if (head.path == "/readyz") return HealthResponse(readiness_, 503, head, head_only);
  if (head.path == "/metrics") {
    return BuildResponse(200, kExpositionContentType,
                         registry_ != nullptr ? registry_->Render() : std::string(), head_only);
  }
  return BuildResponse(404, kTextPlain, "404 page not found\n", head_only);
}

Status HttpServer::Start(const HttpAddress& address) {
  if (loop_ != nullptr) {
    return FailedPreconditionError("http server already serving on port " +
                                   std::to_string(port_.load()));
  }
  Result<int> fd = Listen(address, share_port_);
  if (!fd.ok()) return fd.status();
  const uint16_t port = BoundPort(*fd);
  http::LoopOptions loop_options;
  loop_options.limits.max_request_line = options_.max_request_line;
  loop_options.limits.max_header_bytes = options_.max_header_bytes;
  loop_options.limits.max_headers = options_.max_headers;
  loop_options.request_timeout = options_.request_timeout;
  loop_options.max_connections = std::max<size_t>(options_.max_connections, 1);
  // Requests are answered on the loop thread: checks are cheap by contract (health_checks.h)
  // and Render() formats values already in memory, so no worker pool is needed and no client
  // can hold one.
  auto loop = http::EventLoop::Create(
      *fd, loop_options, [this](const http::RequestHead& head) { return Respond(head); });
  if (!loop.ok()) return loop.status();
  loop_ = std::move(*loop);
  port_ = port;
  // The socket listens already, so connections made from here on queue in its backlog and are
  // served once the thread runs.
  thread_ = std::thread([loop = loop_.get()] { loop->Run(); });
  HttpAddress bound_address{address.host, port};
  spdlog::info("serving /healthz /readyz /metrics on {}", bound_address.ToString());
  return Status::Ok();
}

void HttpServer::Stop() {
  if (loop_ == nullptr) return;
  loop_->Wake();
  if (thread_.joinable()) thread_.join();
  loop_.reset();
  port_ = 0;
}

}  // namespace efadra::observe
