#include "efadra/claims/device_status_writer.h"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "efadra/slices/resource_slices.h"

namespace efadra::claims {
namespace {

using json = nlohmann::json;
using SteadyTime = std::chrono::steady_clock::time_point;

std::string UtcNow() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

json BuildDeviceStatusEntry(const std::string& driver_name, const PreparedDevice& prepared,
                            const discovery::EfaDevice* device,
                            std::string_view transition_time) {
  json entry = {{"driver", driver_name},
                {"pool", prepared.pool_name},
                {"device", prepared.device_name}};
  if (prepared.share_id) entry["shareID"] = *prepared.share_id;
  json data = json::object();
  if (device != nullptr) {
    data["pciAddress"] = device->pci_address;
    if (!device->rdma_device.empty()) data["rdmaDevice"] = device->rdma_device;
    if (!device->UverbsName().empty()) data["uverbsPath"] = "/dev/infiniband/" + device->UverbsName();
    if (!device->pcie_root.empty()) data["pcieRoot"] = device->pcie_root;
    if (!device->port.state.empty()) data["portState"] = device->port.state;
    if (!device->port.rate.empty()) data["linkSpeed"] = device->port.rate;
    if (device->port.rate_gbps > 0) data["linkSpeedGbps"] = device->port.rate_gbps;
    if (!device->gid.empty()) data["gid"] = device->gid;
    if (!device->node_guid.empty()) data["nodeGUID"] = device->node_guid;
    if (device->netdev) data["netdev"] = device->netdev->name;
  }
  // metav1.Condition: reason must be CamelCase and lastTransitionTime is required.
  json condition = {{"type", "Ready"}, {"lastTransitionTime", std::string(transition_time)}};
  if (device != nullptr) {
    condition["status"] = "True";
    condition["reason"] = "Prepared";
    condition["message"] = "CDI devices injected: " + std::to_string(prepared.cdi_device_ids.size());
  } else {
    condition["status"] = "False";
    condition["reason"] = "DeviceNotInInventory";
    condition["message"] = "prepared, but the device is no longer discovered on this node";
  }
  entry["conditions"] = json::array({condition});
  entry["data"] = std::move(data);
  return entry;
}

json BuildClaimStatusApply(const ClaimRef& claim, const json& entries) {
  json metadata = {{"name", claim.name}, {"namespace", claim.namespace_name}};
  // The UID makes an apply for a deleted-and-recreated claim of the same name fail (409)
  // instead of writing device entries into the new claim.
  if (!claim.uid.empty()) metadata["uid"] = claim.uid;
  return {{"apiVersion", "resource.k8s.io/v1"},
          {"kind", "ResourceClaim"},
          {"metadata", std::move(metadata)},
          {"status", {{"devices", entries}}}};
}

class DeviceStatusWriter::Impl {
 public:
  Impl(DeviceStatusWriterOptions options, kube::Client& client, InventoryProvider inventory,
       FailureCallback on_failure)
      : options_(std::move(options)),
        client_(client),
        inventory_(std::move(inventory)),
        on_failure_(std::move(on_failure)),
        rng_(std::random_device{}()) {
    worker_ = std::thread([this] { Run(); });
  }

  ~Impl() { Stop(); }

  void Enqueue(const ClaimRef& claim, json entries) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    auto it = jobs_.find(claim.uid);
    if (it == jobs_.end() && jobs_.size() >= options_.max_pending) {
      Fail("queue_full", 0, "status queue full (" + std::to_string(options_.max_pending) +
                                " claims); status of claim " + claim.namespace_name + "/" +
                                claim.name + " not written");
      return;
    }
    Job& job = jobs_[claim.uid];
    job.claim = claim;
    job.entries = std::move(entries);
    job.attempt = 0;
    job.due = std::chrono::steady_clock::now();
    ++job.generation;
    cv_.notify_all();
  }

  std::shared_ptr<const discovery::Inventory> Inventory() const {
    return inventory_ ? inventory_() : nullptr;
  }

  const std::string& driver() const { return options_.driver_name; }

