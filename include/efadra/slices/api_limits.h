// The resource.k8s.io/v1 limits and name formats a ResourceSlice must respect
// (contracts.md §0, §5.2), checked before anything is sent so the API server never rejects a
// slice of ours. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string_view>

namespace efadra::slices {

inline constexpr int kMaxDevicesPerSlice = 128;
// When any device of a slice has taints, consumesCounters (1.35+) or list attributes (1.36+).
inline constexpr int kMaxDevicesPerSliceWithTaints = 64;
// Attributes + capacities per device, combined.
inline constexpr int kMaxAttributesPerDevice = 32;
inline constexpr size_t kMaxStringAttributeBytes = 64;
inline constexpr size_t kMaxAttributeIdentifierLength = 32;
inline constexpr size_t kMaxDomainLength = 63;
inline constexpr size_t kMaxDnsLabelLength = 63;
inline constexpr size_t kMaxDnsSubdomainLength = 253;

// DNS label (RFC 1123): 1..63 of [a-z0-9-], alphanumeric at both ends.
bool IsDnsLabel(std::string_view name);

// DNS subdomain: 1..253 chars, dot-separated DNS labels.
bool IsDnsSubdomain(std::string_view name);

// C identifier [A-Za-z_][A-Za-z0-9_]* of at most 32 characters.
bool IsAttributeIdentifier(std::string_view name);

// An attribute or capacity name: "identifier" (the driver's own domain) or
// "domain/identifier" with domain a DNS subdomain of at most 63 characters.
bool IsQualifiedAttributeName(std::string_view name);

// Driver name: DNS subdomain of at most 63 characters.
bool IsDriverName(std::string_view name);

// Pool name: at most 253 characters, one or more DNS subdomains separated by '/'.
bool IsPoolName(std::string_view name);

}  // namespace efadra::slices
