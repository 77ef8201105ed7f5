// The client over HTTPS against FakeApiServer with certificates made at test time by the
// openssl CLI: trust via CA file and inline CA, client-certificate auth (and rejection without
// one), insecure-skip-tls-verify, and a wrong CA failing.
#include <gtest/gtest.h>

#include <cstdlib>

#include "efadra/apidouble/fake_api_server.h"
#include "efadra/kube/client.h"
#include "efadra/kube/config.h"
#include "support/test_support.h"

namespace efadra::kube {
namespace {

using apidouble::FakeApiServer;
using apidouble::ServerOptions;

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("openssl version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl CLI";
    const std::string d = dir_.path();
    testing::WriteFileOrDie(dir_.Sub("san.ext"), "subjectAltName=IP:127.0.0.1\n");
    const std::string key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string script =
        "set -e; cd " + d + "; exec 2>openssl.log;" +
        "openssl req -x509" + key + " -keyout ca.key -out ca.crt -days 1 -subj /CN=test-ca;" +
        "openssl req -x509" + key + " -keyout other.key -out other.crt -days 1 -subj /CN=other;" +
        "openssl req" + key + " -keyout server.key -out server.csr -subj /CN=127.0.0.1;" +
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
        "-out server.crt -days 1 -extfile san.ext;" +
        "openssl req" + key + " -keyout client.key -out client.csr -subj /CN=driver;" +
        "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
        "-out client.crt -days 1";
    ASSERT_EQ(std::system(("sh -c '" + script + "'").c_str()), 0)
        << testing::ReadFileOrEmpty(dir_.Sub("openssl.log"));
  }

  Result<nlohmann::json> GetNode(FakeApiServer& server, ClientConfig config) {
    server.PutNode("n1", "uid-1");
    config.server = server.url();
    RetryPolicy once;
    once.max_attempts = 1;
    auto client = Client::Create(config, once);
    if (!client.ok()) return client.status();
    return (*client)->Get("/api/v1/nodes/n1");
  }

