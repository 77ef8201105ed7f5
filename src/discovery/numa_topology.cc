#include "numa_topology.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "efadra/discovery/sysfs_values.h"

namespace efadra::discovery {
namespace {

constexpr char kNodeDir[] = "/devices/system/node";

std::optional<int> ParseInt(std::string_view text) {
  text = TrimValue(text);
  int value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// "node12" -> 12; nullopt for other names (has_cpu, online, possible, ...).
std::optional<int> NodeIndex(std::string_view name) {
  if (name.size() <= 4 || name.substr(0, 4) != "node") return std::nullopt;
  return ParseInt(name.substr(4));
}

std::optional<std::vector<int>> Distances(const core::Filesystem& sysfs, int node) {
  auto text = sysfs.ReadFile(std::string(kNodeDir) + "/node" + std::to_string(node) + "/distance",
                             4096);
  if (!text.ok()) return std::nullopt;
  std::istringstream in{std::string(TrimValue(*text))};
  std::vector<int> distances;
  for (std::string field; in >> field;) {
    auto value = ParseInt(field);
    if (!value) return std::nullopt;
    distances.push_back(*value);
  }
  if (distances.empty()) return std::nullopt;
  return distances;
}

// The socket (physical_package_id) of the first CPU in the node's cpulist ("0-47,96-143").
std::optional<int> Socket(const core::Filesystem& sysfs, int node) {
  auto cpulist =
      sysfs.ReadFile(std::string(kNodeDir) + "/node" + std::to_string(node) + "/cpulist", 4096);
  if (!cpulist.ok()) return std::nullopt;
  const std::string_view list = TrimValue(*cpulist);
  const size_t end = list.find_first_of(",-");
  auto cpu = ParseInt(list.substr(0, end));
  if (!cpu) return std::nullopt;
  auto package = sysfs.ReadFile(
      "/devices/system/cpu/cpu" + std::to_string(*cpu) + "/topology/physical_package_id", 64);
  if (!package.ok()) return std::nullopt;
  return ParseInt(*package);
}

std::vector<int64_t> LocalNodes(const core::Filesystem& sysfs, int node) {
  std::vector<int64_t> local = {node};
  const auto distances = Distances(sysfs, node);
  if (!distances || node >= static_cast<int>(distances->size())) return local;
  std::optional<int> nearest;
  for (int other = 0; other < static_cast<int>(distances->size()); ++other) {
    if (other != node && (!nearest || (*distances)[other] < *nearest)) nearest = (*distances)[other];
  }
  if (!nearest) return local;
  const std::optional<int> socket = Socket(sysfs, node);
  for (int other = 0; other < static_cast<int>(distances->size()); ++other) {
    if (other == node || (*distances)[other] != *nearest) continue;
    if (socket) {
      const std::optional<int> other_socket = Socket(sysfs, other);
      if (other_socket && *other_socket != *socket) continue;
    }
    local.push_back(other);
  }
  return local;
}

}  // namespace

NumaTopology ReadNumaTopology(const core::Filesystem& sysfs) {
  NumaTopology topology;
  auto names = sysfs.ListDir(kNodeDir);
  if (!names.ok()) return topology;
  for (const std::string& name : *names) {
    const std::optional<int> node = NodeIndex(name);
    if (!node) continue;
    ++topology.node_count;
    topology.local_nodes[*node] = LocalNodes(sysfs, *node);
  }
  return topology;
}

}  // namespace efadra::discovery
