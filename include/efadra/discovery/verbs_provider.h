// VerbsProvider: the one seam to libibverbs + efadv (style.md §5). Discovery asks it for the
// capabilities of each EFA it found in sysfs; without hardware (CI, fixtures) the answer is
// nullopt and the device is still reported.
#pragma once

#include <memory>
#include <optional>

#include "efadra/discovery/efa_device.h"

namespace efadra::discovery {

class VerbsProvider {
 public:
  virtual ~VerbsProvider() = default;

  // RDMA read/write support and limits of `device` (matched by its RDMA device name), or
  // nullopt when the device cannot be opened or queried. Never fails otherwise. Called from
  // one thread at a time; implementations need not be thread-safe.
  virtual std::optional<VerbsCapabilities> Query(const EfaDevice& device) = 0;
};

// The real provider: ibv_get_device_list + ibv_open_device + efadv_query_device, remembering
// each device's answer (capabilities do not change while it exists). Only meaningful when
// discovery reads the host's own /sys (the names must be this host's). Not thread-safe.
std::unique_ptr<VerbsProvider> NewIbverbsProvider();

}  // namespace efadra::discovery
