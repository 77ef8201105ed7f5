#include "efadra/slices/publisher.h"

#include <fmt/ranges.h>
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <utility>

#include "efadra/slices/resource_slices.h"

namespace efadra::slices {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string NameOf(const json& object) {
  const auto metadata = object.find("metadata");
  if (metadata == object.end() || !metadata->is_object()) return "";
  return metadata->value("name", "");
}

std::string StringAt(const json& object, const char* section, const char* key) {
  const auto it = object.find(section);
  if (it == object.end() || !it->is_object()) return "";
  const auto value = it->find(key);
  return value != it->end() && value->is_string() ? value->get<std::string>() : "";
}

const json& SpecOf(const json& slice) {
  static const json* const kEmpty = new json(json::object());
  const auto it = slice.find("spec");
  return it != slice.end() && it->is_object() ? *it : *kEmpty;
}

std::string PoolName(const json& slice) {
  const json& spec = SpecOf(slice);
  const auto pool = spec.find("pool");
  if (pool == spec.end() || !pool->is_object()) return "";
  return pool->value("name", "");
}

int64_t PoolGeneration(const json& slice) {
  const json& spec = SpecOf(slice);
  const auto pool = spec.find("pool");
  if (pool == spec.end() || !pool->is_object()) return 0;
  const auto generation = pool->find("generation");
  return generation != pool->end() && generation->is_number_integer() ? generation->get<int64_t>()
                                                                      : 0;
}

const json& DevicesOf(const json& slice) {
  static const json* const kEmpty = new json(json::array());
  const json& spec = SpecOf(slice);
  const auto it = spec.find("devices");
  return it != spec.end() && it->is_array() ? *it : *kEmpty;
}

std::set<std::string> DeviceNames(const json& slice) {
  std::set<std::string> names;
  for (const auto& device : DevicesOf(slice)) {
    if (device.is_object()) names.insert(device.value("name", ""));
  }
  return names;
}

// The parts of a spec the publisher owns (the Go helper's change detection: pool, node
// selection, devices in order). Fields the server adds or drops elsewhere do not count: a
// missing "devices" equals [] (omitempty since 1.35), and a taint's timeAdded is the server's.
json OwnedSpec(const json& slice) {
  const json& spec = SpecOf(slice);
  json devices = DevicesOf(slice);
  for (auto& device : devices) {
    if (!device.is_object() || !device.contains("taints") || !device["taints"].is_array()) continue;
    for (auto& taint : device["taints"]) {
      if (taint.is_object()) taint.erase("timeAdded");
    }
  }
  return json{{"driver", spec.value("driver", "")},
              {"nodeName", spec.value("nodeName", "")},
              {"pool", spec.value("pool", json::object())},
              {"devices", std::move(devices)}};
}

// Keeps the server's timeAdded of taints that stay (same device, key, value and effect), so an
// update for another reason does not make an old taint look new (as the Go helper does).
void KeepTaintTimes(const json& stored, json& updated) {
  std::map<std::string, const json*> stored_devices;
  for (const auto& device : DevicesOf(stored)) {
    if (device.is_object() && device.contains("name") && device["name"].is_string()) {
      stored_devices[device["name"].get<std::string>()] = &device;
    }
  }
  if (!updated["spec"].contains("devices")) return;
  for (auto& device : updated["spec"]["devices"]) {
    if (!device.contains("taints")) continue;
    auto it = stored_devices.find(device.value("name", ""));
    if (it == stored_devices.end() || !it->second->contains("taints")) continue;
    for (auto& taint : device["taints"]) {
      for (const auto& old : (*it->second)["taints"]) {
        if (!old.is_object() || !old.contains("timeAdded")) continue;
        if (old.value("key", "") == taint.value("key", "") &&
            old.value("value", "") == taint.value("value", "") &&
            old.value("effect", "") == taint.value("effect", "")) {
          taint["timeAdded"] = old["timeAdded"];
        }
      }
    }
  }
}

// The first device that `sent` published with allowMultipleAllocations and `stored` (the
// server's answer) has without it: the API server drops the field while the
// DRAConsumableCapacity feature gate is off. "" when none.
std::string SharingDroppedFrom(const json& sent, const json& stored) {
  std::map<std::string, const json*> stored_devices;
  for (const auto& device : DevicesOf(stored)) {
    if (device.is_object()) stored_devices[device.value("name", "")] = &device;
  }
  for (const auto& device : DevicesOf(sent)) {
    if (!device.is_object() || !device.value("allowMultipleAllocations", false)) continue;
    const std::string name = device.value("name", "");
    auto it = stored_devices.find(name);
    if (it != stored_devices.end() && !it->second->value("allowMultipleAllocations", false)) {
      return name;
    }
  }
  return "";
}

void SetGeneration(json& slice, int64_t generation) {
  slice["spec"]["pool"]["generation"] = generation;
}

}  // namespace

