// Publisher: keeps this node's ResourceSlices in the API server equal to
// DesiredSlices(inventory, node, driver), replicating the Go helper's resourceslice controller
// (contracts.md §4.4) with fewer writes:
//  * lists this node's slices of this driver (fieldSelector spec.driver=,spec.nodeName=),
//    matches them to the desired slices (same device set, else same index in the name, else
//    the one-existing/one-desired case), deletes obsolete ones first, updates in place, creates
//    the rest; nothing is written when nothing changed, so slices left by a previous instance
//    with the same content are adopted with zero writes;
//  * pool generation: the highest existing one is kept when the sync needs no create, no
//    delete of a current slice and at most one update; otherwise it is bumped by one and every
//    slice is rewritten (the scheduler uses only the highest generation's slices);
//  * sets no labels: the Go helper sets none and finds its slices by field selector, and a
//    label would cost one write per slice when adopting slices published by DRANET;
//  * watches its slices and re-syncs at once when one is changed or deleted from outside (the
//    kubelet wipes them), instead of the Go helper's 30 s delay;
//  * rescans the hardware every `resync` and, debounced, whenever RescanSoon() is called
//    (kernel events), and syncs only when the desired slices changed;
//  * retries failed syncs with capped exponential backoff and jitter (the client below it
//    already honours Retry-After); a 409 conflict re-reads and retries at once.
// Slices are left in place on Stop(): the kubelet wipes them 30 s after the plugin goes away
// unless a new instance adopts them.
//
// Thread safety: all public methods may be called from any thread.
// The publisher runs two threads of its own (sync, watch) between Start() and Stop().
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "efadra/core/status.h"
#include "efadra/discovery/efa_device.h"
#include "efadra/slices/api_limits.h"
#include "efadra/slices/publish_lock.h"
#include "efadra/slices/resource_slices.h"
#include "efadra/slices/slice_api.h"

namespace efadra::slices {

struct PublisherOptions {
  std::string driver_name = "dra.net";
  std::string node_name;
  int max_devices_per_slice = kMaxDevicesPerSlice;
  // --taint-unhealthy (see SliceOptions::taint_unhealthy).
  bool taint_unhealthy = false;
  // --numa-node-list (see SliceOptions::numa_node_list).
  bool numa_node_list = false;
  // --allow-multiple-allocations (see SliceOptions::shares_per_device). When the API server
  // drops allowMultipleAllocations from a written device (DRAConsumableCapacity off), the
  // publisher says so once and publishes the EFAs for exclusive use from then on (without the
  // shares capacity), so the pool converges instead of being rewritten at every sync.
  int shares_per_device = 0;
  // Periodic hardware rescan (--resync).
  std::chrono::milliseconds resync{std::chrono::seconds(60)};
  // Kernel events arrive in bursts (a device and its port, netdev and uverbs node); one
  // rescan after the burst settles.
  std::chrono::milliseconds debounce{std::chrono::milliseconds(100)};
  std::chrono::milliseconds initial_backoff{std::chrono::milliseconds(100)};
  std::chrono::milliseconds max_backoff{std::chrono::seconds(10)};
  // True while another driver of our name is registered with the kubelet on this node
  // (DRANET): then the publisher writes nothing at all, since that driver's slice controller
  // rewrites the pool too. Slices of our pool that another program wrote are left alone while
  // it may still run; once it has been unregistered for `leftover_grace` (it left the node:
  // DRANET removed during a migration) they are leftovers and are deleted, so the pool can be
  // published. The kubelet itself wipes them only while no driver of the name is registered,
  // which is never the case once this one runs. Null: never delete foreign slices.
  std::function<bool()> other_driver_registered;
  std::chrono::milliseconds leftover_grace{std::chrono::seconds(60)};
  // Token bucket on syncs that write (a sync writes each changed slice once): `write_burst`
  // at once, then one per `write_refill`. A flapping port would otherwise cost two writes
  // per flap, each fanning out to every scheduler watching slices; the latest state is
  // still written once a token is there (the sync stays pending, nothing is dropped).
  // write_refill 0: no limit.
  int write_burst = 3;
  std::chrono::milliseconds write_refill{std::chrono::seconds(5)};
  // After a watch ends cleanly or with 410 Gone, the next list + watch waits at least this
  // long plus a random part of up to half of it: a server that ends every watch at once
  // (overloaded, or restarting behind a load balancer) would otherwise get a tight loop of
  // lists and watches from every node, all in step.
  std::chrono::milliseconds min_rewatch_interval{std::chrono::seconds(1)};
  // Rolling updates (--pod-uid): only the instance holding this flock (publish_lock.h)
  // writes; the other stands by, tries again every `publish_lock_retry`, and takes over once
  // the holder stops or exits. "" -> no lock (one instance per node).
  std::string publish_lock_path;
  std::chrono::milliseconds publish_lock_retry{std::chrono::seconds(1)};
};

// Returns the node's current inventory (discovery). Called on the publisher's sync thread.
using InventoryScanner = std::function<Result<discovery::Inventory>()>;

// What /readyz and /metrics report.
struct PublisherState {
  bool first_publish_done = false;
  std::string last_error;  // "" after a successful sync
  int slices_published = 0;
  int devices_published = 0;
  int64_t pool_generation = 0;
  uint64_t syncs = 0;          // reconciles run (each lists once)
  uint64_t sync_failures = 0;  // reconciles that returned an error
  uint64_t writes = 0;         // creates + updates + deletes sent
  uint64_t scans = 0;          // hardware scans
  uint64_t watches = 0;        // watches started
  // Another instance on this node holds the publish lock: this one writes nothing for now.
  bool standby = false;
  uint64_t write_limited = 0;  // syncs held back by the write token bucket
  // Slices of our driver and node written by another program ("<name> (by <managers>)"), as
  // the last sync found them; while there are any the publisher writes nothing.
  std::vector<std::string> foreign_slices;
  // Sharing was asked for and the API server dropped allowMultipleAllocations: EFAs are
  // published for one claim at a time.
  bool sharing_dropped_by_api = false;
};

class Publisher {
 public:
  Publisher(SliceApi& api, InventoryScanner scanner, PublisherOptions options);
  ~Publisher();  // Stop()
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // kInvalidArgument when the driver or node name is unusable (the message names it).
  // Starts the threads and returns at once: the first scan and publish happen on them.
  Status Start();
  // Stops and joins the threads (returns within the client's per-request time); idempotent.
  void Stop();

