// kube::Client against a real FakeApiServer on 127.0.0.1: CRUD, selectors, conflicts,
// validation errors, retries, watches, outages and token rotation.
#include "efadra/kube/client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "efadra/apidouble/fake_api_server.h"
#include "support/test_support.h"

namespace efadra::kube {
namespace {

using apidouble::FakeApiServer;
using efadra::testing::LogsOf;
using nlohmann::json;

constexpr char kSlices[] = "/apis/resource.k8s.io/v1/resourceslices";

json Slice(const std::string& node, const std::string& driver = "efa.example.com") {
  return {{"apiVersion", "resource.k8s.io/v1"},
          {"kind", "ResourceSlice"},
          {"metadata", {{"generateName", node + "-" + driver + "-"}, {"labels", {{"node", node}}}}},
          {"spec",
           {{"driver", driver},
            {"nodeName", node},
            {"pool", {{"name", node}, {"generation", 1}, {"resourceSliceCount", 1}}},
            {"devices",
             json::array({{{"name", "efa-0"},
                           {"attributes", {{"numaNode", {{"int", 0}}},
                                           {"kernelDriverVersion", {{"version", "3.1.0"}}}}}}})}}}};
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start().ok());
    ClientConfig config;
    config.server = server_.url();
    config.request_timeout = std::chrono::seconds(5);
    RetryPolicy retry;
    retry.initial_backoff = std::chrono::milliseconds(5);
    retry.max_backoff = std::chrono::milliseconds(20);
    auto client = Client::Create(config, retry);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(*client);
  }

  size_t CountRequests(const std::string& method) {
    size_t n = 0;
    for (const auto& r : server_.Requests()) n += r.method == method ? 1 : 0;
    return n;
  }

  FakeApiServer server_;
  std::unique_ptr<Client> client_;
};

TEST_F(ClientTest, CrudRoundTrip) {
  auto created = client_->Create(kSlices, Slice("node1"));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  const std::string name = (*created)["metadata"]["name"];
  EXPECT_EQ(name.size(), std::string("node1-efa.example.com-").size() + 5);
  EXPECT_FALSE((*created)["metadata"]["uid"].get<std::string>().empty());
  const std::string path = std::string(kSlices) + "/" + name;

  auto got = client_->Get(path);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)["spec"], (*created)["spec"]);

  json update = *got;
  update["spec"]["pool"]["generation"] = 2;
  auto updated = client_->Update(path, update);
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  EXPECT_NE((*updated)["metadata"]["resourceVersion"], (*got)["metadata"]["resourceVersion"]);
  EXPECT_EQ((*updated)["spec"]["pool"]["generation"], 2);

  ASSERT_TRUE(client_->Delete(path, {(*updated)["metadata"]["uid"],
                                     (*updated)["metadata"]["resourceVersion"]})
                  .ok());
  auto gone = client_->Get(path);
  EXPECT_EQ(gone.status().code(), StatusCode::kNotFound);
  EXPECT_NE(gone.status().message().find(name), std::string::npos) << gone.status().message();
  EXPECT_EQ(client_->Delete(path).code(), StatusCode::kNotFound);
}

