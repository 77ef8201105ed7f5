// Device-group ids against every vector published in shared/docs/neuron-devicegroups.md §1 and
// §4 (CDM lookup_test.go, a real trn1 DRANET ResourceSlice, and the per-block values), plus the
// cases that must yield nothing.
#include "efadra/neuron/device_groups.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace efadra::neuron {
namespace {

using Ids = std::map<std::string, std::string>;

std::string Bdf(const std::string& bus_dev_fn) { return "0000:" + bus_dev_fn; }

// One expected block: the EFAs in it and the published hash.
struct Block {
  int size;
  std::vector<std::string> efas;  // "c9:00.0"
  std::string hash;
};

struct FamilyVectors {
  std::string instance_type;
  std::vector<Block> blocks;
  int efa_count;
};

// Transcribed from neuron-devicegroups.md §4, block by block (not computed).
std::vector<FamilyVectors> PublishedVectors() {
  return {
      {"trn2.48xlarge",
       {
           {4, {"c9:00.0", "b4:00.0", "b3:00.0", "ca:00.0"}, "13713e551cd37c19"},
           {4, {"6c:00.0", "57:00.0", "56:00.0", "6d:00.0"}, "671622785349fddf"},
           {4, {"98:00.0", "83:00.0", "82:00.0", "99:00.0"}, "237e3ef7b968b4d3"},
           {4, {"f5:00.0", "e0:00.0", "df:00.0", "f6:00.0"}, "b3d6ce1919d29f8f"},
           {8, {"c9:00.0", "b4:00.0", "b3:00.0", "ca:00.0", "6c:00.0", "57:00.0", "56:00.0",
                "6d:00.0"},
            "3593812b8066a078"},
           {8, {"98:00.0", "83:00.0", "82:00.0", "99:00.0", "f5:00.0", "e0:00.0", "df:00.0",
                "f6:00.0"},
            "614e16dab9ba2f1f"},
           {16, {"c9:00.0", "b4:00.0", "b3:00.0", "ca:00.0", "6c:00.0", "57:00.0", "56:00.0",
                 "6d:00.0", "98:00.0", "83:00.0", "82:00.0", "99:00.0", "f5:00.0", "e0:00.0",
                 "df:00.0", "f6:00.0"},
            "821d14afaf11327d"},
       },
       16},
      {"trn1.32xlarge",
       {
           {4, {"10:1a.0", "a0:1a.0"}, "88a3c6ad1661fe1d"},
           {4, {"20:19.0", "90:19.0"}, "69b2225fd72a59dd"},
           {4, {"20:1a.0", "90:1a.0"}, "e3c29faa0cd11323"},
           {4, {"10:19.0", "a0:19.0"}, "178a9e264a26793e"},
           {8, {"10:1a.0", "a0:1a.0", "20:19.0", "90:19.0"}, "86c451036f622685"},
           {8, {"20:1a.0", "90:1a.0", "10:19.0", "a0:19.0"}, "aa86c05423d6e8cd"},
           {16, {"10:1a.0", "a0:1a.0", "20:19.0", "90:19.0", "20:1a.0", "90:1a.0", "10:19.0",
                 "a0:19.0"},
            "fb838249c99a6341"},
       },
       8},
      {"trn1n.32xlarge",
       {
           {4, {"10:17.0", "10:1a.0", "a0:17.0", "a0:1a.0"}, "f9415ac86580cd2a"},
           {4, {"20:19.0", "20:18.0", "90:19.0", "90:18.0"}, "81d377c56bbb18dd"},
           {4, {"20:17.0", "20:1a.0", "90:17.0", "90:1a.0"}, "e367b751fc858d72"},
           {4, {"10:19.0", "10:18.0", "a0:19.0", "a0:18.0"}, "6b9b077320083e11"},
           {8, {"10:17.0", "10:1a.0", "a0:17.0", "a0:1a.0", "20:19.0", "20:18.0", "90:19.0",
                "90:18.0"},
            "25ab6fa8d56db17d"},
           {8, {"20:17.0", "20:1a.0", "90:17.0", "90:1a.0", "10:19.0", "10:18.0", "a0:19.0",
                "a0:18.0"},
            "feac12f490fb3cba"},
           {16, {"10:17.0", "10:1a.0", "a0:17.0", "a0:1a.0", "20:19.0", "20:18.0", "90:19.0",
                 "90:18.0", "20:17.0", "20:1a.0", "90:17.0", "90:1a.0", "10:19.0", "10:18.0",
                 "a0:19.0", "a0:18.0"},
            "9ea13cbe1ff23763"},
       },
       16},
  };
}

std::string Key(int size) { return "devicegroup" + std::to_string(size) + "_id"; }

TEST(DeviceGroupIdsTest, SingleDeviceVectorsFromTheDoc) {
  struct Case {
    std::string instance_type;
    std::string efa;
    std::string g4, g8, g16;
  };
  const std::vector<Case> cases = {
      // CDM lookup_test.go L215-218.
      {"trn2.48xlarge", "0000:c9:00.0", "13713e551cd37c19", "3593812b8066a078",
       "821d14afaf11327d"},
      // A published trn1.32xlarge DRANET ResourceSlice (rdmap16s25).
      {"trn1.32xlarge", "0000:10:19.0", "178a9e264a26793e", "aa86c05423d6e8cd",
       "fb838249c99a6341"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.instance_type + " " + c.efa);
    Ids want = {{"devicegroup1_id", c.efa},
                {"devicegroup4_id", c.g4},
                {"devicegroup8_id", c.g8},
                {"devicegroup16_id", c.g16}};
    EXPECT_EQ(DeviceGroupIds(c.instance_type, c.efa), want);
  }
}

TEST(DeviceGroupIdsTest, EveryPublishedBlockValue) {
  for (const FamilyVectors& family : PublishedVectors()) {
    std::set<std::string> seen;
    for (const Block& block : family.blocks) {
      for (const std::string& efa : block.efas) {
        SCOPED_TRACE(family.instance_type + " " + efa + " group of " +
                     std::to_string(block.size));
        seen.insert(efa);
        Ids ids = DeviceGroupIds(family.instance_type, Bdf(efa));
        ASSERT_EQ(ids.size(), 4u);
        EXPECT_EQ(ids["devicegroup1_id"], Bdf(efa));
        EXPECT_EQ(ids[Key(block.size)], block.hash);
      }
    }
    SCOPED_TRACE(family.instance_type);
    EXPECT_EQ(static_cast<int>(seen.size()), family.efa_count);
  }
}

TEST(DeviceGroupIdsTest, Trn2VariantsUseTheTrn2Table) {
  for (const std::string type : {"trn2e.48xlarge", "trn2u.48xlarge"}) {
    SCOPED_TRACE(type);
    EXPECT_TRUE(HasDeviceGroups(type));
    EXPECT_EQ(DeviceGroupIds(type, "0000:c9:00.0"),
              DeviceGroupIds("trn2.48xlarge", "0000:c9:00.0"));
    EXPECT_EQ(DeviceGroupIds(type, "0000:f6:00.0")["devicegroup4_id"], "b3d6ce1919d29f8f");
    EXPECT_NE(DeviceGroupsNote(type).find("table trn2"), std::string::npos)
        << DeviceGroupsNote(type);
  }
}

TEST(DeviceGroupIdsTest, NothingWhereThereShouldBeNothing) {
  struct Case {
    std::string name;
    std::string instance_type;
    std::string efa;
  };
  const std::vector<Case> cases = {
      {"unknown instance type", "", "0000:c9:00.0"},
      {"whitespace-only instance type", " \n", "0000:c9:00.0"},
      {"p5 (not Neuron)", "p5.48xlarge", "0000:c9:00.0"},
      {"inf2 (Neuron, not EFA-enabled in CDM)", "inf2.48xlarge", "0000:c9:00.0"},
      {"trn1.2xlarge (trn1 family, not EFA-enabled)", "trn1.2xlarge", "0000:10:19.0"},
      {"instance type is case-sensitive", "TRN2.48XLARGE", "0000:c9:00.0"},
      {"trn2 EFA not in the table", "trn2.48xlarge", "0000:c8:00.0"},
      {"trn2 EFA of another family's table", "trn2.48xlarge", "0000:10:19.0"},
      {"trn2 address upper case", "trn2.48xlarge", "0000:C9:00.0"},
      {"trn1 address upper case", "trn1.32xlarge", "0000:10:1A.0"},
      {"address without domain", "trn2.48xlarge", "c9:00.0"},
      {"address with trailing newline", "trn2.48xlarge", "0000:c9:00.0\n"},
      {"empty address", "trn2.48xlarge", ""},
      {"trn3-dev0: table trn3pds not bundled", "trn3-dev0.48xlarge", "0000:be:00.0"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_TRUE(DeviceGroupIds(c.instance_type, c.efa).empty());
  }
  EXPECT_FALSE(HasDeviceGroups("p5.48xlarge"));
  EXPECT_FALSE(HasDeviceGroups(""));
  EXPECT_FALSE(HasDeviceGroups("trn3-dev1.48xlarge"));
}

TEST(DeviceGroupIdsTest, InstanceTypeFromDmiKeepsItsNewline) {
  // DMI product_name reads "trn2.48xlarge\n"; CDM trims it, so do we.
  EXPECT_EQ(DeviceGroupIds("trn2.48xlarge\n", "0000:c9:00.0"),
            DeviceGroupIds("trn2.48xlarge", "0000:c9:00.0"));
  EXPECT_FALSE(DeviceGroupIds("trn2.48xlarge\n", "0000:c9:00.0").empty());
}

TEST(DeviceGroupIdsTest, Trn1BothNeuronIdsOfAnEfaGiveTheSameGroups) {
  // Neuron ids 12 and 13 share 0000:10:19.0; a table holding only one of them must agree.
  FamilyTable full;
  full.name = "trn1";
  FamilyTable only_odd = full;
  for (const auto& [id, efa] : BuiltinDeviceGroupTables().tables.at("trn1").efa_by_neuron_id) {
    full.efa_by_neuron_id[id] = efa;
    if (efa != "0000:10:19.0" || id % 2 == 1) only_odd.efa_by_neuron_id[id] = efa;
  }
  ASSERT_EQ(only_odd.efa_by_neuron_id.size(), full.efa_by_neuron_id.size() - 1);
  EXPECT_EQ(ComputeDeviceGroupIds(only_odd, "0000:10:19.0"),
            ComputeDeviceGroupIds(full, "0000:10:19.0"));
}

TEST(DeviceGroupIdsTest, HashesDependOnTheTableNotOnWhichEfasAreAttached) {
  // A trn2 node with only EFAs 0000:c9:00.0 and 0000:56:00.0 attached: the lookup takes nothing
  // but the address, so each still gets the full-table values.
  const std::vector<std::pair<std::string, std::string>> attached = {
      {"0000:c9:00.0", "13713e551cd37c19"}, {"0000:56:00.0", "671622785349fddf"}};
  for (const auto& [efa, g4] : attached) {
    SCOPED_TRACE(efa);
    Ids ids = DeviceGroupIds("trn2.48xlarge", efa);
    EXPECT_EQ(ids["devicegroup4_id"], g4);
    EXPECT_EQ(ids["devicegroup8_id"], "3593812b8066a078");
    EXPECT_EQ(ids["devicegroup16_id"], "821d14afaf11327d");
  }
}

TEST(DeviceGroupIdsTest, PartialTableHashesOnlyThePresentIds) {
  // CDM skips absent ids in a block; a hand-made table with ids 0 and 1 hashes exactly them.
  FamilyTable table;
  table.name = "tiny";
  table.efa_by_neuron_id = {{0, "0000:bb:00.0"}, {1, "0000:aa:00.0"}};
  Ids ids = ComputeDeviceGroupIds(table, "0000:bb:00.0");
  std::string want = Sha256Hex("0000:aa:00.0,0000:bb:00.0").substr(0, 16);
  EXPECT_EQ(ids["devicegroup4_id"], want);
  EXPECT_EQ(ids["devicegroup8_id"], want);
  EXPECT_EQ(ids["devicegroup16_id"], want);
}

TEST(DeviceGroupIdsTest, Sha256MatchesKnownDigests) {
  // FIPS 180-2 test vectors.
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(DeviceGroupIdsTest, ExactlyTheFourKeysOnEveryTableEntry) {
  const std::set<std::string> want_keys(std::begin(kDeviceGroupKeys), std::end(kDeviceGroupKeys));
  for (const std::string type : {"trn1.32xlarge", "trn1n.32xlarge", "trn2.48xlarge",
                                 "trn3.48xlarge"}) {
    const DeviceGroupTables& tables = BuiltinDeviceGroupTables();
    std::string family = type.substr(0, type.find('.'));
    for (const auto& [id, efa] : tables.tables.at(tables.table_by_family.at(family))
                                     .efa_by_neuron_id) {
      SCOPED_TRACE(type + " neuron " + std::to_string(id) + " " + efa);
      Ids ids = DeviceGroupIds(type, efa);
      std::set<std::string> keys;
      for (const auto& [key, value] : ids) {
        keys.insert(key);
        EXPECT_FALSE(value.empty());
        EXPECT_LE(value.size(), 64u);  // DRA string attribute limit
      }
      EXPECT_EQ(keys, want_keys);
      EXPECT_EQ(ids["devicegroup1_id"], efa);
      EXPECT_EQ(ids["devicegroup4_id"].size(), 16u);
    }
  }
}

TEST(DeviceGroupsNoteTest, SaysWhyOnce) {
  struct Case {
    std::string instance_type;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"trn2.48xlarge",
       "instance type trn2.48xlarge: Neuron device groups from table trn2 (16 Neuron devices, "
       "16 EFAs)"},
      {"trn1.32xlarge",
       "instance type trn1.32xlarge: Neuron device groups from table trn1 (16 Neuron devices, "
       "8 EFAs)"},
      {"", "instance type unknown: no Neuron device-group attributes"},
      {"p5.48xlarge",
       "instance type p5.48xlarge: not an EFA-enabled Neuron instance type; no Neuron "
       "device-group attributes"},
      {"trn3-dev0.48xlarge",
       "instance type trn3-dev0.48xlarge: table trn3pds is not bundled with this driver; no "
       "Neuron device-group attributes"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.instance_type);
    EXPECT_EQ(DeviceGroupsNote(c.instance_type), c.want);
  }
}

TEST(DeviceGroupsNoteTest, FamilyWithoutMappingIsExplained) {
  DeviceGroupTables tables;
  tables.efa_enabled_instance_types.insert("trn9.48xlarge");
  EXPECT_EQ(DeviceGroupsNote(tables, "trn9.48xlarge"),
            "instance type trn9.48xlarge: family trn9 has no table mapping; no Neuron "
            "device-group attributes");
  EXPECT_TRUE(DeviceGroupIds(tables, "trn9.48xlarge", "0000:c9:00.0").empty());
}

}  // namespace
}  // namespace efadra::neuron