  // A kernel event was seen: rescan after `debounce`.
  void RescanSoon();
  // Check the API now (e.g. after kubelet re-registration) even if nothing changed locally.
  void RepublishNow();

  bool FirstPublishDone() const;
  std::string LastError() const;
  PublisherState State() const;

  // One reconcile of `inventory` against the API, synchronously, on the caller's thread (the
  // sync thread uses it; tests and `discover --slices` may too). Returns the first error, with
  // context naming the slice and request.
  Status SyncOnce(const discovery::Inventory& inventory);

 private:
  void SyncLoop();
  void WatchLoop();
  // Called by the watch with each observed slice; true when it differs from what the last
  // sync left (so a re-sync is needed).
  bool DiffersFromKnown(const std::string& type, const nlohmann::json& object);
  bool DiffersLocked(const std::string& type, const std::string& name,
                     const std::string& resource_version) const;  // mutex_ held
  void MarkDirty();
  std::chrono::milliseconds Backoff(int failures);
  // Refills the write bucket up to `now`; mutex_ held.
  void RefillWriteTokensLocked(std::chrono::steady_clock::time_point now);
  // What DesiredSlices is asked for; `node_uid` "" leaves out the owner reference.
  SliceOptions MakeSliceOptions(std::string node_uid) const;
  bool WaitForStop(std::chrono::milliseconds delay);
  void LogNewWarnings(const std::vector<std::string>& warnings);

  SliceApi& api_;
  const InventoryScanner scanner_;
  const PublisherOptions options_;

  // Serialises SyncOnce (the sync thread and direct callers).
  std::mutex sync_mutex_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool started_ = false;
  bool stopping_ = false;
  std::atomic<bool> stop_flag_{false};
  bool dirty_ = false;  // a sync is wanted at/after retry_at_
  std::chrono::steady_clock::time_point retry_at_;
  // Since when foreign slices are there with no other driver registered (sync thread only).
  std::optional<std::chrono::steady_clock::time_point> foreign_unclaimed_since_;
  // The API server drops allowMultipleAllocations (sync thread writes, MakeSliceOptions reads).
  std::atomic<bool> sharing_dropped_{false};
  std::optional<std::chrono::steady_clock::time_point> rescan_at_;  // debounced kernel event
  std::optional<discovery::Inventory> inventory_;                   // last successful scan
  nlohmann::json last_synced_devices_;  // devices of the last successful sync
  std::string node_uid_;
  std::map<std::string, std::string> known_;  // slice name -> resourceVersion after last sync
  // Warnings already logged (each once); bounded, since the text comes from sysfs.
  std::set<std::string> logged_warnings_;
  // Write token bucket (sync thread, under mutex_).
  double write_tokens_ = 0;
  std::chrono::steady_clock::time_point write_tokens_at_;
  struct SeenEvent {
    std::string type;
    std::string name;
    std::string resource_version;
  };
  bool syncing_ = false;  // a SyncOnce is writing; events wait in pending_
  // The watch re-listed while a sync was writing. The list cannot be judged against known_ then
  // (a slice the sync wrote and someone deleted before the list is in neither), so the pool is
  // checked again once the sync is done.
  bool relisted_during_sync_ = false;
  std::vector<SeenEvent> pending_events_;
  PublisherState state_;

  std::unique_ptr<PublishLock> publish_lock_;  // null without publish_lock_path

  std::thread sync_thread_;
  std::thread watch_thread_;
};

}  // namespace efadra::slices
