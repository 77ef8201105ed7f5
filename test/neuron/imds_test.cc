// QueryImdsInstanceType against a real HTTP server on 127.0.0.1 (cpp-httplib) playing IMDSv2.
// Never points at 169.254.169.254 or any other non-loopback address.
#include "efadra/neuron/imds.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "support/test_support.h"

namespace efadra::neuron {
namespace {

using std::chrono::milliseconds;

constexpr char kToken[] = "AQAEAFake-Token_1==";

// A fake IMDSv2: PUT /latest/api/token hands out kToken when the TTL header is present; GET
// /latest/meta-data/instance-type answers only with that token. Knobs make it misbehave.
class FakeImds {
 public:
  struct Options {
    std::string instance_type = "trn2.48xlarge\n";
    bool reject_every_token = false;  // GET always 401 (token "expired")
    bool hang_put = false;            // PUT never answers until the fake is destroyed
    bool hang_get = false;
    int get_status = 200;
    std::string token = kToken;
  };

  explicit FakeImds(Options options) : options_(std::move(options)) {
    server_.Put("/latest/api/token", [this](const httplib::Request& req, httplib::Response& res) {
      Hang(options_.hang_put);
      ttl_header_ = req.get_header_value("X-aws-ec2-metadata-token-ttl-seconds");
      if (ttl_header_.empty()) {
        res.status = 400;
        return;
      }
      ++token_requests_;
      res.set_content(options_.token, "text/plain");
    });
    server_.Get("/latest/meta-data/instance-type",
                [this](const httplib::Request& req, httplib::Response& res) {
                  Hang(options_.hang_get);
                  ++type_requests_;
                  if (options_.reject_every_token ||
                      req.get_header_value("X-aws-ec2-metadata-token") != kToken) {
                    res.status = 401;
                    return;
                  }
                  res.status = options_.get_status;
                  res.set_content(options_.instance_type, "text/plain");
                });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    EXPECT_TRUE(testing::WaitFor([this] { return server_.is_running(); }));
  }

  ~FakeImds() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      released_ = true;
    }
    released_cv_.notify_all();
    server_.stop();
    thread_.join();
  }

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int token_requests() const { return token_requests_; }
  int type_requests() const { return type_requests_; }
  std::string ttl_header() const { return ttl_header_; }

 private:
  // Blocks a handler until the test is over: a server that accepted but does not answer.
  void Hang(bool hang) {
    if (!hang) return;
    std::unique_lock<std::mutex> lock(mutex_);
    released_cv_.wait(lock, [this] { return released_; });
  }

  Options options_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::atomic<int> token_requests_{0};
  std::atomic<int> type_requests_{0};
  std::string ttl_header_;
  std::mutex mutex_;
  std::condition_variable released_cv_;
  bool released_ = false;
};

TEST(ImdsTest, ReturnsTheInstanceTypeWithAToken) {
  FakeImds imds({});
  auto type = QueryImdsInstanceType(imds.endpoint(), milliseconds(5000));
  ASSERT_TRUE(type.ok()) << type.status().ToString();
  EXPECT_EQ(*type, "trn2.48xlarge");
  EXPECT_EQ(imds.token_requests(), 1);
  EXPECT_EQ(imds.type_requests(), 1);
  EXPECT_FALSE(imds.ttl_header().empty());
}

TEST(ImdsTest, TrailingSlashOnTheEndpointIsFine) {
  FakeImds imds({});
  auto type = QueryImdsInstanceType(imds.endpoint() + "/", milliseconds(5000));
  ASSERT_TRUE(type.ok()) << type.status().ToString();
  EXPECT_EQ(*type, "trn2.48xlarge");
}

TEST(ImdsTest, IgnoresProxyEnvironment) {
  // A proxy on a port nobody listens on: going through it would fail.
  const char* old = std::getenv("http_proxy");
  std::optional<std::string> saved = old ? std::optional<std::string>(old) : std::nullopt;
  setenv("http_proxy", "http://127.0.0.1:9", 1);
  FakeImds imds({});
  auto type = QueryImdsInstanceType(imds.endpoint(), milliseconds(5000));
  if (saved) {
    setenv("http_proxy", saved->c_str(), 1);
  } else {
    unsetenv("http_proxy");
  }
  ASSERT_TRUE(type.ok()) << type.status().ToString();
}

TEST(ImdsTest, ErrorsAreClearAndNameTheRequest) {
  struct Case {
    std::string name;
    FakeImds::Options options;
    StatusCode code;
    std::string message_part;
  };
  std::vector<Case> cases;
  {
    FakeImds::Options o;
    o.reject_every_token = true;
    cases.push_back({"401 without a valid token", o, StatusCode::kUnauthenticated,
                     "GET http://127.0.0.1:"});
  }
  {
    FakeImds::Options o;
    o.get_status = 404;
    cases.push_back({"404", o, StatusCode::kUnavailable, "HTTP 404"});
  }
  {
    FakeImds::Options o;
    o.instance_type = "<html>captive portal</html>";
    cases.push_back({"not an instance type", o, StatusCode::kInvalidArgument,
                     "is not an instance type"});
  }
  {
    FakeImds::Options o;
    o.instance_type = "";
    cases.push_back({"empty answer", o, StatusCode::kInvalidArgument, "is not an instance type"});
  }
  {
    FakeImds::Options o;
    o.token = "bad\r\nX-Injected: 1";
    cases.push_back({"malformed token", o, StatusCode::kUnavailable, "malformed token"});
  }
  {
    FakeImds::Options o;
    o.hang_get = true;
    cases.push_back({"GET never answers", o, StatusCode::kDeadlineExceeded,
                     "/latest/meta-data/instance-type: no answer within"});
  }
  {
    FakeImds::Options o;
    o.hang_put = true;
    cases.push_back(
        {"PUT never answers", o, StatusCode::kDeadlineExceeded, "/latest/api/token: no answer"});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    FakeImds imds(c.options);
    auto type = QueryImdsInstanceType(imds.endpoint(), milliseconds(300));
    ASSERT_FALSE(type.ok()) << *type;
    EXPECT_EQ(type.status().code(), c.code) << type.status().ToString();
    EXPECT_NE(type.status().message().find(c.message_part), std::string::npos)
        << type.status().message();
    EXPECT_EQ(type.status().message().rfind("IMDS instance type from " + imds.endpoint(), 0), 0u)
        << type.status().message();
  }
}

TEST(ImdsTest, ConnectionRefusedIsUnavailable) {
  // A bound but not listening socket: connecting to its port is refused, and no one else can
  // take the port while we hold it.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t length = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length), 0);
  std::string endpoint = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));

  auto type = QueryImdsInstanceType(endpoint, milliseconds(2000));
  close(fd);
  ASSERT_FALSE(type.ok());
  EXPECT_EQ(type.status().code(), StatusCode::kUnavailable) << type.status().ToString();
  EXPECT_NE(type.status().message().find("PUT " + endpoint + "/latest/api/token"),
            std::string::npos)
      << type.status().message();
}

TEST(ImdsTest, ZeroTimeoutFailsWithoutCrashing) {
  FakeImds imds({});
  auto type = QueryImdsInstanceType(imds.endpoint(), milliseconds(0));
  ASSERT_FALSE(type.ok());
  EXPECT_EQ(type.status().code(), StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace efadra::neuron
