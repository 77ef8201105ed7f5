// Joins three API views: the driver's ResourceSlices (what exists, and the unhealthy taint),
// the ResourceClaims allocated from them (who holds what), and the holding pods' status (the
// kubelet's health of each allocated device).
#include "efadra/nodestatus/efa_status.h"

#include <algorithm>
#include <set>
#include <sstream>

#include "efadra/core/text_table.h"
#include "efadra/slices/resource_slices.h"

namespace efadra::nodestatus {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr char kResourceApi[] = "/apis/resource.k8s.io/v1";

// A refused request becomes an error that says which permission is missing.
Status Explain(const Status& status, const std::string& verb, const std::string& resource,
               const std::string& scope) {
  if (status.code() == StatusCode::kPermissionDenied) {
    return PermissionDeniedError("RBAC: the caller may not " + verb + " " + resource + " " +
                                 scope + " (grant verb \"" + verb + "\" on \"" + resource +
                                 "\"): " + status.message());
  }
  if (status.code() == StatusCode::kUnauthenticated) {
    return Status(status.code(), "the API server rejected the credentials while trying to " +
                                     verb + " " + resource + ": " + status.message());
  }
  return status.WithContext(verb + " " + resource);
}

std::string StringAt(const json& object, const json::json_pointer& pointer) {
  return object.contains(pointer) && object[pointer].is_string()
             ? object[pointer].get<std::string>()
             : "";
}

// A device attribute's string value ({"string": "..."}), "" when absent.
std::string Attribute(const json& device, const std::string& key) {
  if (!device.contains("attributes") || !device["attributes"].is_object()) return "";
  const auto& attributes = device["attributes"];
  auto found = attributes.find(key);
  if (found == attributes.end() || !found->is_object()) return "";
  return found->value("string", "");
}

std::string DeviceKey(const std::string& pool, const std::string& device) {
  return pool + "/" + device;
}

// Which of the pod's devices (pool/device keys) an allocatedResourcesStatus resourceID names.
// The kubelet uses the device's first CDI id ("dra.net/efa=<claim uid>-<device>", the names
// this driver gives its CDI devices) and falls back to "<driver>/<pool>/<device>".
std::string HeldDeviceOf(const std::string& resource_id, const std::string& driver,
                         const std::set<std::string>& device_keys) {
  const std::string prefix = driver + "/";
  if (resource_id.rfind(prefix, 0) != 0) return "";
  if (device_keys.contains(resource_id.substr(prefix.size()))) {
    return resource_id.substr(prefix.size());
  }
  const size_t equals = resource_id.find('=');
  if (equals == std::string::npos) return "";
  const std::string cdi_name = resource_id.substr(equals + 1);
  for (const auto& key : device_keys) {
    const std::string suffix = "-" + key.substr(key.find('/') + 1);
    if (cdi_name.size() > suffix.size() &&
        cdi_name.compare(cdi_name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return key;
    }
  }
  return "";
}

}  // namespace

Result<StatusReport> CollectStatus(kube::Client& client, const StatusQuery& query) {
  kube::ListOptions slice_options;
  slice_options.field_selector = "spec.driver=" + query.driver;
  if (!query.node.empty()) slice_options.field_selector += ",spec.nodeName=" + query.node;
  auto slices = client.List(std::string(kResourceApi) + "/resourceslices", slice_options);
  if (!slices.ok()) {
    return Explain(slices.status(), "list", "resourceslices.resource.k8s.io", "at cluster scope");
  }
  auto claims = client.List(std::string(kResourceApi) + "/resourceclaims");
  if (!claims.ok()) {
    return Explain(claims.status(), "list", "resourceclaims.resource.k8s.io",
                   "at cluster scope (all namespaces)");
  }

  StatusReport report;
  std::map<std::string, size_t> by_key;  // pool/device -> index in report.devices
  const std::string taint_key = slices::UnhealthyTaintKey(query.driver);
  for (const auto& slice : (*slices)["items"]) {
    const std::string node = StringAt(slice, "/spec/nodeName"_json_pointer);
    const std::string pool = StringAt(slice, "/spec/pool/name"_json_pointer);
    if (!slice.contains("/spec/devices"_json_pointer)) continue;
    for (const auto& device : slice["spec"]["devices"]) {
      DeviceStatus status;
      status.node = node;
      status.pool = pool;
      status.name = device.value("name", "");
      status.pci_address = Attribute(device, "dra.net/pciAddress");
      status.rdma_device = Attribute(device, "dra.net/rdmaDevice");
      status.pcie_root = Attribute(device, "resource.kubernetes.io/pcieRoot");
      status.health = "untainted";
      for (const auto& taint : device.value("taints", json::array())) {
        if (taint.value("key", "") == taint_key) {
          status.health = "Unhealthy (" + taint.value("value", "") + ")";
        }
      }
      by_key[DeviceKey(pool, status.name)] = report.devices.size();
      report.devices.push_back(std::move(status));
    }
  }

  // Pods to read, with the devices each holds: namespace/name -> device keys.
  std::map<std::string, std::set<std::string>> pods;
  for (const auto& claim : (*claims)["items"]) {
    const json::json_pointer results_at("/status/allocation/devices/results");
    if (!claim.contains(results_at) || !claim[results_at].is_array()) continue;
    const std::string ns = StringAt(claim, "/metadata/namespace"_json_pointer);
    std::vector<std::string> pod_names;
    for (const auto& consumer : claim["status"].value("reservedFor", json::array())) {
      if (consumer.value("resource", "") == "pods") pod_names.push_back(consumer.value("name", ""));
    }
    for (const auto& result : claim[results_at]) {
      if (result.value("driver", "") != query.driver) continue;
      auto found = by_key.find(DeviceKey(result.value("pool", ""), result.value("device", "")));
      if (found == by_key.end()) continue;  // another node's device, or a slice gone since
      DeviceHolder holder;
      holder.claim_namespace = ns;
      holder.claim_name = StringAt(claim, "/metadata/name"_json_pointer);
      holder.request = result.value("request", "");
      holder.admin_access = result.value("adminAccess", false);
      holder.pods = pod_names;
      report.devices[found->second].holders.push_back(std::move(holder));
      for (const auto& pod : pod_names) pods[ns + "/" + pod].insert(found->first);
    }
  }

  // The kubelet's health of allocated devices (ResourceHealthStatus) is in the pods' status.
  for (const auto& [pod_key, device_keys] : pods) {
    const std::string ns = pod_key.substr(0, pod_key.find('/'));
    const std::string name = pod_key.substr(pod_key.find('/') + 1);
    auto pod = client.Get("/api/v1/namespaces/" + ns + "/pods/" + name);
    if (!pod.ok()) {
      if (pod.status().code() != StatusCode::kNotFound) {
        report.warnings.push_back(
            "pod health not shown for " + pod_key + ": " +
            Explain(pod.status(), "get", "pods", "in namespace " + ns).message());
      }
      continue;
    }
    for (const char* statuses : {"containerStatuses", "initContainerStatuses"}) {
      const json::json_pointer at("/status/" + std::string(statuses));
      if (!pod->contains(at) || !(*pod)[at].is_array()) continue;
      for (const auto& container : (*pod)[at]) {
        for (const auto& allocated : container.value("allocatedResourcesStatus", json::array())) {
          for (const auto& resource : allocated.value("resources", json::array())) {
            const std::string key =
                HeldDeviceOf(resource.value("resourceID", ""), query.driver, device_keys);
            auto found = by_key.find(key);
            if (found == by_key.end()) continue;
            std::string& health = report.devices[found->second].health;
            if (health.rfind("Unhealthy (", 0) != 0) health = resource.value("health", "Unknown");
          }
        }
      }
    }
  }

  std::sort(report.devices.begin(), report.devices.end(),
            [](const DeviceStatus& a, const DeviceStatus& b) {
              return a.node != b.node ? a.node < b.node : a.name < b.name;
            });
  return report;
}

std::string StatusTable(const StatusReport& report) {
  std::vector<std::vector<std::string>> cells = {
      {"NODE", "DEVICE", "RDMA DEVICE", "PCIE ROOT", "HEALTH", "CLAIM", "PODS"}};
  for (const auto& device : report.devices) {
    std::vector<std::string> claims;
    std::vector<std::string> pod_lists;
    for (const auto& holder : device.holders) {
      claims.push_back(holder.claim_namespace + "/" + holder.claim_name +
                       (holder.admin_access ? " (admin)" : ""));
      std::string pods;
      for (const auto& pod : holder.pods) pods += (pods.empty() ? "" : ",") + pod;
      pod_lists.push_back(pods.empty() ? "-" : pods);
    }
    if (claims.empty()) {
      claims.push_back("-");
      pod_lists.push_back("-");
    }
    for (size_t i = 0; i < claims.size(); ++i) {
      const bool first = i == 0;
      cells.push_back({first ? device.node : "", first ? device.name : "",
                       first ? (device.rdma_device.empty() ? "?" : device.rdma_device) : "",
                       first ? (device.pcie_root.empty() ? "?" : device.pcie_root) : "",
                       first ? device.health : "", claims[i], pod_lists[i]});
    }
  }
  std::ostringstream out;
  out << core::FormatColumns(cells);
  size_t held = 0;
  std::set<std::string> nodes;
  for (const auto& device : report.devices) {
    held += device.holders.empty() ? 0 : 1;
    nodes.insert(device.node);
  }
  out << "\n"
      << report.devices.size() << " EFA device" << (report.devices.size() == 1 ? "" : "s")
      << " on " << nodes.size() << " node" << (nodes.size() == 1 ? "" : "s") << ", " << held
      << " allocated\n";
  return out.str();
}

ordered_json StatusJson(const StatusReport& report) {
  ordered_json devices = ordered_json::array();
  for (const auto& device : report.devices) {
    ordered_json holders = ordered_json::array();
    for (const auto& holder : device.holders) {
      holders.push_back({{"namespace", holder.claim_namespace},
                         {"claim", holder.claim_name},
                         {"request", holder.request},
                         {"adminAccess", holder.admin_access},
                         {"pods", holder.pods}});
    }
    devices.push_back({{"node", device.node},
                       {"pool", device.pool},
                       {"name", device.name},
                       {"pciAddress", device.pci_address},
                       {"rdmaDevice", device.rdma_device},
                       {"pcieRoot", device.pcie_root},
                       {"health", device.health},
                       {"claims", holders}});
  }
  return {{"devices", devices}, {"warnings", report.warnings}};
}

}  // namespace efadra::nodestatus
