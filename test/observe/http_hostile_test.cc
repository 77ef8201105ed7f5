// The HTTP port faces the node network (hostNetwork, every interface): these tests play the
// hostile clients with real sockets against a server on 127.0.0.1:0 and check that it stays
// small, keeps answering probes and never echoes check details to the network.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "efadra/observe/http_server.h"
#include "support/test_support.h"

namespace efadra::observe {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr long kMiB = 1024;  // in KiB, as /proc reports RSS

long RssKib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

long OpenFds() {
  std::error_code ec;
  long count = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++count;
  }
  return count;
}

// A TCP connection to 127.0.0.1:port, -1 when it does not complete within `timeout`.
int Connect(uint16_t port, milliseconds timeout = milliseconds(1000)) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    if (errno != EINPROGRESS) {
      ::close(fd);
      return -1;
    }
    pollfd p{fd, POLLOUT, 0};
    int error = 0;
    socklen_t length = sizeof(error);
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1 ||
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) {
      ::close(fd);
      return -1;
    }
  }
  return fd;
}

// Sends all of `data` unless the peer closes or `timeout` passes; false then.
bool SendAll(int fd, std::string_view data, milliseconds timeout = milliseconds(1000)) {
  const auto deadline = Clock::now() + timeout;
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) return false;
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLOUT, 0};
    ::poll(&p, 1, static_cast<int>(left.count()));
  }
  return true;
}

struct Received {
  std::string data;
  bool closed = false;  // EOF or reset seen before the timeout
};

// Reads until the peer closes or `timeout` passes.
Received ReadUntilClosed(int fd, milliseconds timeout) {
  Received received;
  const auto deadline = Clock::now() + timeout;
  char buffer[4096];
  while (true) {
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      received.data.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      received.closed = true;
      return received;
    }
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return received;
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(left.count()));
  }
}

// "HTTP/1.1 431 ..." -> 431; -1 when there is no status line.
int StatusOf(const std::string& response) {
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) return -1;
  return std::atoi(response.substr(9, 3).c_str());
}

struct Probe {
  int status = -1;  // -1: no answer in time
  milliseconds elapsed{0};
  std::string body;
};

// One GET as a probe does it: connect, request, read to EOF, all within `timeout`.
Probe Get(uint16_t port, const std::string& target, milliseconds timeout = milliseconds(1000)) {
  Probe probe;
  const auto start = Clock::now();
  const int fd = Connect(port, timeout);
  if (fd >= 0) {
    const std::string request =
        "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (SendAll(fd, request, timeout)) {
      const auto left =
          std::chrono::duration_cast<milliseconds>(start + timeout - Clock::now());
      Received received = ReadUntilClosed(fd, std::max(left, milliseconds(1)));
      if (received.closed) {
        probe.status = StatusOf(received.data);
        const size_t body = received.data.find("\r\n\r\n");
        if (body != std::string::npos) probe.body = received.data.substr(body + 4);
      }
    }
    ::close(fd);
  }
  probe.elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  return probe;
}

class HttpHostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The connection flood holds a few thousand sockets on both ends in this one process.
    rlimit limit{};
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
    if (limit.rlim_cur < 8192) {
      limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, 8192);
      ::setrlimit(RLIMIT_NOFILE, &limit);
    }
    server_ = std::make_unique<HttpServer>(&registry_);
    ASSERT_TRUE(server_->Start(HttpAddress{"127.0.0.1", 0}).ok());
    port_ = server_->port();
    ASSERT_EQ(Get(port_, "/healthz").status, 200);
  }

  void TearDown() override {
    for (int fd : fds_) ::close(fd);
  }

  Registry registry_;
  std::unique_ptr<HttpServer> server_;
  uint16_t port_ = 0;
  std::vector<int> fds_;  // client sockets a test leaves open, closed in TearDown
};