Publisher::Publisher(SliceApi& api, InventoryScanner scanner, PublisherOptions options)
    : api_(api), scanner_(std::move(scanner)), options_(std::move(options)) {
  write_tokens_ = std::max(1, options_.write_burst);
  write_tokens_at_ = Clock::now();
  if (!options_.publish_lock_path.empty()) {
    publish_lock_ = std::make_unique<PublishLock>(options_.publish_lock_path);
  }
}

Publisher::~Publisher() { Stop(); }

Status Publisher::Start() {
  if (!IsDriverName(options_.driver_name)) {
    return InvalidArgumentError(
        fmt::format("driver name \"{}\" is not a DNS subdomain of at most 63 characters",
                    options_.driver_name));
  }
  if (!IsPoolName(options_.node_name) || !IsDnsSubdomain(options_.node_name)) {
    return InvalidArgumentError(
        fmt::format("node name \"{}\" is not a DNS subdomain", options_.node_name));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (started_) return FailedPreconditionError("publisher already started");
  started_ = true;
  stopping_ = false;
  stop_flag_ = false;
  sync_thread_ = std::thread([this] { SyncLoop(); });
  watch_thread_ = std::thread([this] { WatchLoop(); });
  return Status::Ok();
}

void Publisher::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!started_) return;
    stopping_ = true;
    stop_flag_ = true;
  }
  wake_.notify_all();
  if (sync_thread_.joinable()) sync_thread_.join();
  if (watch_thread_.joinable()) watch_thread_.join();
  // The instance standing by may take over from here.
  if (publish_lock_) publish_lock_->Release();
  std::lock_guard<std::mutex> lock(mutex_);
  started_ = false;
}

void Publisher::RescanSoon() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto at = Clock::now() + options_.debounce;
    // Debounce: the rescan moves back with each event of a burst.
    rescan_at_ = at;
  }
  wake_.notify_all();
}

void Publisher::RepublishNow() { MarkDirty(); }

void Publisher::MarkDirty() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    dirty_ = true;
    retry_at_ = Clock::now();
  }
  wake_.notify_all();
}

bool Publisher::FirstPublishDone() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_.first_publish_done;
}

std::string Publisher::LastError() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_.last_error;
}

PublisherState Publisher::State() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_;
}

namespace {

// The managers of a slice none of whose writers is us (kFieldManager), comma-separated; nullopt
// when we wrote it, or when the server records no managers (then it cannot tell us apart).
std::optional<std::string> ForeignManagers(const json& slice) {
  const auto metadata = slice.find("metadata");
  if (metadata == slice.end() || !metadata->is_object()) return std::nullopt;
  const auto fields = metadata->find("managedFields");
  if (fields == metadata->end() || !fields->is_array() || fields->empty()) return std::nullopt;
  std::set<std::string> managers;
  for (const auto& entry : *fields) {
    if (!entry.is_object()) continue;
    const std::string manager = entry.value("manager", "");
    if (manager == kFieldManager) return std::nullopt;
    managers.insert(manager.empty() ? "an unnamed manager" : manager);
  }
  return fmt::format("{}", fmt::join(managers, ", "));
}

}  // namespace

SliceOptions Publisher::MakeSliceOptions(std::string node_uid) const {
  SliceOptions slice_options;
  slice_options.driver_name = options_.driver_name;
  slice_options.node_name = options_.node_name;
  slice_options.node_uid = std::move(node_uid);
  slice_options.max_devices_per_slice = options_.max_devices_per_slice;
  slice_options.taint_unhealthy = options_.taint_unhealthy;
  slice_options.numa_node_list = options_.numa_node_list;
  slice_options.shares_per_device = sharing_dropped_ ? 0 : options_.shares_per_device;
  return slice_options;
}

