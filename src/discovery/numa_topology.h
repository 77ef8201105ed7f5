// The host's NUMA layout as sysfs shows it under devices/system/node (and, for sockets,
// devices/system/cpu): how many nodes there are and which nodes are as local to each other as
// nodes get. Private to the discovery module; the results travel in Inventory. Reads through
// core::Filesystem only; stateless, thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "efadra/core/filesystem.h"

namespace efadra::discovery {

struct NumaTopology {
  int node_count = 0;  // node<N> entries; 0 when the directory is missing
  // node -> the node itself, then (ascending) every other node on the same socket at the
  // minimum SLIT distance (node<N>/distance). A node whose distances cannot be read maps to
  // itself alone. A candidate whose socket is unknown is included: leaving out a node of the
  // same socket would be worse than including one of another.
  std::map<int, std::vector<int64_t>> local_nodes;
};

NumaTopology ReadNumaTopology(const core::Filesystem& sysfs);

}  // namespace efadra::discovery
