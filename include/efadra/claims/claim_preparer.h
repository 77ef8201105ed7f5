// ClaimPreparer: turns a ResourceClaim allocated to this node into CDI device ids, and back.
// The kubelet module calls it from the DRA gRPC services (v1 and v1beta1 share it).
//
// Prepare, per claim: GET the ResourceClaim, check its UID and allocation, keep only results
// whose driver is ours and whose pool is this node, check every device exists here and is not
// prepared for another claim (by device and by the char device number its spec would inject;
// adminAccess results share a device and never hold it), write the checkpoint (durable, the
// allocation's identities only) and then the CDI spec built from the current inventory, and
// answer the devices with their base request names and CDI ids. Idempotent per claim UID: a
// repeat answers the same without rewriting anything, unless the spec is gone, when it is built
// again from the current inventory. Different claims are prepared concurrently; calls for the
// same claim are serialised. Unprepare removes the CDI spec and the checkpoint by claim UID and
// fsyncs the checkpoint directory, also for claims this process does not know (a leftover must
// not come back at the next start); already unprepared claims succeed.
//
// Rolling-update mode (PreparerOptions::shared_lock_path set): two driver processes share the
// checkpoint and CDI directories. The API GET and the allocation checks run with no
// cross-process lock; only the short section that re-reads the checkpoints, checks
// exclusivity and writes checkpoint and spec (and every unprepare, and Start's clean-up) holds
// an flock on that file, so one slow GET never delays the twin's or this process's other
// claims. Waiting for the lock honours the caller's deadline (the kubelet's gRPC deadline):
// past it the claim fails with kDeadlineExceeded naming the claim, instead of answering after
// the kubelet gave up. Lock order: shared lock, then per-claim lock, then the state mutex.
//
// A wipe of the state directory (a kubelet restart can empty the plugin dir that holds it)
// is repaired before the next write: the checkpoint directory is re-created and the
// checkpoints of the claims this process knows are written again, so their devices stay
// reserved, for this process and its twin. CheckStateDir() reports whether the state
// directory can be written (for /healthz).
//
// The claims of one Prepare call are one pod's (the kubelet sends one call per pod and driver):
// each checkpoint records the others, and each spec's FI_EFA_IFACE names the RDMA devices of
// every claim of the call that is prepared (cdi_spec.h says why a container with two claims
// needs that). Claims of a call are prepared concurrently, so after all are done the specs
// written before a peer was prepared are completed; when Prepare returns, every claim it
// answers OK has its complete list (a claim whose list could not be written fails, and the
// kubelet's retry completes it). A single-claim call without recorded peers writes nothing
// more. Start rebuilds the lists from the peers still prepared; an unprepare leaves the names
// in the other specs.
//
// Errors are per claim (PrepareResult::status); one bad claim never fails the others.
// Thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "efadra/core/clock.h"
#include "efadra/core/filesystem.h"
#include "efadra/core/status.h"
#include "efadra/discovery/efa_device.h"
#include "efadra/kube/client.h"

