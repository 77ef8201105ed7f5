#include "efadra/claims/claim_preparer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "efadra/claims/allocation.h"
#include "efadra/claims/cdi_spec.h"
#include "efadra/claims/checkpoint.h"
#include "efadra/discovery/sysfs_values.h"
#include "efadra/slices/api_limits.h"
#include "efadra/slices/resource_slices.h"
#include "shared_state_lock.h"

namespace efadra::claims {
namespace {

constexpr char kCheckpointDir[] = "/checkpoints";
// Written and removed by CheckStateDir; a leading dot, so a reader of the directory skips it
// like any temporary file.
constexpr char kProbeFile[] = "/checkpoints/.write-probe";
constexpr std::chrono::seconds kProbeInterval{1};
constexpr char kRdmaCmSysfs[] = "/class/misc/rdma_cm/dev";
constexpr char kRdmaCmDev[] = "/infiniband/rdma_cm";
// gdrdrv registers a char major (dynamic) but no device class, so sysfs has no dev file for it;
// its loader (GDRCopy's insmod script or package) creates this node from /proc/devices.
constexpr char kGdrdrvDev[] = "/gdrdrv";
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
  // Both become API path segments; the kubelet passes them through unchecked, and a "/" or
  // ".." would address another object.
  if (!slices::IsDnsLabel(claim.namespace_name)) {
    return InvalidArgumentError(Describe(claim) +
                                ": namespace is not a DNS label (RFC 1123: at most 63 of "
                                "[a-z0-9-], alphanumeric at both ends)");
  }
  if (!slices::IsDnsSubdomain(claim.name)) {
    return InvalidArgumentError(Describe(claim) +
                                ": name is not a DNS subdomain (RFC 1123: at most 253 "
                                "characters, dot-separated DNS labels)");
  }
  return Status::Ok();
}

std::string CheckpointPath(std::string_view uid) {
  return std::string(kCheckpointDir) + "/" + std::string(uid) + ".json";
}

// Reservation keys: a device is held by its identity and by the char device number its spec
// injects. The number matters on its own: after a renumbering while claims stay prepared, an
// older spec still names a number the kernel now gives another device.
std::string DeviceKey(const std::string& device_name) { return "device " + device_name; }
// A share of a device that allows multiple allocations (KEP-5075) holds only its own share:
// the scheduler gives every allocation of such a device a distinct shareID, so shares never
// exclude each other, and one share's unprepare releases only its key.
std::string ShareKey(const std::string& device_name, const std::string& share_id) {
  return "device " + device_name + " share " + share_id;
}
std::string NumberKey(const discovery::CharDeviceNumber& number) {
  return "char device " + std::to_string(number.major) + ":" + std::to_string(number.minor);
}

// A checkpoint device in `inventory`: by PCI address, the identity that survives renumbering;
// a schema-1 file has only the name, which is derived from the address anyway. Null if absent.
const discovery::EfaDevice* FindDevice(const CheckpointDevice& device,
                                       const discovery::Inventory& inventory) {
  for (const auto& candidate : inventory.devices) {
    const bool same = device.pci_address.empty()
                          ? slices::DeviceName(candidate.pci_address) == device.device_name
                          : candidate.pci_address == device.pci_address;
    if (same) return &candidate;
  }
  return nullptr;
}

// What a claim's checkpoint resolves to on the current inventory: its answer, its spec and
// the keys it holds exclusively.
struct Resolved {
  std::vector<PreparedDevice> answer;
  nlohmann::json spec;  // null when the claim has no devices of ours (no spec file)
  std::set<std::string> exclusive_keys;
  std::vector<std::string> pci_addresses;  // per checkpoint device, as found now
};

}  // namespace

class ClaimPreparer::Impl {
 public:
  Impl(PreparerOptions options, kube::Client& client, core::Filesystem& cdi_fs,
       core::Filesystem& state_fs, InventoryProvider inventory)
      : options_(std::move(options)),
        client_(client),
        cdi_fs_(cdi_fs),
        state_fs_(state_fs),
        inventory_(std::move(inventory)),
        sysfs_(core::NewPosixFilesystem(options_.sysfs_root)),
        dev_(core::NewPosixFilesystem(options_.dev_root)),
        shared_lock_(options_.shared_lock_path.empty()
                         ? nullptr
                         : std::make_unique<SharedStateLock>(options_.shared_lock_path)) {}

  // Holds the shared lock for its scope in rolling-update mode; a no-op otherwise.
  class Section {
   public:
    Section(Impl& impl, std::chrono::steady_clock::time_point deadline) : impl_(impl) {
      if (impl_.shared_lock_ == nullptr) return;
      status_ = impl_.shared_lock_->Lock(deadline);
      held_ = status_.ok();
    }
    // Only when the lock is free now (the health probe must never wait).
    struct TryOnly {};
    Section(Impl& impl, TryOnly) : impl_(impl) {
      if (impl_.shared_lock_ == nullptr) return;
      held_ = impl_.shared_lock_->TryLock();
      if (!held_) status_ = UnavailableError("the shared lock is busy");
    }
    ~Section() {
      if (held_) impl_.shared_lock_->Unlock();
    }
    Section(const Section&) = delete;
    Section& operator=(const Section&) = delete;
    const Status& status() const { return status_; }

