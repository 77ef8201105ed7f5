#include "efadra/claims/allocation.h"

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

}  // namespace efadra::claims
