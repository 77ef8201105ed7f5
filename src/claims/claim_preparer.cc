#include "efadra/claims/claim_preparer.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "efadra/claims/allocation.h"
#include "efadra/claims/cdi_spec.h"
#include "efadra/claims/checkpoint.h"
#include "efadra/slices/resource_slices.h"

namespace efadra::claims {
namespace {

constexpr char kCheckpointDir[] = "/checkpoints";
constexpr size_t kMaxNameLength = 253;  // DNS subdomain, the longest a claim name can be
constexpr size_t kMaxUidLength = 128;   // UIDs are 36-char UUIDs; leave room, refuse garbage

std::string Describe(const ClaimRef& claim) {
  return "claim " + claim.namespace_name + "/" + claim.name + " (uid " + claim.uid + ")";
}

// The UID names files (checkpoint, CDI spec), so it must never contain '/' or start with '.'.
Status ValidateClaimRef(const ClaimRef& claim) {
  if (claim.uid.empty()) return InvalidArgumentError("claim with empty UID");
  if (claim.uid.size() > kMaxUidLength) {
    return InvalidArgumentError("claim UID longer than " + std::to_string(kMaxUidLength));
  }
  for (char c : claim.uid) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return InvalidArgumentError("claim UID \"" + claim.uid + "\" has invalid characters");
  }
  if (claim.namespace_name.empty() || claim.name.empty()) {
    return InvalidArgumentError(Describe(claim) + ": namespace and name are required");
  }
  if (claim.namespace_name.size() > 63 || claim.name.size() > kMaxNameLength) {
    return InvalidArgumentError(Describe(claim) + ": namespace or name too long");
  }
  return Status::Ok();
}

std::string CheckpointPath(std::string_view uid) {
  return std::string(kCheckpointDir) + "/" + std::string(uid) + ".json";
}

}  // namespace

class ClaimPreparer::Impl {
 public:
  Impl(PreparerOptions options, kube::Client& client, core::Filesystem& cdi_fs,
       core::Filesystem& state_fs, InventoryProvider inventory)
      : options_(std::move(options)),
        client_(client),
        cdi_fs_(cdi_fs),
        state_fs_(state_fs),
        inventory_(std::move(inventory)) {}

  Status Start(std::vector<std::string>* warnings) {
    EFADRA_RETURN_IF_ERROR(state_fs_.CreateDirectories(kCheckpointDir).WithContext("state dir"));
    EFADRA_RETURN_IF_ERROR(cdi_fs_.CreateDirectories("/").WithContext("CDI dir"));
    RemoveOurTemporaryCdiFiles();
    EFADRA_RETURN_IF_ERROR(SyncWithDisk(warnings, /*remove_temporaries=*/true));
    spdlog::info("claim preparer ready: {} prepared claim(s) restored from {}",
                 PreparedClaimUids().size(), state_fs_.HostPath(kCheckpointDir));
    return Status::Ok();
  }

  // A crash in the middle of an atomic write leaves ".<spec file>.tmp.*" behind. Runtimes
  // ignore them, but they would pile up; other drivers' files are left alone.
  void RemoveOurTemporaryCdiFiles() {
    auto names = cdi_fs_.ListDir("/");
    if (!names.ok()) return;
    const std::string any_spec = CdiSpecFileName(options_.driver_name, "");  // "<kind>_.json"
    const std::string prefix = "." + any_spec.substr(0, any_spec.size() - 5);
    for (const std::string& name : *names) {
      if (name.rfind(prefix, 0) == 0 && name.find(".tmp") != std::string::npos) {
        cdi_fs_.RemoveFile("/" + name).IgnoreError();
      }
    }
  }