   private:
    Impl& impl_;
    Status status_;
    bool held_ = false;
  };

  Status Start(std::vector<std::string>* warnings) {
    // Before anything touches the shared directories: the twin may be writing in them.
    Section section(*this, kNoDeadline);
    EFADRA_RETURN_IF_ERROR(section.status());
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

  // Re-creates the checkpoint directory when it is gone (the plugin dir that holds it was
  // wiped) and writes the checkpoints of every claim this process knows into it again: those
  // claims are still prepared (their containers run, the kubelet will unprepare them), so
  // their devices must stay reserved, and the twin must see them too. Callers hold the
  // shared lock, if any.
  Status EnsureCheckpointDir() {
    if (state_fs_.Exists(kCheckpointDir)) return Status::Ok();
    Status created = state_fs_.CreateDirectories(kCheckpointDir).WithContext("state dir");
    if (!created.ok()) return RecordWrite(created);
    std::vector<ClaimCheckpoint> known;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [uid, prepared] : prepared_) known.push_back(prepared.checkpoint);
    }
    spdlog::warn("checkpoint directory {} was gone (plugin directory wiped?); re-created with "
                 "the {} claim(s) prepared now",
                 state_fs_.HostPath(kCheckpointDir), known.size());
    for (const ClaimCheckpoint& checkpoint : known) {
      Status written = state_fs_.WriteFileAtomic(CheckpointPath(checkpoint.claim.uid),
                                                 SerializeCheckpoint(checkpoint),
                                                 {.durable = true});
      if (!written.ok()) return RecordWrite(written.WithContext("re-create checkpoint"));
    }
    return Status::Ok();
  }

  // Remembers the outcome of a write to the state directory for CheckStateDir.
  Status RecordWrite(Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    last_write_ = status;
    return status;
  }

  Status CheckStateDir() {
    // Anyone on the node network can ask /healthz: at most one probe write per interval. A
    // wiped directory is repaired at every call (one stat while it is there).
    const auto now = std::chrono::steady_clock::now();
    bool probe_now = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      probe_now = now - last_probe_ >= kProbeInterval;
      if (probe_now) last_probe_ = now;
    }
    Section section(*this, Section::TryOnly{});
    if (section.status().ok()) {
      Status probe = EnsureCheckpointDir();  // records its own failure
      if (probe.ok() && probe_now) {
        probe = state_fs_.WriteFileAtomic(kProbeFile, "", {.durable = false});
        if (probe.ok()) probe = state_fs_.RemoveFile(kProbeFile);
        probe = probe.WithContext("state dir " + state_fs_.HostPath(kCheckpointDir));
        RecordWrite(probe).IgnoreError();
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    // One category whatever the errno (ENOSPC, EROFS, ENOTDIR): the state cannot be written.
    return last_write_.ok() ? Status::Ok() : UnavailableError(last_write_.message());
  }

  // Makes the in-memory state equal to the checkpoint files: restores claims whose file is
  // new (another instance prepared them) and forgets claims whose file is gone (another
  // instance unprepared them). Callers hold the shared lock, if any.
  Status SyncWithDisk(std::vector<std::string>* warnings, bool remove_temporaries) {
    EFADRA_RETURN_IF_ERROR(EnsureCheckpointDir());
    EFADRA_ASSIGN_OR_RETURN(auto names, state_fs_.ListDir(kCheckpointDir));
    auto warn = [&](const std::string& message) {
      spdlog::warn("{}", message);
      if (warnings != nullptr) warnings->push_back(message);
    };
    std::set<std::string> on_disk;
    std::vector<std::string> restored;
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
      // The file name decides which claim an unprepare removes; content for another claim
      // would answer, and reserve devices, for a claim it was not written for.
      if (checkpoint->claim.uid != uid) {
        warn("skipping checkpoint " + state_fs_.HostPath(path) + ": the file is named for claim "
             "UID " + uid + " but holds " + Describe(checkpoint->claim) + "; not adopted");
        continue;
      }
      if (std::string problem = Restore(std::move(*checkpoint)); !problem.empty()) warn(problem);
      restored.push_back(uid);
    }
    // The specs only once every claim of this listing is known: a claim's FI_EFA_IFACE names
    // the devices of its prepared peers, which may come later in the directory.
    for (const std::string& uid : restored) {
      if (Status spec = RewriteSpec(uid, /*quiet=*/false); !spec.ok()) {
        warn("restore claim uid " + uid + ": " + spec.message());
      }
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

  // Enters the shared section for `ref` and brings the in-memory state up to the twin's
  // writes. The error names the claim and says what the claim was waiting for.
  Status EnterFor(Section& section, const ClaimRef& ref, std::string_view what) {
    if (!section.status().ok()) return section.status().WithContext(std::string(what) + " " +
                                                                    Describe(ref));
    if (shared_lock_ == nullptr) return Status::Ok();
    std::vector<std::string> warnings;
    Status synced = SyncWithDisk(&warnings, /*remove_temporaries=*/false);
    // The claim's own checkpoint is checked again below; a failed listing must not hide the
    // twin's reservations, though.
    return synced.WithContext(std::string(what) + " " + Describe(ref) +
                              ": re-read the shared checkpoints");
  }

  // `peers`: the UIDs of the other claims of the same call (recorded in the checkpoint).
  PrepareResult PrepareOne(const ClaimRef& ref, std::chrono::steady_clock::time_point deadline,
                           const std::vector<std::string>& peers) {
    if (Status valid = ValidateClaimRef(ref); !valid.ok()) return {valid, {}};
    {
      Section section(*this, deadline);
      if (Status entered = EnterFor(section, ref, "prepare"); !entered.ok()) return {entered, {}};
      ClaimLock claim_lock(*this, ref.uid);
      if (auto done = PreparedAnswer(ref)) return *std::move(done);
    }

    // The API round trip happens outside every lock, the shared one included: it is the slow
    // part, and the twin's prepares must not queue behind it.
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

    if (std::chrono::steady_clock::now() >= deadline) {
      return {DeadlineExceededError("prepare " + Describe(ref) +
                                    ": the caller's deadline passed during the API request"),
              {}};
    }
    Section section(*this, deadline);
    if (Status entered = EnterFor(section, ref, "prepare"); !entered.ok()) return {entered, {}};
    ClaimLock claim_lock(*this, ref.uid);
    if (auto done = PreparedAnswer(ref)) return *std::move(done);  // a concurrent call won
    return PrepareLocked(ref, *results, peers);
  }

  // Removes the claim's spec and checkpoint by UID whether or not this process knows the
  // claim: a leftover (a failed restore, a file a downgrade could not read, a twin's write)
  // would otherwise come back at the next start and block its devices.
  Status UnprepareOne(const ClaimRef& ref, std::chrono::steady_clock::time_point deadline) {
    if (Status valid = ValidateClaimRef(ref); !valid.ok()) return valid;
    Section section(*this, deadline);
    EFADRA_RETURN_IF_ERROR(EnterFor(section, ref, "unprepare"));
    ClaimLock claim_lock(*this, ref.uid);
    bool known = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      known = prepared_.count(ref.uid) != 0;
    }
    const std::string checkpoint_path = CheckpointPath(ref.uid);
    const bool leftover = !known && state_fs_.Exists(checkpoint_path);
    // Spec first, checkpoint last: if we crash in between, the checkpoint still says what to
    // clean up and a repeated unprepare finishes the job.
    EFADRA_RETURN_IF_ERROR(
        cdi_fs_.RemoveFile("/" + CdiSpecFileName(options_.driver_name, ref.uid))
            .WithContext("unprepare " + Describe(ref) + ": remove CDI spec"));
    EFADRA_RETURN_IF_ERROR(state_fs_.RemoveFile(checkpoint_path)
                               .WithContext("unprepare " + Describe(ref) + ": remove checkpoint"));
    // Until the directory is on disk, a power loss can bring the checkpoint back. Nothing to
    // make durable when there was no checkpoint (a repeated or never-prepared unprepare).
    if (known || leftover) {
      EFADRA_RETURN_IF_ERROR(state_fs_.SyncDirectory(kCheckpointDir)
                                 .WithContext("unprepare " + Describe(ref) + ": checkpoint dir"));
    }
    if (known) {
      std::lock_guard<std::mutex> lock(mu_);
      ForgetUid(ref.uid);
      spdlog::info("unprepared {}", Describe(ref));
    } else if (leftover) {
      spdlog::info("unprepared {}: removed the checkpoint this process had not restored",
                   Describe(ref));
    }
    return Status::Ok();
  }

  std::vector<std::string> PreparedClaimUids() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> uids;
    for (const auto& [uid, claim] : prepared_) uids.push_back(uid);
    return uids;
  }

 private:
  struct Prepared {
    ClaimCheckpoint checkpoint;
    std::vector<PreparedDevice> answer;
    // Non-OK while the claim's spec cannot be built (a device is gone): each prepare tries to
    // build it again and answers this error while it still fails.
    Status unavailable;
    std::set<std::string> keys;  // the reservation keys this claim holds exclusively
  };

  // The answer for an already prepared claim, rebuilding its spec from the current inventory
  // when it is missing (/var/run/cdi wiped) or could not be built before. nullopt when the
  // claim is not prepared. Requires the claim's ClaimLock.
  std::optional<PrepareResult> PreparedAnswer(const ClaimRef& ref) {
    Prepared prepared;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = prepared_.find(ref.uid);
      if (it == prepared_.end()) return std::nullopt;
      prepared = it->second;
    }
    const bool has_spec = !prepared.checkpoint.devices.empty();
    if (prepared.unavailable.ok() && (!has_spec || cdi_fs_.Exists(SpecPath(ref.uid)))) {
      return PrepareResult{Status::Ok(), prepared.answer};
    }
    auto rebuilt = Rebuild(prepared.checkpoint);
    if (!rebuilt.ok()) {
      return PrepareResult{rebuilt.status().WithContext("prepare " + Describe(ref)), {}};
    }
    return PrepareResult{Status::Ok(), *std::move(rebuilt)};
  }

  // Writes a known claim's spec afresh from the current inventory, moves its reservation to
  // the numbers that spec injects and returns its answer. Requires the claim's ClaimLock.
  Result<std::vector<PreparedDevice>> Rebuild(const ClaimCheckpoint& checkpoint) {
    auto resolved = Resolve(checkpoint);
    if (!resolved.ok()) {
      RemoveSpec(checkpoint.claim.uid);
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = prepared_.find(checkpoint.claim.uid); it != prepared_.end()) {
        it->second.unavailable = resolved.status();
      }
      return resolved.status();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (Status free = CheckFree(checkpoint.claim.uid, resolved->exclusive_keys); !free.ok()) {
        return free;
      }
      auto it = prepared_.find(checkpoint.claim.uid);
      if (it == prepared_.end()) {  // a twin unprepared it while the inventory was read
        return FailedPreconditionError("unprepared meanwhile; the kubelet retries");
      }
      Release(it->first, it->second.keys);
      Hold(it->first, resolved->exclusive_keys);
      it->second.keys = resolved->exclusive_keys;
      it->second.answer = resolved->answer;
      it->second.unavailable = Status::Ok();
    }
    EFADRA_RETURN_IF_ERROR(WriteSpec(checkpoint.claim.uid, resolved->spec));
    return resolved->answer;
  }

  PrepareResult PrepareLocked(const ClaimRef& ref, const std::vector<AllocationResult>& results,
                              const std::vector<std::string>& peers) {
    auto inventory = inventory_();
    std::map<std::string, const discovery::EfaDevice*> by_name;
    for (const auto& device : inventory->devices) {
      by_name[slices::DeviceName(device.pci_address)] = &device;
    }
    ClaimCheckpoint checkpoint;
    checkpoint.claim = ref;
    checkpoint.boot_id = options_.boot_id;
    checkpoint.peer_claim_uids = peers;
    for (const AllocationResult& result : results) {
      auto it = by_name.find(result.device);
      if (it == by_name.end()) {
        return {NotFoundError("prepare " + Describe(ref) + ": device " + result.device +
                              " is not on node " + options_.node_name),
                {}};
      }
      CheckpointDevice device;
      device.request_names = {BaseRequestName(result.request)};
      device.pool_name = options_.node_name;
      device.device_name = result.device;
      device.pci_address = it->second->pci_address;
      device.share_id = result.share_id;
      device.admin_access = result.admin_access;
      checkpoint.devices.push_back(std::move(device));
    }
    auto resolved = Resolve(checkpoint, *inventory);
    if (!resolved.ok()) return {resolved.status().WithContext("prepare " + Describe(ref)), {}};

    // Reserve the devices before touching the disk, so two claims can never both get one.
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (Status free = CheckFree(ref.uid, resolved->exclusive_keys); !free.ok()) {
        return {free.WithContext("prepare " + Describe(ref)), {}};
      }
      prepared_[ref.uid] = {checkpoint, resolved->answer, Status::Ok(), resolved->exclusive_keys};
      Hold(ref.uid, resolved->exclusive_keys);
    }

    Status written = EnsureCheckpointDir();
    if (written.ok()) {
      written = RecordWrite(state_fs_.WriteFileAtomic(
          CheckpointPath(ref.uid), SerializeCheckpoint(checkpoint), {.durable = true}));
    }
    if (written.ok()) written = WriteSpec(ref.uid, resolved->spec);
    if (!written.ok()) {
      // Nothing may stay half-prepared: drop the reservation and whatever reached the disk.
      state_fs_.RemoveFile(CheckpointPath(ref.uid)).IgnoreError();
      std::lock_guard<std::mutex> lock(mu_);
      ForgetUid(ref.uid);
      return {written.WithContext("prepare " + Describe(ref)), {}};
    }
    spdlog::info("prepared {}: {} device(s)", Describe(ref), resolved->answer.size());
    return {Status::Ok(), resolved->answer};
  }

  Result<Resolved> Resolve(const ClaimCheckpoint& checkpoint) const {
    auto inventory = inventory_();
    return Resolve(checkpoint, *inventory);
  }

  // The answer, the spec (from `inventory`, never from the checkpoint) and the reservation
  // keys of a claim. kNotFound naming the device when a device is not on this node now (gone,
  // renamed, another node's pool); the caller names the claim.
  Result<Resolved> Resolve(const ClaimCheckpoint& checkpoint,
                           const discovery::Inventory& inventory) const {
    const ClaimRef& ref = checkpoint.claim;
    Resolved out;
    std::vector<CdiDeviceInput> cdi_inputs;
    for (const CheckpointDevice& device : checkpoint.devices) {
      const discovery::EfaDevice* found = FindDevice(device, inventory);
      const std::string what =
          "device " + device.device_name +
          (device.pci_address.empty() ? "" : " (PCI " + device.pci_address + ")");
      if (found == nullptr || device.pool_name != options_.node_name) {
        return NotFoundError(what + " is not on node " + options_.node_name + " any more");
      }
      if (slices::DeviceName(found->pci_address) != device.device_name) {
        return DataLossError(what + ": the name does not belong to that PCI address");
      }
      out.pci_addresses.push_back(found->pci_address);
      PreparedDevice prepared;
      prepared.request_names = device.request_names;
      prepared.pool_name = device.pool_name;
      prepared.device_name = device.device_name;
      prepared.cdi_device_ids = {
          CdiDeviceId(options_.driver_name, ref.uid, device.device_name, device.share_id)};
      prepared.share_id = device.share_id;
      out.answer.push_back(std::move(prepared));
      if (device.share_id.has_value()) {
        out.exclusive_keys.insert(ShareKey(device.device_name, *device.share_id));
      } else if (!device.admin_access) {
        out.exclusive_keys.insert(DeviceKey(device.device_name));
        out.exclusive_keys.insert(NumberKey(found->uverbs_dev));
      }
      if (std::none_of(cdi_inputs.begin(), cdi_inputs.end(), [&](const CdiDeviceInput& in) {
            return in.device_name == device.device_name && in.share_id == device.share_id;
          })) {
        cdi_inputs.push_back({device.device_name, found, device.share_id});
      }
    }
    if (!cdi_inputs.empty()) {
      EFADRA_ASSIGN_OR_RETURN(auto rdma_cm, RdmaCm());
      out.spec = BuildCdiSpec(options_.driver_name, ref.uid, cdi_inputs, options_.dev_root,
                              rdma_cm, Gdrdrv(), PeerRdmaDevices(checkpoint, inventory));
    }
    return out;
  }

  // Re-registers a checkpoint found on disk; the caller then writes its spec (RewriteSpec).
  // Returns a warning ("" when none). A claim whose devices cannot be resolved stays known
  // (the kubelet believes it prepared and will unprepare it), keeps its devices reserved by
  // name, has no spec, and fails its prepares with the reason until they come back.
  std::string Restore(ClaimCheckpoint checkpoint) {
    const ClaimRef ref = checkpoint.claim;
    const std::string what = "restore " + Describe(ref);
    if (Status valid = ValidateClaimRef(ref); !valid.ok()) return valid.WithContext(what).message();
    ClaimLock claim_lock(*this, ref.uid);
    std::vector<std::string> problems;
    auto resolved = Resolve(checkpoint);
    if (resolved.ok()) {
      // A schema-1 file named devices only; the address found now makes it current.
      for (size_t i = 0; i < checkpoint.devices.size(); ++i) {
        checkpoint.devices[i].pci_address = resolved->pci_addresses[i];
      }
    }
    const bool addressed =
        std::none_of(checkpoint.devices.begin(), checkpoint.devices.end(),
                     [](const CheckpointDevice& device) { return device.pci_address.empty(); });
    if (checkpoint.boot_id != options_.boot_id && addressed) {
      checkpoint.boot_id = options_.boot_id;
      Status written = state_fs_.WriteFileAtomic(CheckpointPath(ref.uid),
                                                 SerializeCheckpoint(checkpoint),
                                                 {.durable = true});
      // Not fatal: the claim is restored either way and the boot id is only a hint.
      if (!written.ok()) problems.push_back(written.WithContext("record boot id").message());
    }
    Prepared prepared{checkpoint, {}, Status::Ok(), {}};
    if (resolved.ok()) {
      prepared.answer = resolved->answer;
      prepared.keys = resolved->exclusive_keys;
    } else {
      // The old spec may name numbers the kernel now gives other devices: never leave it.
      RemoveSpec(ref.uid);
      prepared.unavailable = resolved.status();
      problems.push_back(resolved.status().message());
      for (const CheckpointDevice& device : checkpoint.devices) {
        if (device.share_id.has_value()) {
          prepared.keys.insert(ShareKey(device.device_name, *device.share_id));
        } else if (!device.admin_access) {
          prepared.keys.insert(DeviceKey(device.device_name));
        }
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const std::string& key : prepared.keys) {
        auto holders = holders_.find(key);
        if (holders == holders_.end()) continue;
        for (const std::string& other : holders->second) {
          if (other == ref.uid) continue;
          // Both were prepared and stay so (their pods run with the device); no third claim
          // gets it until every holder is unprepared. Which file is wrong cannot be told here.
          const Prepared& held = prepared_.at(other);
          const bool schema1 =
              checkpoint.schema_version == 1 || held.checkpoint.schema_version == 1;
          problems.push_back(Describe(held.checkpoint.claim) + " holds " + key + " too" +
                             (schema1 ? " (schema-1 checkpoints do not record adminAccess)" : ""));
        }
      }
      Hold(ref.uid, prepared.keys);
      prepared_[ref.uid] = prepared;
    }
    if (problems.empty()) return "";
    std::string out = what + ": ";
    for (size_t i = 0; i < problems.size(); ++i) out += (i ? "; " : "") + problems[i];
    return out;
  }

  std::string SpecPath(const std::string& uid) const {
    return "/" + CdiSpecFileName(options_.driver_name, uid);
  }

  void RemoveSpec(const std::string& uid) { cdi_fs_.RemoveFile(SpecPath(uid)).IgnoreError(); }

  Status WriteSpec(const std::string& uid, const nlohmann::json& spec) {
    if (spec.is_null()) return Status::Ok();
    // Not durable: /var/run/cdi is a tmpfs and the checkpoint can always rebuild it.
    return cdi_fs_.WriteFileAtomic(SpecPath(uid), spec.dump(2) + "\n", {.durable = false})
        .WithContext("write CDI spec");
  }

  // A restart in the same boot usually finds the same spec: then nothing is written. `quiet`
  // when a change is expected (the peers of a claim became known).
  Status WriteSpecIfChanged(const std::string& uid, const nlohmann::json& spec, bool quiet) {
    if (spec.is_null()) return Status::Ok();
    auto current = cdi_fs_.ReadFile(SpecPath(uid));
    if (current.ok() && *current == spec.dump(2) + "\n") return Status::Ok();
    if (current.ok() && !quiet) {
      spdlog::warn("CDI spec {} differed from the devices of this node now (renumbered uverbs, "
                   "rdma_cm or gdrdrv, --inject-gdrdrv changed, or a claim of the same pod no "
                   "longer prepared?); rewritten. Containers started before keep their old nodes.",
                   cdi_fs_.HostPath(SpecPath(uid)));
    }
    return WriteSpec(uid, spec);
  }

  // Writes a known claim's spec from the current inventory and the peers prepared now, when it
  // differs from the file. Nothing for a claim that is not prepared (unprepared meanwhile) or
  // whose devices are gone; a claim whose devices went since is handled as by Rebuild. Requires
  // the shared section, not the claim's lock.
  Status RewriteSpec(const std::string& uid, bool quiet) {
    ClaimLock claim_lock(*this, uid);
    ClaimCheckpoint checkpoint;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = prepared_.find(uid);
      if (it == prepared_.end() || !it->second.unavailable.ok()) return Status::Ok();
      checkpoint = it->second.checkpoint;
    }
    auto resolved = Resolve(checkpoint);
    if (!resolved.ok()) {
      RemoveSpec(uid);
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = prepared_.find(uid); it != prepared_.end()) {
        it->second.unavailable = resolved.status();
      }
      return resolved.status();
    }
    return WriteSpecIfChanged(uid, resolved->spec, quiet);
  }

 public:
  // After a prepare call: the claims of the call that are prepared now, and their peers, get
  // the spec naming the devices of every claim of the pod. Claims prepared concurrently in one
  // call wrote their specs while some peers were not prepared yet; a claim retried alone after
  // it failed in its pod's call becomes a peer of the claims that recorded it. Returns the
  // claims of `uids` whose spec could not be written (their answer must fail: the kubelet's
  // retry comes back here). No shared lock and no I/O when no claim has a peer, the
  // usual single-claim call.
  std::map<std::string, Status> RefreshPodSpecs(const std::vector<std::string>& uids,
                                                std::chrono::steady_clock::time_point deadline) {
    std::set<std::string> refresh;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const std::string& uid : uids) {
        auto it = prepared_.find(uid);
        if (it == prepared_.end()) continue;
        std::vector<std::string> peers = PeersLocked(it->second.checkpoint);
        if (peers.empty()) continue;
        refresh.insert(uid);
        refresh.insert(peers.begin(), peers.end());
      }
    }
    std::map<std::string, Status> failed;
    if (refresh.empty()) return failed;
    Section section(*this, deadline);
    for (const std::string& uid : refresh) {
      Status written = section.status();
      if (written.ok()) written = RewriteSpec(uid, /*quiet=*/true);
      if (written.ok()) continue;
      written = written.WithContext("write the CDI spec naming the EFAs of the pod's other claims");
      spdlog::warn("claim uid {}: {}", uid, written.message());
      if (std::find(uids.begin(), uids.end(), uid) != uids.end()) failed[uid] = written;
    }
    return failed;
  }

 private:
  // Requires mu_. The prepared claims (with their devices available) that are peers of
  // `checkpoint`'s claim: those it recorded, in their order, then those that recorded it, by
  // UID. The relation is symmetric so that a claim retried alone after its pod's call failed
  // for it still names, and is named by, the claims of that call.
  std::vector<std::string> PeersLocked(const ClaimCheckpoint& checkpoint) const {
    const std::string& self = checkpoint.claim.uid;
    std::vector<std::string> out;
    auto add = [&](const std::string& uid) {
      auto it = prepared_.find(uid);
      if (uid == self || it == prepared_.end() || !it->second.unavailable.ok()) return;
      if (std::find(out.begin(), out.end(), uid) == out.end()) out.push_back(uid);
    };
    for (const std::string& uid : checkpoint.peer_claim_uids) add(uid);
    std::vector<std::string> recorded_by;
    for (const auto& [uid, prepared] : prepared_) {
      const auto& theirs = prepared.checkpoint.peer_claim_uids;
      if (std::find(theirs.begin(), theirs.end(), self) != theirs.end()) recorded_by.push_back(uid);
    }
    std::sort(recorded_by.begin(), recorded_by.end());
    for (const std::string& uid : recorded_by) add(uid);
    return out;
  }

  // The RDMA devices of the peers (PeersLocked) as `inventory` has them, in peer order.
  std::vector<std::string> PeerRdmaDevices(const ClaimCheckpoint& checkpoint,
                                           const discovery::Inventory& inventory) const {
    std::vector<std::string> names;
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& peer : PeersLocked(checkpoint)) {
      for (const CheckpointDevice& device : prepared_.at(peer).checkpoint.devices) {
        if (const discovery::EfaDevice* found = FindDevice(device, inventory)) {
          names.push_back(found->rdma_device);
        }
      }
    }
    return names;
  }

  // The kernel's rdma_cm number, read every time (its minor is dynamic): sysfs first, as for
  // uverbs (discovery treats sysfs as authoritative), else the node under --dev-root. nullopt
  // when the host has neither; kDataLoss naming the file when sysfs holds garbage.
  Result<std::optional<HostCharDevice>> RdmaCm() const {
    auto text = sysfs_->ReadFile(kRdmaCmSysfs);
    if (text.ok()) {
      auto number = discovery::ParseDevNumber(*text);
      if (!number.ok()) {
        return DataLossError("rdma_cm: " + sysfs_->HostPath(kRdmaCmSysfs) + ": " +
                             number.status().message());
      }
      return std::optional<HostCharDevice>(HostCharDevice{number->major, number->minor});
    }
    auto info = dev_->Stat(kRdmaCmDev);
    if (!info.ok() || info->type != core::FileType::kCharDevice) {
      return std::optional<HostCharDevice>();
    }
    return std::optional<HostCharDevice>(HostCharDevice{info->device_major, info->device_minor});
  }

  // GDRCopy's node when --inject-gdrdrv is on and <dev-root>/gdrdrv is a char device, read
  // every time (a module reload gives it another major). Anything else leaves it out: the
  // claim's EFAs work without it, so a node without GDRCopy never fails a prepare. What went
  // wrong is logged when it starts, not for every claim.
  std::optional<HostCharDevice> Gdrdrv() const {
    if (!options_.inject_gdrdrv) return std::nullopt;
    const std::string path = dev_->HostPath(kGdrdrvDev);
    auto info = dev_->Stat(kGdrdrvDev);
    if (info.ok() && info->type == core::FileType::kCharDevice) {
      ReportGdrdrv(GdrdrvState::kPresent, [&] {
        spdlog::info("injecting {} ({}:{}) into every prepared claim (--inject-gdrdrv)", path,
                     info->device_major, info->device_minor);
      });
      return HostCharDevice{info->device_major, info->device_minor};
    }
    if (!info.ok() && info.status().code() == StatusCode::kNotFound) {
      ReportGdrdrv(GdrdrvState::kAbsent, [&] {
        spdlog::warn("--inject-gdrdrv is on but this host has no {} (is GDRCopy's gdrdrv module "
                     "loaded?); claims are prepared without it",
                     path);
      });
    } else if (info.ok()) {
      ReportGdrdrv(GdrdrvState::kNotCharDevice, [&] {
        spdlog::error("--inject-gdrdrv: {} is not a character device; not injected", path);
      });
    } else {
      ReportGdrdrv(GdrdrvState::kUnreadable, [&] {
        spdlog::error("--inject-gdrdrv: {}; not injected", info.status().message());
      });
    }
    return std::nullopt;
  }

  enum class GdrdrvState { kUnknown, kPresent, kAbsent, kNotCharDevice, kUnreadable };

  // Runs `log` when gdrdrv's state differs from the last one reported (concurrent prepares
  // see the change once).
  template <typename Log>
  void ReportGdrdrv(GdrdrvState state, Log log) const {
    if (gdrdrv_state_.exchange(state) != state) log();
  }

  // kFailedPrecondition naming the key and its holder when a claim other than `uid` holds one
  // of `keys`. Requires mu_.
  Status CheckFree(const std::string& uid, const std::set<std::string>& keys) const {
    for (const std::string& key : keys) {
      auto holders = holders_.find(key);
      if (holders == holders_.end()) continue;
      for (const std::string& other : holders->second) {
        if (other == uid) continue;
        return FailedPreconditionError(key + " is already prepared for " +
                                       Describe(prepared_.at(other).checkpoint.claim));
      }
    }
    return Status::Ok();
  }

  // Requires mu_.
  void Hold(const std::string& uid, const std::set<std::string>& keys) {
    for (const std::string& key : keys) holders_[key].insert(uid);
  }

  // Requires mu_.
  void Release(const std::string& uid, const std::set<std::string>& keys) {
    for (const std::string& key : keys) {
      auto it = holders_.find(key);
      if (it == holders_.end()) continue;
      it->second.erase(uid);
      if (it->second.empty()) holders_.erase(it);
    }
  }

  // Requires mu_.
  void ForgetUid(const std::string& uid) {
    auto it = prepared_.find(uid);
    if (it == prepared_.end()) return;
    Release(uid, it->second.keys);
    prepared_.erase(it);
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
  // Rooted views for rdma_cm; the device model (discovery) covers only the EFAs themselves.
  const std::unique_ptr<core::Filesystem> sysfs_;
  const std::unique_ptr<core::Filesystem> dev_;
  const std::unique_ptr<SharedStateLock> shared_lock_;  // null unless rolling-update mode
  mutable std::atomic<GdrdrvState> gdrdrv_state_{GdrdrvState::kUnknown};  // last one logged

  mutable std::mutex mu_;
  Status last_write_;  // the last write to the state dir (CheckStateDir); guarded by mu_
  std::chrono::steady_clock::time_point last_probe_;  // CheckStateDir's last write; mu_
  std::unordered_map<std::string, Prepared> prepared_;  // by claim UID; guarded by mu_
  // Reservation key (DeviceKey, NumberKey) -> UIDs holding it exclusively; guarded by mu_. More
  // than one holder only after restoring conflicting checkpoints; a prepare never adds one.
  std::unordered_map<std::string, std::set<std::string>> holders_;
  std::unordered_map<std::string, std::unique_ptr<PerClaim>> claim_locks_;  // guarded by mu_
};

