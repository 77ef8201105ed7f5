// BuildSysfsTree: writes a sysfs tree and a /dev tree for a Topology, laid out exactly like the
// kernel's (efa-hardware.md §A4-A7): relative symlinks computed the way sysfs computes them,
// files with trailing newlines, PCI functions under /devices/pci<dom>:<bus>/..., class links
// (infiniband, infiniband_verbs, net, dmi), bus/pci/{devices,drivers}, uverbs attribute files,
// EFA GIDs and ENA netdevs, and dev/infiniband/uverbsN + rdma_cm.
//
// This is a fixture generator: it writes with std::filesystem
// directly because core::Filesystem has no symlink or mknod operations. Not thread-safe for
// concurrent builds into the same directory; different directories are independent.
#pragma once

#include <string>

#include "efadra/core/status.h"
#include "efadra/sysfstree/topology.h"

namespace efadra::sysfstree {

struct TreeOptions {
  // Make dev/infiniband/uverbsN and rdma_cm real character devices (mknod) when the process is
  // root; otherwise, or when mknod is refused (no CAP_MKNOD), they are empty regular files.
  bool char_devices = false;
};

// Creates `sysfs_root` and `dev_root` (mkdir -p) and writes the trees into them. `dev_root` may
// be "" to skip the /dev tree. Existing files are overwritten; kInternal / kPermissionDenied
// naming the path on I/O failure.
Status BuildSysfsTree(const Topology& topology, const std::string& sysfs_root,
                      const std::string& dev_root, const TreeOptions& options = {});

// The relative link text sysfs writes for a link at `link_path` pointing at `target_path`, both
// relative to the sysfs root ("bus/pci/devices/0000:10:1b.0", "devices/pci0000:10/0000:10:1b.0"
// -> "../../../devices/pci0000:10/0000:10:1b.0"). Like the kernel, it climbs to the deepest
// common ancestor that is a strict ancestor of the target, so a link to an ancestor reads
// "../../../0000:10:1b.0" rather than "../..".
std::string KernelRelativeLink(std::string_view link_path, std::string_view target_path);

}  // namespace efadra::sysfstree
