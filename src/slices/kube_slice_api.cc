#include "efadra/slices/kube_slice_api.h"

namespace efadra::slices {
namespace {

constexpr char kSlicesPath[] = "/apis/resource.k8s.io/v1/resourceslices";

kube::ListOptions Selection(const std::string& driver, const std::string& node) {
  kube::ListOptions options;
  // The only selection the API supports for slices (contracts.md §5.2); the Go helper uses
  // the same one.
  options.field_selector = "spec.driver=" + driver + ",spec.nodeName=" + node;
  return options;
}

}  // namespace

Result<nlohmann::json> KubeSliceApi::GetNode(const std::string& node) {
  return client_.Get("/api/v1/nodes/" + node);
}

Result<nlohmann::json> KubeSliceApi::ListSlices(const std::string& driver,
                                                const std::string& node) {
  return client_.List(kSlicesPath, Selection(driver, node));
}

Result<nlohmann::json> KubeSliceApi::CreateSlice(const nlohmann::json& slice) {
  return client_.Create(std::string(kSlicesPath) + "?fieldManager=" + kFieldManager, slice);
}

Result<nlohmann::json> KubeSliceApi::UpdateSlice(const nlohmann::json& slice) {
  std::string name;
  const auto metadata = slice.find("metadata");
  if (metadata != slice.end() && metadata->is_object()) name = metadata->value("name", "");
  if (name.empty())
    return InvalidArgumentError("update ResourceSlice: object has no metadata.name");
  return client_.Update(std::string(kSlicesPath) + "/" + name + "?fieldManager=" + kFieldManager,
                        slice);
}

Status KubeSliceApi::DeleteSlice(const std::string& name, const std::string& uid,
                                 const std::string& resource_version) {
  return client_.Delete(std::string(kSlicesPath) + "/" + name,
                        kube::DeletePreconditions{uid, resource_version});
}

Status KubeSliceApi::WatchSlices(
    const std::string& driver, const std::string& node, const std::string& resource_version,
    const std::function<bool(const std::string& type, const nlohmann::json& object)>& on_event,
    const std::atomic<bool>& stop) {
  kube::ListOptions options = Selection(driver, node);
  options.resource_version = resource_version;
  return client_.Watch(
      kSlicesPath, options,
      [&on_event](const kube::WatchEvent& event) { return on_event(event.type, event.object); },
      stop);
}

}  // namespace efadra::slices
