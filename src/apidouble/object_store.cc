#include "object_store.h"

#include <algorithm>
#include <cstdio>

namespace efadra::apidouble {
namespace {

// Enough history for tests and benchmarks to resume watches; older versions answer 410 like a
// compacted etcd.
constexpr size_t kMaxHistory = 20000;

std::string Key(const std::string& resource, const std::string& ns, const std::string& name) {
  return resource + "/" + ns + "/" + name;
}

}  // namespace

ObjectStore::ObjectStore() : rng_(std::random_device{}()) {}

int64_t ObjectStore::CurrentVersion() const {
  std::lock_guard<std::mutex> lock(mu_);
  return version_;
}

std::optional<nlohmann::json> ObjectStore::Get(const std::string& resource, const std::string& ns,
                                               const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  return GetLocked(resource, ns, name);
}

std::optional<nlohmann::json> ObjectStore::GetLocked(const std::string& resource,
                                                     const std::string& ns,
                                                     const std::string& name) const {
  auto it = objects_.find(Key(resource, ns, name));
  if (it == objects_.end()) return std::nullopt;
  return it->second;
}

std::vector<nlohmann::json> ObjectStore::List(const std::string& resource, const std::string& ns,
                                              int64_t* version) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<nlohmann::json> out;
  const std::string prefix = ns.empty() ? resource + "/" : Key(resource, ns, "");
  for (auto it = objects_.lower_bound(prefix);
       it != objects_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    out.push_back(it->second);
  }
  if (version != nullptr) *version = version_;
  return out;
}

nlohmann::json ObjectStore::Put(const std::string& resource, const std::string& ns,
                                const std::string& name, nlohmann::json object) {
  std::lock_guard<std::mutex> lock(mu_);
  return PutLocked(resource, ns, name, std::move(object));
}

nlohmann::json ObjectStore::PutLocked(const std::string& resource, const std::string& ns,
                                      const std::string& name, nlohmann::json object) {
  const std::string key = Key(resource, ns, name);
  const bool existed = objects_.count(key) > 0;
  const int64_t version = ++version_;
  object["metadata"]["resourceVersion"] = std::to_string(version);
  objects_[key] = object;
  RecordLocked(resource, existed ? "MODIFIED" : "ADDED", object, version);
  return object;
}

std::optional<nlohmann::json> ObjectStore::Remove(const std::string& resource,
                                                  const std::string& ns, const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  return RemoveLocked(resource, ns, name);
}

std::optional<nlohmann::json> ObjectStore::RemoveLocked(const std::string& resource,
                                                        const std::string& ns,
                                                        const std::string& name) {
  auto it = objects_.find(Key(resource, ns, name));
  if (it == objects_.end()) return std::nullopt;
  nlohmann::json object = std::move(it->second);
  objects_.erase(it);
  const int64_t version = ++version_;
  // The DELETED event carries the object at the deletion revision, as the real watch cache does.
  object["metadata"]["resourceVersion"] = std::to_string(version);
  RecordLocked(resource, "DELETED", object, version);
  return object;
}

void ObjectStore::RecordLocked(const std::string& resource, const std::string& type,
                               const nlohmann::json& object, int64_t version) {
  history_.push_back({version, resource, type, object});
  while (history_.size() > kMaxHistory) {
    compacted_ = history_.front().resource_version;
    history_.pop_front();
  }
  cv_.notify_all();
}

std::vector<StoredEvent> ObjectStore::WaitEvents(const std::string& resource, int64_t after,
                                                 uint64_t drop_generation,
                                                 std::chrono::milliseconds wait, bool* expired,
                                                 bool* ended) {
  std::unique_lock<std::mutex> lock(mu_);
  *expired = false;
  *ended = false;
  if (after < compacted_) {
    *expired = true;
    return {};
  }
  auto collect = [&] {
    std::vector<StoredEvent> out;
    // History is ordered by version; skip what the watcher has seen.
    auto it = std::upper_bound(history_.begin(), history_.end(), after,
                               [](int64_t v, const StoredEvent& e) {
                                 return v < e.resource_version;
                               });
    for (; it != history_.end(); ++it) {
      if (it->resource == resource) out.push_back(*it);
    }
    return out;
  };
  std::vector<StoredEvent> events;
  cv_.wait_for(lock, wait, [&] {
    if (closed_ || drop_generation_ != drop_generation) return true;
    events = collect();
    return !events.empty();
  });
  if (closed_ || drop_generation_ != drop_generation) *ended = true;
  return events;
}

void ObjectStore::DropWatches() {
  std::lock_guard<std::mutex> lock(mu_);
  ++drop_generation_;
  cv_.notify_all();
}

uint64_t ObjectStore::DropGeneration() const {
  std::lock_guard<std::mutex> lock(mu_);
  return drop_generation_;
}

void ObjectStore::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

std::string ObjectStore::RandomSuffix() {
  // The apiserver's alphabet (k8s.io/apimachinery/pkg/util/rand): no vowels, no 0/1/3 so
  // generated names never spell words.
  static constexpr char kAlphabet[] = "bcdfghjklmnpqrstvwxz2456789";
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (int i = 0; i < 5; ++i) out += kAlphabet[rng_() % (sizeof(kAlphabet) - 1)];
  return out;
}

std::string ObjectStore::NewUid() {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t a = rng_();
  uint64_t b = rng_();
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // RFC 4122 variant
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%08x-%04x-%04x-%04x-%012llx",
                static_cast<unsigned>(a >> 32), static_cast<unsigned>((a >> 16) & 0xffff),
                static_cast<unsigned>(a & 0xffff), static_cast<unsigned>(b >> 48),
                static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return buf;
}

}  // namespace efadra::apidouble
