// http_flood_bench: what hostile clients on the node network do to `efa-dra-driver run`'s HTTP
// port (/healthz /readyz /metrics, hostNetwork in the chart).
//  1. RSS of the driver when idle;
//  2. RSS during and after a header flood: clients that send header lines for ever (a new
//     connection each time the server closes one) for --seconds;
//  3. /healthz latency p50/p99 over --probes sequential probes (a fresh connection each, as the
//     kubelet does) with no other client, with 50 slow clients (slowloris: a partial request,
//     then a byte every 500 ms, reopened when closed), and during a connection flood (up to
//     2000 connections held open, reopened as the server closes them).
// Prints the figures; docs/performance.md ("HTTP port under hostile clients") records them.
//
// Usage: http_flood_bench [--seconds S] [--probes N] [--rss-cap-mib M] [--binary PATH]
// The header flood stops early once the driver's RSS passes --rss-cap-mib (default 1024), so a
// server that keeps every header cannot take the machine down.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench_support.h"
#include "efadra/apidouble/fake_api_server.h"

namespace {

using Clock = std::chrono::steady_clock;
using efadra::bench::Percentile;
using efadra::bench::SampleProcess;
using efadra::bench::Spawn;
using efadra::bench::StopChild;
using std::chrono::milliseconds;

// A non-blocking TCP socket connecting to 127.0.0.1:port; -1 when socket() fails.
int StartConnect(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 &&
      errno != EINPROGRESS) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool WaitFor(int fd, short events, Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return false;
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, static_cast<int>(left)) == 1;
}

