// The embedded tables (data/neuron/*.json compiled in) and the table parser's checks.
#include "efadra/neuron/device_group_tables.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "efadra/neuron/device_groups.h"
#include "support/test_support.h"

namespace efadra::neuron {
namespace {

constexpr char kFamilies[] =
    R"({"source": "test", "families": {"trn2": "trn2", "trn9": "trn9"}})";
constexpr char kEnabled[] =
    R"({"source": "test", "instance_types": ["trn2.48xlarge", "trn9.48xlarge"]})";
constexpr char kTrn9[] = R"({"source": "test", "family": "trn9",
  "efa_by_neuron_id": {"0": "0000:10:00.0", "1": "0000:20:00.0"}})";

TEST(DeviceGroupTablesTest, EmbeddedFilesAreTheDataDirectoryByteForByte) {
  const std::string dir = std::string(EFADRA_SOURCE_DIR) + "/data/neuron";
  std::vector<std::string> on_disk;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".json") on_disk.push_back(entry.path().filename());
  }
  std::sort(on_disk.begin(), on_disk.end());
  std::vector<std::string> embedded;
  for (const TableFile& file : EmbeddedTableFiles()) {
    SCOPED_TRACE(file.name);
    embedded.push_back(file.name);
    EXPECT_EQ(file.content, testing::ReadFileOrEmpty(dir + "/" + file.name));
  }
  EXPECT_EQ(embedded, on_disk);
}

TEST(DeviceGroupTablesTest, BuiltinTablesParseAndAreComplete) {
  auto parsed = ParseDeviceGroupTables(EmbeddedTableFiles());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const DeviceGroupTables& tables = BuiltinDeviceGroupTables();
  for (const std::string name : {"trn1", "trn1n", "trn2", "trn3"}) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(tables.tables.contains(name));
    const FamilyTable& table = tables.tables.at(name);
    EXPECT_EQ(table.efa_by_neuron_id.size(), 16u);
    EXPECT_EQ(table.efa_by_neuron_id.begin()->first, 0);
    EXPECT_EQ(table.efa_by_neuron_id.rbegin()->first, 15);
    EXPECT_NE(table.source.find("connected-device-maps-over-efa-for-neuron v1.1.0"),
              std::string::npos)
        << table.source;
  }
  // The doc gives no data for trn3pds: it is named but deliberately not bundled.
  EXPECT_FALSE(tables.tables.contains("trn3pds"));
  EXPECT_EQ(tables.table_by_family.at("trn3-dev0"), "trn3pds");
  EXPECT_EQ(tables.efa_enabled_instance_types.size(), 11u);
  for (const std::string& type : tables.efa_enabled_instance_types) {
    SCOPED_TRACE(type);
    EXPECT_TRUE(tables.table_by_family.contains(type.substr(0, type.find('.'))));
  }
}

TEST(DeviceGroupTablesTest, AddingAFamilyIsAddingAFile) {
  auto parsed = ParseDeviceGroupTables({{kFamilyMapFile, kFamilies},
                                        {kEfaEnabledFile, kEnabled},
                                        {"trn9.json", kTrn9}});
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  auto ids = DeviceGroupIds(*parsed, "trn9.48xlarge", "0000:20:00.0");
  EXPECT_EQ(ids["devicegroup1_id"], "0000:20:00.0");
  EXPECT_EQ(ids["devicegroup4_id"], Sha256Hex("0000:10:00.0,0000:20:00.0").substr(0, 16));
  // trn2 is mapped and enabled but has no file in this set.
  EXPECT_FALSE(HasDeviceGroups(*parsed, "trn2.48xlarge"));
}

TEST(DeviceGroupTablesTest, RejectsBadFilesNamingThem) {
  struct Case {
    std::string name;
    TableFile bad;
    StatusCode code;
    std::string message_part;
  };
  const std::vector<Case> cases = {
      {"not JSON", {"trn9.json", "{"}, StatusCode::kInvalidArgument, "trn9.json: not valid JSON"},
      {"not an object", {"trn9.json", "[]"}, StatusCode::kInvalidArgument, "not an object"},
      {"no source",
       {"trn9.json", R"({"efa_by_neuron_id": {"0": "0000:10:00.0"}})"},
       StatusCode::kInvalidArgument,
       "trn9.json: missing the \"source\""},
      {"empty table",
       {"trn9.json", R"({"source": "x", "efa_by_neuron_id": {}})"},
       StatusCode::kInvalidArgument,
       "must be a non-empty object"},
      {"id not decimal",
       {"trn9.json", R"({"source": "x", "efa_by_neuron_id": {"x1": "0000:10:00.0"}})"},
       StatusCode::kInvalidArgument,
       "Neuron id \"x1\""},
      {"id with leading zero",
       {"trn9.json", R"({"source": "x", "efa_by_neuron_id": {"01": "0000:10:00.0"}})"},
       StatusCode::kInvalidArgument,
       "Neuron id \"01\""},
      {"upper-case address",
       {"trn9.json", R"({"source": "x", "efa_by_neuron_id": {"0": "0000:1A:00.0"}})"},
       StatusCode::kInvalidArgument,
       "efa_by_neuron_id[\"0\"] must be a lowercase PCI address"},
      {"address without domain",
       {"trn9.json", R"({"source": "x", "efa_by_neuron_id": {"0": "1a:00.0"}})"},
       StatusCode::kInvalidArgument,
       "lowercase PCI address"},
      {"family differs from file name",
       {"trn9.json",
        R"({"source": "x", "family": "trn8", "efa_by_neuron_id": {"0": "0000:10:00.0"}})"},
       StatusCode::kInvalidArgument,
       "\"family\" must equal the file name \"trn9\""},
      {"not a .json name", {"trn9.yaml", kTrn9}, StatusCode::kInvalidArgument, "<name>.json"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto parsed =
        ParseDeviceGroupTables({{kFamilyMapFile, kFamilies}, {kEfaEnabledFile, kEnabled}, c.bad});
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), c.code);
    EXPECT_NE(parsed.status().message().find(c.message_part), std::string::npos)
        << parsed.status().message();
  }
}

TEST(DeviceGroupTablesTest, ConfigFilesAreRequired) {
  auto no_map = ParseDeviceGroupTables({{kEfaEnabledFile, kEnabled}, {"trn9.json", kTrn9}});
  ASSERT_FALSE(no_map.ok());
  EXPECT_EQ(no_map.status().code(), StatusCode::kNotFound);
  EXPECT_NE(no_map.status().message().find(kFamilyMapFile), std::string::npos);

  auto no_list = ParseDeviceGroupTables({{kFamilyMapFile, kFamilies}, {"trn9.json", kTrn9}});
  ASSERT_FALSE(no_list.ok());
  EXPECT_NE(no_list.status().message().find(kEfaEnabledFile), std::string::npos);

  auto bad_list = ParseDeviceGroupTables(
      {{kFamilyMapFile, kFamilies}, {kEfaEnabledFile, R"({"source": "x", "instance_types": 3})"}});
  ASSERT_FALSE(bad_list.ok());
  EXPECT_NE(bad_list.status().message().find("instance_types"), std::string::npos);
}

}  // namespace
}  // namespace efadra::neuron
