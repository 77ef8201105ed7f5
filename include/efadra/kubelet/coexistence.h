// The AWS EFA device plugin and this driver cannot serve the same node: both hand out the same
// /dev/infiniband/uverbsN nodes, so a device could reach two pods. The device plugin announces
// itself with a socket in the kubelet's device-plugins directory; this finds it.
#pragma once

#include <string>
#include <vector>

namespace efadra::kubelet {

inline constexpr char kDefaultDevicePluginDir[] = "/var/lib/kubelet/device-plugins";

// Paths of sockets in `device_plugin_dir` whose name mentions EFA ("aws-efa-k8s-device-
// plugin.sock", "vpc.amazonaws.com_efa-…"), sorted. Empty when there are none or the directory
// cannot be read (not mounted: nothing to detect).
std::vector<std::string> EfaDevicePluginSockets(const std::string& device_plugin_dir);

}  // namespace efadra::kubelet
