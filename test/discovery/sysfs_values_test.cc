#include "efadra/discovery/sysfs_values.h"

#include <gtest/gtest.h>

namespace efadra::discovery {
namespace {

TEST(SysfsValuesTest, PciId) {
  struct Case {
    std::string text;
    bool ok;
    uint16_t want;
  };
  const Case cases[] = {
      {"0x1d0f\n", true, 0x1d0f},
      {"0xefa1", true, 0xefa1},
      {"0xEFA1\n", false, 0},
      {"1d0f\n", false, 0},
      {"0x1d0", false, 0},
      {"0xzzzz\n", false, 0},
      {"", false, 0},
      {"0x1d0f0\n", false, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto id = ParsePciId(c.text);
    ASSERT_EQ(id.ok(), c.ok);
    if (c.ok) {
      EXPECT_EQ(*id, c.want);
    }
  }
}

TEST(SysfsValuesTest, NumaNode) {
  struct Case {
    std::string text;
    bool ok;
    int want;
  };
  const Case cases[] = {{"0\n", true, 0},    {"1\n", true, 1},    {"-1\n", true, -1},
                        {"-2\n", false, 0},  {"abc\n", false, 0}, {"", false, 0},
                        {"1 2\n", false, 0}, {"0x1", false, 0}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto node = ParseNumaNode(c.text);
    ASSERT_EQ(node.ok(), c.ok);
    if (c.ok) {
      EXPECT_EQ(*node, c.want);
    }
  }
}

TEST(SysfsValuesTest, DevNumber) {
  struct Case {
    std::string text;
    bool ok;
    uint32_t major, minor;
  };
  const Case cases[] = {{"231:192\n", true, 231, 192},
                        {"240:8", true, 240, 8},
                        {"231\n", false, 0, 0},
                        {":192", false, 0, 0},
                        {"231:", false, 0, 0},
                        {"231:19x", false, 0, 0},
                        {"", false, 0, 0}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto number = ParseDevNumber(c.text);
    ASSERT_EQ(number.ok(), c.ok);
    if (c.ok) {
      EXPECT_EQ(number->major, c.major);
      EXPECT_EQ(number->minor, c.minor);
    }
  }
}

TEST(SysfsValuesTest, SmallParsers) {
  EXPECT_EQ(ParseUverbsIndex("uverbs0"), 0);
  EXPECT_EQ(ParseUverbsIndex("uverbs31"), 31);
  EXPECT_EQ(ParseUverbsIndex("abi_version"), -1);
  EXPECT_EQ(ParseUverbsIndex("uverbs"), -1);
  EXPECT_EQ(ParseUverbsIndex("uverbs3x"), -1);
  EXPECT_EQ(ParsePortStateText("4: ACTIVE\n"), "ACTIVE");
  EXPECT_EQ(ParsePortStateText("5: LinkUp\n"), "LinkUp");
  EXPECT_EQ(ParsePortStateText("DOWN"), "DOWN");
  EXPECT_EQ(ParseRateGbps("100 Gb/sec (4X EDR)\n"), 100);
  EXPECT_EQ(ParseRateGbps("400 Gb/sec (8X HDR)"), 400);
  EXPECT_EQ(ParseRateGbps("garbage"), 0);
  EXPECT_EQ(EfaGeneration(0xefa0), 1);
  EXPECT_EQ(EfaGeneration(0xefa2), 3);
  EXPECT_EQ(EfaGeneration(0xec20), 0);
  EXPECT_TRUE(IsValidPciAddress("0000:10:1b.0"));
  EXPECT_FALSE(IsValidPciAddress("0000:10:1B.0"));
  EXPECT_FALSE(IsValidPciAddress("10000:10:1b.0"));
}

TEST(SysfsValuesTest, PcieRootFromLink) {
  struct Case {
    std::string bdf, link;
    std::string want;  // "" = error
  };
  const Case cases[] = {
      {"0000:10:1b.0", "../../../devices/pci0000:10/0000:10:1b.0", "pci0000:10"},
      {"0000:4f:00.0",
       "../../../devices/pci0000:44/0000:44:00.0/0000:45:00.0/0000:46:01.0/0000:4f:00.0",
       "pci0000:44"},
      {"0000:10:1b.0", "/sys/devices/pci0000:10/0000:10:1b.0", ""},  // absolute: not under root
      {"0000:10:1b.0", "/devices/pci0000:10/0000:10:1b.0", "pci0000:10"},
      {"0000:10:1b.0", "../../../devices/pci0000:10/0000:10:1c.0", ""},     // wrong basename
      {"0000:10:1b.0", "../../../devices/virtual/0000:10:1b.0", ""},        // not devices/pci
      {"0000:10:1B.0", "../../../devices/pci0000:10/0000:10:1B.0", ""},     // upper case
      {"10000:10:1b.0", "../../../devices/pci10000:10/10000:10:1b.0", ""},  // VMD domain
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.bdf + " -> " + c.link);
    auto root = PcieRootFromLink(c.bdf, c.link);
    if (c.want.empty()) {
      EXPECT_FALSE(root.ok());
    } else {
      ASSERT_TRUE(root.ok()) << root.status().ToString();
      EXPECT_EQ(*root, c.want);
    }
  }
}

}  // namespace
}  // namespace efadra::discovery
