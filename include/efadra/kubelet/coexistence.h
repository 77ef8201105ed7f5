// What else may hand out this node's EFAs: the AWS EFA device plugin (a socket in the kubelet's
// device-plugins directory) and a second DRA driver registered under our driver name (DRANET's
// dra.net-reg.sock, or a <driver>-<uid>-reg.sock that is not one of our instances). Both would
// give the same /dev/infiniband/uverbsN nodes to other pods, so the driver refuses prepares
// while either is there (ConflictMonitor, conflict_monitor.h). Stateless functions over the
// filesystem; thread-safe.
#pragma once

#include <string>
#include <vector>

namespace efadra::kubelet {

inline constexpr char kDefaultDevicePluginDir[] = "/var/lib/kubelet/device-plugins";

// The socket the AWS EFA device plugin serves ("Starting to serve on
// /var/lib/kubelet/device-plugins/aws-efa-device-plugin.sock" in its log).
inline constexpr char kEfaDevicePluginSocket[] = "aws-efa-device-plugin.sock";

// Paths of the sockets in `device_plugin_dir` whose file name is exactly one of
// `socket_names` (--efa-device-plugin-socket; a fork of the plugin may use another name),
// sorted. Names are compared whole: the kubelet's own kubelet.sock, another vendor's
// "default.sock" or "my-efa-thing.sock" are not the EFA device plugin, and taking them for it
// would refuse every prepare. Empty when there are none or the directory cannot be read (not
// mounted: nothing to detect).
std::vector<std::string> EfaDevicePluginSockets(
    const std::string& device_plugin_dir,
    const std::vector<std::string>& socket_names = {kEfaDevicePluginSocket});

// The file an instance of this driver keeps in the plugin directory while it serves, so that
// its rolling-update twin can tell it from another program registered under the same name:
// <plugin_dir>/efa-dra-driver-<podUID>.instance (efa-dra-driver.instance without a pod UID).
std::string InstanceMarkerPath(const std::string& plugin_dir, const std::string& pod_uid);

// Registration sockets in `registrar_dir` for `driver` ("<driver>-reg.sock",
// "<driver>-<uid>-reg.sock") that are live (a connect succeeds) and belong to no instance of
// this driver (no InstanceMarkerPath for their UID), except `own_socket`. Sorted paths.
std::vector<std::string> ForeignRegistrations(const std::string& registrar_dir,
                                              const std::string& driver,
                                              const std::string& plugin_dir,
                                              const std::string& own_socket);

}  // namespace efadra::kubelet
