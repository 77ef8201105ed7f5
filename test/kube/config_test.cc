// Kubeconfig parsing (inline data vs files, tokenFile, context selection, every broken
// variant) and in-cluster config from a rooted temp filesystem.
#include "efadra/kube/config.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <map>

#include "support/test_support.h"

namespace efadra::kube {
namespace {

std::string Kubeconfig(const std::string& cluster_extra, const std::string& user_extra,
                       const std::string& current = "main") {
  return "apiVersion: v1\nkind: Config\ncurrent-context: " + current +
         "\nclusters:\n- name: c1\n  cluster:\n    server: https://10.0.0.1:443\n" +
         cluster_extra +
         "- name: noserver\n  cluster:\n    insecure-skip-tls-verify: true\n"
         "contexts:\n- name: main\n  context:\n    cluster: c1\n    user: u1\n"
         "- name: other\n  context:\n    cluster: c1\n    user: u2\n"
         "- name: missing-cluster\n  context:\n    cluster: nope\n    user: u1\n"
         "- name: missing-user\n  context:\n    cluster: c1\n    user: nope\n"
         "- name: no-server\n  context:\n    cluster: noserver\n    user: u1\n"
         "users:\n- name: u1\n  user:\n" +
         user_extra + "- name: u2\n  user:\n    token: other-token\n";
}

EnvGetter MapEnv(std::map<std::string, std::string> m) {
  return [m](const std::string& k) -> std::optional<std::string> {
    auto it = m.find(k);
    if (it == m.end()) return std::nullopt;
    return it->second;
  };
}

TEST(KubeconfigTest, InlineDataAndToken) {
  testing::TempDir dir;
  // "PEM-CA" and "PEM-CERT"/"PEM-KEY" in base64.
  testing::WriteFileOrDie(dir.Sub("config"),
                          Kubeconfig("    certificate-authority-data: UEVNLUNB\n",
                                     "    token: abc\n    client-certificate-data: UEVNLUNFUlQ=\n"
                                     "    client-key-data: UEVNLUtFWQ==\n"));
  auto c = LoadKubeconfig(dir.Sub("config"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://10.0.0.1:443");
  EXPECT_EQ(c->ca_data, "PEM-CA");
  EXPECT_EQ(c->client_cert_data, "PEM-CERT");
  EXPECT_EQ(c->client_key_data, "PEM-KEY");
  EXPECT_EQ(c->token, "abc");
  EXPECT_NE(c->source.find("context main"), std::string::npos) << c->source;
}

TEST(KubeconfigTest, FilesRelativeToKubeconfigAndContextSelection) {
  testing::TempDir dir;
  testing::WriteFileOrDie(dir.Sub("pki/ca.crt"), "CA");
  testing::WriteFileOrDie(dir.Sub("pki/c.crt"), "CERT");
  testing::WriteFileOrDie(dir.Sub("pki/c.key"), "KEY");
  testing::WriteFileOrDie(dir.Sub("tok"), "t");
  testing::WriteFileOrDie(
      dir.Sub("config"),
      Kubeconfig("    certificate-authority: pki/ca.crt\n",
                 "    tokenFile: tok\n    client-certificate: pki/c.crt\n"
                 "    client-key: " + dir.Sub("pki/c.key") + "\n"));
  auto c = LoadKubeconfig(dir.Sub("config"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ca_file, dir.Sub("pki/ca.crt"));
  EXPECT_EQ(c->client_cert_file, dir.Sub("pki/c.crt"));
  EXPECT_EQ(c->client_key_file, dir.Sub("pki/c.key"));
  EXPECT_EQ(c->token_file, dir.Sub("tok"));
  auto other = LoadKubeconfig(dir.Sub("config"), "other");
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  EXPECT_EQ(other->token, "other-token");
}

TEST(KubeconfigTest, BrokenVariantsNameFileAndField) {
  testing::TempDir dir;
  struct Case {
    std::string name;
    std::string content;  // empty -> file missing
    std::string context;
    std::vector<std::string> want;
  } cases[] = {
      {"missing", "", "", {"missing", "kubeconfig"}},
      {"notyaml", "a: [b\n", "", {"notyaml", "YAML"}},
      {"nocurrent", Kubeconfig("", "", "\"\""), "", {"nocurrent", "current-context"}},
      {"nocontext", Kubeconfig("", ""), "ghost", {"nocontext", "context \"ghost\""}},
      {"nocluster", Kubeconfig("", ""), "missing-cluster", {"nocluster", "cluster \"nope\""}},
      {"nouser", Kubeconfig("", ""), "missing-user", {"nouser", "user \"nope\""}},
      {"noserver", Kubeconfig("", ""), "no-server", {"noserver", "server is not set"}},
      {"badca", Kubeconfig("    certificate-authority: /nonexistent/ca.crt\n", ""), "",
       {"badca", "certificate-authority", "/nonexistent/ca.crt"}},
      {"badb64", Kubeconfig("    certificate-authority-data: '@@@'\n", ""), "",
       {"badb64", "certificate-authority-data", "base64"}},
      {"badkeyb64", Kubeconfig("", "    client-certificate-data: UEVN\n    client-key-data: '!'\n"),
       "", {"badkeyb64", "client-key-data"}},
      {"certnokey", Kubeconfig("", "    client-certificate-data: UEVN\n"), "",
       {"certnokey", "client-key"}},
      // Cut short in the file: trailing bits left over, or padding that ends no group.
      {"cutb64", Kubeconfig("    certificate-authority-data: UEVNLUN\n", ""), "",
       {"cutb64", "certificate-authority-data", "truncated"}},
      {"cutpad", Kubeconfig("", "    client-certificate-data: UEVNLUNB=\n"
                                "    client-key-data: UEVN\n"),
       "", {"cutpad", "client-certificate-data", "truncated"}},
      // Cut at a 4-character boundary: valid base64, but the PEM block has no end.
      {"cutpem",
       Kubeconfig("    certificate-authority-data: "
                  "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1J"
                  "SUJzekNDQVZtZ0F3SUJBZ0lVCg==\n", ""), "",
       {"cutpem", "certificate-authority-data", "-----END", "truncated"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    if (!c.content.empty()) testing::WriteFileOrDie(dir.Sub(c.name), c.content);
    auto r = LoadKubeconfig(dir.Sub(c.name), c.context);
    ASSERT_FALSE(r.ok());
    for (const auto& w : c.want) {
      EXPECT_NE(r.status().message().find(w), std::string::npos)
          << "want \"" << w << "\" in: " << r.status().message();
    }
  }
}

TEST(InClusterTest, FromRootedFilesystemAndEnv) {
  testing::TempDir root;
  testing::WriteFileOrDie(root.Sub("var/run/secrets/kubernetes.io/serviceaccount/token"), "sa");
  testing::WriteFileOrDie(root.Sub("var/run/secrets/kubernetes.io/serviceaccount/ca.crt"), "CA");
  auto fs = std::shared_ptr<const core::Filesystem>(core::NewPosixFilesystem(root.path()));
  auto c = InClusterConfig(fs, MapEnv({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
                                       {"KUBERNETES_SERVICE_PORT", "443"}}));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://10.96.0.1:443");
  EXPECT_EQ(c->ca_data, "CA");
  EXPECT_EQ(c->token_file, "/var/run/secrets/kubernetes.io/serviceaccount/token");
  EXPECT_EQ(c->filesystem, fs);

  auto no_env = InClusterConfig(fs, MapEnv({}));
  EXPECT_NE(no_env.status().message().find("KUBERNETES_SERVICE_HOST"), std::string::npos);
  testing::TempDir empty;
  auto no_token = InClusterConfig(core::NewPosixFilesystem(empty.path()),
                                  MapEnv({{"KUBERNETES_SERVICE_HOST", "h"},
                                          {"KUBERNETES_SERVICE_PORT", "1"}}));
  EXPECT_NE(no_token.status().message().find("token"), std::string::npos)
      << no_token.status().message();
}

TEST(ResolveTest, FlagThenEnvThenInCluster) {
  testing::TempDir dir;
  testing::WriteFileOrDie(dir.Sub("a"), Kubeconfig("", "    token: from-a\n"));
  testing::WriteFileOrDie(dir.Sub("b"), Kubeconfig("", "    token: from-b\n"));
  auto env = MapEnv({{"KUBECONFIG", dir.Sub("b") + ":" + dir.Sub("a")}});
  auto flag = ResolveClientConfig(dir.Sub("a"), env);
  ASSERT_TRUE(flag.ok());
  EXPECT_EQ(flag->token, "from-a");
  auto from_env = ResolveClientConfig("", env);
  ASSERT_TRUE(from_env.ok());
  EXPECT_EQ(from_env->token, "from-b");
  EXPECT_FALSE(ResolveClientConfig("", MapEnv({})).ok());
}

TEST(Base64Test, DecodesAndRejects) {
  EXPECT_EQ(DecodeBase64("aGVsbG8=").value_or("x"), "hello");
  EXPECT_EQ(DecodeBase64("aGVs\nbG8").value_or("x"), "hello");
  EXPECT_FALSE(DecodeBase64("a$").ok());
  EXPECT_EQ(DecodeBase64("aGVsbA").value_or("x"), "hell");  // unpadded is fine
  EXPECT_EQ(DecodeBase64("aGVsbA==").value_or("x"), "hell");
  struct Case {
    std::string text, why;
  } truncated[] = {
      {"aGVsb", "a lone last symbol"},
      {"aGVsbG", "non-zero trailing bits of a cut \"aGVsbG8=\""},
      {"aGVsbA=", "padding that ends no group"},
      {"aGVsbG8==", "too much padding for the group"},
  };
  for (const auto& c : truncated) {
    SCOPED_TRACE(c.text + ": " + c.why);
    auto r = DecodeBase64(c.text);
    ASSERT_FALSE(r.ok()) << "decoded to \"" << *r << "\"";
    EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status().message();
  }
}

TEST(KubeconfigTest, RelativePathIsTakenAgainstTheWorkingDirectory) {
  testing::TempDir dir;
  testing::WriteFileOrDie(dir.Sub("kube/config"), Kubeconfig("", "    token: rel\n"));
  char saved[4096];
  ASSERT_NE(::getcwd(saved, sizeof(saved)), nullptr);
  ASSERT_EQ(::chdir(dir.path().c_str()), 0);
  auto r = LoadKubeconfig("kube/config");
  auto missing = LoadKubeconfig("kube/none");
  ASSERT_EQ(::chdir(saved), 0);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->token, "rel");
  EXPECT_NE(r->source.find(dir.Sub("kube/config")), std::string::npos) << r->source;
  // Messages show the absolute path that was tried.
  EXPECT_NE(missing.status().message().find(dir.Sub("kube/none")), std::string::npos)
      << missing.status().message();
  EXPECT_EQ(AbsolutePath("/abs/x"), "/abs/x");
}

}  // namespace
}  // namespace efadra::kube
