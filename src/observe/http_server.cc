#include "efadra/observe/http_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <set>
#include <system_error>
#include <vector>

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

HttpServer::HttpServer(const Registry* registry) : registry_(registry) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Install(httplib::Server& server) {
  // Two workers are plenty for probes and a scraper, and keep the resident set small.
  server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  server.set_socket_options([share = share_port_](auto sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    // No SO_REUSEPORT by default (httplib sets it): a second process on the same port must
    // fail to bind, not silently share it. Only a rolling-update pair shares on purpose.
    if (share) setsockopt(sock, SOL_SOCKET, SO_REUSEPORT, &yes, sizeof(yes));
    // ":8080" binds "::" and must also accept IPv4 (kubelet probes the pod IP). Fails
    // harmlessly on IPv4 sockets.
    int no = 0;
    setsockopt(sock, IPPROTO_IPV6, IPV6_V6ONLY, &no, sizeof(no));
  });
  // One request per connection, so Stop() never waits on an idle keep-alive connection.
  server.set_keep_alive_max_count(1);
  server.set_read_timeout(2, 0);
  server.set_write_timeout(5, 0);
  server.set_payload_max_length(64 * 1024);

  server.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    if (req.method == "GET" || req.method == "HEAD") {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    if (IsPath(req.path)) {
      res.status = 405;
      res.set_header("Allow", "GET, HEAD");
      res.set_content("405 method not allowed\n", kTextPlain);
    } else {
      res.status = 404;
      res.set_content("404 page not found\n", kTextPlain);
    }
    return httplib::Server::HandlerResponse::Handled;
  });

  auto health = [](HealthChecks& checks, int failure_status) {
    return [&checks, failure_status](const httplib::Request& req, httplib::Response& res) {
      std::set<std::string, std::less<>> exclude;
      for (size_t i = 0; i < req.get_param_value_count("exclude"); ++i) {
        exclude.insert(req.get_param_value("exclude", i));
      }
      CheckReport report = checks.Run(req.has_param("verbose"), exclude);
      res.status = report.ok ? 200 : failure_status;
      res.set_header("X-Content-Type-Options", "nosniff");
      res.set_content(report.body, kTextPlain);
    };
  };
  server.Get("/healthz", health(liveness_, 500));
  server.Get("/livez", health(liveness_, 500));
  server.Get("/readyz", health(readiness_, 503));
  server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry_ != nullptr ? registry_->Render() : std::string(),
                    kExpositionContentType);
  });
  server.Get(".*", [](const httplib::Request&, httplib::Response& res) {
    res.status = 404;
    res.set_content("404 page not found\n", kTextPlain);
  });
}

Status HttpServer::Start(const HttpAddress& address) {
  if (server_ != nullptr) {
    return FailedPreconditionError("http server already serving on port " +
                                   std::to_string(port_.load()));
  }
  auto server = std::make_unique<httplib::Server>();
  Install(*server);
  // "" means every interface: dual-stack "::" first, IPv4 only where IPv6 is disabled.
  std::vector<std::string> hosts = address.host.empty() ? std::vector<std::string>{"::", "0.0.0.0"}
                                                        : std::vector<std::string>{address.host};
  int bound = -1;
  int bind_errno = 0;
  for (const std::string& host : hosts) {
    errno = 0;
    if (address.port == 0) {
      bound = server->bind_to_any_port(host);
    } else {
      bound = server->bind_to_port(host, address.port) ? address.port : -1;
    }
    bind_errno = errno;
    if (bound >= 0) break;
  }
  if (bound < 0) {
    std::string why = bind_errno != 0 ? std::system_category().message(bind_errno)
                                      : std::string("cannot bind (not a local address?)");
    return UnavailableError("http server: listen on " + address.ToString() + ": " + why);
  }

  server_ = std::move(server);
  port_ = static_cast<uint16_t>(bound);
  thread_done_ = false;
  thread_ = std::thread([this] {
    bool ok = server_->listen_after_bind();
    thread_done_ = true;
    if (!ok) spdlog::error("http server on port {} stopped accepting connections", port_.load());
  });
  // httplib's stop() does nothing until the accept loop has started, so Start() returns only
  // once it runs; then a Stop() right after Start() cannot be lost.
  while (!server_->is_running() && !thread_done_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (thread_done_) {
    thread_.join();
    server_.reset();
    port_ = 0;
    return UnavailableError("http server: accept loop on " + address.ToString() + " ended at once");
  }
  HttpAddress bound_address{address.host, port_.load()};
  spdlog::info("serving /healthz /readyz /metrics on {}", bound_address.ToString());
  return Status::Ok();
}

void HttpServer::Stop() {
  if (server_ == nullptr) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
  port_ = 0;
}

}  // namespace efadra::observe
