// `efa-dra-driver status` as a process against the API double over HTTP: the slices are the
// ones `discover --slices` builds for bundled topologies, stored through the API like the
// publisher stores them; claims and pods are what the scheduler and kubelet would write.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "efadra/apidouble/fake_api_server.h"
#include "efadra/kube/client.h"
#include "support/test_support.h"

namespace efadra::cmd {
namespace {

using json = nlohmann::json;
using ::efadra::testing::RunCommand;
using ::efadra::testing::TempDir;
using ::efadra::testing::WriteFileOrDie;

constexpr char kBinary[] = EFADRA_BINARY_DIR "/efa-dra-driver";

std::string KubeconfigFor(const std::string& server) {
  return "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
         "clusters:\n- name: c\n  cluster:\n    server: " + server +
         "\ncontexts:\n- name: test\n  context:\n    cluster: c\n    user: u\n"
         "users:\n- name: u\n  user:\n    token: t\n";
}

json Claim(const std::string& ns, const std::string& name, const std::string& pool,
           const std::string& device, const std::string& pod) {
  return {{"metadata", {{"namespace", ns}, {"name", name}}},
          {"spec", {{"devices", {{"requests", json::array({{{"name", "efa"}}})}}}}},
          {"status",
           {{"allocation",
             {{"devices",
               {{"results", json::array({{{"request", "efa"},
                                          {"driver", "dra.net"},
                                          {"pool", pool},
                                          {"device", device}}})}}}}},
            {"reservedFor", json::array({{{"resource", "pods"}, {"name", pod}, {"uid", "u-" + pod}}})}}}};
}

json Pod(const std::string& ns, const std::string& name, const std::string& resource_id,
         const std::string& health) {
  return {{"metadata", {{"namespace", ns}, {"name", name}}},
          {"spec", {{"nodeName", "node-a"}}},
          {"status",
           {{"containerStatuses",
             json::array({{{"name", "main"},
                           {"allocatedResourcesStatus",
                            json::array({{{"name", "claim:x/efa"},
                                          {"resources", json::array({{{"resourceID", resource_id},
                                                                      {"health", health}}})}}})}}})}}}};
}

class StatusCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start().ok());
    server_.PutNode("node-a", "uid-a");
    server_.PutNode("node-b", "uid-b");
    kube::ClientConfig config;
    config.server = server_.url();
    auto client = kube::Client::Create(config);
    ASSERT_TRUE(client.ok()) << client.status().message();
    // node-a: p4d (4 EFAs), one of them tainted unhealthy; node-b: p5 (32 EFAs).
    PublishSlices(**client, "p4d.24xlarge", "node-a", "pci-0000-90-1b-0");
    PublishSlices(**client, "p5.48xlarge", "node-b", "");
    server_.PutResourceClaim(Claim("team-a", "train-0", "node-a", "pci-0000-10-1b-0", "trainer-0"));
    server_.PutResourceClaim(Claim("team-a", "train-1", "node-a", "pci-0000-20-1b-0", "trainer-1"));
    server_.PutResourceClaim(Claim("team-b", "other", "node-b", "pci-0000-4f-00-0", "elsewhere"));
    // The kubelet names a device by its first CDI id (trainer-0), else driver/pool/device.
    server_.PutPod(Pod("team-a", "trainer-0",
                       "dra.net/efa=0c4e4b22-9a47-4a34-b0a4-6c0a7cb1e7a1-pci-0000-10-1b-0",
                       "Healthy"));
    server_.PutPod(Pod("team-a", "trainer-1", "dra.net/node-a/pci-0000-20-1b-0", "Unhealthy"));
    WriteFileOrDie(dir_.Sub("kubeconfig"), KubeconfigFor(server_.url()));
  }

  void PublishSlices(kube::Client& client, const std::string& fixture, const std::string& node,
                     const std::string& tainted_device) {
    auto run = RunCommand(std::string(kBinary) + " discover --fixture " + fixture +
                          " --slices -o json --node-name " + node + " 2>/dev/null");
    ASSERT_EQ(run.exit_code, 0);
    json doc = json::parse(run.out);
    json slices = doc["kind"] == "List" ? doc["items"] : json::array({doc});
    for (json& slice : slices) {
      for (json& device : slice["spec"]["devices"]) {
        if (device["name"] == tainted_device) {
          device["taints"] = json::array(
              {{{"key", "dra.net/unhealthy"}, {"value", "PortDown"}, {"effect", "NoSchedule"}}});
        }
      }
      auto created = client.Create("/apis/resource.k8s.io/v1/resourceslices", slice);
      ASSERT_TRUE(created.ok()) << created.status().message();
    }
  }

  testing::CommandResult Status(const std::string& args) {
    return RunCommand(std::string(kBinary) + " status --kubeconfig " + dir_.Sub("kubeconfig") +
                      " " + args + " 2>&1");
  }

  apidouble::FakeApiServer server_;
  TempDir dir_;
};

