// ObjectStore: the in-memory "etcd" of FakeApiServer. Holds objects of a few resource types
// keyed by (resource, namespace, name), assigns resourceVersions from one global counter (as
// etcd revisions do), and keeps a bounded event history so watches can resume from a
// resourceVersion or learn it is too old (410 Expired).
//
// Thread-safe: one mutex guards everything; watchers block on
// a condition variable that every write and DropWatches/Close signals.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace efadra::apidouble {

struct StoredEvent {
  int64_t resource_version = 0;
  std::string resource;  // "resourceslices"
  std::string type;      // ADDED, MODIFIED, DELETED
  nlohmann::json object;
};

class ObjectStore {
 public:
  ObjectStore();

  // The current (latest) resourceVersion.
  int64_t CurrentVersion() const;

  std::optional<nlohmann::json> Get(const std::string& resource, const std::string& ns,
                                    const std::string& name) const;
  // Objects of `resource` (in `ns`, or all namespaces if ns is empty), sorted by
  // namespace/name, and the resourceVersion the snapshot was taken at.
  std::vector<nlohmann::json> List(const std::string& resource, const std::string& ns,
                                   int64_t* version) const;

  // Stores `object` (already complete except metadata.resourceVersion, which is assigned),
  // records an ADDED or MODIFIED event, wakes watchers. Returns the stored object.
  nlohmann::json Put(const std::string& resource, const std::string& ns, const std::string& name,
                     nlohmann::json object);
  // Removes the object; records DELETED (with a new resourceVersion). Returns the removed
  // object, or nullopt if there was none.
  std::optional<nlohmann::json> Remove(const std::string& resource, const std::string& ns,
                                       const std::string& name);

  // Runs `fn` with the store locked (read-check-write sequences such as optimistic
  // concurrency). `fn` may call the *Locked methods only.
  template <typename Fn>
  auto WithLock(Fn fn) {
    std::lock_guard<std::mutex> lock(mu_);
    return fn();
  }
  std::optional<nlohmann::json> GetLocked(const std::string& resource, const std::string& ns,
                                          const std::string& name) const;
  nlohmann::json PutLocked(const std::string& resource, const std::string& ns,
                           const std::string& name, nlohmann::json object);
  std::optional<nlohmann::json> RemoveLocked(const std::string& resource, const std::string& ns,
                                             const std::string& name);

  // Events of `resource` with resourceVersion > after, waiting up to `wait` for one to arrive.
  // Sets *expired when `after` is older than the retained history (the caller sends 410).
  // Returns early (possibly empty) when the drop generation moves past `drop_generation` or
  // the store is closed; *ended tells the caller to finish the stream.
  std::vector<StoredEvent> WaitEvents(const std::string& resource, int64_t after,
                                      uint64_t drop_generation, std::chrono::milliseconds wait,
                                      bool* expired, bool* ended);

  // Ends every open watch (they see *ended on their next wait); returns the new generation.
  void DropWatches();
  uint64_t DropGeneration() const;
  // Ends all watches for good (server stopping).
  void Close();

  // Random lowercase suffix for generateName (5 chars) and v4 UUIDs.
  std::string RandomSuffix();
  std::string NewUid();

 private:
  void RecordLocked(const std::string& resource, const std::string& type,
                    const nlohmann::json& object, int64_t version);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, nlohmann::json> objects_;  // "resource/namespace/name" -> object
  std::deque<StoredEvent> history_;
  int64_t version_ = 1000;
  int64_t compacted_ = 1000;  // events with version <= compacted_ are gone
  uint64_t drop_generation_ = 0;
  bool closed_ = false;
  std::mt19937_64 rng_;
};

}  // namespace efadra::apidouble