// One probe: connect, GET, read to EOF within `timeout`. The milliseconds it took, or -1.
double Probe(uint16_t port, const std::string& path, milliseconds timeout = milliseconds(2000)) {
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  const int fd = StartConnect(port);
  if (fd < 0) return -1;
  int error = 0;
  socklen_t length = sizeof(error);
  bool ok = WaitFor(fd, POLLOUT, deadline) &&
            ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0;
  const std::string request = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ok = ok && ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
                 static_cast<ssize_t>(request.size());
  std::string response;
  char buffer[4096];
  while (ok) {
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      response.append(buffer, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EAGAIN || !WaitFor(fd, POLLIN, deadline)) {
      ok = false;
    }
  }
  ::close(fd);
  if (!ok || response.rfind("HTTP/1.1 200", 0) != 0) return -1;
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct Latency {
  double p50 = 0, p99 = 0, max = 0;
  int failed = 0;
};

Latency MeasureProbes(uint16_t port, int probes) {
  std::vector<double> ms;
  Latency latency;
  for (int i = 0; i < probes; ++i) {
    const double t = Probe(port, "/healthz");
    if (t < 0) {
      ++latency.failed;
    } else {
      ms.push_back(t);
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  latency.p50 = Percentile(ms, 0.5);
  latency.p99 = Percentile(ms, 0.99);
  latency.max = ms.empty() ? 0 : *std::max_element(ms.begin(), ms.end());
  return latency;
}

// Runs `attack` on its own thread until the returned stopper is called.
class Attacker {
 public:
  explicit Attacker(std::function<void(const std::atomic<bool>&)> attack)
      : thread_([this, attack = std::move(attack)] { attack(stop_); }) {}
  ~Attacker() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Header flood: one connection at a time sends header lines as fast as the server takes them.
void HeaderFlood(uint16_t port, const std::atomic<bool>& stop, std::atomic<long>& sent_kib,
                 std::atomic<long>& connections) {
  std::string block = "GET /healthz HTTP/1.1\r\n";
  for (int i = 0; block.size() < 64 * 1024; ++i) {
    block += "X-Flood-" + std::to_string(i) + ": " + std::string(40, 'v') + "\r\n";
  }
  while (!stop) {
    const int fd = StartConnect(port);
    if (fd < 0) continue;
    ++connections;
    WaitFor(fd, POLLOUT, Clock::now() + milliseconds(1000));
    while (!stop) {
      const ssize_t n = ::send(fd, block.data(), block.size(), MSG_NOSIGNAL);
      if (n > 0) {
        sent_kib += n / 1024;
      } else if (n < 0 && errno == EAGAIN) {
        WaitFor(fd, POLLOUT, Clock::now() + milliseconds(100));
      } else {
        break;  // closed by the server: come back on a new connection
      }
    }
    ::close(fd);
  }
}

// Slowloris: `count` connections, each with a partial request and one more byte every 500 ms;
// one closed by the server is replaced.
void SlowClients(uint16_t port, int count, const std::atomic<bool>& stop) {
  std::vector<int> fds(static_cast<size_t>(count), -1);
  while (!stop) {
    for (int& fd : fds) {
      if (fd >= 0) {
        pollfd p{fd, POLLIN, 0};
        const bool closed = ::poll(&p, 1, 0) == 1;
        if (!closed && ::send(fd, "x", 1, MSG_NOSIGNAL) == 1) continue;
        ::close(fd);
        fd = -1;
      }
      fd = StartConnect(port);
      if (fd < 0) continue;
      WaitFor(fd, POLLOUT, Clock::now() + milliseconds(500));
      static constexpr std::string_view kStart = "GET /healthz HTTP/1.1\r\nX-Slow: ";
      [[maybe_unused]] ssize_t n = ::send(fd, kStart.data(), kStart.size(), MSG_NOSIGNAL);
    }
    for (int i = 0; i < 50 && !stop; ++i) std::this_thread::sleep_for(milliseconds(10));
  }
  for (int fd : fds) {
    if (fd >= 0) ::close(fd);
  }
}

// Connection flood: keeps up to `count` connections open that never send a byte, replacing
// each one the server closes.
void ConnectionFlood(uint16_t port, size_t count, const std::atomic<bool>& stop,
                     std::atomic<long>& opened) {
  std::deque<int> fds;
  std::vector<pollfd> polls;
  while (!stop) {
    while (fds.size() < count && !stop) {
      const int fd = StartConnect(port);
      if (fd < 0) break;
      fds.push_back(fd);
      ++opened;
    }
    polls.clear();
    for (int fd : fds) polls.push_back(pollfd{fd, POLLIN, 0});
    ::poll(polls.data(), polls.size(), 10);
    std::deque<int> still_open;
    for (const pollfd& p : polls) {
      if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        ::close(p.fd);
      } else {
        still_open.push_back(p.fd);
      }
    }
    fds.swap(still_open);
  }
  for (int fd : fds) ::close(fd);
}

// The port from the driver's "serving /healthz /readyz /metrics on 127.0.0.1:PORT" line.
uint16_t WaitForPort(const std::string& log, pid_t pid) {
  const std::string marker = "serving /healthz /readyz /metrics on 127.0.0.1:";
  const auto give_up = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < give_up && !efadra::bench::Exited(pid)) {
    std::ifstream in(log);
    std::string line;
    while (std::getline(in, line)) {
      const size_t at = line.find(marker);
      if (at != std::string::npos) {
        return static_cast<uint16_t>(std::atoi(line.c_str() + at + marker.size()));
      }
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  return 0;
}

void PrintLatency(const char* what, const Latency& latency, int probes) {
  std::printf("/healthz %-28s p50 %6.2f ms, p99 %6.2f ms, max %6.2f ms, %d/%d failed\n", what,
              latency.p50, latency.p99, latency.max, latency.failed, probes);
}

}  // namespace

int main(int argc, char** argv) {
  const efadra::bench::Flags flags(argc, argv);
  const int seconds = static_cast<int>(flags.Long("--seconds", 5));
  const int probes = static_cast<int>(flags.Long("--probes", 200));
  const long rss_cap_mib = flags.Long("--rss-cap-mib", 1024);
  const std::string binary = efadra::bench::DriverBinary("http_flood_bench", flags, argv[0]);
  // The connection flood holds 2000 sockets in this process.
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < 8192) {
    limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, 8192);
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }

  efadra::apidouble::FakeApiServer server;
  if (!server.Start().ok()) return 1;
  server.PutNode("bench-node", "uid-bench-node");
  const std::string dir =
      efadra::bench::MakeScratchNode("http-flood-bench", "p5.48xlarge", server.url());
  const std::vector<std::string> args = {
      binary, "run", "--node-name", "bench-node", "--sysfs-root", dir + "/sys", "--dev-root",
      dir + "/dev", "--kubeconfig", dir + "/kubeconfig", "--http-address", "127.0.0.1:0",
      "--registrar-dir", dir + "/registry", "--plugin-dir", dir + "/plugin", "--cdi-root",
      dir + "/cdi", "--device-plugin-dir", dir + "/device-plugins"};
  const std::string log = dir + "/driver.log";
  const pid_t pid = Spawn(args, log);
  const uint16_t port = WaitForPort(log, pid);
  if (port == 0) {
    std::fprintf(stderr, "http_flood_bench: the driver did not serve HTTP; see %s\n",
                 log.c_str());
    StopChild(pid);
    return 1;
  }
  while (server.ResourceSlices().empty()) std::this_thread::sleep_for(milliseconds(10));
  std::this_thread::sleep_for(milliseconds(1000));

  std::printf("http_flood_bench: efa-dra-driver run on 127.0.0.1:%u (p5.48xlarge tree)\n", port);
  const auto idle = SampleProcess(pid);
  std::printf("idle: RSS %ld KiB, %ld fds, %ld threads\n", idle.rss_kib, idle.fds, idle.threads);

  const Latency quiet = MeasureProbes(port, probes);

  long flood_peak_kib = 0;
  std::atomic<long> sent_kib{0};
  std::atomic<long> flood_connections{0};
  bool capped = false;
  const auto flood_start = Clock::now();
  {
    Attacker flood([&](const std::atomic<bool>& stop) {
      HeaderFlood(port, stop, sent_kib, flood_connections);
    });
    const auto end = Clock::now() + std::chrono::seconds(seconds);
    while (Clock::now() < end && !capped) {
      flood_peak_kib = std::max(flood_peak_kib, SampleProcess(pid).rss_kib);
      capped = flood_peak_kib > rss_cap_mib * 1024;
      std::this_thread::sleep_for(milliseconds(50));
    }
  }
  const double flood_s = std::chrono::duration<double>(Clock::now() - flood_start).count();
  std::this_thread::sleep_for(milliseconds(1000));
  const auto after_flood = SampleProcess(pid);
  std::printf("header flood %.1f s%s: %ld connections, %ld MiB written to them; RSS peak %ld KiB, "
              "1 s after %ld KiB\n",
              flood_s, capped ? " (stopped at --rss-cap-mib)" : "", flood_connections.load(),
              sent_kib.load() / 1024, flood_peak_kib, after_flood.rss_kib);

  Latency slow;
  {
    Attacker slowloris([&](const std::atomic<bool>& stop) { SlowClients(port, 50, stop); });
    std::this_thread::sleep_for(milliseconds(500));
    slow = MeasureProbes(port, probes);
  }

  Latency flooded;
  std::atomic<long> opened{0};
  long flood_fds = 0;
  {
    Attacker connections(
        [&](const std::atomic<bool>& stop) { ConnectionFlood(port, 2000, stop, opened); });
    std::this_thread::sleep_for(milliseconds(500));
    flooded = MeasureProbes(port, probes);
    flood_fds = SampleProcess(pid).fds;
  }
  std::this_thread::sleep_for(milliseconds(1000));
  const auto end = SampleProcess(pid);

  PrintLatency("no other client:", quiet, probes);
  PrintLatency("50 slow clients:", slow, probes);
  PrintLatency("connection flood (2000):", flooded, probes);
  std::printf("connection flood: %ld connections opened; driver fds %ld during, %ld after "
              "(idle %ld)\n",
              opened.load(), flood_fds, end.fds, idle.fds);
  std::printf("end: RSS %ld KiB (peak over the run %ld KiB)\n", end.rss_kib, end.hwm_kib);
  const int code = StopChild(pid);
  std::printf("SIGTERM to exit: exit code %d\n", code);
  std::filesystem::remove_all(dir);
  return code == 0 ? 0 : 1;
}
