// SliceApi: the narrow view of the Kubernetes API the publisher needs, owned by its consumer
// (style.md §5). slices/ comes before kube/ in the module order, so it cannot use kube::Client
// directly; src/cmd/kube_slice_api.{h,cc} adapts a kube::Client to this interface.
//
// Error codes follow kube::Client: kNotFound (404), kAborted (409 on update/delete),
// kAlreadyExists (409 on create), kOutOfRange (410 on watch), kUnavailable (5xx, network),
// kResourceExhausted (429). Implementations must be thread-safe: the publisher calls them from
// its sync thread and its watch thread at once.
#pragma once

#include <atomic>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "efadra/core/status.h"

namespace efadra::slices {

// The field manager of every slice write (the fieldManager parameter). A slice of our driver
// and node in whose metadata.managedFields this manager does not appear was written by another
// program (DRANET, a second copy of this driver under another name): the publisher neither
// adopts nor deletes it, and publishes nothing while it is there.
inline constexpr char kFieldManager[] = "efa-dra-driver";

class SliceApi {
 public:
  virtual ~SliceApi() = default;

  // GET /api/v1/nodes/<node>: the Node object.
  virtual Result<nlohmann::json> GetNode(const std::string& node) = 0;

  // LIST ResourceSlices with fieldSelector spec.driver=<driver>,spec.nodeName=<node>: the List
  // object ({"items": [...], "metadata": {"resourceVersion": ...}}).
  virtual Result<nlohmann::json> ListSlices(const std::string& driver, const std::string& node) = 0;

  // POST; returns the stored object (metadata.name filled from generateName).
  virtual Result<nlohmann::json> CreateSlice(const nlohmann::json& slice) = 0;

  // PUT of the whole object (metadata.name and metadata.resourceVersion set).
  virtual Result<nlohmann::json> UpdateSlice(const nlohmann::json& slice) = 0;

  // DELETE with preconditions {uid, resourceVersion}; kNotFound if already gone.
  virtual Status DeleteSlice(const std::string& name, const std::string& uid,
                             const std::string& resource_version) = 0;

  // WATCH the same selection from `resource_version`. Calls on_event(type, object) for each
  // event until the stream ends (OK), on_event returns false (OK), `stop` becomes true
  // (kCancelled) or an error occurs (kOutOfRange when the version is too old).
  virtual Status WatchSlices(
      const std::string& driver, const std::string& node, const std::string& resource_version,
      const std::function<bool(const std::string& type, const nlohmann::json& object)>& on_event,
      const std::atomic<bool>& stop) = 0;
};

}  // namespace efadra::slices
