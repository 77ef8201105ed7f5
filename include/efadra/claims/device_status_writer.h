// DeviceStatusWriter: publishes status.devices of the ResourceClaims this driver prepared
// (KEP-4817): one entry per allocated device of ours with a Ready condition and the device's
// data (RDMA device, uverbs path, PCIe root, port state, link speed, GID), written with server-side
// apply under the driver's field manager and cleared (an apply with no entries) on unprepare.
//
// Off the kubelet's critical path: Prepared()/Unprepared() only record the desired state and
// return; one worker thread writes it. The queue is keyed by claim UID and coalesces (the
// latest desired state wins, so an unprepare that overtakes a pending prepare write only
// clears), holds at most max_pending claims (a new claim past that is dropped and counted), and
// retries failures with capped exponential backoff and full jitter up to max_attempts.
// 404 (claim gone) ends the job quietly. 403/415/422/405 (RBAC missing, or the cluster has
// DRAResourceClaimDeviceStatus / granular status authorization off) are logged once per code
// and counted; prepares are unaffected.
//
// Thread safety: all methods may be called from any thread. Stop() (also the destructor)
// drops what is still pending and joins the worker.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "efadra/claims/claim_preparer.h"
#include "efadra/discovery/efa_device.h"
#include "efadra/kube/client.h"

namespace efadra::claims {

// The writer thread's name (as `top -H` and /proc/<pid>/task/*/comm show it) and its nice
// value: it yields the CPU to the prepares.
inline constexpr char kStatusThreadName[] = "claim-status";
inline constexpr int kStatusThreadNice = 10;

struct DeviceStatusWriterOptions {
  std::string driver_name = "dra.net";
  std::string field_manager = "efa-dra-driver";
  size_t max_pending = 1024;
  int max_attempts = 6;
  std::chrono::milliseconds initial_backoff{200};
  std::chrono::milliseconds max_backoff{10000};
};

// The status.devices entry for one prepared device; `device` may be null when the inventory
// no longer has it (then data is empty and Ready is False). Pure.
nlohmann::json BuildDeviceStatusEntry(const std::string& driver_name, const PreparedDevice& prepared,
                                      const discovery::EfaDevice* device,
                                      std::string_view transition_time);

// The server-side apply body for `claim` with `entries` as this manager's status.devices.
nlohmann::json BuildClaimStatusApply(const ClaimRef& claim, const nlohmann::json& entries);

class DeviceStatusWriter {
 public:
  // reason: "forbidden", "invalid", "unsupported", "gave_up", "queue_full".
  using FailureCallback = std::function<void(std::string_view reason)>;

  // `client` must outlive the writer. Starts the worker thread.
  DeviceStatusWriter(DeviceStatusWriterOptions options, kube::Client& client,
                     InventoryProvider inventory, FailureCallback on_failure = {});
  ~DeviceStatusWriter();
  DeviceStatusWriter(const DeviceStatusWriter&) = delete;
  DeviceStatusWriter& operator=(const DeviceStatusWriter&) = delete;

  // Desired: `devices` (ours, as the preparer answered them) carry a Ready entry each.
  void Prepared(const ClaimRef& claim, const std::vector<PreparedDevice>& devices);
  // Desired: no entries of ours.
  void Unprepared(const ClaimRef& claim);

  // Test and shutdown aid: true once nothing is pending or in flight (false at the timeout).
  bool WaitIdle(std::chrono::milliseconds timeout);

  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace efadra::claims
