#include "efadra/kubelet/coexistence.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

namespace efadra::kubelet {
namespace {

// A socket file is also left behind by a process that crashed; only a listener accepts.
bool Live(const std::string& path) {
  sockaddr_un address{};
  if (path.size() >= sizeof(address.sun_path)) return false;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const bool live = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return live;
}

}  // namespace

std::vector<std::string> EfaDevicePluginSockets(const std::string& device_plugin_dir,
                                                const std::vector<std::string>& socket_names) {
  std::vector<std::string> found;
  for (const std::string& name : socket_names) {
    // A name with a '/' would look outside the directory; only plain file names count.
    if (name.empty() || name.find('/') != std::string::npos) continue;
    const std::filesystem::path path = std::filesystem::path(device_plugin_dir) / name;
    std::error_code error;
    if (std::filesystem::is_socket(path, error)) found.push_back(path.string());
  }
  std::sort(found.begin(), found.end());
  found.erase(std::unique(found.begin(), found.end()), found.end());
  return found;
}

std::string InstanceMarkerPath(const std::string& plugin_dir, const std::string& pod_uid) {
  return plugin_dir + (pod_uid.empty() ? "/efa-dra-driver.instance"
                                       : "/efa-dra-driver-" + pod_uid + ".instance");
}

std::vector<std::string> ForeignRegistrations(const std::string& registrar_dir,
                                              const std::string& driver,
                                              const std::string& plugin_dir,
                                              const std::string& own_socket) {
  const std::string prefix = driver + "-";
  const std::string suffix = "-reg.sock";
  const std::string plain = driver + suffix;
  std::vector<std::string> found;
  std::error_code error;
  for (std::filesystem::directory_iterator it(registrar_dir, error), end; !error && it != end;
       it.increment(error)) {
    const std::string name = it->path().filename().string();
    const std::string path = it->path().string();
    if (path == own_socket) continue;
    std::string uid;
    if (name == plain) {
      uid = "";
    } else if (name.size() > prefix.size() + suffix.size() && name.rfind(prefix, 0) == 0 &&
               name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      uid = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    } else {
      continue;  // another driver's registration
    }
    std::error_code marker_error;
    if (std::filesystem::exists(InstanceMarkerPath(plugin_dir, uid), marker_error)) continue;
    if (Live(path)) found.push_back(path);
  }
  std::sort(found.begin(), found.end());
  return found;
}

}  // namespace efadra::kubelet
