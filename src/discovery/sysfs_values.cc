#include "efadra/discovery/sysfs_values.h"

#include <cctype>
#include <charconv>

#include "efadra/core/filesystem.h"

namespace efadra::discovery {
namespace {

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return !s.empty();
}

std::string Quote(std::string_view text) {
  constexpr size_t kMax = 40;  // garbage can be long; keep warnings one line
  std::string out = "\"";
  for (char c : text.substr(0, kMax)) {
    out.push_back(std::isprint(static_cast<unsigned char>(c)) != 0 ? c : '?');
  }
  if (text.size() > kMax) out += "...";
  return out + "\"";
}

}  // namespace

std::string_view TrimValue(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())) != 0) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())) != 0) {
    text.remove_suffix(1);
  }
  return text;
}

bool IsValidPciAddress(std::string_view bdf) {
  return bdf.size() == 12 && IsLowerHex(bdf.substr(0, 4)) && bdf[4] == ':' &&
         IsLowerHex(bdf.substr(5, 2)) && bdf[7] == ':' && IsLowerHex(bdf.substr(8, 2)) &&
         bdf[10] == '.' && IsLowerHex(bdf.substr(11, 1));
}

Result<uint16_t> ParsePciId(std::string_view text) {
  const std::string_view value = TrimValue(text);
  if (value.size() != 6 || value.substr(0, 2) != "0x" || !IsLowerHex(value.substr(2))) {
    return InvalidArgumentError("want a PCI id like 0x1d0f, got " + Quote(value));
  }
  unsigned id = 0;
  std::from_chars(value.data() + 2, value.data() + value.size(), id, 16);
  return static_cast<uint16_t>(id);
}

Result<int> ParseNumaNode(std::string_view text) {
  const std::string_view value = TrimValue(text);
  int node = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), node);
  if (value.empty() || ec != std::errc() || end != value.data() + value.size() || node < -1) {
    return InvalidArgumentError("want a NUMA node (-1, 0, 1, ...), got " + Quote(value));
  }
  return node;
}

Result<CharDeviceNumber> ParseDevNumber(std::string_view text) {
  const std::string_view value = TrimValue(text);
  const size_t colon = value.find(':');
  CharDeviceNumber number;
  if (colon != std::string_view::npos) {
    const char* begin = value.data();
    auto major = std::from_chars(begin, begin + colon, number.major);
    auto minor = std::from_chars(begin + colon + 1, begin + value.size(), number.minor);
    if (colon > 0 && major.ec == std::errc() && major.ptr == begin + colon &&
        minor.ec == std::errc() && minor.ptr == begin + value.size() && colon + 1 < value.size()) {
      return number;
    }
  }
  return InvalidArgumentError("want major:minor like 231:192, got " + Quote(value));
}

int ParseUverbsIndex(std::string_view name) {
  constexpr std::string_view kPrefix = "uverbs";
  if (name.substr(0, kPrefix.size()) != kPrefix || name.size() == kPrefix.size()) return -1;
  int index = -1;
  auto [end, ec] = std::from_chars(name.data() + kPrefix.size(), name.data() + name.size(), index);
  if (ec != std::errc() || end != name.data() + name.size() || index < 0) return -1;
  return index;
}

std::string ParsePortStateText(std::string_view text) {
  std::string_view value = TrimValue(text);
  // "4: ACTIVE": the kernel prints the enum number, a colon and the name.
  const size_t colon = value.find(": ");
  if (colon != std::string_view::npos && colon > 0) {
    bool digits = true;
    for (char c : value.substr(0, colon))
      digits = digits && std::isdigit(static_cast<unsigned char>(c));
    if (digits) value = TrimValue(value.substr(colon + 2));
  }
  return std::string(value);
}

int ParseRateGbps(std::string_view text) {
  const std::string_view value = TrimValue(text);
  int gbps = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), gbps);
  return ec == std::errc() && end != value.data() ? gbps : 0;
}

int EfaGeneration(uint16_t device_id) {
  return (device_id & 0xfff0) == 0xefa0 ? (device_id & 0xf) + 1 : 0;
}

Result<std::string> PcieRootFromLink(std::string_view bdf, std::string_view link_text) {
  // contracts.md §6.1, step by step.
  if (!IsValidPciAddress(bdf)) {
    return InvalidArgumentError("PCI address " + Quote(bdf) +
                                " does not match ^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-9a-f]$");
  }
  // Step 3: a relative link resolves against bus/pci/devices; an absolute one is taken as
  // rooted at the sysfs root. Both are cleaned relative to that root.
  std::string resolved = link_text.empty() || link_text.front() != '/'
                             ? core::CleanPath("/bus/pci/devices/" + std::string(link_text))
                             : core::CleanPath(link_text);
  if (!resolved.empty() && resolved.front() == '/') resolved.erase(0, 1);
  // Step 4.
  constexpr std::string_view kDevices = "devices/";
  if (resolved.rfind("devices/pci", 0) != 0) {
    return InvalidArgumentError("bus/pci/devices/" + std::string(bdf) + " -> " +
                                std::string(link_text) + " is not under devices/pci");
  }
  if (core::BaseName(resolved) != bdf) {
    return InvalidArgumentError("bus/pci/devices/" + std::string(bdf) + " -> " +
                                std::string(link_text) + " does not end in " + std::string(bdf));
  }
  // Step 5.
  const std::string_view rest = std::string_view(resolved).substr(kDevices.size());
  return std::string(rest.substr(0, rest.find('/')));
}

}  // namespace efadra::discovery