std::chrono::milliseconds Publisher::Backoff(int failures) {
  // Capped exponential with "equal jitter": half fixed, half random, so a fleet of nodes that
  // lost the API at the same moment does not come back in lockstep.
  const int64_t initial = std::max<int64_t>(1, options_.initial_backoff.count());
  int64_t base = initial;
  for (int i = 1; i < failures && base < options_.max_backoff.count(); ++i) base *= 2;
  base = std::min<int64_t>(base, options_.max_backoff.count());
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<int64_t> jitter(0, std::max<int64_t>(0, base / 2));
  return std::chrono::milliseconds(base - base / 2 + jitter(rng));
}

bool Publisher::WaitForStop(std::chrono::milliseconds delay) {
  std::unique_lock<std::mutex> lock(mutex_);
  return wake_.wait_for(lock, delay, [this] { return stopping_; });
}

void Publisher::LogNewWarnings(const std::vector<std::string>& warnings) {
  // The warnings quote sysfs text, which can change on every scan of a broken device; past
  // this many distinct ones the set starts over (a warning may then repeat, memory stays put).
  constexpr size_t kMaxLoggedWarnings = 256;
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& warning : warnings) {
    // Each distinct problem once per process, not once per sync.
    if (logged_warnings_.count(warning) > 0) continue;
    if (logged_warnings_.size() >= kMaxLoggedWarnings) logged_warnings_.clear();
    logged_warnings_.insert(warning);
    spdlog::warn("resource slices: {}", warning);
  }
}

void Publisher::RefillWriteTokensLocked(Clock::time_point now) {
  if (options_.write_refill.count() <= 0) return;
  const double refilled =
      std::chrono::duration<double>(now - write_tokens_at_) / options_.write_refill;
  write_tokens_ = std::min<double>(std::max(1, options_.write_burst), write_tokens_ + refilled);
  write_tokens_at_ = now;
}

void Publisher::SyncLoop() {
  auto next_scan = Clock::now();
  int failures = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    auto wake_at = next_scan;
    if (rescan_at_.has_value()) wake_at = std::min(wake_at, *rescan_at_);
    if (dirty_) wake_at = std::min(wake_at, retry_at_);
    wake_.wait_until(lock, wake_at, [&] {
      if (stopping_) return true;
      const auto now = Clock::now();
      return now >= next_scan || (rescan_at_.has_value() && now >= *rescan_at_) ||
             (dirty_ && now >= retry_at_);
    });
    if (stopping_) break;
    auto now = Clock::now();

    if (now >= next_scan || (rescan_at_.has_value() && now >= *rescan_at_)) {
      rescan_at_.reset();
      lock.unlock();
      Result<discovery::Inventory> scanned = scanner_();
      lock.lock();
      ++state_.scans;
      now = Clock::now();
      if (scanned.ok()) {
        next_scan = now + options_.resync;
        // Compare what would be published, not the raw inventory: fields that do not reach
        // the slice (cpulist, firmware) must not cause writes.
        json devices = json::array();
        for (const auto& slice : DesiredSlices(*scanned, MakeSliceOptions(""))) {
          for (const auto& device : DevicesOf(slice)) devices.push_back(device);
        }
        const bool changed = !inventory_.has_value() || devices != last_synced_devices_;
        inventory_ = std::move(scanned).value();
        if (changed && !dirty_) {
          dirty_ = true;
          retry_at_ = now;
        }
      } else {
        // Discovery failing is not "no EFA": keep what was published and try again soon.
        next_scan =
            now + std::min<std::chrono::milliseconds>(options_.resync, std::chrono::seconds(5));
        state_.last_error = scanned.status().WithContext("scan devices").message();
        spdlog::error("resource slices: {}", state_.last_error);
      }
    }

    if (dirty_ && now >= retry_at_ && inventory_.has_value() && publish_lock_) {
      lock.unlock();
      const Result<bool> acquired = publish_lock_->TryAcquire();
      lock.lock();
      if (!acquired.ok() || !*acquired) {
        if (!acquired.ok()) {
          state_.last_error = acquired.status().message();
          spdlog::warn("resource slices: {}", state_.last_error);
        } else if (!state_.standby) {
          spdlog::info("resource slices: another instance on this node holds {}; standing by "
                       "until it is gone",
                       publish_lock_->path());
        }
        state_.standby = acquired.ok();
        retry_at_ = Clock::now() + options_.publish_lock_retry;
        continue;
      }
      if (state_.standby) {
        spdlog::info("resource slices: took over publishing ({} is free)", publish_lock_->path());
      }
      state_.standby = false;
    }
    if (dirty_ && now >= retry_at_ && inventory_.has_value() &&
        options_.write_refill.count() > 0) {
      RefillWriteTokensLocked(now);
      if (write_tokens_ < 1) {
        // Held back, not dropped: dirty_ stays set and the sync runs, on the inventory of
        // that moment, once a token is there.
        ++state_.write_limited;
        retry_at_ = now + std::chrono::duration_cast<std::chrono::milliseconds>(
                              (1 - write_tokens_) * options_.write_refill) +
                    std::chrono::milliseconds(1);
        continue;
      }
    }
    if (dirty_ && now >= retry_at_ && inventory_.has_value()) {
      dirty_ = false;
      const discovery::Inventory inventory = *inventory_;
      const uint64_t writes_before = state_.writes;
      lock.unlock();
      const Status status = SyncOnce(inventory);
      lock.lock();
      // Only a sync that wrote costs a token: a list that finds the pool right is cheap.
      if (state_.writes != writes_before && options_.write_refill.count() > 0) {
        write_tokens_ -= 1;
      }
      if (status.ok()) {
        failures = 0;
      } else {
        ++failures;
        dirty_ = true;
        // A conflict means our view was stale: re-read at once (a few times), like
        // retry-on-conflict; everything else backs off.
        const bool conflict =
            status.code() == StatusCode::kAborted || status.code() == StatusCode::kAlreadyExists;
        retry_at_ = Clock::now() +
                    (conflict && failures <= 3 ? std::chrono::milliseconds(0) : Backoff(failures));
      }
    }
  }
}

