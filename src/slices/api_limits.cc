#include "efadra/slices/api_limits.h"

namespace efadra::slices {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

}  // namespace

bool IsDnsLabel(std::string_view name) {
  if (name.empty() || name.size() > kMaxDnsLabelLength) return false;
  if (!IsLowerAlnum(name.front()) || !IsLowerAlnum(name.back())) return false;
  for (char c : name) {
    if (!IsLowerAlnum(c) && c != '-') return false;
  }
  return true;
}

bool IsDnsSubdomain(std::string_view name) {
  if (name.empty() || name.size() > kMaxDnsSubdomainLength) return false;
  size_t start = 0;
  while (true) {
    const size_t dot = name.find('.', start);
    const std::string_view label =
        name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (!IsDnsLabel(label)) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool IsAttributeIdentifier(std::string_view name) {
  if (name.empty() || name.size() > kMaxAttributeIdentifierLength) return false;
  auto is_alpha = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  };
  if (!is_alpha(name.front())) return false;
  for (char c : name) {
    if (!is_alpha(c) && !(c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool IsQualifiedAttributeName(std::string_view name) {
  const size_t slash = name.find('/');
  if (slash == std::string_view::npos) return IsAttributeIdentifier(name);
  // More than one '/' is invalid (the identifier part may not contain one).
  const std::string_view domain = name.substr(0, slash);
  return IsDriverName(domain) && IsAttributeIdentifier(name.substr(slash + 1));
}

bool IsDriverName(std::string_view name) {
  return name.size() <= kMaxDomainLength && IsDnsSubdomain(name);
}

bool IsPoolName(std::string_view name) {
  if (name.empty() || name.size() > kMaxDnsSubdomainLength) return false;
  size_t start = 0;
  while (true) {
    const size_t slash = name.find('/', start);
    const std::string_view part = name.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (!IsDnsSubdomain(part)) return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

}  // namespace efadra::slices
