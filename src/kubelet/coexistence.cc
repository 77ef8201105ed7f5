#include "efadra/kubelet/coexistence.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

namespace efadra::kubelet {

std::vector<std::string> EfaDevicePluginSockets(const std::string& device_plugin_dir) {
  std::vector<std::string> found;
  std::error_code error;
  for (std::filesystem::directory_iterator it(device_plugin_dir, error), end; !error && it != end;
       it.increment(error)) {
    std::string name = it->path().filename().string();
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::error_code type_error;
    if (name.find("efa") == std::string::npos || !it->is_socket(type_error)) continue;
    found.push_back(it->path().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

}  // namespace efadra::kubelet