namespace efadra::claims {

// What the kubelet sends for one claim.
struct ClaimRef {
  std::string namespace_name;
  std::string name;
  std::string uid;
};

// One prepared device, as the kubelet's Device message wants it.
struct PreparedDevice {
  std::vector<std::string> request_names;  // base names ("efa" for "efa/sub")
  std::string pool_name;
  std::string device_name;                 // "pci-0000-10-1b-0"
  std::vector<std::string> cdi_device_ids; // "dra.net/efa=<claimUID>-pci-0000-10-1b-0"
  std::optional<std::string> share_id;     // from the allocation result (v1 only)
};

struct PrepareResult {
  Status status;  // non-OK: this claim failed; the message names the claim
  std::vector<PreparedDevice> devices;
};

// The latest inventory of this node (discovery refreshes it); never null.
using InventoryProvider = std::function<std::shared_ptr<const discovery::Inventory>()>;

struct PreparerOptions {
  std::string driver_name = "dra.net";
  std::string node_name;  // == pool name
  // Where /dev is on the host (the hostPath of CDI device nodes): "/dev" in production.
  std::string dev_root = "/dev";
  // Where sysfs is (--sysfs-root): the rdma_cm number is read from class/misc/rdma_cm/dev.
  std::string sysfs_root = "/sys";
  // --inject-gdrdrv: every claim's spec also injects GDRCopy's <dev_root>/gdrdrv (GPUDirect
  // RDMA through gdrdrv's mappings) when that node is a char device. Off: never injected.
  // Absent, or not a char device: not injected, logged once (when that state begins), and
  // the claim is prepared anyway.
  bool inject_gdrdrv = false;
  // The node's boot id (/proc/sys/kernel/random/boot_id, or --boot-id-file in tests).
  std::string boot_id;
  // Non-empty: rolling-update mode, serialised with the twin through an flock on this file
  // (<plugin-dir>/serialize.lock). Empty: this process is the only one using the state.
  std::string shared_lock_path;
};

// No deadline: wait for the shared lock as long as it takes.
inline constexpr std::chrono::steady_clock::time_point kNoDeadline =
    std::chrono::steady_clock::time_point::max();

class ClaimPreparer {
 public:
  // cdi_fs is rooted at --cdi-root, state_fs at --state-dir; both must outlive the preparer,
  // as must `client`.
  ClaimPreparer(PreparerOptions options, kube::Client& client, core::Filesystem& cdi_fs,
                core::Filesystem& state_fs, InventoryProvider inventory,
                core::Clock& clock = core::RealClock());
  ~ClaimPreparer();
  ClaimPreparer(const ClaimPreparer&) = delete;
  ClaimPreparer& operator=(const ClaimPreparer&) = delete;

  // Loads the checkpoints and writes each claim's CDI spec from the current inventory where it
  // is missing or differs (after a reboot or module reload the kernel may number uverbs and
  // rdma_cm differently). Corrupt or future-version files, and files whose name and content
  // give different claim UIDs, are reported (returned in the warnings) and skipped, never
  // fatal. A claim whose device is gone is reported too; it stays prepared without a spec and
  // its prepares fail naming the claim and the device until the device is back. In
  // rolling-update mode the shared lock is taken first (waiting as long as the twin holds it),
  // so the twin's in-flight temporary files are never removed under it. Call once before
  // serving.
  Status Start(std::vector<std::string>* warnings = nullptr);

  // Keyed by claim UID; one entry per distinct UID in `claims`. A claim still waiting for the
  // shared lock at `deadline` fails with kDeadlineExceeded naming it.
  std::map<std::string, PrepareResult> Prepare(const std::vector<ClaimRef>& claims,
                                               std::chrono::steady_clock::time_point deadline =
                                                   kNoDeadline);

  // Keyed by claim UID; OK for claims that were never prepared. Deadline as for Prepare.
  std::map<std::string, Status> Unprepare(const std::vector<ClaimRef>& claims,
                                          std::chrono::steady_clock::time_point deadline =
                                              kNoDeadline);

  // Re-reads the checkpoint directory: claims another instance prepared (a rolling-update twin
  // sharing --state-dir) become known, claims it unprepared are forgotten. Takes the shared
  // lock in rolling-update mode (every prepare and unprepare does this by itself). Unreadable
  // files are reported in the warnings and skipped.
  Status SyncWithDisk(std::vector<std::string>* warnings = nullptr);

  // OK while the state directory can be written: re-creates a wiped checkpoint directory (and
  // its checkpoints) and writes and removes a probe file (at most once a second; in between
  // the last result stands). kUnavailable naming the path when that, or the last checkpoint
  // write, failed. Never waits for the shared lock: while the twin holds it the last result is
  // answered. Cheap enough for every /healthz probe.
  Status CheckStateDir();

  // UIDs of the claims prepared now (for health and metrics).
  std::vector<std::string> PreparedClaimUids() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace efadra::claims
