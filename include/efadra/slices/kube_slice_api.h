// KubeSliceApi: the Publisher's SliceApi on top of a kube::Client (REST paths of
// resource.k8s.io/v1 ResourceSlices and core/v1 Nodes). Thread-safe as kube::Client is.
#pragma once

#include "efadra/kube/client.h"
#include "efadra/slices/slice_api.h"

namespace efadra::slices {

class KubeSliceApi : public SliceApi {
 public:
  // `client` is not owned and must outlive this object.
  explicit KubeSliceApi(kube::Client& client) : client_(client) {}

  Result<nlohmann::json> GetNode(const std::string& node) override;
  Result<nlohmann::json> ListSlices(const std::string& driver, const std::string& node) override;
  Result<nlohmann::json> CreateSlice(const nlohmann::json& slice) override;
  Result<nlohmann::json> UpdateSlice(const nlohmann::json& slice) override;
  Status DeleteSlice(const std::string& name, const std::string& uid,
                     const std::string& resource_version) override;
  Status WatchSlices(
      const std::string& driver, const std::string& node, const std::string& resource_version,
      const std::function<bool(const std::string& type, const nlohmann::json& object)>& on_event,
      const std::atomic<bool>& stop) override;

 private:
  kube::Client& client_;
};

}  // namespace efadra::slices