  bool WaitIdle(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return idle_cv_.wait_for(lock, timeout, [&] { return jobs_.empty() && !in_flight_; });
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ && !worker_.joinable()) return;
      stopping_ = true;
      jobs_.clear();
      cv_.notify_all();
    }
    if (worker_.joinable()) worker_.join();
    idle_cv_.notify_all();
  }

 private:
  struct Job {
    ClaimRef claim;
    json entries;
    int attempt = 0;
    SteadyTime due;
    uint64_t generation = 0;
  };

  // Called with mu_ held. Logs each reason's first occurrence at warn, later ones at debug:
  // a cluster without the feature would otherwise log on every prepare.
  void Fail(const std::string& reason, int, const std::string& message) {
    if (logged_.insert(reason).second) {
      spdlog::warn("claim device status: {} (further '{}' failures are logged at debug level)",
                   message, reason);
    } else {
      spdlog::debug("claim device status: {}", message);
    }
    if (on_failure_) on_failure_(reason);
  }

  std::chrono::milliseconds Backoff(int attempt) {
    int64_t ceiling = options_.initial_backoff.count();
    for (int i = 0; i < attempt && ceiling < options_.max_backoff.count(); ++i) ceiling *= 2;
    ceiling = std::min<int64_t>(ceiling, options_.max_backoff.count());
    return std::chrono::milliseconds(
        std::uniform_int_distribution<int64_t>(0, std::max<int64_t>(ceiling, 1))(rng_));
  }

  void Run() {
    // The writes are for people and operators, the prepares they follow are what the kubelet
    // waits on: in a CPU-starved driver pod (the chart requests 10m) the prepare threads go
    // first. Per-thread nice is a Linux property; failing to set it changes nothing else.
    pthread_setname_np(pthread_self(), kStatusThreadName);
    if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), kStatusThreadNice) != 0) {
      spdlog::debug("claim status: cannot lower the writer thread's priority: {}",
                    std::strerror(errno));
    }
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      if (jobs_.empty()) {
        idle_cv_.notify_all();
        cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
        continue;
      }
      auto next = std::min_element(jobs_.begin(), jobs_.end(), [](const auto& a, const auto& b) {
        return a.second.due < b.second.due;
      });
      if (next->second.due > std::chrono::steady_clock::now()) {
        cv_.wait_until(lock, next->second.due);
        continue;
      }
      const std::string uid = next->first;
      Job job = next->second;
      in_flight_ = true;
      lock.unlock();
      const std::string path = "/apis/resource.k8s.io/v1/namespaces/" + job.claim.namespace_name +
                               "/resourceclaims/" + job.claim.name + "/status";
      Result<json> applied = client_.Apply(path, BuildClaimStatusApply(job.claim, job.entries),
                                           options_.field_manager, /*force=*/true);
      lock.lock();
      in_flight_ = false;
      auto it = jobs_.find(uid);
      // A newer desired state arrived while writing: that one is written next.
      if (it == jobs_.end() || it->second.generation != job.generation) continue;
      if (applied.ok() || applied.status().code() == StatusCode::kNotFound) {
        jobs_.erase(it);
        continue;
      }
      const StatusCode code = applied.status().code();
      const std::string message = applied.status().message();
      if (code == StatusCode::kPermissionDenied) {
        Fail("forbidden", 403, message + " (RBAC for resourceclaims/status and "
                                         "resourceclaims/driver associated-node:patch missing?)");
        jobs_.erase(it);
      } else if (code == StatusCode::kInvalidArgument || code == StatusCode::kUnimplemented) {
        Fail(code == StatusCode::kUnimplemented ? "unsupported" : "invalid", 422,
             message + " (is DRAResourceClaimDeviceStatus enabled on the API server?)");
        jobs_.erase(it);
      } else if (++it->second.attempt >= options_.max_attempts) {
        Fail("gave_up", 0, message + " after " + std::to_string(options_.max_attempts) +
                               " attempts");
        jobs_.erase(it);
      } else {
        it->second.due = std::chrono::steady_clock::now() + Backoff(it->second.attempt);
      }
    }
  }

  const DeviceStatusWriterOptions options_;
  kube::Client& client_;
  const InventoryProvider inventory_;
  const FailureCallback on_failure_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::map<std::string, Job> jobs_;  // guarded by mu_
  std::set<std::string> logged_;     // guarded by mu_
  bool in_flight_ = false;           // guarded by mu_
  bool stopping_ = false;            // guarded by mu_
  std::mt19937_64 rng_;              // used by the worker only
  std::thread worker_;
};

DeviceStatusWriter::DeviceStatusWriter(DeviceStatusWriterOptions options, kube::Client& client,
                                       InventoryProvider inventory, FailureCallback on_failure)
    : impl_(std::make_unique<Impl>(std::move(options), client, std::move(inventory),
                                   std::move(on_failure))) {}

DeviceStatusWriter::~DeviceStatusWriter() = default;

void DeviceStatusWriter::Prepared(const ClaimRef& claim,
                                  const std::vector<PreparedDevice>& devices) {
  auto inventory = impl_->Inventory();
  const std::string now = UtcNow();
  json entries = json::array();
  for (const PreparedDevice& prepared : devices) {
    const discovery::EfaDevice* found = nullptr;
    if (inventory) {
      for (const auto& device : inventory->devices) {
        if (slices::DeviceName(device.pci_address) == prepared.device_name) found = &device;
      }
    }
    entries.push_back(BuildDeviceStatusEntry(impl_->driver(), prepared, found, now));
  }
  impl_->Enqueue(claim, std::move(entries));
}

void DeviceStatusWriter::Unprepared(const ClaimRef& claim) {
  impl_->Enqueue(claim, json::array());
}

bool DeviceStatusWriter::WaitIdle(std::chrono::milliseconds timeout) {
  return impl_->WaitIdle(timeout);
}

void DeviceStatusWriter::Stop() { impl_->Stop(); }

}  // namespace efadra::claims