ClaimPreparer::ClaimPreparer(PreparerOptions options, kube::Client& client,
                             core::Filesystem& cdi_fs, core::Filesystem& state_fs,
                             InventoryProvider inventory, core::Clock& /*clock*/)
    : impl_(std::make_unique<Impl>(std::move(options), client, cdi_fs, state_fs,
                                   std::move(inventory))) {}

ClaimPreparer::~ClaimPreparer() = default;

Status ClaimPreparer::Start(std::vector<std::string>* warnings) { return impl_->Start(warnings); }

std::map<std::string, PrepareResult> ClaimPreparer::Prepare(
    const std::vector<ClaimRef>& claims, std::chrono::steady_clock::time_point deadline) {
  std::vector<ClaimRef> unique;
  std::set<std::string> seen;
  for (const ClaimRef& claim : claims) {
    if (seen.insert(claim.uid).second) unique.push_back(claim);
  }
  // The claims of one call are the pod's (the kubelet sends one call per pod and driver): each
  // records the others, whose devices its FI_EFA_IFACE names too (cdi_spec.h). Invalid refs
  // can never be prepared and are left out.
  std::vector<std::string> valid_uids;
  for (const ClaimRef& claim : unique) {
    if (ValidateClaimRef(claim).ok()) valid_uids.push_back(claim.uid);
  }
  auto peers_of = [&](const std::string& uid) {
    std::vector<std::string> peers;
    for (const std::string& other : valid_uids) {
      if (other != uid) peers.push_back(other);
    }
    return peers;
  };
  std::vector<PrepareResult> results(unique.size());
  // Claims of one request are independent: a few workers prepare them concurrently so one slow
  // API GET does not delay the others, without a thread per claim.
  constexpr size_t kMaxWorkers = 8;
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < unique.size(); i = next++) {
      results[i] = impl_->PrepareOne(unique[i], deadline, peers_of(unique[i].uid));
    }
  };
  std::vector<std::thread> workers;
  for (size_t i = 1; i < std::min(unique.size(), kMaxWorkers); ++i) workers.emplace_back(work);
  work();
  for (auto& worker : workers) worker.join();
  // Every claim's spec was written with the peers prepared at that moment; now that all are
  // done, bring each to the full list (a failed claim is not prepared and names nothing).
  std::vector<std::string> ok_uids;
  for (size_t i = 0; i < unique.size(); ++i) {
    if (results[i].status.ok()) ok_uids.push_back(unique[i].uid);
  }
  for (auto& [uid, failed] : impl_->RefreshPodSpecs(ok_uids, deadline)) {
    for (size_t i = 0; i < unique.size(); ++i) {
      if (unique[i].uid != uid) continue;
      results[i] = {failed.WithContext("prepare " + Describe(unique[i])), {}};
    }
  }
  std::map<std::string, PrepareResult> out;
  for (size_t i = 0; i < unique.size(); ++i) out[unique[i].uid] = std::move(results[i]);
  return out;
}

std::map<std::string, Status> ClaimPreparer::Unprepare(
    const std::vector<ClaimRef>& claims, std::chrono::steady_clock::time_point deadline) {
  std::map<std::string, Status> out;
  for (const ClaimRef& claim : claims) {
    if (out.count(claim.uid) == 0) out[claim.uid] = impl_->UnprepareOne(claim, deadline);
  }
  return out;
}

Status ClaimPreparer::SyncWithDisk(std::vector<std::string>* warnings) {
  Impl::Section section(*impl_, kNoDeadline);
  EFADRA_RETURN_IF_ERROR(section.status());
  return impl_->SyncWithDisk(warnings, /*remove_temporaries=*/false);
}

Status ClaimPreparer::CheckStateDir() { return impl_->CheckStateDir(); }

std::vector<std::string> ClaimPreparer::PreparedClaimUids() const {
  return impl_->PreparedClaimUids();
}

}  // namespace efadra::claims