TEST_F(ClientTest, ListWithSelectors) {
  ASSERT_TRUE(client_->Create(kSlices, Slice("n1", "a.example.com")).ok());
  ASSERT_TRUE(client_->Create(kSlices, Slice("n2", "a.example.com")).ok());
  ASSERT_TRUE(client_->Create(kSlices, Slice("n1", "b.example.com")).ok());
  struct Case {
    std::string fields, labels;
    size_t want;
  } cases[] = {
      {"", "", 3},
      {"spec.driver=a.example.com", "", 2},
      {"spec.driver=a.example.com,spec.nodeName=n1", "", 1},
      {"spec.nodeName!=n1", "", 1},
      {"", "node=n1", 2},
      {"spec.driver=b.example.com", "node=n2", 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.fields + " | " + c.labels);
    ListOptions options;
    options.field_selector = c.fields;
    options.label_selector = c.labels;
    auto list = client_->List(kSlices, options);
    ASSERT_TRUE(list.ok()) << list.status().ToString();
    EXPECT_EQ((*list)["items"].size(), c.want);
    EXPECT_FALSE((*list)["metadata"]["resourceVersion"].get<std::string>().empty());
  }
  ListOptions bad;
  bad.field_selector = "spec.pool.name=n1";
  EXPECT_EQ(client_->List(kSlices, bad).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(ClientTest, ConflictsMapToAbortedAndAlreadyExists) {
  json slice = Slice("n1");
  slice["metadata"].erase("generateName");
  slice["metadata"]["name"] = "fixed";
  ASSERT_TRUE(client_->Create(kSlices, slice).ok());
  auto dup = client_->Create(kSlices, slice);
  EXPECT_EQ(dup.status().code(), StatusCode::kAlreadyExists) << dup.status().ToString();

  auto stored = client_->Get(std::string(kSlices) + "/fixed");
  ASSERT_TRUE(stored.ok());
  json stale = *stored;
  ASSERT_TRUE(client_->Update(std::string(kSlices) + "/fixed", *stored).ok());
  server_.ClearRequests();
  auto conflict = client_->Update(std::string(kSlices) + "/fixed", stale);
  EXPECT_EQ(conflict.status().code(), StatusCode::kAborted);
  EXPECT_NE(conflict.status().message().find("409 Conflict"), std::string::npos)
      << conflict.status().message();
  EXPECT_NE(conflict.status().message().find("fixed"), std::string::npos);
  EXPECT_EQ(CountRequests("PUT"), 1u) << "409 must not be retried";

  auto del = client_->Delete(std::string(kSlices) + "/fixed", {"wrong-uid", ""});
  EXPECT_EQ(del.code(), StatusCode::kAborted) << del.ToString();
}

TEST_F(ClientTest, InvalidSliceIs422WithCauses) {
  json slice = Slice("n1");
  slice["spec"]["devices"][0]["name"] = "Not_A_Label";
  auto r = client_->Create(kSlices, slice);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("spec.devices[0].name"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("422"), std::string::npos);
}

TEST_F(ClientTest, RetriesOn5xxAnd429ButNot4xx) {
  struct Case {
    int status;
    int failures;
    bool succeeds;
    size_t want_requests;
    StatusCode code;
  } cases[] = {
      {503, 2, true, 3, StatusCode::kOk},
      {500, 1, true, 2, StatusCode::kOk},
      {429, 2, true, 3, StatusCode::kOk},
      {503, 5, false, 5, StatusCode::kUnavailable},
      {400, 1, false, 1, StatusCode::kInvalidArgument},
      {403, 1, false, 1, StatusCode::kPermissionDenied},
      {404, 1, false, 1, StatusCode::kNotFound},
      {409, 1, false, 1, StatusCode::kAborted},
  };
  server_.PutNode("node1", "uid-1");
  for (const auto& c : cases) {
    SCOPED_TRACE(c.status);
    server_.ClearRequests();
    server_.FailNext(c.failures, c.status, 0, "GET", "/api/v1/nodes");
    auto r = client_->Get("/api/v1/nodes/node1");
    EXPECT_EQ(r.ok(), c.succeeds) << r.status().ToString();
    EXPECT_EQ(r.status().code(), c.code);
    EXPECT_EQ(server_.Requests().size(), c.want_requests);
  }
}

TEST_F(ClientTest, HonoursRetryAfter) {
  server_.PutNode("node1", "uid-1");
  server_.FailNext(1, 429, 1, "GET");
  auto start = std::chrono::steady_clock::now();
  auto r = client_->Get("/api/v1/nodes/node1");
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // Backoff alone is capped at 20 ms here, so only Retry-After explains a 1 s wait.
  EXPECT_GE(elapsed, std::chrono::milliseconds(900));
  EXPECT_EQ(server_.Requests().size(), 2u);
}

TEST_F(ClientTest, WatchDeliversEventsAndStops) {
  std::atomic<bool> stop{false};
  std::vector<std::string> types;
  std::mutex mu;
  Status result;
  std::thread watcher([&] {
    ListOptions options;
    options.field_selector = "spec.nodeName=n1";
    result = client_->Watch(kSlices, options,
                            [&](const WatchEvent& e) {
                              std::lock_guard<std::mutex> lock(mu);
                              types.push_back(e.type);
                              return true;
                            },
                            stop);
  });
  ASSERT_TRUE(testing::WaitFor([&] {
    for (const auto& r : server_.Requests()) if (r.watch) return true;
    return false;
  }));
  auto created = client_->Create(kSlices, Slice("n1"));
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE(client_->Create(kSlices, Slice("n2")).ok());  // filtered out
  server_.DeleteResourceSlice((*created)["metadata"]["name"]);
  ASSERT_TRUE(testing::WaitFor([&] {
    std::lock_guard<std::mutex> lock(mu);
    return types.size() >= 2;
  }));
  auto stop_at = std::chrono::steady_clock::now();
  stop = true;
  watcher.join();
  EXPECT_LT(std::chrono::steady_clock::now() - stop_at, std::chrono::milliseconds(500));
  EXPECT_EQ(result.code(), StatusCode::kCancelled) << result.ToString();
  EXPECT_EQ(types, (std::vector<std::string>{"ADDED", "DELETED"}));
}

TEST_F(ClientTest, WatchEndsOnDropAndResumesFromVersion) {
  ASSERT_TRUE(client_->Create(kSlices, Slice("n1")).ok());
  auto list = client_->List(kSlices);
  ASSERT_TRUE(list.ok());
  std::atomic<bool> stop{false};
  std::atomic<int> events{0};
  Status result;
  std::thread watcher([&] {
    ListOptions o;
    o.resource_version = (*list)["metadata"]["resourceVersion"];
    result = client_->Watch(kSlices, o, [&](const WatchEvent&) { ++events; return true; }, stop);
  });
  ASSERT_TRUE(client_->Create(kSlices, Slice("n2")).ok());
  ASSERT_TRUE(testing::WaitFor([&] { return events.load() == 1; }));
  server_.DropWatches();
  watcher.join();
  EXPECT_TRUE(result.ok()) << result.ToString();
  EXPECT_EQ(events.load(), 1) << "resuming from the list version must not replay n1";
}

TEST_F(ClientTest, WatchTooOldVersionIsOutOfRange) {
  std::atomic<bool> stop{false};
  std::vector<std::string> types;
  ListOptions options;
  options.resource_version = "1";  // older than anything the server retains
  Status result = client_->Watch(kSlices, options,
                                 [&](const WatchEvent& e) {
                                   types.push_back(e.type);
                                   return true;
                                 },
                                 stop);
  EXPECT_EQ(result.code(), StatusCode::kOutOfRange) << result.ToString();
  EXPECT_EQ(types, std::vector<std::string>{"ERROR"});
}

TEST_F(ClientTest, ApiDownThenUp) {
  // A port nothing listens on: take one from a server and stop it.
  FakeApiServer later;
  ASSERT_TRUE(later.Start().ok());
  const int port = later.port();
  later.Stop();
  ClientConfig config;
  config.server = "http://127.0.0.1:" + std::to_string(port);
  RetryPolicy retry;
  retry.initial_backoff = std::chrono::milliseconds(5);
  retry.max_backoff = std::chrono::milliseconds(20);
  auto client = Client::Create(config, retry);
  ASSERT_TRUE(client.ok());
  auto start = std::chrono::steady_clock::now();
  auto r = (*client)->Get("/api/v1/nodes/x");
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  // The same client works against a live server afterwards.
  server_.PutNode("x", "uid-x");
  ClientConfig live = config;
  live.server = server_.url();
  auto client2 = Client::Create(live, retry);
  ASSERT_TRUE(client2.ok());
  EXPECT_TRUE((*client2)->Get("/api/v1/nodes/x").ok());
}

TEST_F(ClientTest, TokenFileRotation) {
  testing::TempDir dir;
  testing::WriteFileOrDie(dir.Sub("token"), "first\n");
  server_.SetBearerToken("first");
  server_.PutNode("n", "uid");
  ClientConfig config;
  config.server = server_.url();
  config.token_file = dir.Sub("token");
  RetryPolicy once;
  once.max_attempts = 1;
  auto client = Client::Create(config, once);
  ASSERT_TRUE(client.ok());
  EXPECT_TRUE((*client)->Get("/api/v1/nodes/n").ok());
  server_.SetBearerToken("second");
  EXPECT_EQ((*client)->Get("/api/v1/nodes/n").status().code(), StatusCode::kUnauthenticated);
  testing::WriteFileOrDie(dir.Sub("token"), "second\n");
  EXPECT_TRUE((*client)->Get("/api/v1/nodes/n").ok());
}

class CountingObserver : public RequestObserver {
 public:
  void OnRequest(std::string_view verb, int code, std::chrono::microseconds) override {
    std::lock_guard<std::mutex> lock(mu_);
    seen_.push_back(std::string(verb) + " " + std::to_string(code));
  }
  std::vector<std::string> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> seen_;
};

TEST_F(ClientTest, ObserverSeesEveryAttempt) {
  CountingObserver observer;
  client_->SetObserver(&observer);
  server_.FailNext(1, 503);
  EXPECT_EQ(client_->Get("/api/v1/nodes/none").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(observer.seen(), (std::vector<std::string>{"GET 503", "GET 404"}));
}

TEST_F(ClientTest, RefusesPathsThatLeaveTheirResource) {
  server_.PutNode("n1", "uid-1");
  // The control: a clean path reaches the node, with or without an escaped query.
  ASSERT_TRUE(client_->Get("/api/v1/nodes/n1").ok());
  ASSERT_TRUE(client_->Get("/api/v1/nodes/n1?fieldManager=efa-dra-driver&x=a%2Fb").ok());
  // libcurl would resolve the dot segments and fetch /api/v1/nodes/n1 instead of a claim.
  const std::string kBad[] = {
      "/api/v1/namespaces/x/../../nodes/n1",
      "/api/v1/nodes/./n1",
      "/api/v1/nodes//n1",
      "/api/v1/nodes/n1%2F..",
      "/api/v1/nodes/n1 x",
      "/api/v1/nodes/n1\r\nX-Injected: 1",
      "/api/v1/nodes/n1?fieldManager=x#frag",
      "/api/v1/nodes/n1?fieldManager=a b",
      "/api/v1/x/../nodes/n1?fieldManager=x",
      "/api/v1/nodes/n1#frag",
      "api/v1/nodes/n1",
      "",
  };
  for (const std::string& path : kBad) {
    SCOPED_TRACE(path);
    auto r = client_->Get(path);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("request path"), std::string::npos)
        << r.status().message();
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos);
  }
  std::atomic<bool> stop{false};
  Status watched = client_->Watch("/apis/resource.k8s.io/v1/../v1/resourceslices", {},
                                  [](const WatchEvent&) { return true; }, stop);
  EXPECT_EQ(watched.code(), StatusCode::kInvalidArgument) << watched.ToString();
  EXPECT_EQ(client_->Delete("/api/v1/nodes/x/..").code(), StatusCode::kInvalidArgument);
}

// A minimal HTTP/1.1 server on 127.0.0.1:0 that answers every request with a status line,
// headers and `body_bytes` of `fill`, streamed in 64 KiB chunks (never held in memory), and
// counts what it managed to send before the client went away.
class StreamingServer {
 public:
  StreamingServer(std::string head, size_t body_bytes, char fill)
      : head_(std::move(head)), body_bytes_(body_bytes), fill_(fill) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(listen_fd_, 8) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
      return;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~StreamingServer() {
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    if (thread_.joinable()) thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  size_t body_bytes_sent() const { return sent_.load(); }

 private:
  void Serve() {
    while (!stopping_) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      std::string request;
      char buf[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
      }
      const std::string head = head_ + "Content-Length: " + std::to_string(body_bytes_) +
                               "\r\nConnection: close\r\n\r\n";
      if (::send(fd, head.data(), head.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(head.size())) {
        const std::string chunk(64 * 1024, fill_);
        for (size_t left = body_bytes_; left > 0 && !stopping_;) {
          const size_t n = std::min(left, chunk.size());
          const ssize_t w = ::send(fd, chunk.data(), n, MSG_NOSIGNAL);
          if (w <= 0) break;
          sent_ += static_cast<size_t>(w);
          left -= static_cast<size_t>(w);
        }
      }
      ::close(fd);
    }
  }

  const std::string head_;
  const size_t body_bytes_;
  const char fill_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> sent_{0};
  std::thread thread_;
};

// kB of a /proc/self/status field (VmRSS, VmHWM).
long ProcStatusKb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::atol(line.c_str() + field.size() + 1);
  }
  return -1;
}

