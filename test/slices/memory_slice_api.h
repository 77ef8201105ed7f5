// MemorySliceApi: a small stateful in-memory SliceApi (optimistic concurrency with
// resourceVersion, generateName, delete preconditions, watches, injected failures) so the
// publisher's reconcile logic is tested without the network. The FakeApiServer tests
// (publisher_test.cc) cover the same behaviour over real HTTP through the kube client.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "efadra/slices/slice_api.h"

namespace efadra::slices::testing {

class MemorySliceApi : public SliceApi {
 public:
  Result<nlohmann::json> GetNode(const std::string& node) override {
    std::lock_guard<std::mutex> lock(mutex_);
    EFADRA_RETURN_IF_ERROR(Injected(__func__));
    return nlohmann::json{{"metadata", {{"name", node}, {"uid", "uid-" + node}}}};
  }

  Result<nlohmann::json> ListSlices(const std::string& driver, const std::string& node) override {
    std::lock_guard<std::mutex> lock(mutex_);
    EFADRA_RETURN_IF_ERROR(Injected(__func__));
    nlohmann::json items = nlohmann::json::array();
    for (const auto& [name, slice] : slices_) {
      if (slice["spec"]["driver"] == driver && slice["spec"]["nodeName"] == node) {
        items.push_back(slice);
      }
    }
    return nlohmann::json{{"items", items},
                          {"metadata", {{"resourceVersion", std::to_string(version_)}}}};
  }

  Result<nlohmann::json> CreateSlice(const nlohmann::json& slice) override {
    std::unique_lock<std::mutex> lock(mutex_);
    ++writes_;
    EFADRA_RETURN_IF_ERROR(Injected(__func__));
    nlohmann::json stored = slice;
    std::string name = stored["metadata"].value("name", "");
    if (name.empty()) {
      std::string suffix = std::to_string(++names_);
      suffix.insert(0, suffix.size() < 5 ? 5 - suffix.size() : 0, 'z');
      name = stored["metadata"].value("generateName", "") + suffix;
    }
    if (slices_.count(name) > 0) return AlreadyExistsError("slice " + name + " exists");
    stored["metadata"]["name"] = name;
    stored["metadata"]["uid"] = "uid-" + name;
    stored["metadata"]["resourceVersion"] = std::to_string(++version_);
    slices_[name] = stored;
    Notify("ADDED", stored);
    const auto created = on_created_;
    lock.unlock();
    if (created) created();
    return stored;
  }

  Result<nlohmann::json> UpdateSlice(const nlohmann::json& slice) override {
    std::lock_guard<std::mutex> lock(mutex_);
    ++writes_;
    EFADRA_RETURN_IF_ERROR(Injected(__func__));
    const std::string name = slice["metadata"]["name"];
    auto it = slices_.find(name);
    if (it == slices_.end()) return NotFoundError("slice " + name);
    if (it->second["metadata"]["resourceVersion"] != slice["metadata"]["resourceVersion"]) {
      return AbortedError("slice " + name + ": the object has been modified");
    }
    nlohmann::json stored = slice;
    stored["metadata"]["resourceVersion"] = std::to_string(++version_);
    it->second = stored;
    Notify("MODIFIED", stored);
    return stored;
  }

  Status DeleteSlice(const std::string& name, const std::string& uid,
                     const std::string& resource_version) override {
    std::lock_guard<std::mutex> lock(mutex_);
    ++writes_;
    EFADRA_RETURN_IF_ERROR(Injected(__func__));
    auto it = slices_.find(name);
    if (it == slices_.end()) return NotFoundError("slice " + name);
    if ((!uid.empty() && it->second["metadata"]["uid"] != uid) ||
        (!resource_version.empty() &&
         it->second["metadata"]["resourceVersion"] != resource_version)) {
      return AbortedError("slice " + name + ": precondition failed");
    }
    nlohmann::json gone = it->second;
    slices_.erase(it);
    ++version_;
    Notify("DELETED", gone);
    return Status::Ok();
  }

  Status WatchSlices(
      const std::string& driver, const std::string& node, const std::string& resource_version,
      const std::function<bool(const std::string& type, const nlohmann::json& object)>& on_event,
      const std::atomic<bool>& stop) override {
    std::unique_lock<std::mutex> lock(mutex_);
    EFADRA_RETURN_IF_ERROR(Injected(__func__));
    // Events after the listed version only (the list came from the same lock order).
    size_t next = static_cast<size_t>(events_.size());
    for (size_t i = 0; i < events_.size(); ++i) {
      if (std::stoll(events_[i].second["metadata"].value("resourceVersion", "0")) >
          std::stoll(resource_version.empty() ? "0" : resource_version)) {
        next = i;
        break;
      }
    }
    const int generation = drop_generation_;
    while (!stop) {
      if (drop_generation_ != generation) return Status::Ok();
      while (next < events_.size()) {
        const auto [type, object] = events_[next++];
        if (object["spec"]["driver"] != driver || object["spec"]["nodeName"] != node) continue;
        lock.unlock();
        const bool more = on_event(type, object);
        lock.lock();
        if (!more) return Status::Ok();
      }
      changed_.wait_for(lock, std::chrono::milliseconds(20));
    }
    return CancelledError("watch stopped");
  }

  // --- Test controls --------------------------------------------------------------------
  // The next `count` calls of `method` ("GetNode", "CreateSlice", ...; "" = any) fail.
  void FailNext(int count, Status status, std::string method = "") {
    std::lock_guard<std::mutex> lock(mutex_);
    fail_count_ = count;
    fail_status_ = status;
    fail_method_ = std::move(method);
  }
  // Runs after each create is stored, before the caller sees its response (outside the lock, so
  // it may call the test controls below).
  void OnCreated(std::function<void()> hook) {
    std::lock_guard<std::mutex> lock(mutex_);
    on_created_ = std::move(hook);
  }
  // An outside actor (the kubelet) deletes every slice.
  void DeleteAll() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [name, slice] : slices_) {
      ++version_;
      Notify("DELETED", slice);
    }
    slices_.clear();
  }
  void DropWatches() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++drop_generation_;
    changed_.notify_all();
  }
  std::vector<nlohmann::json> Slices() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<nlohmann::json> out;
    for (const auto& [name, slice] : slices_) out.push_back(slice);
    return out;
  }
  int Writes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return writes_;
  }
  void ClearWrites() {
    std::lock_guard<std::mutex> lock(mutex_);
    writes_ = 0;
  }

 private:
  Status Injected(const char* method) {
    if (fail_count_ <= 0 || (!fail_method_.empty() && fail_method_ != method)) {
      return Status::Ok();
    }
    --fail_count_;
    return fail_status_;
  }
  void Notify(const std::string& type, nlohmann::json object) {
    object["metadata"]["resourceVersion"] = std::to_string(version_);
    events_.emplace_back(type, std::move(object));
    changed_.notify_all();
  }

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, nlohmann::json> slices_;
  std::deque<std::pair<std::string, nlohmann::json>> events_;
  int64_t version_ = 0;
  int names_ = 0;
  int writes_ = 0;
  int fail_count_ = 0;
  int drop_generation_ = 0;
  std::function<void()> on_created_;
  Status fail_status_;
  std::string fail_method_;
};

}  // namespace efadra::slices::testing
