// Discoverer: reads a sysfs tree (and a /dev tree) through core::Filesystem and returns the
// node's EFA devices as an Inventory (efa_device.h).
//
// Identification: an RDMA device in class/infiniband is an EFA when its PCI function has
// vendor 0x1d0f, device 0xefa0..0xefaf and the `efa` driver bound (efa-hardware.md §A1-A3).
// Every other RDMA device (ConnectX mlx5 on p6, soft-RoCE rxe under devices/virtual) is
// skipped with an Inventory warning on every Discover(), and one spdlog::info line the first
// time this Discoverer sees it (periodic rescans do not repeat it). EFA PCI functions that never
// became RDMA devices (no driver bound, another driver) are reported as warnings too.
//
// Bad trees: each problem becomes one Inventory warning naming the file (host path), and the
// healthy devices are still reported. A device whose attribute is missing or malformed keeps
// the "unknown" value of that field (numa_node -1, pcie_root "", ...), except:
//   - an EFA with no uverbs node cannot be injected into a container, so it is LEFT OUT of
//     Inventory::devices (with a warning);
//   - an RDMA device whose PCI function cannot be identified (dangling `device` link,
//     unreadable or garbage vendor/device, no driver link) is left out (with a warning).
// No class/infiniband at all, or no EFA, is an empty inventory, not an error.
//
// Thread safety: Discover() keeps no state between calls; with a VerbsProvider, calls must not
// overlap (providers need not be thread-safe). Without one, calls may run concurrently.
#pragma once

#include <mutex>
#include <set>
#include <string>

#include "efadra/core/filesystem.h"
#include "efadra/core/status.h"
#include "efadra/discovery/efa_device.h"
#include "efadra/discovery/verbs_provider.h"

namespace efadra::discovery {

class Discoverer {
 public:
  // `sysfs` is rooted at --sysfs-root (paths like "/class/infiniband"), `dev` at --dev-root
  // (paths like "/infiniband/uverbs0"). `verbs` may be null (no enrichment). All must outlive
  // the Discoverer.
  Discoverer(const core::Filesystem& sysfs, const core::Filesystem& dev, VerbsProvider* verbs)
      : sysfs_(sysfs), dev_(dev), verbs_(verbs) {}

  // kInvalidArgument when the sysfs root does not exist or is not a sysfs tree (has neither
  // devices/ nor class/). Anything wrong inside the tree is a warning, not an error.
  Result<Inventory> Discover() const;

 private:
  const core::Filesystem& sysfs_;
  const core::Filesystem& dev_;
  VerbsProvider* verbs_;
  mutable std::mutex logged_mu_;
  mutable std::set<std::string> logged_skips_;  // guarded by logged_mu_
};

}  // namespace efadra::discovery
