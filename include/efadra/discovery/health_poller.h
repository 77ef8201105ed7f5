// HealthPoller: the cheap per-device health read that runs between full rescans (every
// --health-poll-interval). For each EFA it reads only
//   class/infiniband/<dev>/ports/1/state and phys_state,
//   class/infiniband/<dev>/hw_counters/no_completion_cmds (see JudgeNoCompletionCmds), and
//   stats /dev/infiniband/uverbsN,
// through file descriptors it keeps open between polls (pread at offset 0 re-runs the sysfs
// show() routine, so a kept fd sees the current value). A failed read reopens the file once;
// a file that cannot be opened reads as unknown. No directory walks, no symlink resolution.
//
// Not thread-safe: Track() and Poll() from one thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "efadra/core/filesystem.h"
#include "efadra/discovery/efa_device.h"

namespace efadra::discovery {

// What one poll saw of one device. Empty strings mean "unknown" (state) or "no problem".
struct HealthReading {
  std::string pci_address;
  std::string port_state;        // "ACTIVE", "DOWN", ...; "" when unreadable
  std::string phys_state;        // "LinkUp", "Disabled", ...; "" when unreadable
  std::string dev_node_problem;  // why /dev/infiniband/uverbsN cannot be handed out; "" when fine
  std::string counter_problem;   // what the chosen hw_counters say is wrong; "" when fine

  bool operator==(const HealthReading&) const = default;
};

// The rule for hw_counters/no_completion_cmds: the efa driver counts an admin command that got
// no completion within its timeout and then stops its admin queue (efa_com.c clears the
// queue's running bit), so every later control-path verb on the device (create QP/CQ, register
// memory) fails until the device is reset, which re-probes it with the counter back at 0.
// Hence any non-zero value is trouble. "" for 0 or an unreadable/garbage counter (absent is not
// zero, efa-hardware.md §A5); otherwise one sentence with the count.
std::string JudgeNoCompletionCmds(std::optional<std::string_view> text);

// Why the node at `info` (stat of /dev/infiniband/uverbsN) cannot be handed to a container
// when sysfs says its number is `expected`; "" when it can. A regular file is accepted, as
// discovery accepts it: generated trees without CAP_MKNOD stand in for nodes that way.
std::string JudgeDevNode(const Result<core::FileInfo>& info, const std::string& host_path,
                         CharDeviceNumber expected);

class HealthPoller {
 public:
  // `sysfs` at --sysfs-root, `dev` at --dev-root; both must outlive the poller.
  HealthPoller(const core::Filesystem& sysfs, const core::Filesystem& dev);
  ~HealthPoller();
  HealthPoller(const HealthPoller&) = delete;
  HealthPoller& operator=(const HealthPoller&) = delete;

  // The devices to poll (from the latest full scan). Keeps the open files of devices whose
  // RDMA name, PCI address and uverbs node did not change; closes the rest.
  void Track(const std::vector<EfaDevice>& devices);

  // One reading per tracked device, in Track() order.
  std::vector<HealthReading> Poll();

 private:
  struct KeptFile {
    std::string host_path;
    int fd = -1;
  };
  struct Tracked {
    std::string rdma_device;
    std::string pci_address;
    std::string uverbs_path;  // within the dev root: "/infiniband/uverbs3"
    CharDeviceNumber uverbs_dev;
    KeptFile state;
    KeptFile phys_state;
    KeptFile no_completion_cmds;
  };

  static std::optional<std::string> Read(KeptFile& file);
  static void Close(KeptFile& file);

  const core::Filesystem& sysfs_;
  const core::Filesystem& dev_;
  std::vector<Tracked> devices_;
};

}  // namespace efadra::discovery
