#include "efadra/core/http_url.h"

#include <gtest/gtest.h>

namespace efadra::core {
namespace {

TEST(HttpUrlTest, SplitsSchemeHostPortAndPrefix) {
  struct Case {
    std::string url;
    bool tls;
    std::string host;
    int port;
    std::string base_path;
  } cases[] = {
      {"https://10.0.0.1:6443", true, "10.0.0.1", 6443, ""},
      {"https://api.example.com", true, "api.example.com", 443, ""},
      {"http://127.0.0.1:8080/", false, "127.0.0.1", 8080, ""},
      {"http://169.254.169.254", false, "169.254.169.254", 80, ""},
      {"https://rancher.example.com/k8s/clusters/c-1/", true, "rancher.example.com", 443,
       "/k8s/clusters/c-1"},
      {"http://[fd00:ec2::254]", false, "fd00:ec2::254", 80, ""},
      {"https://[::1]:6443/p", true, "::1", 6443, "/p"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.url);
    auto parsed = ParseHttpUrl(c.url);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    EXPECT_EQ(parsed->tls, c.tls);
    EXPECT_EQ(parsed->host, c.host);
    EXPECT_EQ(parsed->port, c.port);
    EXPECT_EQ(parsed->base_path, c.base_path);
  }
}

TEST(HttpUrlTest, RefusesWhatItCannotConnectTo) {
  struct Case {
    std::string url;
    std::string why;
  } cases[] = {
      {"ftp://x", "not an http(s) URL"},
      {"x:80", "not an http(s) URL"},
      {"https://", "no host"},
      {"https://:443", "no host"},
      {"https://x:", "empty port"},
      {"https://x:0", "out of range"},
      {"https://x:65536", "out of range"},
      {"https://x:123456", "out of range"},
      {"https://x:8a", "not a number"},
      {"https://user:pw@x", "userinfo"},
      {"https://x/?a=b", "query or fragment"},
      {"https://x#f", "query or fragment"},
      {"https://[::1", "unterminated IPv6"},
      {"https://[::1]x", "after the IPv6"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.url);
    auto parsed = ParseHttpUrl(c.url);
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(c.why), std::string::npos)
        << parsed.status().message();
    EXPECT_NE(parsed.status().message().find(c.url), std::string::npos)
        << parsed.status().message();
  }
}

}  // namespace
}  // namespace efadra::core