TEST_F(HttpHostileTest, HeaderFloodIsCutOffAndMemoryStaysBounded) {
  const long idle_kib = RssKib();
  const int fd = Connect(port_);
  ASSERT_GE(fd, 0);
  fds_.push_back(fd);
  ASSERT_TRUE(SendAll(fd, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"));
  // One connection sends headers for ever. Stop at 64 MiB sent or 64 MiB of growth, so a server
  // that stores every header cannot take the machine down with it.
  std::string block;
  for (int i = 0; block.size() < 64 * 1024; ++i) {
    block += "X-Flood-" + std::to_string(i) + ": " + std::string(40, 'v') + "\r\n";
  }
  size_t sent = 0;
  long peak_kib = idle_kib;
  bool closed = false;
  const auto give_up = Clock::now() + std::chrono::seconds(20);
  while (sent < 64u * 1024 * 1024 && Clock::now() < give_up) {
    if (!SendAll(fd, block, milliseconds(200))) {
      // Either the peer closed (EPIPE/ECONNRESET) or it stopped reading; look which.
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        Received rest = ReadUntilClosed(fd, milliseconds(2000));
        closed = rest.closed;
        if (closed) break;
      }
      pollfd w{fd, POLLOUT, 0};
      if (::poll(&w, 1, 0) == 1 && (w.revents & (POLLHUP | POLLERR)) != 0) {
        closed = true;
        break;
      }
      continue;
    }
    sent += block.size();
    peak_kib = std::max(peak_kib, RssKib());
    if (peak_kib - idle_kib > 64 * kMiB) break;
  }
  peak_kib = std::max(peak_kib, RssKib());
  EXPECT_TRUE(closed) << "connection still open after " << sent / 1024 << " KiB of headers";
  EXPECT_LE(peak_kib - idle_kib, 16 * kMiB)
      << "RSS grew from " << idle_kib << " KiB to " << peak_kib << " KiB";
  // The port still serves.
  EXPECT_EQ(Get(port_, "/healthz").status, 200);
}

TEST_F(HttpHostileTest, FiftySlowClientsDoNotStarveProbes) {
  // Slowloris: each client sends part of a request and then waits.
  int refused = 0;
  for (int i = 0; i < 50; ++i) {
    const int fd = Connect(port_);
    if (fd < 0) {
      ++refused;
      continue;
    }
    fds_.push_back(fd);
    if (!SendAll(fd, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")) ++refused;
  }
  EXPECT_EQ(refused, 0) << "slow clients that could not even connect and send";
  for (int i = 0; i < 10; ++i) {
    SCOPED_TRACE("probe " + std::to_string(i));
    const Probe probe = Get(port_, "/healthz", milliseconds(1000));
    EXPECT_EQ(probe.status, 200) << "no answer within " << probe.elapsed.count() << " ms";
    EXPECT_LT(probe.elapsed, milliseconds(1000));
  }
}

TEST_F(HttpHostileTest, ConnectionFloodLeavesProbesAndFdsIntact) {
  const long baseline_fds = OpenFds();
  int opened = 0;
  for (int i = 0; i < 2000; ++i) {
    const int fd = Connect(port_, milliseconds(500));
    if (fd < 0) continue;  // a full backlog may refuse some; the server must still serve
    fds_.push_back(fd);
    ++opened;
  }
  EXPECT_GE(opened, 1000);
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE("probe " + std::to_string(i));
    const Probe probe = Get(port_, "/healthz", milliseconds(1000));
    EXPECT_EQ(probe.status, 200) << "no answer within " << probe.elapsed.count() << " ms";
  }
  for (int fd : fds_) ::close(fd);
  fds_.clear();
  EXPECT_TRUE(testing::WaitFor([&] { return OpenFds() <= baseline_fds; }, milliseconds(10000)))
      << OpenFds() << " fds open, " << baseline_fds << " before the flood";
  EXPECT_EQ(Get(port_, "/healthz").status, 200);
}

TEST_F(HttpHostileTest, OversizedRequestLineOrHeadersGet431) {
  std::string many_headers;
  for (int i = 0; i < 200; ++i) many_headers += "X-H" + std::to_string(i) + ": v\r\n";
  struct Case {
    std::string name;
    std::string request;
  };
  const Case kCases[] = {
      {"request line of 16 KiB",
       "GET /healthz?" + std::string(16 * 1024, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"200 headers", "GET /healthz HTTP/1.1\r\nHost: x\r\n" + many_headers + "\r\n"},
      {"one header of 32 KiB",
       "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(32 * 1024, 'b') + "\r\n\r\n"},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    const int fd = Connect(port_);
    ASSERT_GE(fd, 0);
    fds_.push_back(fd);
    SendAll(fd, c.request, milliseconds(2000));  // the server may close before taking it all
    Received received = ReadUntilClosed(fd, milliseconds(3000));
    EXPECT_EQ(StatusOf(received.data), 431) << received.data.substr(0, 200);
    EXPECT_TRUE(received.closed);
  }
}

TEST_F(HttpHostileTest, TricklingClientIsCutOffAtTheTotalDeadline) {
  const int fd = Connect(port_);
  ASSERT_GE(fd, 0);
  fds_.push_back(fd);
  const auto start = Clock::now();
  // One byte every 500 ms never trips a per-recv timeout; only a deadline for the whole
  // request ends it.
  const std::string request = "GET /healthz HTTP/1.1\r\nX-Trickle: " + std::string(1000, 't');
  bool closed = false;
  for (char c : request) {
    if (!SendAll(fd, std::string_view(&c, 1))) {
      closed = true;
      break;
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 500) == 1) {
      Received received = ReadUntilClosed(fd, milliseconds(1000));
      closed = received.closed;
      break;
    }
    if (Clock::now() - start > std::chrono::seconds(12)) break;
  }
  const auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  EXPECT_TRUE(closed) << "still open after " << elapsed.count() << " ms of trickling";
  EXPECT_LT(elapsed, milliseconds(8000));
}

TEST_F(HttpHostileTest, ReadyzVerboseShowsCategoriesNotDetails) {
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(log)));
  const std::string detail =
      "publish slice efa-node1: PUT https://10.0.0.1:6443/apis/resource.k8s.io/v1/"
      "resourceslices/efa-node1: 409 Conflict {\"kind\":\"Status\",\"message\":\"secret-x\"}";
  server_->readiness().Add("kubelet-registration", [] { return Status::Ok(); });
  server_->readiness().Add("resourceslices", [&] { return UnavailableError(detail); });
  server_->readiness().Add("no-conflicting-driver", [] {
    return FailedPreconditionError("driver other.example.com publishes pool node1 at "
                                   "http://169.254.169.254/latest");
  });
  for (const std::string target : {"/readyz?verbose", "/readyz", "/readyz?verbose=1"}) {
    SCOPED_TRACE(target);
    const Probe probe = Get(port_, target);
    EXPECT_EQ(probe.status, 503);
    EXPECT_EQ(probe.body,
              "[+]kubelet-registration ok\n"
              "[-]resourceslices failed: unavailable\n"
              "[-]no-conflicting-driver failed: failed precondition\n"
              "readyz check failed\n");
    for (const char* leak : {"http", "6443", "409", "secret-x", "169.254", "Conflict"}) {
      EXPECT_EQ(probe.body.find(leak), std::string::npos) << leak << " in " << probe.body;
    }
  }
  spdlog::set_default_logger(previous);
  // The detail is in the log, for whoever can read the pod's logs.
  EXPECT_NE(log.str().find(detail), std::string::npos) << log.str();
}

TEST_F(HttpHostileTest, StopIsPromptWithSlowClientsConnected) {
  // SIGTERM calls Stop(): clients that never finish their request must not hold it up.
  for (int i = 0; i < 50; ++i) {
    const int fd = Connect(port_);
    if (fd < 0) continue;
    fds_.push_back(fd);
    SendAll(fd, "GET /healthz HTTP/1.1\r\nX-Slow: ");
  }
  const auto start = Clock::now();
  server_->Stop();
  const auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  EXPECT_LT(elapsed, milliseconds(1000)) << "Stop() took " << elapsed.count() << " ms";
  EXPECT_EQ(server_->port(), 0);
}

TEST_F(HttpHostileTest, HalfClosedClientStillGetsItsAnswer) {
  // Some clients send the request and shut their side at once (HTTP/1.0 style, `nc -N`).
  const int fd = Connect(port_);
  ASSERT_GE(fd, 0);
  fds_.push_back(fd);
  ASSERT_TRUE(SendAll(fd, "GET /healthz HTTP/1.0\r\n\r\n"));
  ::shutdown(fd, SHUT_WR);
  Received received = ReadUntilClosed(fd, milliseconds(2000));
  EXPECT_TRUE(received.closed);
  EXPECT_EQ(StatusOf(received.data), 200) << received.data;
}

TEST_F(HttpHostileTest, UnreadBodyDoesNotDestroyTheAnswer) {
  // The server never reads bodies; closing with them unread would reset the connection and
  // could discard the 405 before the client reads it.
  const int fd = Connect(port_);
  ASSERT_GE(fd, 0);
  fds_.push_back(fd);
  const std::string body(200 * 1024, 'b');
  ASSERT_TRUE(SendAll(fd, "POST /metrics HTTP/1.1\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n"));
  SendAll(fd, body, milliseconds(2000));
  Received received = ReadUntilClosed(fd, milliseconds(3000));
  EXPECT_TRUE(received.closed);
  EXPECT_EQ(StatusOf(received.data), 405) << received.data.substr(0, 200);
}

TEST_F(HttpHostileTest, AThrowingCheckIsA500AndTheServerKeepsServing) {
  server_->liveness().Add("throws", []() -> Status { throw std::runtime_error("boom"); });
  EXPECT_EQ(Get(port_, "/healthz").status, 500);
  server_->liveness().Remove("throws");
  EXPECT_EQ(Get(port_, "/healthz").status, 200);
}

TEST(HttpServerLimitsTest, AtTheConnectionCapTheOldestUnansweredConnectionMakesRoom) {
  HttpServerOptions options;
  options.max_connections = 8;
  HttpServer server(nullptr, options);
  ASSERT_TRUE(server.Start(HttpAddress{"127.0.0.1", 0}).ok());
  std::vector<int> idle;
  for (int i = 0; i < 8; ++i) {
    const int fd = Connect(server.port());
    ASSERT_GE(fd, 0);
    idle.push_back(fd);
  }
  // The ninth connection (a probe) is admitted; the oldest idle one is closed for it.
  const Probe probe = Get(server.port(), "/healthz");
  EXPECT_EQ(probe.status, 200);
  Received first = ReadUntilClosed(idle.front(), milliseconds(2000));
  EXPECT_TRUE(first.closed);
  for (int fd : idle) ::close(fd);
}

TEST(HttpServerLimitsTest, DeadlineAndHeaderLimitsComeFromTheOptions) {
  HttpServerOptions options;
  options.request_timeout = milliseconds(300);
  options.max_headers = 2;
  HttpServer server(nullptr, options);
  ASSERT_TRUE(server.Start(HttpAddress{"127.0.0.1", 0}).ok());

  int fd = Connect(server.port());
  ASSERT_GE(fd, 0);
  const auto start = Clock::now();
  ASSERT_TRUE(SendAll(fd, "GET /healthz HTTP/1.1\r\n"));
  Received received = ReadUntilClosed(fd, milliseconds(3000));
  EXPECT_TRUE(received.closed);
  EXPECT_EQ(StatusOf(received.data), 408);
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
  ::close(fd);

  fd = Connect(server.port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, "GET /healthz HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n"));
  received = ReadUntilClosed(fd, milliseconds(3000));
  EXPECT_EQ(StatusOf(received.data), 431);
  ::close(fd);
  EXPECT_EQ(Get(server.port(), "/healthz").status, 200);
}

}  // namespace
}  // namespace efadra::observe
