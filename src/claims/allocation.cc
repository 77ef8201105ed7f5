#include "efadra/claims/allocation.h"

#include <algorithm>

namespace efadra::claims {
namespace {

// The object at obj[key] when it is one, else null.
const nlohmann::json* ObjectAt(const nlohmann::json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it != obj.end() && it->is_object() ? &*it : nullptr;
}

// obj[key] when it is a string, else "" (a wrong type is as good as missing here).
std::string StringAt(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

Result<std::vector<AllocationResult>> OurAllocationResults(const nlohmann::json& claim,
                                                           const std::string& what,
                                                           const std::string& driver,
                                                           const std::string& pool) {
  const nlohmann::json* status = ObjectAt(claim, "status");
  const nlohmann::json* allocation = status != nullptr ? ObjectAt(*status, "allocation") : nullptr;
  if (allocation == nullptr) return FailedPreconditionError(what + " is not allocated");
  const nlohmann::json* devices = ObjectAt(*allocation, "devices");
  if (devices == nullptr || !devices->contains("results")) {
    return std::vector<AllocationResult>{};  // allocated with no device results (config only)
  }
  const nlohmann::json& results = (*devices)["results"];
  if (!results.is_array()) {
    return InvalidArgumentError(what + ": status.allocation.devices.results is not a list");
  }
  std::vector<AllocationResult> ours;
  for (const auto& result : results) {
    if (!result.is_object()) return InvalidArgumentError(what + ": malformed allocation result");
    if (StringAt(result, "driver") != driver) continue;  // another driver's device
    if (StringAt(result, "pool") != pool) continue;      // another node's pool
    AllocationResult r;
    r.request = StringAt(result, "request");
    r.device = StringAt(result, "device");
    auto admin = result.find("adminAccess");
    r.admin_access = admin != result.end() && admin->is_boolean() && admin->get<bool>();
    if (auto share = result.find("shareID"); share != result.end() && share->is_string()) {
      r.share_id = share->get<std::string>();
    }
    if (r.request.empty() || r.device.empty()) {
      return InvalidArgumentError(what + ": allocation result without request or device");
    }
    ours.push_back(std::move(r));
  }
  return ours;
}

std::string BaseRequestName(const std::string& request) {
  return request.substr(0, request.find('/'));
}

Status CheckOpaqueConfig(const nlohmann::json& claim, const std::string& what,
                         const std::string& driver, const std::vector<AllocationResult>& ours) {
  const nlohmann::json* status = ObjectAt(claim, "status");
  const nlohmann::json* allocation = status != nullptr ? ObjectAt(*status, "allocation") : nullptr;
  const nlohmann::json* devices = allocation != nullptr ? ObjectAt(*allocation, "devices") : nullptr;
  if (devices == nullptr || ours.empty()) return Status::Ok();
  const auto config = devices->find("config");
  if (config == devices->end() || !config->is_array()) return Status::Ok();
  for (size_t i = 0; i < config->size(); ++i) {
    const nlohmann::json& entry = (*config)[i];
    const nlohmann::json* opaque = entry.is_object() ? ObjectAt(entry, "opaque") : nullptr;
    if (opaque == nullptr || StringAt(*opaque, "driver") != driver) continue;
    // The requests the entry names; none means every request of the claim.
    std::vector<std::string> requests;
    if (auto listed = entry.find("requests"); listed != entry.end() && listed->is_array()) {
      for (const auto& request : *listed) {
        if (request.is_string()) requests.push_back(request.get<std::string>());
      }
    }
    const bool applies =
        requests.empty() ||
        std::any_of(ours.begin(), ours.end(), [&](const AllocationResult& result) {
          return std::find(requests.begin(), requests.end(), result.request) != requests.end() ||
                 std::find(requests.begin(), requests.end(), BaseRequestName(result.request)) !=
                     requests.end();
        });
    if (!applies) continue;
    const auto parameters = opaque->find("parameters");
    if (parameters == opaque->end() || parameters->is_null() ||
        (parameters->is_object() && parameters->empty())) {
      continue;
    }
    std::string fields;
    if (parameters->is_object()) {
      for (const auto& [key, value] : parameters->items()) {
        fields += (fields.empty() ? "" : ", ") + key;
      }
    } else {
      fields = "a " + std::string(parameters->type_name());
    }
    std::string named = requests.empty() ? "every request" : "requests ";
    for (size_t r = 0; r < requests.size(); ++r) named += (r == 0 ? "" : ",") + requests[r];
    return InvalidArgumentError(
        what + ": status.allocation.devices.config[" + std::to_string(i) + "] (" +
        (StringAt(entry, "source").empty() ? "unknown source" : StringAt(entry, "source")) +
        ", " + named + ") gives driver " + driver + " parameters (" + fields +
        "); efa-dra-driver takes no device configuration (DRANET's interface, routes and ethtool "
        "settings do not apply to EFA devices): remove it from the claim or its DeviceClass");
  }
  return Status::Ok();
}

}  // namespace efadra::claims
