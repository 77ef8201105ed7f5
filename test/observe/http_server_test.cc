#include "efadra/observe/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>

namespace efadra::observe {
namespace {

TEST(ParseHttpAddressTest, Table) {
  struct Case {
    std::string text;
    bool valid;
    std::string host;
    uint16_t port;
  };
  const Case kCases[] = {
      {":8080", true, "", 8080},
      {":0", true, "", 0},
      {"127.0.0.1:0", true, "127.0.0.1", 0},
      {"0.0.0.0:9090", true, "0.0.0.0", 9090},
      {"[::1]:9090", true, "::1", 9090},
      {"[::]:8080", true, "::", 8080},
      {"[fe80::1%lo]:80", false, "", 0},
      {"localhost:65535", true, "localhost", 65535},
      {"metrics.node-1.internal:80", true, "metrics.node-1.internal", 80},
      {"", false, "", 0},
      {"8080", false, "", 0},
      {"localhost", false, "", 0},
      {":", false, "", 0},
      {"127.0.0.1:", false, "", 0},
      {":65536", false, "", 0},
      {":123456", false, "", 0},
      {":-1", false, "", 0},
      {":+80", false, "", 0},
      {": 80", false, "", 0},
      {":http", false, "", 0},
      {"::1:8080", false, "", 0},
      {"[::1:8080", false, "", 0},
      {"[::1]8080", false, "", 0},
      {"[::1]", false, "", 0},
      {"[]:80", false, "", 0},
      {"[127.0.0.1]:80", false, "", 0},
      {"300.1.1.1:80", false, "", 0},
      {"1.2.3:80", false, "", 0},
      {"-bad-.example:80", false, "", 0},
      {"under_score:80", false, "", 0},
      {"a..b:80", false, "", 0},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE("\"" + c.text + "\"");
    auto address = ParseHttpAddress(c.text);
    ASSERT_EQ(address.ok(), c.valid) << address.status().ToString();
    if (c.valid) {
      EXPECT_EQ(address->host, c.host);
      EXPECT_EQ(address->port, c.port);
      // ToString() round-trips through the parser.
      auto again = ParseHttpAddress(address->ToString());
      ASSERT_TRUE(again.ok()) << address->ToString();
      EXPECT_EQ(again->host, c.host);
      EXPECT_EQ(again->port, c.port);
    } else {
      EXPECT_EQ(address.status().code(), StatusCode::kInvalidArgument);
      // The error names the input so a bad flag is obvious from one line.
      EXPECT_NE(address.status().message().find("\"" + c.text + "\""), std::string::npos)
          << address.status().message();
    }
  }
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto family = registry_.Counter("efa_test_requests_total", "Requests.", {"code"});
    ASSERT_TRUE(family.ok());
    (*family)->WithLabels({"200"}).Add(2);
    server_ = std::make_unique<HttpServer>(&registry_);
    ASSERT_TRUE(server_->Start(HttpAddress{"127.0.0.1", 0}).ok());
    ASSERT_NE(server_->port(), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_connection_timeout(5, 0);
    client_->set_read_timeout(5, 0);
  }

  Registry registry_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HttpServerTest, HealthzOkThenFailing) {
  auto res = client_->Get("/healthz");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok");
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; charset=utf-8");

  std::atomic<bool> sockets_served{true};
  server_->liveness().Add("sockets-served", [&]() -> Status {
    if (sockets_served) return Status::Ok();
    return UnavailableError("registration socket is gone");
  });
  server_->liveness().Add("ping", [] { return Status::Ok(); });
  res = client_->Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok");

  sockets_served = false;
  res = client_->Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  EXPECT_EQ(res->body,
            "[-]sockets-served failed: unavailable\n"
            "[+]ping ok\n"
            "healthz check failed\n");
  // /livez is the same set.
  res = client_->Get("/livez");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
}

TEST_F(HttpServerTest, ReadyzFailingVerboseAndExclude) {
  std::atomic<bool> published{false};
  server_->readiness().Add("registered-with-kubelet", [] { return Status::Ok(); });
  server_->readiness().Add("first-slice-published", [&]() -> Status {
    if (published) return Status::Ok();
    return UnavailableError("no ResourceSlice accepted yet");
  });
  server_->readiness().Add("no-device-plugin-conflict", [] { return Status::Ok(); });

  auto res = client_->Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->body,
            "[+]registered-with-kubelet ok\n"
            "[-]first-slice-published failed: unavailable\n"
            "[+]no-device-plugin-conflict ok\n"
            "readyz check failed\n");

  res = client_->Get("/readyz?exclude=first-slice-published");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok");

  published = true;
  res = client_->Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok");

  res = client_->Get("/readyz?verbose");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body,
            "[+]registered-with-kubelet ok\n"
            "[+]first-slice-published ok\n"
            "[+]no-device-plugin-conflict ok\n"
            "readyz check passed\n");

