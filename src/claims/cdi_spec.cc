#include "efadra/claims/cdi_spec.h"

#include <algorithm>

#include "efadra/core/filesystem.h"

namespace efadra::claims {
namespace {

nlohmann::json CharNode(const std::string& container_path, std::string_view dev_root,
                        uint32_t major, uint32_t minor) {
  // The host node lives at the same place below --dev-root as below /dev in the container.
  std::string host_path = core::JoinPath(dev_root, container_path.substr(std::string("/dev").size()));
  return {{"path", container_path}, {"hostPath", host_path}, {"type", "c"},
          {"major", major},         {"minor", minor},        {"permissions", "rw"}};
}

}  // namespace

std::string CdiKind(std::string_view driver) { return std::string(driver) + "/" + kCdiClass; }

std::string CdiDeviceName(std::string_view claim_uid, std::string_view device_name,
                          const std::optional<std::string>& share_id) {
  std::string name = std::string(claim_uid) + "-" + std::string(device_name);
  if (share_id.has_value()) name += "-" + *share_id;
  return name;
}

std::string CdiDeviceId(std::string_view driver, std::string_view claim_uid,
                        std::string_view device_name,
                        const std::optional<std::string>& share_id) {
  return CdiKind(driver) + "=" + CdiDeviceName(claim_uid, device_name, share_id);
}

std::string CdiSpecFileName(std::string_view driver, std::string_view claim_uid) {
  return std::string(driver) + "-" + kCdiClass + "_" + std::string(claim_uid) + ".json";
}

nlohmann::json BuildCdiSpec(std::string_view driver, std::string_view claim_uid,
                            const std::vector<CdiDeviceInput>& devices, std::string_view dev_root,
                            const std::optional<HostCharDevice>& rdma_cm,
                            const std::optional<HostCharDevice>& gdrdrv,
                            const std::vector<std::string>& peer_rdma_devices) {
  nlohmann::json cdi_devices = nlohmann::json::array();
  std::vector<std::string> iface_names;
  auto add_iface = [&](const std::string& name) {
    // Two shares of one EFA, or a peer holding a share of ours, name the same device once.
    if (name.empty()) return;
    if (std::find(iface_names.begin(), iface_names.end(), name) == iface_names.end()) {
      iface_names.push_back(name);
    }
  };
  for (const CdiDeviceInput& input : devices) {
    const discovery::EfaDevice& device = *input.device;
    nlohmann::json node = CharNode("/dev/infiniband/" + device.UverbsName(), dev_root,
                                   device.uverbs_dev.major, device.uverbs_dev.minor);
    cdi_devices.push_back({{"name", CdiDeviceName(claim_uid, input.device_name, input.share_id)},
                           {"containerEdits", {{"deviceNodes", nlohmann::json::array({node})}}}});
    add_iface(device.rdma_device);
  }
  // The claim's own devices first, then the other claims of the pod: see the header.
  for (const std::string& name : peer_rdma_devices) add_iface(name);
  std::string iface_list;
  for (const std::string& name : iface_names) {
    if (!iface_list.empty()) iface_list += ",";
    iface_list += name;
  }
  // An empty FI_EFA_IFACE makes libfabric's EFA provider refuse every device: never emit it.
  nlohmann::json common = nlohmann::json::object();
  if (!iface_list.empty()) common["env"] = nlohmann::json::array({"FI_EFA_IFACE=" + iface_list});
  nlohmann::json common_nodes = nlohmann::json::array();
  if (rdma_cm.has_value()) {
    common_nodes.push_back(
        CharNode("/dev/infiniband/rdma_cm", dev_root, rdma_cm->major, rdma_cm->minor));
  }
  if (gdrdrv.has_value()) {
    common_nodes.push_back(CharNode("/dev/gdrdrv", dev_root, gdrdrv->major, gdrdrv->minor));
  }
  if (!common_nodes.empty()) common["deviceNodes"] = std::move(common_nodes);
  return {{"cdiVersion", kCdiVersion},
          {"kind", CdiKind(driver)},
          {"devices", std::move(cdi_devices)},
          {"containerEdits", std::move(common)}};
}

}  // namespace efadra::claims