  // Makes the in-memory state equal to the checkpoint files: restores claims whose file is
  // new (another instance prepared them) and forgets claims whose file is gone (another
  // instance unprepared them). Callers hold the cross-process lock, if any.
  Status SyncWithDisk(std::vector<std::string>* warnings, bool remove_temporaries) {
    EFADRA_ASSIGN_OR_RETURN(auto names, state_fs_.ListDir(kCheckpointDir));
    auto warn = [&](const std::string& message) {
      spdlog::warn("{}", message);
      if (warnings != nullptr) warnings->push_back(message);
    };
    std::set<std::string> on_disk;
    for (const std::string& name : names) {
      const std::string path = std::string(kCheckpointDir) + "/" + name;
      if (name.front() == '.') {  // a temporary file left by a crash mid-write
        if (remove_temporaries) state_fs_.RemoveFile(path).IgnoreError();
        continue;
      }
      if (name.size() < 6 || name.substr(name.size() - 5) != ".json") continue;
      const std::string uid = name.substr(0, name.size() - 5);
      on_disk.insert(uid);
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (prepared_.count(uid) != 0) continue;  // known already
      }
      auto content = state_fs_.ReadFile(path);
      if (!content.ok()) {
        warn("skipping checkpoint: " + content.status().message());
        continue;
      }
      auto checkpoint = ParseCheckpoint(*content, state_fs_.HostPath(path));
      if (!checkpoint.ok()) {
        warn("skipping " + checkpoint.status().message());
        continue;
      }
      Status restored = Restore(std::move(*checkpoint));
      if (!restored.ok()) warn(restored.message());
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = prepared_.begin(); it != prepared_.end();) {
      if (on_disk.count(it->first) != 0) {
        ++it;
        continue;
      }
      const std::string uid = it->first;
      ++it;
      ForgetUid(uid);
    }
    return Status::Ok();
  }

  PrepareResult PrepareOne(const ClaimRef& ref) {
    if (Status valid = ValidateClaimRef(ref); !valid.ok()) return {valid, {}};
    if (auto done = PreparedAnswer(ref)) return *std::move(done);

    // The API round trip happens outside every lock: it is the slow part.
    auto claim = client_.Get("/apis/resource.k8s.io/v1/namespaces/" + ref.namespace_name +
                             "/resourceclaims/" + ref.name);
    if (!claim.ok()) return {claim.status().WithContext("prepare " + Describe(ref)), {}};
    // Defensive reads: a wrong type from the API must become an error, never an exception.
    std::string uid;
    if (auto metadata = claim->find("metadata");
        claim->is_object() && metadata != claim->end() && metadata->is_object()) {
      auto it = metadata->find("uid");
      if (it != metadata->end() && it->is_string()) uid = it->get<std::string>();
    }
    if (uid != ref.uid) {
      return {FailedPreconditionError("prepare " + Describe(ref) + ": the API has UID \"" + uid +
                                      "\" for this claim (deleted and re-created?)"),
              {}};
    }
    auto results = OurAllocationResults(*claim, Describe(ref), options_.driver_name,
                                        options_.node_name);
    if (!results.ok()) return {results.status().WithContext("prepare"), {}};
    if (Status config = CheckOpaqueConfig(*claim, Describe(ref), options_.driver_name, *results);
        !config.ok()) {
      return {config.WithContext("prepare"), {}};
    }

    ClaimLock claim_lock(*this, ref.uid);
    if (auto done = PreparedAnswer(ref)) return *std::move(done);  // a concurrent call won
    return PrepareLocked(ref, *results);
  }

  Status UnprepareOne(const ClaimRef& ref) {
    if (Status valid = ValidateClaimRef(ref); !valid.ok()) return valid;
    ClaimLock claim_lock(*this, ref.uid);
    std::optional<ClaimCheckpoint> checkpoint;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = prepared_.find(ref.uid);
      if (it == prepared_.end()) return Status::Ok();  // never prepared, or already unprepared
      checkpoint = it->second;
    }
    // Spec first, checkpoint last: if we crash in between, the checkpoint still says what to
    // clean up and a repeated unprepare finishes the job.
    EFADRA_RETURN_IF_ERROR(
        cdi_fs_.RemoveFile("/" + CdiSpecFileName(options_.driver_name, ref.uid))
            .WithContext("unprepare " + Describe(ref) + ": remove CDI spec"));
    EFADRA_RETURN_IF_ERROR(state_fs_.RemoveFile(CheckpointPath(ref.uid))
                               .WithContext("unprepare " + Describe(ref) + ": remove checkpoint"));
    std::lock_guard<std::mutex> lock(mu_);
    Forget(*checkpoint);
    spdlog::info("unprepared {}", Describe(ref));
    return Status::Ok();
  }

  std::vector<std::string> PreparedClaimUids() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> uids;
    for (const auto& [uid, checkpoint] : prepared_) uids.push_back(uid);
    return uids;
  }

 private:
  // The stored answer for an already prepared claim, making sure its CDI spec still exists
  // (/var/run/cdi may have been wiped). nullopt when the claim is not prepared.
  std::optional<PrepareResult> PreparedAnswer(const ClaimRef& ref) {
    ClaimCheckpoint checkpoint;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = prepared_.find(ref.uid);
      if (it == prepared_.end()) return std::nullopt;
      checkpoint = it->second;
    }
    if (Status spec = EnsureSpec(checkpoint); !spec.ok()) {
      return PrepareResult{spec.WithContext("prepare " + Describe(ref)), {}};
    }
    return PrepareResult{Status::Ok(), checkpoint.devices};
  }

  PrepareResult PrepareLocked(const ClaimRef& ref, const std::vector<AllocationResult>& results) {
    auto inventory = inventory_();
    std::map<std::string, const discovery::EfaDevice*> by_name;
    for (const auto& device : inventory->devices) {
      by_name[slices::DeviceName(device.pci_address)] = &device;
    }
    ClaimCheckpoint checkpoint;
    checkpoint.claim = ref;
    checkpoint.boot_id = options_.boot_id;
    std::vector<CdiDeviceInput> cdi_inputs;
    for (const AllocationResult& result : results) {
      auto it = by_name.find(result.device);
      if (it == by_name.end()) {
        return {NotFoundError("prepare " + Describe(ref) + ": device " + result.device +
                              " is not on node " + options_.node_name),
                {}};
      }
      PreparedDevice prepared;
      prepared.request_names = {BaseRequestName(result.request)};
      prepared.pool_name = options_.node_name;
      prepared.device_name = result.device;
      prepared.cdi_device_ids = {CdiDeviceId(options_.driver_name, ref.uid, result.device)};
      prepared.share_id = result.share_id;
      checkpoint.devices.push_back(std::move(prepared));
      if (std::none_of(cdi_inputs.begin(), cdi_inputs.end(),
                       [&](const CdiDeviceInput& in) { return in.device_name == result.device; })) {
        cdi_inputs.push_back({result.device, it->second});
      }
    }
    if (!cdi_inputs.empty()) {
      checkpoint.cdi_spec = BuildCdiSpec(options_.driver_name, ref.uid, cdi_inputs,
                                         options_.dev_root, RdmaCm());
    }

    // Reserve the devices before touching the disk, so two claims can never both get one.
    std::set<std::string> exclusive;
    for (const AllocationResult& result : results) {
      if (!result.admin_access) exclusive.insert(result.device);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const std::string& device : exclusive) {
        auto owner = owners_.find(device);
        if (owner != owners_.end() && owner->second != ref.uid) {
          const ClaimRef& other = prepared_.at(owner->second).claim;
          return {FailedPreconditionError("prepare " + Describe(ref) + ": device " + device +
                                          " is already prepared for " + Describe(other)),
                  {}};
        }
      }
      checkpoint.claim = ref;
      Remember(checkpoint, exclusive);
    }

    Status written = state_fs_.WriteFileAtomic(CheckpointPath(ref.uid),
                                               SerializeCheckpoint(checkpoint), {.durable = true});
    if (written.ok()) written = EnsureSpec(checkpoint, /*force=*/true);
    if (!written.ok()) {
      // Nothing may stay half-prepared: drop the reservation and whatever reached the disk.
      state_fs_.RemoveFile(CheckpointPath(ref.uid)).IgnoreError();
      std::lock_guard<std::mutex> lock(mu_);
      Forget(checkpoint);
      return {written.WithContext("prepare " + Describe(ref)), {}};
    }
    spdlog::info("prepared {}: {} device(s)", Describe(ref), checkpoint.devices.size());
    return {Status::Ok(), checkpoint.devices};
  }

  // Writes the claim's CDI spec when it is missing (or always, with force).
  Status EnsureSpec(const ClaimCheckpoint& checkpoint, bool force = false) {
    if (checkpoint.cdi_spec.is_null()) return Status::Ok();
    const std::string path = "/" + CdiSpecFileName(options_.driver_name, checkpoint.claim.uid);
    if (!force && cdi_fs_.Exists(path)) return Status::Ok();
    // Not durable: /var/run/cdi is a tmpfs and the checkpoint can always rebuild it.
    return cdi_fs_.WriteFileAtomic(path, checkpoint.cdi_spec.dump(2) + "\n", {.durable = false})
        .WithContext("write CDI spec");
  }

  // Re-registers a checkpoint found at start; rewrites its spec after a reboot or a wipe.
  Status Restore(ClaimCheckpoint checkpoint) {
    const std::string what = "restore " + Describe(checkpoint.claim);
    if (Status valid = ValidateClaimRef(checkpoint.claim); !valid.ok()) {
      return valid.WithContext(what);
    }
    const bool rebooted = checkpoint.boot_id != options_.boot_id;
    if (rebooted) {
      checkpoint.boot_id = options_.boot_id;
      EFADRA_RETURN_IF_ERROR(
          state_fs_
              .WriteFileAtomic(CheckpointPath(checkpoint.claim.uid),
                               SerializeCheckpoint(checkpoint), {.durable = true})
              .WithContext(what));
    }
    EFADRA_RETURN_IF_ERROR(EnsureSpec(checkpoint, rebooted).WithContext(what));
    std::set<std::string> exclusive;
    for (const auto& device : checkpoint.devices) exclusive.insert(device.device_name);
    std::lock_guard<std::mutex> lock(mu_);
    Remember(checkpoint, exclusive);
    return Status::Ok();
  }

  std::optional<HostCharDevice> RdmaCm() const {
    // dev_root is a host path; a fresh rooted view keeps this independent of the CDI root.
    auto dev = core::NewPosixFilesystem(options_.dev_root);
    auto info = dev->Stat("/infiniband/rdma_cm");
    if (!info.ok() || info->type != core::FileType::kCharDevice) return std::nullopt;
    return HostCharDevice{info->device_major, info->device_minor};
  }

  // Requires mu_.
  void Remember(const ClaimCheckpoint& checkpoint, const std::set<std::string>& exclusive) {
    prepared_[checkpoint.claim.uid] = checkpoint;
    for (const std::string& device : exclusive) owners_[device] = checkpoint.claim.uid;
  }

  // Requires mu_.
  void Forget(const ClaimCheckpoint& checkpoint) { ForgetUid(checkpoint.claim.uid); }

  // Requires mu_.
  void ForgetUid(const std::string& uid) {
    for (auto it = owners_.begin(); it != owners_.end();) {
      it = it->second == uid ? owners_.erase(it) : std::next(it);
    }
    prepared_.erase(uid);
  }

  // Serialises work on one claim: held for a whole prepare or unprepare of that claim. The
  // entry for a claim exists only while some call holds or waits for it, so a node that sees
  // millions of claims over months keeps no memory for them (the soak bench showed ~190 bytes
  // per claim ever seen when entries were kept).
  struct PerClaim {
    std::mutex mutex;
    int users = 0;  // ClaimLocks holding or waiting; guarded by mu_
  };
  class ClaimLock {
   public:
    ClaimLock(Impl& impl, const std::string& uid) : impl_(impl), uid_(uid) {
      {
        std::lock_guard<std::mutex> lock(impl_.mu_);
        auto& slot = impl_.claim_locks_[uid_];
        if (!slot) slot = std::make_unique<PerClaim>();
        ++slot->users;
        entry_ = slot.get();
      }
      entry_->mutex.lock();
    }
    ~ClaimLock() {
      entry_->mutex.unlock();
      std::lock_guard<std::mutex> lock(impl_.mu_);
      if (--entry_->users == 0) impl_.claim_locks_.erase(uid_);
    }
    ClaimLock(const ClaimLock&) = delete;
    ClaimLock& operator=(const ClaimLock&) = delete;

   private:
    Impl& impl_;
    const std::string uid_;
    PerClaim* entry_ = nullptr;
  };

  const PreparerOptions options_;
  kube::Client& client_;
  core::Filesystem& cdi_fs_;
  core::Filesystem& state_fs_;
  const InventoryProvider inventory_;

  mutable std::mutex mu_;
  std::unordered_map<std::string, ClaimCheckpoint> prepared_;  // by claim UID; guarded by mu_
  std::unordered_map<std::string, std::string> owners_;  // device -> claim UID; guarded by mu_
  std::unordered_map<std::string, std::unique_ptr<PerClaim>> claim_locks_;  // guarded by mu_
};