// Restarts VmHWM at the current RSS, so the peak seen afterwards is this test's own.
void ResetPeakRss() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

constexpr size_t kHugeBody = size_t{200} << 20;  // 200 MiB

std::unique_ptr<Client> CappedClient(const std::string& url) {
  ClientConfig config;
  config.server = url;
  config.request_timeout = std::chrono::seconds(60);
  config.max_response_bytes = size_t{1} << 20;
  config.max_watch_line_bytes = size_t{1} << 20;
  RetryPolicy once;
  once.max_attempts = 1;
  auto client = Client::Create(config, once);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(*client) : nullptr;
}

TEST(ClientLimitsTest, HugeResponseBodyIsAnErrorNotAnAllocation) {
  StreamingServer server("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", kHugeBody,
                         ' ');
  auto client = CappedClient(server.url());
  ASSERT_NE(client, nullptr);
  ResetPeakRss();
  const long peak_before = ProcStatusKb("VmHWM");
  auto r = client->List("/apis/resource.k8s.io/v1/resourceslices");
  const long peak_growth_kb = ProcStatusKb("VmHWM") - peak_before;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
  EXPECT_NE(r.status().message().find("GET /apis/resource.k8s.io/v1/resourceslices"),
            std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("limit of 1 MiB"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find(server.url()), std::string::npos) << r.status().message();
  // Far below the body: the cap plus curl's buffers, not 200 MiB.
  EXPECT_LT(peak_growth_kb, 32 * 1024) << "peak RSS grew by " << peak_growth_kb << " kB";
  // The transfer was cut, not drained (socket buffers may hold a few MiB).
  EXPECT_TRUE(testing::WaitFor([&] { return server.body_bytes_sent() < kHugeBody; }));
  EXPECT_LT(server.body_bytes_sent(), kHugeBody / 2);
}

TEST(ClientLimitsTest, HugeErrorBodyIsCutToo) {
  StreamingServer server("HTTP/1.1 500 Internal Server Error\r\n", kHugeBody, 'e');
  auto client = CappedClient(server.url());
  ASSERT_NE(client, nullptr);
  ResetPeakRss();
  const long peak_before = ProcStatusKb("VmHWM");
  auto r = client->Get("/api/v1/nodes/n1");
  EXPECT_LT(ProcStatusKb("VmHWM") - peak_before, 32 * 1024);
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
}

TEST(ClientLimitsTest, WatchEventWithoutEndIsAnError) {
  StreamingServer server("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", kHugeBody,
                         'w');
  auto client = CappedClient(server.url());
  ASSERT_NE(client, nullptr);
  ResetPeakRss();
  const long peak_before = ProcStatusKb("VmHWM");
  std::atomic<bool> stop{false};
  int events = 0;
  Status watched = client->Watch("/apis/resource.k8s.io/v1/resourceslices", {},
                                 [&](const WatchEvent&) { return ++events > 0; }, stop);
  const long peak_growth_kb = ProcStatusKb("VmHWM") - peak_before;
  EXPECT_EQ(watched.code(), StatusCode::kResourceExhausted) << watched.ToString();
  EXPECT_NE(watched.message().find("WATCH /apis/resource.k8s.io/v1/resourceslices"),
            std::string::npos)
      << watched.message();
  EXPECT_NE(watched.message().find("limit of 1 MiB"), std::string::npos) << watched.message();
  EXPECT_EQ(events, 0);
  EXPECT_LT(peak_growth_kb, 32 * 1024) << "peak RSS grew by " << peak_growth_kb << " kB";
  EXPECT_LT(server.body_bytes_sent(), kHugeBody / 2);
}

// A socket listening on 127.0.0.1 on a free port (in *port); -1 on failure. The caller accepts.
int ListenOnLoopback(int* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd, 8) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

// A server that accepts connections and never answers: the watch is blocked reading the
// response head, not between events, when it is told to stop.
TEST(ClientWatchStopTest, StopsWhileTheServerHasNotAnswered) {
  int port = 0;
  const int listen_fd = ListenOnLoopback(&port);
  ASSERT_GE(listen_fd, 0);
  std::atomic<int> accepted_fd{-1};
  std::thread acceptor([&] { accepted_fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC); });

  auto client = CappedClient("http://127.0.0.1:" + std::to_string(port));
  ASSERT_NE(client, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<bool> returned{false};
  Status result;
  std::thread watcher([&] {
    result = client->Watch(kSlices, {}, [](const WatchEvent&) { return true; }, stop);
    returned = true;
  });
  ASSERT_TRUE(testing::WaitFor([&] { return accepted_fd.load() >= 0; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the request is sent, unanswered
  EXPECT_FALSE(returned.load());
  stop = true;
  // Bounded, so a watch that ignores the flag fails the test instead of hanging it; closing
  // the connection then lets it return.
  EXPECT_TRUE(testing::WaitFor([&] { return returned.load(); }, std::chrono::seconds(2)))
      << "the watch did not notice the stop flag";
  ::close(accepted_fd);
  watcher.join();
  acceptor.join();
  ::close(listen_fd);
  EXPECT_EQ(result.code(), StatusCode::kCancelled) << result.ToString();
}

// A server that sends its status line and then one header byte every 50 ms, for up to 5 s:
// every single read is quick, only the whole exchange is slow.
TEST(ClientDeadlineTest, RequestTimeoutBoundsTheWholeExchange) {
  int port = 0;
  const int listen_fd = ListenOnLoopback(&port);
  ASSERT_GE(listen_fd, 0);
  std::thread trickler([&] {
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    std::string head = "HTTP/1.1 200 OK\r\nX-Slow: ";
    bool open = ::send(fd, head.data(), head.size(), MSG_NOSIGNAL) > 0;
    for (int i = 0; open && i < 100; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      open = ::send(fd, "a", 1, MSG_NOSIGNAL) == 1;
    }
    ::close(fd);
  });
  ClientConfig config;
  config.server = "http://127.0.0.1:" + std::to_string(port);
  config.request_timeout = std::chrono::milliseconds(300);
  RetryPolicy once;
  once.max_attempts = 1;
  auto client = Client::Create(config, once);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  const auto start = std::chrono::steady_clock::now();
  auto r = (*client)->Get("/api/v1/nodes/n1");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  trickler.join();
  ::close(listen_fd);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  // The trickle lasts 5 s; ending well before it means the deadline, not the server, ended it.
  EXPECT_LT(elapsed, std::chrono::seconds(3));
}

// Sequential calls share one keep-alive connection: a server that answers every request on a
// connection with a small JSON body and counts the connections it accepted.
TEST(ClientConnectionTest, SequentialCallsReuseOneConnection) {
  int port = 0;
  const int listen_fd = ListenOnLoopback(&port);
  ASSERT_GE(listen_fd, 0);
  std::atomic<int> connections{0};
  std::atomic<int> answered{0};
  std::thread server([&] {
    while (true) {
      const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      ++connections;
      std::string pending;
      char buf[4096];
      for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) break;
        pending.append(buf, static_cast<size_t>(n));
        for (size_t end; (end = pending.find("\r\n\r\n")) != std::string::npos;) {
          pending.erase(0, end + 4);
          const std::string reply =
              "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
          if (::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL) < 0) break;
          ++answered;
        }
      }
      ::close(fd);
    }
  });
  ClientConfig config;
  config.server = "http://127.0.0.1:" + std::to_string(port);
  // Trust data on a plain-http config must not keep pooled connections from matching.
  config.ca_data = "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";
  RetryPolicy once;
  once.max_attempts = 1;
  auto client = Client::Create(config, once);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  for (int i = 0; i < 5; ++i) {
    auto r = (*client)->Get("/api/v1/nodes/n" + std::to_string(i));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
  }
  EXPECT_EQ(answered.load(), 5);
  EXPECT_EQ(connections.load(), 1);
  client->reset();  // closes the pooled connection, so the server thread sees EOF
  ::shutdown(listen_fd, SHUT_RDWR);
  server.join();
  ::close(listen_fd);
}

TEST(ClientCreateTest, WarnsAboutInsecureTransport) {
  struct Case {
    std::string what;
    std::function<void(ClientConfig&)> set;
    std::string warning;  // "" -> no warning
  } cases[] = {
      {"verified https", [](ClientConfig& c) { c.server = "https://x"; c.token = "t"; }, ""},
      {"http without credentials", [](ClientConfig& c) { c.server = "http://x"; }, ""},
      {"insecure-skip-tls-verify",
       [](ClientConfig& c) {
         c.server = "https://x";
         c.insecure_skip_tls_verify = true;
       },
       "insecure-skip-tls-verify"},
      {"token over http",
       [](ClientConfig& c) {
         c.server = "http://x";
         c.token = "t";
       },
       "bearer token is sent over plain http://"},
      {"token file over http",
       [](ClientConfig& c) {
         c.server = "http://x";
         c.token_file = "/var/run/token";
       },
       "bearer token is sent over plain http://"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    ClientConfig config;
    c.set(config);
    const std::string logs = LogsOf([&] { EXPECT_TRUE(Client::Create(config).ok()); });
    if (c.warning.empty()) {
      EXPECT_EQ(logs, "");
    } else {
      EXPECT_NE(logs.find("[warning]"), std::string::npos) << logs;
      EXPECT_NE(logs.find(c.warning), std::string::npos) << logs;
      EXPECT_EQ(logs.find("token t"), std::string::npos) << logs;  // never the token itself
    }
  }
}

TEST(ClientCreateTest, RejectsUnusableConfig) {
  struct Case {
    std::function<void(ClientConfig&)> mutate;
    std::string want;
  } cases[] = {
      {[](ClientConfig&) {}, "no server"},
      {[](ClientConfig& c) { c.server = "ftp://x"; }, "not an http"},
      {[](ClientConfig& c) { c.server = "https://x"; c.ca_file = "/nonexistent/ca.crt"; },
       "/nonexistent/ca.crt"},
      {[](ClientConfig& c) { c.server = "https://x"; c.client_cert_data = "PEM"; }, "together"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.want);
    ClientConfig config;
    c.mutate(config);
    auto r = Client::Create(config);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.want), std::string::npos) << r.status().message();
  }
}

}  // namespace
}  // namespace efadra::kube
