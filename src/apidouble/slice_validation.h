// ResourceSlice validation as kube-apiserver (resource.k8s.io/v1, 1.34+) does it, with the real
// limits and formats (contracts.md §0 and §5.2): driver and pool names, exactly one node
// selection field, device count (128, or 64 when a device has taints or consumesCounters),
// device names (DNS labels, unique), qualified attribute/capacity names, ≤ 32 attributes +
// capacities per device, exactly one value per attribute, string/version values ≤ 64 bytes,
// SemVer versions, pool generation/count, taint effects, immutable fields on update.
//
// Unknown fields: the real server (fieldValidation=Warn, the default) drops them silently and
// answers with a `Warning: 299` header; with fieldValidation=Strict it fails with 400. We do
// the same: PruneUnknownFields removes them and returns their paths.
//
// Pure functions over JSON; thread-safe.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace efadra::apidouble {

// One entry of a Status object's details.causes, as the real API server writes it.
struct FieldCause {
  std::string reason;   // FieldValueRequired, FieldValueInvalid, FieldValueTooLong, ...
  std::string message;  // "Required value", "Invalid value: \"x\": ...", ...
  std::string field;    // "spec.devices[0].attributes[numaNode].int"
};

// Structural (decode) errors: wrong JSON types where the Go decoder would fail (the real
// server answers 400 BadRequest for those). Empty when the shape decodes.
std::vector<std::string> DecodeErrors(const nlohmann::json& slice);

// Semantic validation of a new slice (after defaulting metadata). Empty when valid.
std::vector<FieldCause> ValidateResourceSlice(const nlohmann::json& slice);

// Validation of an update: everything ValidateResourceSlice checks plus immutable fields
// (spec.driver, spec.pool.name, spec.nodeName).
std::vector<FieldCause> ValidateResourceSliceUpdate(const nlohmann::json& updated,
                                                    const nlohmann::json& stored);

// Removes fields the v1 schema does not know from the slice's spec; returns their paths
// ("spec.devices[0].foo"), in document order.
std::vector<std::string> PruneUnknownFields(nlohmann::json& slice);

// What the server does with the DRAConsumableCapacity gate off: removes
// devices[].allowMultipleAllocations and devices[].capacity[*].requestPolicy, without a warning.
void DropConsumableCapacityFields(nlohmann::json& slice);

// Format helpers, exposed for tests and for the other kinds.
bool IsDnsLabel(const std::string& s);
bool IsDnsSubdomain(const std::string& s);
bool IsSemVer(const std::string& s);
bool IsCIdentifier(const std::string& s);

}  // namespace efadra::apidouble
