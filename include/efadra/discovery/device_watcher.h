// DeviceWatcher: tells the publisher when to rescan. It listens to kernel events that can
// change the inventory - NETLINK_ROUTE link events (libnl: ENA netdevs appearing, renamed, up or
// down) and NETLINK_KOBJECT_UEVENT add/remove/change for the infiniband, infiniband_verbs and
// pci subsystems - and calls a callback once a burst of events has been quiet for the debounce
// window (default 200 ms).
//
// Thread safety: Start()/Stop() from one owning thread. The callback runs on the watcher's own
// thread, never concurrently with itself; it must not call Stop().
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "efadra/core/status.h"

namespace efadra::discovery {

// Where events come from. The kernel source is the default; tests inject their own.
class EventSource {
 public:
  virtual ~EventSource() = default;
  // Opens the sockets; kUnavailable / kPermissionDenied naming the socket if it cannot.
  virtual Status Open() = 0;
  // File descriptors to poll for readability (valid after Open()).
  virtual std::vector<int> Fds() const = 0;
  // Reads everything pending on `fd` without blocking; returns how many relevant events it held.
  virtual int Drain(int fd) = 0;
};

// The kernel: a libnl NETLINK_ROUTE socket subscribed to RTNLGRP_LINK, and a
// NETLINK_KOBJECT_UEVENT socket filtered with IsRelevantUevent.
std::unique_ptr<EventSource> NewKernelEventSource();

// True for a kernel uevent datagram ("add@/devices/...\0ACTION=add\0SUBSYSTEM=pci\0...") whose
// ACTION is add/remove/change and SUBSYSTEM is infiniband, infiniband_verbs or pci. udev's
// re-broadcasts ("libudev" header) are ignored.
bool IsRelevantUevent(std::string_view datagram);

// Trailing-edge debounce: the pure timing logic of the watcher. Not thread-safe.
class Debouncer {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  explicit Debouncer(std::chrono::milliseconds window) : window_(window) {}
  // Records an event at `now`; pushes the deadline to now + window.
  void OnEvent(TimePoint now);
  // When the callback is due; nullopt when no event is pending.
  std::optional<TimePoint> Deadline() const { return deadline_; }
  // True (and clears the pending state) when an event is pending and `now` >= the deadline.
  bool Fire(TimePoint now);

 private:
  std::chrono::milliseconds window_;
  std::optional<TimePoint> deadline_;
};

class DeviceWatcher {
 public:
  struct Options {
    std::chrono::milliseconds debounce{200};
  };
  using Callback = std::function<void()>;

  // Watches the kernel.
  DeviceWatcher(Callback callback, Options options);
  // Watches `source` (tests).
  DeviceWatcher(Callback callback, std::unique_ptr<EventSource> source, Options options);
  ~DeviceWatcher();  // Stop()s
  DeviceWatcher(const DeviceWatcher&) = delete;
  DeviceWatcher& operator=(const DeviceWatcher&) = delete;

  // Opens the event source and starts the thread. kFailedPrecondition if already started;
  // the source's error if it cannot be opened (the caller falls back to periodic resync).
  Status Start();
  // Stops the thread (within one poll wake-up, well under 100 ms); pending events are dropped.
  // Idempotent.
  void Stop();

 private:
  void Loop();

  Callback callback_;
  std::unique_ptr<EventSource> source_;
  Options options_;
  int wake_fd_ = -1;  // eventfd that Stop() signals
  std::thread thread_;
};

}  // namespace efadra::discovery