TEST_F(StatusCommandTest, NodeDevicesWithHealthClaimsAndPods) {
  auto run = RunCommand(std::string(kBinary) + " status --kubeconfig " + dir_.Sub("kubeconfig") +
                        " --node node-a -o json 2>/dev/null");
  ASSERT_EQ(run.exit_code, 0) << run.out;
  json doc = json::parse(run.out, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << run.out;
  ASSERT_EQ(doc["devices"].size(), 4u) << doc.dump(2);
  std::map<std::string, json> by_name;
  for (const auto& device : doc["devices"]) {
    EXPECT_EQ(device["node"], "node-a");
    by_name[device["name"]] = device;
  }
  const json& held = by_name["pci-0000-10-1b-0"];
  EXPECT_EQ(held["health"], "Healthy");
  EXPECT_EQ(held["rdmaDevice"], "rdmap16s27");
  EXPECT_EQ(held["pcieRoot"], "pci0000:10");
  ASSERT_EQ(held["claims"].size(), 1u);
  EXPECT_EQ(held["claims"][0]["namespace"], "team-a");
  EXPECT_EQ(held["claims"][0]["claim"], "train-0");
  EXPECT_EQ(held["claims"][0]["pods"], json({"trainer-0"}));
  EXPECT_EQ(by_name["pci-0000-20-1b-0"]["health"], "Unhealthy");
  EXPECT_EQ(by_name["pci-0000-20-1b-0"]["claims"][0]["pods"], json({"trainer-1"}));
  EXPECT_EQ(by_name["pci-0000-90-1b-0"]["health"], "Unhealthy (PortDown)");
  EXPECT_TRUE(by_name["pci-0000-90-1b-0"]["claims"].empty());
  EXPECT_EQ(by_name["pci-0000-a0-1b-0"]["health"], "untainted");

  auto table = Status("--node node-a");
  ASSERT_EQ(table.exit_code, 0) << table.out;
  EXPECT_NE(table.out.find("team-a/train-0"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("trainer-1"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("4 EFA devices on 1 node, 2 allocated"), std::string::npos)
      << table.out;
  EXPECT_EQ(table.out.find("team-b"), std::string::npos) << "another node's claim: " << table.out;
}

TEST_F(StatusCommandTest, AllNodesAndDefaultNode) {
  // stdout only: the test kubeconfig sends a token over http://, which warns on stderr.
  auto all = RunCommand(std::string(kBinary) + " status --kubeconfig " + dir_.Sub("kubeconfig") +
                        " -A -o json 2>/dev/null");
  ASSERT_EQ(all.exit_code, 0) << all.out;
  EXPECT_EQ(json::parse(all.out)["devices"].size(), 36u);
  auto mine = RunCommand("NODE_NAME=node-b " + std::string(kBinary) + " status --kubeconfig " +
                         dir_.Sub("kubeconfig") + " -o json");
  ASSERT_EQ(mine.exit_code, 0) << mine.out;
  json doc = json::parse(mine.out);
  ASSERT_EQ(doc["devices"].size(), 32u);
  EXPECT_EQ(doc["devices"][0]["claims"][0]["claim"], "other");
  auto none = Status("--node node-z");
  EXPECT_EQ(none.exit_code, 0);
  EXPECT_NE(none.out.find("No dra.net devices on node node-z"), std::string::npos) << none.out;
}

TEST_F(StatusCommandTest, RbacRefusalNamesVerbAndResource) {
  server_.FailNext(1, 403, 0, "GET", "/apis/resource.k8s.io/v1/resourceclaims");
  auto claims = Status("--node node-a");
  EXPECT_EQ(claims.exit_code, 1);
  EXPECT_NE(claims.out.find("RBAC: the caller may not list resourceclaims.resource.k8s.io at "
                            "cluster scope"),
            std::string::npos)
      << claims.out;
  server_.FailNext(1, 403, 0, "GET", "/apis/resource.k8s.io/v1/resourceslices");
  auto slices = Status("--node node-a");
  EXPECT_EQ(slices.exit_code, 1);
  EXPECT_NE(slices.out.find("may not list resourceslices.resource.k8s.io"), std::string::npos)
      << slices.out;
  // Pods are optional: the table is printed, with a warning naming the missing permission.
  server_.FailNext(2, 403, 0, "GET", "/api/v1/namespaces/team-a/pods/");
  auto pods = Status("--node node-a");
  EXPECT_EQ(pods.exit_code, 0) << pods.out;
  EXPECT_NE(pods.out.find("warning: pod health not shown for team-a/trainer-0: RBAC: the caller "
                          "may not get pods in namespace team-a"),
            std::string::npos)
      << pods.out;
  EXPECT_NE(pods.out.find("team-a/train-0"), std::string::npos) << pods.out;
}

TEST_F(StatusCommandTest, UnreachableApiAndBrokenKubeconfig) {
  const std::string dead = "http://127.0.0.1:1";
  WriteFileOrDie(dir_.Sub("dead"), KubeconfigFor(dead));
  auto unreachable = RunCommand(std::string(kBinary) + " status --kubeconfig " +
                                dir_.Sub("dead") + " --node node-a 2>&1");
  EXPECT_EQ(unreachable.exit_code, 1);
  EXPECT_NE(unreachable.out.find("efa-dra-driver status: API server " + dead), std::string::npos)
      << unreachable.out;
  WriteFileOrDie(dir_.Sub("broken"), "apiVersion: v1\nkind: Config\nclusters: [\n");
  auto broken = RunCommand(std::string(kBinary) + " status --kubeconfig " + dir_.Sub("broken") +
                           " 2>&1");
  EXPECT_EQ(broken.exit_code, 1);
  EXPECT_NE(broken.out.find(dir_.Sub("broken")), std::string::npos) << broken.out;
  auto usage = Status("--node a -A");
  EXPECT_EQ(usage.exit_code, 2) << usage.out;
}

}  // namespace
}  // namespace efadra::cmd