Status Publisher::SyncOnce(const discovery::Inventory& inventory) {
  std::lock_guard<std::mutex> sync_lock(sync_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    syncing_ = true;
  }
  // Set when this sync learnt that the API server drops allowMultipleAllocations: the pool is
  // written again at once without it.
  bool sharing_just_dropped = false;
  Status status = [&]() -> Status {
    std::string node_uid;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      node_uid = node_uid_;
    }
    if (node_uid.empty()) {
      Result<json> node = api_.GetNode(options_.node_name);
      if (!node.ok()) {
        return node.status().WithContext(fmt::format("read Node {}", options_.node_name));
      }
      node_uid = StringAt(*node, "metadata", "uid");
      if (node_uid.empty()) {
        return InternalError(fmt::format("read Node {}: no metadata.uid", options_.node_name));
      }
      std::lock_guard<std::mutex> lock(mutex_);
      node_uid_ = node_uid;
    }

    std::vector<std::string> warnings;
    std::vector<json> desired = DesiredSlices(inventory, MakeSliceOptions(node_uid), &warnings);
    LogNewWarnings(warnings);

    Result<json> list = api_.ListSlices(options_.driver_name, options_.node_name);
    if (!list.ok()) return list.status().WithContext("list ResourceSlices");
    std::vector<json> existing;
    if (list->contains("items") && (*list)["items"].is_array()) {
      for (auto& item : (*list)["items"]) existing.push_back(std::move(item));
    }

    // While another driver of our name is registered on the node, its slice controller owns
    // the pool as much as we do (the kubelet plugin helper rewrites every slice of its driver
    // and node): writing would start a tug of war. Hands off until it is gone.
    if (options_.other_driver_registered && options_.other_driver_registered()) {
      return FailedPreconditionError(fmt::format(
          "another program is registered with the kubelet as DRA driver {} on node {}; "
          "publishing nothing until it is gone from the node",
          options_.driver_name, options_.node_name));
    }

    // Another program's slices of this pool (DRANET, or another copy of a dra.net driver) are
    // neither adopted nor deleted: two writers of one pool would hand out the same devices.
    std::vector<std::string> foreign;
    std::set<std::string> foreign_names;
    for (const auto& slice : existing) {
      if (auto writers = ForeignManagers(slice)) {
        foreign.push_back(fmt::format("{} (by {})", NameOf(slice), *writers));
        foreign_names.insert(NameOf(slice));
      }
    }
    // Reached only with no other driver registered (see above), when that can be told.
    const bool unclaimed = !foreign.empty() && options_.other_driver_registered != nullptr;
    if (!unclaimed) foreign_unclaimed_since_.reset();
    if (unclaimed && !foreign_unclaimed_since_) foreign_unclaimed_since_ = Clock::now();
    const bool leftovers =
        unclaimed && Clock::now() - *foreign_unclaimed_since_ >= options_.leftover_grace;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      state_.foreign_slices = leftovers ? std::vector<std::string>{} : foreign;
    }
    if (leftovers) {
      // Their writer has been gone from the kubelet long enough: they are deleted below with
      // the obsolete slices, and the pool is ours.
      spdlog::warn("resource slices: deleting {}, left by a driver no longer registered on this "
                   "node", fmt::join(foreign, ", "));
      foreign_unclaimed_since_.reset();
    } else if (!foreign.empty()) {
      return FailedPreconditionError(fmt::format(
          "ResourceSlices of driver {} on node {} were written by another program: {}; "
          "publishing nothing and leaving them alone until that program is gone from the node",
          options_.driver_name, options_.node_name, fmt::join(foreign, ", ")));
    }

    // Partition: slices of another pool (cannot normally exist for a node-local driver), older
    // generations and leftovers of another program are obsolete; the highest generation's
    // slices are current.
    std::vector<json> obsolete;
    std::vector<json> current;
    int64_t max_generation = -1;
    for (const auto& slice : existing) {
      if (PoolName(slice) == options_.node_name) {
        max_generation = std::max(max_generation, PoolGeneration(slice));
      }
    }
    for (auto& slice : existing) {
      if (PoolName(slice) != options_.node_name || PoolGeneration(slice) < max_generation ||
          foreign_names.count(NameOf(slice)) > 0) {
        obsolete.push_back(std::move(slice));
      } else {
        current.push_back(std::move(slice));
      }
    }

    // Match current slices to desired ones: identical device set first (works for slices
    // named by any helper version or by DRANET), then the index in our own names, then the
    // one-and-one case.
    std::vector<int> match(desired.size(), -1);
    std::vector<bool> used(current.size(), false);
    for (size_t d = 0; d < desired.size(); ++d) {
      const auto names = DeviceNames(desired[d]);
      for (size_t c = 0; c < current.size(); ++c) {
        if (!used[c] && DeviceNames(current[c]) == names) {
          match[d] = static_cast<int>(c);
          used[c] = true;
          break;
        }
      }
    }
    for (size_t d = 0; d < desired.size(); ++d) {
      if (match[d] >= 0) continue;
      for (size_t c = 0; c < current.size(); ++c) {
        const auto index = SliceIndexFromName(NameOf(current[c]));
        if (!used[c] && index.has_value() && *index == static_cast<int>(d)) {
          match[d] = static_cast<int>(c);
          used[c] = true;
          break;
        }
      }
    }
    if (desired.size() == 1 && current.size() == 1 && match[0] < 0) {
      match[0] = 0;
      used[0] = true;
    }
    bool dropped_current = false;
    for (size_t c = 0; c < current.size(); ++c) {
      if (!used[c]) {
        obsolete.push_back(std::move(current[c]));
        dropped_current = true;
      }
    }

    // Generation (contracts.md §4.4): keep when at most one slice changes and none is
    // created or removed, so the scheduler never sees a pool of mixed content under one
    // generation; otherwise bump and rewrite all.
    int64_t generation = std::max<int64_t>(max_generation, 0);
    int creates = 0;
    int updates = 0;
    for (size_t d = 0; d < desired.size(); ++d) {
      SetGeneration(desired[d], generation);
      if (match[d] < 0) {
        ++creates;
      } else if (OwnedSpec(current[match[d]]) != OwnedSpec(desired[d])) {
        ++updates;
      }
    }
    if (max_generation < 1 || creates > 0 || updates > 1 || dropped_current) {
      ++generation;
      for (auto& slice : desired) SetGeneration(slice, generation);
    }

    uint64_t writes = 0;
    std::map<std::string, std::string> known;
    auto record = [&](const json& stored) {
      known[NameOf(stored)] = StringAt(stored, "metadata", "resourceVersion");
      std::lock_guard<std::mutex> lock(mutex_);
      known_[NameOf(stored)] = StringAt(stored, "metadata", "resourceVersion");
    };
    auto count_writes = [&] {
      std::lock_guard<std::mutex> lock(mutex_);
      state_.writes += writes;
    };
    auto check_sharing_kept = [&](const json& sent, const json& stored) {
      const std::string device = SharingDroppedFrom(sent, stored);
      if (device.empty() || sharing_dropped_.exchange(true)) return;
      spdlog::warn(
          "resource slices: the API server dropped allowMultipleAllocations from device {} of "
          "ResourceSlice {}: its DRAConsumableCapacity feature gate is off, so EFAs are "
          "published for one claim at a time (--allow-multiple-allocations has no effect); "
          "restart the driver after turning the gate on",
          device, NameOf(stored));
      sharing_just_dropped = true;
      std::lock_guard<std::mutex> lock(mutex_);
      state_.sharing_dropped_by_api = true;
    };

    // Obsolete slices go first, so the pool is never over-complete.
    for (const auto& slice : obsolete) {
      const std::string name = NameOf(slice);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        known_.erase(name);
      }
      ++writes;
      const Status deleted = api_.DeleteSlice(name, StringAt(slice, "metadata", "uid"),
                                              StringAt(slice, "metadata", "resourceVersion"));
      if (!deleted.ok() && deleted.code() != StatusCode::kNotFound) {
        count_writes();
        return deleted.WithContext(fmt::format("delete obsolete ResourceSlice {}", name));
      }
      spdlog::info("resource slices: deleted obsolete slice {}", name);
    }
    for (size_t d = 0; d < desired.size(); ++d) {
      if (match[d] < 0) continue;
      const json& stored = current[match[d]];
      if (OwnedSpec(stored) == OwnedSpec(desired[d])) {
        record(stored);
        continue;
      }
      json updated = stored;
      updated["spec"] = desired[d]["spec"];
      KeepTaintTimes(stored, updated);
      if (desired[d]["metadata"].contains("ownerReferences")) {
        updated["metadata"]["ownerReferences"] = desired[d]["metadata"]["ownerReferences"];
      }
      ++writes;
      Result<json> result = api_.UpdateSlice(updated);
      if (!result.ok()) {
        count_writes();
        return result.status().WithContext(fmt::format("update ResourceSlice {}", NameOf(stored)));
      }
      record(*result);
      check_sharing_kept(updated, *result);
    }
    for (size_t d = 0; d < desired.size(); ++d) {
      if (match[d] >= 0) continue;
      ++writes;
      Result<json> result = api_.CreateSlice(desired[d]);
      if (!result.ok()) {
        count_writes();
        return result.status().WithContext(fmt::format(
            "create ResourceSlice {}", desired[d]["metadata"].value("generateName", "")));
      }
      record(*result);
      check_sharing_kept(desired[d], *result);
    }

    json all_devices = json::array();
    int device_count = 0;
    for (const auto& slice : desired) {
      for (const auto& device : DevicesOf(slice)) {
        all_devices.push_back(device);
        ++device_count;
      }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    state_.writes += writes;
    known_ = std::move(known);
    last_synced_devices_ = std::move(all_devices);
    if (writes > 0 || !state_.first_publish_done) {
      spdlog::info("resource slices: pool {} generation {}: {} slice(s), {} device(s), {} write(s)",
                   options_.node_name, generation, desired.size(), device_count, writes);
    }
    // In the same critical section as first_publish_done, so no reader sees the first
    // publish done next to the error of the attempt before it.
    state_.first_publish_done = true;
    state_.last_error.clear();
    state_.slices_published = static_cast<int>(desired.size());
    state_.devices_published = device_count;
    state_.pool_generation = generation;
    return Status::Ok();
  }();

  bool recheck = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    syncing_ = false;
    recheck = relisted_during_sync_;
    relisted_during_sync_ = false;
    for (const auto& event : pending_events_) {
      if (DiffersLocked(event.type, event.name, event.resource_version)) recheck = true;
    }
    pending_events_.clear();
  }
  if (recheck || sharing_just_dropped) MarkDirty();
  std::lock_guard<std::mutex> lock(mutex_);
  ++state_.syncs;
  wake_.notify_all();  // the watch waits for the first sync
  if (status.ok()) {
    state_.last_error.clear();
  } else {
    ++state_.sync_failures;
    const std::string message = status.WithContext("publish ResourceSlices").message();
    if (message != state_.last_error) spdlog::warn("{}", message);
    state_.last_error = message;
  }
  return status;
}

