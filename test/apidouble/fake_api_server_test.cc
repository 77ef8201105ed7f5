// FakeApiServer over raw HTTP (cpp-httplib client): Status objects, 422 causes, generateName,
// unknown-field warnings and strict mode, bearer auth, namespaced claims, request log, watch
// from a compacted/too-new version, nodes.
#include "efadra/apidouble/fake_api_server.h"

#include <httplib.h>

#include <gtest/gtest.h>

namespace efadra::apidouble {
namespace {

using nlohmann::json;

constexpr char kSlices[] = "/apis/resource.k8s.io/v1/resourceslices";

json Slice() {
  return {{"metadata", {{"generateName", "n1-efa.example.com-"}}},
          {"spec",
           {{"driver", "efa.example.com"},
            {"nodeName", "n1"},
            {"pool", {{"name", "n1"}, {"generation", 0}, {"resourceSliceCount", 1}}},
            {"devices", json::array({{{"name", "efa-0"}}})}}}};
}

class FakeApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start().ok());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_.port());
  }
  FakeApiServer server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(FakeApiServerTest, CreateWithGenerateNameFillsMetadata) {
  auto res = client_->Post(kSlices, Slice().dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 201);
  json obj = json::parse(res->body);
  const std::string name = obj["metadata"]["name"];
  ASSERT_EQ(name.size(), std::string("n1-efa.example.com-").size() + 5);
  for (char c : name.substr(name.size() - 5)) {
    EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) << name;
  }
  EXPECT_EQ(obj["metadata"]["uid"].get<std::string>().size(), 36u);
  EXPECT_EQ(obj["kind"], "ResourceSlice");
  ASSERT_EQ(server_.ResourceSlices().size(), 1u);
  EXPECT_EQ(server_.WriteCount(), 1u);
  server_.DeleteAllResourceSlices();
  EXPECT_TRUE(server_.ResourceSlices().empty());
}

TEST_F(FakeApiServerTest, InvalidAnswers422StatusWithCauses) {
  json bad = Slice();
  bad["spec"]["devices"][0]["name"] = "BAD";
  bad["spec"]["pool"]["resourceSliceCount"] = 0;
  auto res = client_->Post(kSlices, bad.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 422);
  json status = json::parse(res->body);
  EXPECT_EQ(status["kind"], "Status");
  EXPECT_EQ(status["status"], "Failure");
  EXPECT_EQ(status["reason"], "Invalid");
  EXPECT_EQ(status["code"], 422);
  std::set<std::string> fields;
  for (const auto& c : status["details"]["causes"]) fields.insert(c["field"]);
  EXPECT_EQ(fields, (std::set<std::string>{"spec.devices[0].name",
                                           "spec.pool.resourceSliceCount"}));
}

TEST_F(FakeApiServerTest, UnknownFieldsDroppedWithWarningOrRejectedWhenStrict) {
  json slice = Slice();
  slice["spec"]["devices"][0]["futureField"] = 1;
  auto res = client_->Post(kSlices, slice.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 201);
  EXPECT_NE(res->get_header_value("Warning").find("spec.devices[0].futureField"),
            std::string::npos);
  EXPECT_FALSE(json::parse(res->body)["spec"]["devices"][0].contains("futureField"));
  res = client_->Post(std::string(kSlices) + "?fieldValidation=Strict", slice.dump(),
                      "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
}

TEST_F(FakeApiServerTest, BearerTokenRequired) {
  server_.SetBearerToken("secret");
  server_.PutNode("n1", "uid-1");
  auto res = client_->Get("/api/v1/nodes/n1");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  EXPECT_EQ(json::parse(res->body)["reason"], "Unauthorized");
  res = client_->Get("/api/v1/nodes/n1", {{"Authorization", "Bearer secret"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(json::parse(res->body)["metadata"]["uid"], "uid-1");
}

TEST_F(FakeApiServerTest, NamespacedClaims) {
  json claim = server_.PutResourceClaim(
      {{"metadata", {{"name", "c1"}, {"namespace", "train"}}}, {"status", {{"x", 1}}}});
  EXPECT_FALSE(claim["metadata"]["uid"].get<std::string>().empty());
  auto res = client_->Get("/apis/resource.k8s.io/v1/namespaces/train/resourceclaims/c1");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(json::parse(res->body)["metadata"]["uid"], claim["metadata"]["uid"]);
  res = client_->Get("/apis/resource.k8s.io/v1/namespaces/other/resourceclaims/c1");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_NE(json::parse(res->body)["message"].get<std::string>().find("\"c1\" not found"),
            std::string::npos);
  server_.DeleteResourceClaim("train", "c1");
  res = client_->Get("/apis/resource.k8s.io/v1/namespaces/train/resourceclaims/c1");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
}

TEST_F(FakeApiServerTest, RequestLogAndFailNext) {
  server_.FailNext(1, 503, 2, "GET", "/api/v1/nodes");
  auto res = client_->Get("/api/v1/nodes/x");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->get_header_value("Retry-After"), "2");
  res = client_->Get("/api/v1/nodes/x?fieldSelector=a");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  auto log = server_.Requests();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].status, 503);
  EXPECT_EQ(log[1].status, 404);
  EXPECT_EQ(log[1].query, "fieldSelector=a");
  EXPECT_EQ(server_.WriteCount(), 0u);
  server_.ClearRequests();
  EXPECT_TRUE(server_.Requests().empty());
}

TEST_F(FakeApiServerTest, WatchInitialStateAndTimeout) {
  ASSERT_TRUE(client_->Post(kSlices, Slice().dump(), "application/json"));
  // resourceVersion 0 replays current objects as ADDED; timeoutSeconds=1 ends the stream.
  auto res = client_->Get(std::string(kSlices) + "?watch=true&timeoutSeconds=1");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  json first = json::parse(res->body.substr(0, res->body.find('\n')));
  EXPECT_EQ(first["type"], "ADDED");
  // Too old a version: an ERROR event with a 410 Status, like a compacted etcd.
  res = client_->Get(std::string(kSlices) + "?watch=true&resourceVersion=1&timeoutSeconds=1");
  ASSERT_TRUE(res);
  json err = json::parse(res->body.substr(0, res->body.find('\n')));
  EXPECT_EQ(err["type"], "ERROR");
  EXPECT_EQ(err["object"]["code"], 410);
}

TEST_F(FakeApiServerTest, UnknownPathsAre404Status) {
  auto res = client_->Get("/apis/apps/v1/deployments");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(json::parse(res->body)["kind"], "Status");
}

}  // namespace
}  // namespace efadra::apidouble
