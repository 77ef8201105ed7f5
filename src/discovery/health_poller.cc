#include "efadra/discovery/health_poller.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <map>
#include <utility>

#include "efadra/discovery/sysfs_values.h"

namespace efadra::discovery {
namespace {

// sysfs attributes are one page at most; the ones polled here are a few bytes.
constexpr size_t kMaxAttribute = 64;

std::string NumberText(CharDeviceNumber number) {
  return std::to_string(number.major) + ":" + std::to_string(number.minor);
}

}  // namespace

std::string JudgeNoCompletionCmds(std::optional<std::string_view> text) {
  if (!text.has_value()) return "";
  const std::string_view value = TrimValue(*text);
  uint64_t count = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), count);
  if (value.empty() || error != std::errc() || end != value.data() + value.size() || count == 0) {
    return "";
  }
  return std::to_string(count) +
         " admin command(s) got no completion (hw_counters/no_completion_cmds): the efa driver "
         "stopped the device's admin queue; reset the device";
}

std::string JudgeDevNode(const Result<core::FileInfo>& info, const std::string& host_path,
                         CharDeviceNumber expected) {
  if (!info.ok()) {
    return "uverbs device node " + host_path + " is missing (" + info.status().message() + ")";
  }
  if (info->type == core::FileType::kRegular) return "";
  if (info->type != core::FileType::kCharDevice) {
    return "uverbs device node " + host_path + " is not a character device";
  }
  if (info->device_major != expected.major || info->device_minor != expected.minor) {
    return "uverbs device node " + host_path + " is " +
           NumberText({info->device_major, info->device_minor}) + " but sysfs says " +
           NumberText(expected);
  }
  return "";
}

HealthPoller::HealthPoller(const core::Filesystem& sysfs, const core::Filesystem& dev)
    : sysfs_(sysfs), dev_(dev) {}

HealthPoller::~HealthPoller() {
  for (auto& device : devices_) {
    Close(device.state);
    Close(device.phys_state);
    Close(device.no_completion_cmds);
  }
}

void HealthPoller::Track(const std::vector<EfaDevice>& devices) {
  // Same device, same files: keep their descriptors (a rescan every --resync must not reopen
  // 96 files). A device that was re-probed has new sysfs files, and the old descriptors would
  // read ENODEV; Read() reopens those by path.
  std::map<std::string, Tracked> old;
  for (auto& device : devices_) {
    std::string key = device.rdma_device + "|" + device.pci_address + "|" + device.uverbs_path;
    old.emplace(std::move(key), std::move(device));
  }
  devices_.clear();
  for (const EfaDevice& device : devices) {
    const std::string uverbs_path = "/infiniband/" + device.UverbsName();
    const std::string key = device.rdma_device + "|" + device.pci_address + "|" + uverbs_path;
    if (auto it = old.find(key); it != old.end()) {
      it->second.uverbs_dev = device.uverbs_dev;
      devices_.push_back(std::move(it->second));
      old.erase(it);
      continue;
    }
    Tracked tracked;
    tracked.rdma_device = device.rdma_device;
    tracked.pci_address = device.pci_address;
    tracked.uverbs_path = uverbs_path;
    tracked.uverbs_dev = device.uverbs_dev;
    const std::string ib = "/class/infiniband/" + device.rdma_device;
    tracked.state.host_path = sysfs_.HostPath(ib + "/ports/1/state");
    tracked.phys_state.host_path = sysfs_.HostPath(ib + "/ports/1/phys_state");
    tracked.no_completion_cmds.host_path = sysfs_.HostPath(ib + "/hw_counters/no_completion_cmds");
    devices_.push_back(std::move(tracked));
  }
  for (auto& [key, device] : old) {
    Close(device.state);
    Close(device.phys_state);
    Close(device.no_completion_cmds);
  }
}

std::vector<HealthReading> HealthPoller::Poll() {
  std::vector<HealthReading> readings;
  readings.reserve(devices_.size());
  for (Tracked& device : devices_) {
    HealthReading reading;
    reading.pci_address = device.pci_address;
    if (auto text = Read(device.state)) reading.port_state = ParsePortStateText(*text);
    if (auto text = Read(device.phys_state)) reading.phys_state = ParsePortStateText(*text);
    reading.counter_problem = JudgeNoCompletionCmds(Read(device.no_completion_cmds));
    reading.dev_node_problem = JudgeDevNode(dev_.Stat(device.uverbs_path),
                                            dev_.HostPath(device.uverbs_path), device.uverbs_dev);
    readings.push_back(std::move(reading));
  }
  return readings;
}

std::optional<std::string> HealthPoller::Read(KeptFile& file) {
  // Two tries: the kept descriptor, then a fresh open (a re-probed device has new sysfs files
  // and the old descriptor reads ENODEV). A kept descriptor of a regular file keeps reading
  // the old inode when the file is replaced by rename, so fixtures are rewritten in place.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (file.fd < 0) {
      file.fd = ::open(file.host_path.c_str(), O_RDONLY | O_CLOEXEC);
      if (file.fd < 0) return std::nullopt;
    }
    char buffer[kMaxAttribute];
    ssize_t n = -1;
    do {
      n = ::pread(file.fd, buffer, sizeof(buffer), 0);
    } while (n < 0 && errno == EINTR);
    if (n >= 0) return std::string(buffer, static_cast<size_t>(n));
    Close(file);
  }
  return std::nullopt;
}

void HealthPoller::Close(KeptFile& file) {
  if (file.fd >= 0) ::close(file.fd);
  file.fd = -1;
}

}  // namespace efadra::discovery