  // A removed check no longer counts.
  server_->readiness().Remove("first-slice-published");
  published = false;
  res = client_->Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST_F(HttpServerTest, MetricsContentTypeAndBody) {
  auto res = client_->Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(res->body, registry_.Render());
  EXPECT_NE(res->body.find("efa_test_requests_total{code=\"200\"} 2\n"), std::string::npos);
  // Values move between scrapes.
  (*registry_.Counter("efa_test_requests_total", "Requests.", {"code"}))->WithLabels({"200"}).Inc();
  res = client_->Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_NE(res->body.find("efa_test_requests_total{code=\"200\"} 3\n"), std::string::npos);
}

TEST_F(HttpServerTest, UnknownPathsAndMethods) {
  struct Case {
    std::string method, path;
    int status;
  };
  const Case kCases[] = {
      {"GET", "/", 404},         {"GET", "/metricsx", 404}, {"GET", "/healthz/extra", 404},
      {"POST", "/metrics", 405}, {"PUT", "/healthz", 405},  {"DELETE", "/readyz", 405},
      {"POST", "/nothing", 404}, {"HEAD", "/metrics", 200}, {"HEAD", "/nothing", 404},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.method + " " + c.path);
    httplib::Result res(nullptr, httplib::Error::Unknown);
    if (c.method == "GET") res = client_->Get(c.path.c_str());
    if (c.method == "HEAD") res = client_->Head(c.path.c_str());
    if (c.method == "POST") res = client_->Post(c.path.c_str(), "x", "text/plain");
    if (c.method == "PUT") res = client_->Put(c.path.c_str(), "x", "text/plain");
    if (c.method == "DELETE") res = client_->Delete(c.path.c_str());
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->status, c.status);
    if (c.status == 405) {
      EXPECT_EQ(res->get_header_value("Allow"), "GET, HEAD");
    }
    if (c.method == "HEAD") {
      EXPECT_TRUE(res->body.empty());
    }
  }
}

TEST_F(HttpServerTest, StopClosesThePortAndStartAgainWorks) {
  EXPECT_EQ(server_->Start(HttpAddress{"127.0.0.1", 0}).code(), StatusCode::kFailedPrecondition);
  const uint16_t old_port = server_->port();
  server_->Stop();
  EXPECT_EQ(server_->port(), 0);
  server_->Stop();  // idempotent
  httplib::Client after("127.0.0.1", old_port);
  after.set_connection_timeout(2, 0);
  EXPECT_FALSE(after.Get("/healthz"));

  ASSERT_TRUE(server_->Start(HttpAddress{"127.0.0.1", 0}).ok());
  httplib::Client again("127.0.0.1", server_->port());
  auto res = again.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST_F(HttpServerTest, PortInUseIsAClearError) {
  HttpServer second(&registry_);
  Status status = second.Start(HttpAddress{"127.0.0.1", server_->port()});
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("127.0.0.1:" + std::to_string(server_->port())),
            std::string::npos)
      << status.message();
  EXPECT_EQ(second.port(), 0);
}

TEST(HttpServerShareTest, ARollingUpdatePairSharesThePortOnlyWhenBothAsk) {
  Registry registry;
  HttpServer old_pod(&registry);
  old_pod.ShareListenPort(true);
  ASSERT_TRUE(old_pod.Start(HttpAddress{"127.0.0.1", 0}).ok());
  const uint16_t port = old_pod.port();
  HttpServer not_sharing(&registry);
  EXPECT_EQ(not_sharing.Start(HttpAddress{"127.0.0.1", port}).code(), StatusCode::kUnavailable);
  HttpServer new_pod(&registry);
  new_pod.ShareListenPort(true);
  ASSERT_TRUE(new_pod.Start(HttpAddress{"127.0.0.1", port}).ok());
  old_pod.Stop();  // the old pod leaves; the new one keeps answering on the port
  httplib::Client client("127.0.0.1", port);
  auto res = client.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(HttpServerAddressTest, NonLocalAddressFails) {
  HttpServer server(nullptr);
  // TEST-NET-1 (RFC 5737) is never assigned to this machine.
  Status status = server.Start(HttpAddress{"192.0.2.1", 0});
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
}

// Whether this host has an IPv6 loopback at all (containers may run without IPv6): bound with a
// plain socket, independently of the server under test.
bool HostHasIpv6Loopback() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 address{};
  address.sin6_family = AF_INET6;
  address.sin6_addr = in6addr_loopback;
  const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return bound;
}

TEST(HttpServerAddressTest, ServesOnIpv6LoopbackAndAllInterfaces) {
  const bool ipv6 = HostHasIpv6Loopback();
  struct Case {
    std::string address;
    std::string client_host;
  };
  const Case kCases[] = {
      {"[::1]:0", "::1"},
      {":0", "127.0.0.1"},  // dual-stack: IPv4 clients reach the "::" socket
      {":0", "::1"},
  };
  for (const Case& c : kCases) {
    if (c.client_host == "::1" && !ipv6) continue;
    SCOPED_TRACE(c.address + " via " + c.client_host);
    auto address = ParseHttpAddress(c.address);
    ASSERT_TRUE(address.ok());
    HttpServer server(nullptr);
    Status status = server.Start(*address);
    ASSERT_TRUE(status.ok()) << status.ToString();
    httplib::Client client(c.client_host, server.port());
    client.set_connection_timeout(5, 0);
    auto res = client.Get("/metrics");
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(res->body, "");
  }
  if (!ipv6) GTEST_SKIP() << "no IPv6 loopback on this host: only the IPv4 case ran";
}

}  // namespace
}  // namespace efadra::observe