  testing::TempDir dir_;
};

TEST_F(TlsTest, ServerTrust) {
  FakeApiServer server(ServerOptions{.tls_cert_file = dir_.Sub("server.crt"),
                                     .tls_key_file = dir_.Sub("server.key"),
                                     .client_ca_file = "",
                                     .bearer_token = ""});
  ASSERT_TRUE(server.Start().ok());
  EXPECT_EQ(server.url().rfind("https://", 0), 0u);
  struct Case {
    std::string name;
    std::function<void(ClientConfig&)> set;
    bool ok;
  } cases[] = {
      {"ca file", [&](ClientConfig& c) { c.ca_file = dir_.Sub("ca.crt"); }, true},
      {"ca data", [&](ClientConfig& c) { c.ca_data = testing::ReadFileOrEmpty(dir_.Sub("ca.crt")); },
       true},
      {"insecure", [&](ClientConfig& c) { c.insecure_skip_tls_verify = true; }, true},
      {"wrong ca", [&](ClientConfig& c) { c.ca_file = dir_.Sub("other.crt"); }, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    ClientConfig config;
    c.set(config);
    auto r = GetNode(server, config);
    EXPECT_EQ(r.ok(), c.ok) << r.status().ToString();
    if (!c.ok) {
      EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
    }
  }
}

TEST_F(TlsTest, CaBundleWithSeveralCertificatesAndTheHostIsChecked) {
  FakeApiServer server(ServerOptions{.tls_cert_file = dir_.Sub("server.crt"),
                                     .tls_key_file = dir_.Sub("server.key"),
                                     .client_ca_file = "",
                                     .bearer_token = ""});
  ASSERT_TRUE(server.Start().ok());
  // The signing CA second in the bundle: every certificate of inline data is trusted.
  ClientConfig bundle;
  bundle.ca_data = testing::ReadFileOrEmpty(dir_.Sub("other.crt")) +
                   testing::ReadFileOrEmpty(dir_.Sub("ca.crt"));
  auto r = GetNode(server, bundle);
  EXPECT_TRUE(r.ok()) << r.status().ToString();

  // A trusted chain for another name: the certificate is for IP 127.0.0.1 only, so reaching
  // the same server as "localhost" must fail the handshake.
  server.PutNode("n1", "uid-1");
  ClientConfig by_name;
  by_name.server = "https://localhost:" + std::to_string(server.port());
  by_name.ca_file = dir_.Sub("ca.crt");
  RetryPolicy once;
  once.max_attempts = 1;
  auto client = Client::Create(by_name, once);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto mismatch = (*client)->Get("/api/v1/nodes/n1");
  ASSERT_FALSE(mismatch.ok());
  EXPECT_EQ(mismatch.status().code(), StatusCode::kUnavailable) << mismatch.status().ToString();
  EXPECT_NE(mismatch.status().message().find("TLS handshake failed"), std::string::npos)
      << mismatch.status().message();
}

TEST_F(TlsTest, ClientCertificateRequired) {
  FakeApiServer server(ServerOptions{.tls_cert_file = dir_.Sub("server.crt"),
                                     .tls_key_file = dir_.Sub("server.key"),
                                     .client_ca_file = dir_.Sub("ca.crt"),
                                     .bearer_token = ""});
  ASSERT_TRUE(server.Start().ok());
  ClientConfig files;
  files.ca_file = dir_.Sub("ca.crt");
  files.client_cert_file = dir_.Sub("client.crt");
  files.client_key_file = dir_.Sub("client.key");
  auto r = GetNode(server, files);
  EXPECT_TRUE(r.ok()) << r.status().ToString();

  ClientConfig inline_data;
  inline_data.ca_file = dir_.Sub("ca.crt");
  inline_data.client_cert_data = testing::ReadFileOrEmpty(dir_.Sub("client.crt"));
  inline_data.client_key_data = testing::ReadFileOrEmpty(dir_.Sub("client.key"));
  r = GetNode(server, inline_data);
  EXPECT_TRUE(r.ok()) << r.status().ToString();

  ClientConfig none;
  none.ca_file = dir_.Sub("ca.crt");
  r = GetNode(server, none);
  EXPECT_FALSE(r.ok());
}

TEST_F(TlsTest, InClusterCaIsReReadWhenItRotates) {
  FakeApiServer server(ServerOptions{.tls_cert_file = dir_.Sub("server.crt"),
                                     .tls_key_file = dir_.Sub("server.key"),
                                     .client_ca_file = "",
                                     .bearer_token = ""});
  ASSERT_TRUE(server.Start().ok());
  server.PutNode("n1", "uid-1");
  // The pod's service account, rooted in a temp dir; the CA starts out as one that did not
  // sign the server's certificate (the old cluster CA, before rotation).
  testing::TempDir root;
  const std::string sa = root.Sub("var/run/secrets/kubernetes.io/serviceaccount");
  testing::WriteFileOrDie(sa + "/token", "sa-token");
  testing::WriteFileOrDie(sa + "/ca.crt", testing::ReadFileOrEmpty(dir_.Sub("other.crt")));
  const std::string port = server.url().substr(server.url().rfind(':') + 1);
  auto config = InClusterConfig(core::NewPosixFilesystem(root.path()),
                                [&](const std::string& name) -> std::optional<std::string> {
                                  if (name == "KUBERNETES_SERVICE_HOST") return "127.0.0.1";
                                  if (name == "KUBERNETES_SERVICE_PORT") return port;
                                  return std::nullopt;
                                });
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  RetryPolicy once;
  once.max_attempts = 1;
  auto client = Client::Create(*config, once);
  ASSERT_TRUE(client.ok()) << client.status().ToString();

  auto before = (*client)->Get("/api/v1/nodes/n1");
  ASSERT_FALSE(before.ok());
  EXPECT_EQ(before.status().code(), StatusCode::kUnavailable) << before.status().ToString();

  // The kubelet rewrites ca.crt with the new bundle; the same client trusts it from now on.
  testing::WriteFileOrDie(sa + "/ca.crt", testing::ReadFileOrEmpty(dir_.Sub("ca.crt")));
  auto after = (*client)->Get("/api/v1/nodes/n1");
  EXPECT_TRUE(after.ok()) << after.status().ToString();

  // A moment without the file keeps the last good bundle.
  ASSERT_EQ(std::remove((sa + "/ca.crt").c_str()), 0);
  auto missing = (*client)->Get("/api/v1/nodes/n1");
  EXPECT_TRUE(missing.ok()) << missing.status().ToString();
}

}  // namespace
}  // namespace efadra::kube