ClaimPreparer::ClaimPreparer(PreparerOptions options, kube::Client& client,
                             core::Filesystem& cdi_fs, core::Filesystem& state_fs,
                             InventoryProvider inventory, core::Clock& /*clock*/)
    : impl_(std::make_unique<Impl>(std::move(options), client, cdi_fs, state_fs,
                                   std::move(inventory))) {}

ClaimPreparer::~ClaimPreparer() = default;

Status ClaimPreparer::Start(std::vector<std::string>* warnings) { return impl_->Start(warnings); }

std::map<std::string, PrepareResult> ClaimPreparer::Prepare(const std::vector<ClaimRef>& claims) {
  std::vector<ClaimRef> unique;
  std::set<std::string> seen;
  for (const ClaimRef& claim : claims) {
    if (seen.insert(claim.uid).second) unique.push_back(claim);
  }
  std::vector<PrepareResult> results(unique.size());
  // Claims of one request are independent: a few workers prepare them concurrently so one slow
  // API GET does not delay the others, without a thread per claim.
  constexpr size_t kMaxWorkers = 8;
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < unique.size(); i = next++) results[i] = impl_->PrepareOne(unique[i]);
  };
  std::vector<std::thread> workers;
  for (size_t i = 1; i < std::min(unique.size(), kMaxWorkers); ++i) workers.emplace_back(work);
  work();
  for (auto& worker : workers) worker.join();
  std::map<std::string, PrepareResult> out;
  for (size_t i = 0; i < unique.size(); ++i) out[unique[i].uid] = std::move(results[i]);
  return out;
}

std::map<std::string, Status> ClaimPreparer::Unprepare(const std::vector<ClaimRef>& claims) {
  std::map<std::string, Status> out;
  for (const ClaimRef& claim : claims) {
    if (out.count(claim.uid) == 0) out[claim.uid] = impl_->UnprepareOne(claim);
  }
  return out;
}

Status ClaimPreparer::SyncWithDisk(std::vector<std::string>* warnings) {
  return impl_->SyncWithDisk(warnings, /*remove_temporaries=*/false);
}

std::vector<std::string> ClaimPreparer::PreparedClaimUids() const {
  return impl_->PreparedClaimUids();
}

}  // namespace efadra::claims