bool Publisher::DiffersLocked(const std::string& type, const std::string& name,
                              const std::string& resource_version) const {
  const auto it = known_.find(name);
  if (type == "DELETED") return it != known_.end();
  if (type == "ADDED" || type == "MODIFIED") {
    // Our own writes come back as events carrying the version we recorded.
    return it == known_.end() || it->second != resource_version;
  }
  return false;
}

bool Publisher::DiffersFromKnown(const std::string& type, const json& object) {
  const std::string name = NameOf(object);
  const std::string version = StringAt(object, "metadata", "resourceVersion");
  std::lock_guard<std::mutex> lock(mutex_);
  if (syncing_) {
    // The event may be our own write whose response has not been recorded yet: judge it once
    // the sync is over, instead of paying for a second sync.
    pending_events_.push_back({type, name, version});
    return false;
  }
  return DiffersLocked(type, name, version);
}

void Publisher::WatchLoop() {
  // The first list waits for the first sync to finish: a list taken while a sync writes cannot
  // be judged against known_ (see relisted_during_sync_), which costs a second sync, and before
  // the first sync there is nothing of ours to watch over.
  {
    std::unique_lock<std::mutex> lock(mutex_);
    wake_.wait(lock, [this] { return stopping_ || state_.syncs > 0; });
    if (stopping_) return;
  }
  int failures = 0;
  while (!stop_flag_) {
    Result<json> list = api_.ListSlices(options_.driver_name, options_.node_name);
    if (!list.ok()) {
      ++failures;
      if (WaitForStop(Backoff(failures))) return;
      continue;
    }
    // Anything that changed while we were not watching triggers a sync.
    bool differs = false;
    std::set<std::string> listed;
    if (list->contains("items") && (*list)["items"].is_array()) {
      for (const auto& item : (*list)["items"]) {
        listed.insert(NameOf(item));
        if (DiffersFromKnown("MODIFIED", item)) differs = true;
      }
    }
    bool synced_before = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      synced_before = state_.first_publish_done;
      // While a sync runs, known_ is in flux: the pending events cover what the sync wrote
      // and comes to see, and the pool is checked again after it for what it missed.
      if (syncing_) {
        relisted_during_sync_ = true;
      } else {
        for (const auto& [name, version] : known_) {
          if (listed.count(name) == 0) differs = true;
        }
      }
    }
    if (differs && synced_before) MarkDirty();

    std::string resource_version = StringAt(*list, "metadata", "resourceVersion");
    const auto watch_start = Clock::now();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++state_.watches;
    }
    const Status watched = api_.WatchSlices(
        options_.driver_name, options_.node_name, resource_version,
        [&](const std::string& type, const json& object) {
          if (type == "ERROR") return false;
          const std::string version = StringAt(object, "metadata", "resourceVersion");
          if (!version.empty()) resource_version = version;
          if (type != "BOOKMARK" && DiffersFromKnown(type, object)) MarkDirty();
          return true;
        },
        stop_flag_);
    if (stop_flag_) return;
    if (watched.ok() || watched.code() == StatusCode::kOutOfRange) {
      failures = 0;
      // Re-list and re-watch, but not sooner than min_rewatch_interval after this watch began
      // (plus jitter, so nodes whose watches the server ended together come back spread).
      const int64_t min_ms = options_.min_rewatch_interval.count();
      if (min_ms > 0) {
        thread_local std::mt19937_64 rng{std::random_device{}()};
        const auto jitter = std::chrono::milliseconds(
            std::uniform_int_distribution<int64_t>(0, std::max<int64_t>(0, min_ms / 2))(rng));
        const auto earliest = watch_start + options_.min_rewatch_interval + jitter;
        const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
            earliest - Clock::now());
        if (wait.count() > 0 && WaitForStop(wait)) return;
      }
      continue;
    }
    ++failures;
    if (WaitForStop(Backoff(failures))) return;
  }
}

}  // namespace efadra::slices
