// Fuzzes discovery's reading of sysfs attribute text, in two ways chosen by the first byte:
//
//   byte0 < 0x80: one parser of sysfs_values.h over the rest of the input, with the
//     properties its contract promises checked (a broken one aborts, which libFuzzer reports);
//   byte0 >= 0x80: the whole Discoverer over a generated p4d.24xlarge tree (built once in a
//     temp dir), where every file (or link) that matches one attribute, picked by byte0, reads
//     as the rest of the input. That covers what the parsers do not: the GID -> MAC match, the
//     netdev mtu, link resolution and the warnings built from the garbage.
//
// Seeds: corpus/sysfs_fuzzer/ (typical kernel values, one per parser and attribute).

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "efadra/core/filesystem.h"
#include "efadra/discovery/discoverer.h"
#include "efadra/discovery/sysfs_values.h"
#include "efadra/sysfstree/bundled.h"
#include "efadra/sysfstree/topology.h"
#include "efadra/sysfstree/tree_builder.h"

namespace efadra::discovery {
namespace {

// Aborts when a promised property does not hold (libFuzzer saves the input).
void Check(bool condition) {
  if (!condition) std::abort();
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

void FuzzParser(uint8_t which, std::string_view text) {
  switch (which % 9) {
    case 0: {
      const std::string_view trimmed = TrimValue(text);
      Check(trimmed.size() <= text.size());
      Check(TrimValue(trimmed) == trimmed);
      break;
    }
    case 1:
      if (IsValidPciAddress(text)) Check(text.size() == 12);
      break;
    case 2:
      if (auto id = ParsePciId(text); id.ok()) {
        const int generation = EfaGeneration(*id);
        Check(generation >= 0 && generation <= 16);
      }
      break;
    case 3:
      if (auto node = ParseNumaNode(text); node.ok()) Check(*node >= -1);
      break;
    case 4:
      if (auto number = ParseDevNumber(text); number.ok()) {
        // Accepted text is "<digits>:<digits>" (leading zeros allowed).
        const std::string_view value = TrimValue(text);
        const size_t colon = value.find(':');
        Check(colon != std::string_view::npos && colon > 0 && colon + 1 < value.size());
        Check(value.find_first_not_of("0123456789:") == std::string_view::npos);
        Check(value.find(':', colon + 1) == std::string_view::npos);
      }
      break;
    case 5:
      Check(ParseUverbsIndex(text) >= -1);
      break;
    case 6: {
      const std::string state = ParsePortStateText(text);
      Check(state.size() <= text.size());
      break;
    }
    case 7:
      (void)ParseRateGbps(text);
      break;
    case 8: {
      // "<bdf>\n<link text>"
      const size_t newline = text.find('\n');
      const std::string_view bdf = text.substr(0, newline);
      const std::string_view link =
          newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
      if (auto root = PcieRootFromLink(bdf, link); root.ok()) {
        Check(IsValidPciAddress(bdf));
        Check(root->rfind("pci", 0) == 0);
        Check(root->find('/') == std::string::npos);
      }
      break;
    }
  }
}

// The attributes the tree mode can replace. A file entry matches every path ending in it, so
// all devices read the fuzz input at once; a link entry replaces ReadLink results.
struct Target {
  std::string_view match;
  bool link;
  bool prefix;  // match at the start of the path instead of its end
};
constexpr Target kTargets[] = {
    {"/numa_node", false, false},         {"/local_cpulist", false, false},
    {"/vendor", false, false},            {"/device", false, false},
    {"/subsystem_vendor", false, false},  {"/subsystem_device", false, false},
    {"/ports/1/state", false, false},     {"/ports/1/phys_state", false, false},
    {"/ports/1/rate", false, false},      {"/ports/1/gids/0", false, false},
    {"/dev", false, false},               {"/ibdev", false, false},
    {"/node_guid", false, false},         {"/fw_ver", false, false},
    {"/mtu", false, false},               {"/address", false, false},
    {"/operstate", false, false},         {"/product_name", false, false},
    {"/bus/pci/devices/", true, true},    {"/class/infiniband/", true, true},
    {"/device", true, false},             {"/driver", true, false},
};

// The real tree, except that the chosen attribute reads as `value_`.
class OverlayFilesystem : public core::Filesystem {
 public:
  OverlayFilesystem(const core::Filesystem& base, const Target& target, std::string_view value)
      : base_(base), target_(target), value_(value) {}

  Result<std::string> ReadFile(std::string_view path, size_t max_bytes) const override {
    if (!target_.link && Matches(path)) {
      if (value_.size() > max_bytes) return ResourceExhaustedError("too large");
      return std::string(value_);
    }
    return base_.ReadFile(path, max_bytes);
  }
  Result<std::string> ReadLink(std::string_view path) const override {
    if (target_.link && Matches(path)) return std::string(value_);
    return base_.ReadLink(path);
  }
  Result<std::vector<std::string>> ListDir(std::string_view path) const override {
    return base_.ListDir(path);
  }
  Result<core::FileInfo> Stat(std::string_view path, bool follow_symlinks) const override {
    return base_.Stat(path, follow_symlinks);
  }
  Status WriteFileAtomic(std::string_view, std::string_view, const core::WriteOptions&) override {
    std::abort();  // discovery never writes
  }
  Status RemoveFile(std::string_view) override { std::abort(); }
  Status SyncDirectory(std::string_view) override { std::abort(); }
  Status CreateDirectories(std::string_view) override { std::abort(); }
  std::string HostPath(std::string_view path) const override { return base_.HostPath(path); }

 private:
  bool Matches(std::string_view path) const {
    return target_.prefix ? path.rfind(target_.match, 0) == 0 : EndsWith(path, target_.match);
  }

  const core::Filesystem& base_;
  const Target& target_;
  std::string_view value_;
};

// The generated tree, built on first use and removed at exit.
struct Tree {
  std::string dir;
  std::unique_ptr<core::Filesystem> sysfs;
  std::unique_ptr<core::Filesystem> dev;
};

Tree* g_tree = nullptr;

void RemoveTree() {
  std::error_code ec;
  std::filesystem::remove_all(g_tree->dir, ec);
}

const Tree& GetTree() {
  if (g_tree != nullptr) return *g_tree;
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                    "/sysfs_fuzzer.XXXXXX";
  Check(mkdtemp(dir.data()) != nullptr);
  auto yaml = sysfstree::BundledTopology("p4d.24xlarge");
  Check(yaml.has_value());
  auto topology = sysfstree::ParseTopology(*yaml);
  Check(topology.ok());
  Check(sysfstree::BuildSysfsTree(*topology, dir + "/sys", dir + "/dev").ok());
  g_tree = new Tree{dir, core::NewPosixFilesystem(dir + "/sys"),
                    core::NewPosixFilesystem(dir + "/dev")};
  std::atexit(RemoveTree);
  return *g_tree;
}

void FuzzDiscoverer(uint8_t which, std::string_view text) {
  const Tree& tree = GetTree();
  const Target& target = kTargets[which % std::size(kTargets)];
  OverlayFilesystem sysfs(*tree.sysfs, target, text);
  auto inventory = Discoverer(sysfs, *tree.dev, nullptr).Discover();
  Check(inventory.ok());  // a bad attribute is a warning, never an error
  for (const EfaDevice& device : inventory->devices) {
    Check(device.uverbs_index >= 0);  // devices without a uverbs node are left out
    Check(device.numa_node >= -1);
    Check(device.pcie_root.empty() || device.pcie_root.rfind("pci", 0) == 0);
  }
}

}  // namespace
}  // namespace efadra::discovery

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // skipped-device notices would flood the output
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] < 0x80) {
    efadra::discovery::FuzzParser(data[0], text);
  } else {
    efadra::discovery::FuzzDiscoverer(static_cast<uint8_t>(data[0] - 0x80), text);
  }
  return 0;
}
