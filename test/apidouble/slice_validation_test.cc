// ResourceSlice validation rules (table-driven): each broken slice yields the field cause the
// real API server reports.
#include "slice_validation.h"

#include <gtest/gtest.h>

namespace efadra::apidouble {
namespace {

using nlohmann::json;

json Valid() {
  return {{"metadata", {{"name", "n1-efa-abcde"}}},
          {"spec",
           {{"driver", "efa.example.com"},
            {"nodeName", "n1"},
            {"pool", {{"name", "n1"}, {"generation", 0}, {"resourceSliceCount", 1}}},
            {"devices",
             json::array({{{"name", "efa-0"},
                           {"attributes",
                            {{"resource.kubernetes.io/pcieRoot", {{"string", "pci0000:10"}}},
                             {"numaNode", {{"int", 0}}},
                             {"kernelDriverVersion", {{"version", "3.1.0-rc.1+b5"}}}}},
                           {"capacity", {{"bandwidth", {{"value", "100Gi"}}}}}}})}}}};
}

json Devices(size_t n, bool taints) {
  json devices = json::array();
  for (size_t i = 0; i < n; ++i) {
    json d = {{"name", "d" + std::to_string(i)}};
    if (taints) d["taints"] = json::array({{{"key", "k"}, {"effect", "NoSchedule"}}});
    devices.push_back(d);
  }
  return devices;
}

TEST(SliceValidationTest, ValidSlicePasses) {
  auto causes = ValidateResourceSlice(Valid());
  for (const auto& c : causes) ADD_FAILURE() << c.field << ": " << c.message;
}

TEST(SliceValidationTest, EachRule) {
  struct Case {
    std::string name;
    std::function<void(json&)> mutate;
    std::string field;
    std::string reason;
  } cases[] = {
      {"driver missing", [](json& s) { s["spec"].erase("driver"); }, "spec.driver",
       "FieldValueRequired"},
      {"driver too long", [](json& s) { s["spec"]["driver"] = std::string(64, 'a'); },
       "spec.driver", "FieldValueTooLong"},
      {"driver not dns", [](json& s) { s["spec"]["driver"] = "efa_example"; }, "spec.driver",
       "FieldValueInvalid"},
      {"pool name bad", [](json& s) { s["spec"]["pool"]["name"] = "a//b"; }, "spec.pool.name",
       "FieldValueInvalid"},
      {"pool name missing", [](json& s) { s["spec"]["pool"].erase("name"); }, "spec.pool.name",
       "FieldValueRequired"},
      {"generation negative", [](json& s) { s["spec"]["pool"]["generation"] = -1; },
       "spec.pool.generation", "FieldValueInvalid"},
      {"count zero", [](json& s) { s["spec"]["pool"]["resourceSliceCount"] = 0; },
       "spec.pool.resourceSliceCount", "FieldValueInvalid"},
      {"no node selection", [](json& s) { s["spec"].erase("nodeName"); }, "spec",
       "FieldValueRequired"},
      {"two node selections", [](json& s) { s["spec"]["allNodes"] = true; }, "spec",
       "FieldValueInvalid"},
      {"bad node name", [](json& s) { s["spec"]["nodeName"] = "Node_1"; }, "spec.nodeName",
       "FieldValueInvalid"},
      {"129 devices", [](json& s) { s["spec"]["devices"] = Devices(129, false); },
       "spec.devices", "FieldValueTooMany"},
      {"65 tainted devices", [](json& s) { s["spec"]["devices"] = Devices(65, true); },
       "spec.devices", "FieldValueTooMany"},
      {"device name not label", [](json& s) { s["spec"]["devices"][0]["name"] = "a.b"; },
       "spec.devices[0].name", "FieldValueInvalid"},
      {"duplicate device",
       [](json& s) { s["spec"]["devices"].push_back({{"name", "efa-0"}}); },
       "spec.devices[1].name", "FieldValueDuplicate"},
      {"attribute name too long",
       [](json& s) { s["spec"]["devices"][0]["attributes"][std::string(33, 'a')] = {{"int", 1}}; },
       "spec.devices[0].attributes[" + std::string(33, 'a') + "]", "FieldValueTooLong"},
      {"attribute name not identifier",
       [](json& s) { s["spec"]["devices"][0]["attributes"]["1abc"] = {{"int", 1}}; },
       "spec.devices[0].attributes[1abc]", "FieldValueInvalid"},
      {"attribute two slashes",
       [](json& s) { s["spec"]["devices"][0]["attributes"]["a/b/c"] = {{"int", 1}}; },
       "spec.devices[0].attributes[a/b/c]", "FieldValueInvalid"},
      {"attribute domain too long",
       [](json& s) {
         s["spec"]["devices"][0]["attributes"][std::string(64, 'a') + "/x"] = {{"int", 1}};
       },
       "spec.devices[0].attributes[" + std::string(64, 'a') + "/x]", "FieldValueTooLong"},
      {"33 attributes",
       [](json& s) {
         for (int i = 0; i < 30; ++i) {
           s["spec"]["devices"][0]["attributes"]["a" + std::to_string(i)] = {{"int", i}};
         }
       },
       "spec.devices[0]", "FieldValueInvalid"},
      {"attribute no value",
       [](json& s) { s["spec"]["devices"][0]["attributes"]["x"] = json::object(); },
       "spec.devices[0].attributes[x]", "FieldValueRequired"},
      {"attribute two values",
       [](json& s) { s["spec"]["devices"][0]["attributes"]["x"] = {{"int", 1}, {"bool", true}}; },
       "spec.devices[0].attributes[x]", "FieldValueInvalid"},
      {"string too long",
       [](json& s) {
         s["spec"]["devices"][0]["attributes"]["x"] = {{"string", std::string(65, 'x')}};
       },
       "spec.devices[0].attributes[x].string", "FieldValueTooLong"},
      {"version not semver",
       [](json& s) { s["spec"]["devices"][0]["attributes"]["x"] = {{"version", "v1.2"}}; },
       "spec.devices[0].attributes[x].version", "FieldValueInvalid"},
      {"version leading zero",
       [](json& s) { s["spec"]["devices"][0]["attributes"]["x"] = {{"version", "1.02.3"}}; },
       "spec.devices[0].attributes[x].version", "FieldValueInvalid"},
      {"bad quantity",
       [](json& s) { s["spec"]["devices"][0]["capacity"]["q"] = {{"value", "lots"}}; },
       "spec.devices[0].capacity[q].value", "FieldValueInvalid"},
      {"taint effect",
       [](json& s) {
         s["spec"]["devices"][0]["taints"] = json::array({{{"key", "k"}, {"effect", "Maybe"}}});
       },
       "spec.devices[0].taints[0].effect", "FieldValueNotSupported"},
      {"taint key missing",
       [](json& s) {
         s["spec"]["devices"][0]["taints"] = json::array({{{"effect", "NoExecute"}}});
       },
       "spec.devices[0].taints[0].key", "FieldValueRequired"},
      {"name not subdomain", [](json& s) { s["metadata"]["name"] = "UPPER"; }, "metadata.name",
       "FieldValueInvalid"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    json slice = Valid();
    c.mutate(slice);
    auto causes = ValidateResourceSlice(slice);
    bool found = false;
    for (const auto& cause : causes) {
      if (cause.field == c.field && cause.reason == c.reason) found = true;
    }
    std::string all;
    for (const auto& cause : causes) all += cause.field + " " + cause.reason + "; ";
    EXPECT_TRUE(found) << "want " << c.field << " " << c.reason << ", got: " << all;
  }
}

TEST(SliceValidationTest, ImmutableFieldsOnUpdate) {
  json old_slice = Valid();
  json updated = Valid();
  updated["spec"]["driver"] = "other.example.com";
  updated["spec"]["pool"]["name"] = "n2";
  auto causes = ValidateResourceSliceUpdate(updated, old_slice);
  std::set<std::string> fields;
  for (const auto& c : causes) fields.insert(c.field);
  EXPECT_TRUE(fields.count("spec.driver"));
  EXPECT_TRUE(fields.count("spec.pool.name"));
  EXPECT_FALSE(fields.count("spec.nodeName"));
}

TEST(SliceValidationTest, PrunesUnknownFields) {
  json slice = Valid();
  slice["spec"]["bogus"] = 1;
  slice["spec"]["devices"][0]["extra"] = "x";
  auto dropped = PruneUnknownFields(slice);
  EXPECT_EQ(dropped, (std::vector<std::string>{"spec.bogus", "spec.devices[0].extra"}));
  EXPECT_FALSE(slice["spec"].contains("bogus"));
  EXPECT_TRUE(ValidateResourceSlice(slice).empty());
}

TEST(SliceValidationTest, DecodeErrorsForWrongTypes) {
  json slice = Valid();
  slice["spec"]["pool"]["generation"] = "one";
  EXPECT_FALSE(DecodeErrors(slice).empty());
  EXPECT_TRUE(DecodeErrors(Valid()).empty());
}

}  // namespace
}  // namespace efadra::apidouble
