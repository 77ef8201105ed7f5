// `efa-dra-driver status`: the API server's view of EFAs — for each device the driver
// published, its health and which ResourceClaim and pods hold it. Read-only: LIST
// resourceslices and resourceclaims, GET of the pods the claims are reserved for.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "efadra/core/status.h"
#include "efadra/kube/client.h"

namespace efadra::nodestatus {

struct StatusQuery {
  std::string driver = "dra.net";
  std::string node;  // "" = every node
};

// One claim allocation of a device (several with adminAccess or shared devices).
struct DeviceHolder {
  std::string claim_namespace;
  std::string claim_name;
  std::string request;
  bool admin_access = false;
  std::vector<std::string> pods;  // the claim's status.reservedFor pods, by name
};

struct DeviceStatus {
  std::string node;
  std::string pool;
  std::string name;         // "pci-0000-4f-00-0"
  std::string pci_address;  // attribute dra.net/pciAddress
  std::string rdma_device;  // attribute dra.net/rdmaDevice
  std::string pcie_root;    // attribute resource.kubernetes.io/pcieRoot
  // "Unhealthy (<reason>)" from the driver's <driver>/unhealthy taint (--taint-unhealthy);
  // else the kubelet's view in the holding pods' allocatedResourcesStatus ("Healthy",
  // "Unhealthy", "Unknown"); else "untainted" (nothing in the API says otherwise).
  std::string health;
  std::vector<DeviceHolder> holders;
};

struct StatusReport {
  std::vector<DeviceStatus> devices;  // by node, then device name
  // Partial views ("cannot get pod ns/x: ..."): the report is still printed.
  std::vector<std::string> warnings;
};

// kPermissionDenied / kUnauthenticated with the verb and resource that RBAC refused ("RBAC:
// cannot list resourceclaims.resource.k8s.io at cluster scope"); other API errors as the
// client returns them, naming the request.
Result<StatusReport> CollectStatus(kube::Client& client, const StatusQuery& query);

std::string StatusTable(const StatusReport& report);
nlohmann::ordered_json StatusJson(const StatusReport& report);

}  // namespace efadra::nodestatus
