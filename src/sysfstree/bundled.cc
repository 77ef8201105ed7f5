#include "efadra/sysfstree/bundled.h"

#include <algorithm>

#include "bundled_data.h"

namespace efadra::sysfstree {

std::optional<std::string_view> BundledTopology(std::string_view instance_type) {
  for (const auto* file = internal::kBundledFiles; file->instance_type != nullptr; ++file) {
    if (instance_type == file->instance_type) return std::string_view(file->yaml);
  }
  return std::nullopt;
}

std::vector<std::string_view> BundledInstanceTypes() {
  std::vector<std::string_view> names;
  for (const auto* file = internal::kBundledFiles; file->instance_type != nullptr; ++file) {
    names.emplace_back(file->instance_type);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace efadra::sysfstree
