// Verbs async events: the device's own word on its health, where libibverbs can open it.
// VerbsEventWatcher waits on the async-event fds of a VerbsEventSource (poll, with an eventfd
// to stop) and reports each event, already mapped to what it means for health, to a callback.
//   IBV_EVENT_PORT_ERR      -> the port is down        (kPortDown)
//   IBV_EVENT_PORT_ACTIVE   -> the port is back; re-read its state (kPortUp)
//   IBV_EVENT_DEVICE_FATAL  -> the device is unusable until reset (kDeviceFatal)
//   anything else           -> ignored (QP/CQ events belong to the process that owns the QP)
// Thread safety: Start()/Stop() from one owning thread; the
// callback runs on the watcher's thread, never concurrently with itself.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "efadra/core/status.h"

namespace efadra::discovery {

enum class VerbsHealthEvent { kIgnored, kPortDown, kPortUp, kDeviceFatal };

// libibverbs' enum ibv_event_type value -> its health meaning.
VerbsHealthEvent MapVerbsEvent(int ibv_event_type);

// The seam to libibverbs (style.md §5): tests inject a fake with pipes for fds.
class VerbsEventSource {
 public:
  struct Event {
    std::string rdma_device;
    int ibv_event_type = 0;
  };
  virtual ~VerbsEventSource() = default;
  // Opens every device of `rdma_devices` it can (a device that does not open is skipped);
  // returns how many are open. Replaces what an earlier call opened.
  virtual int Open(const std::vector<std::string>& rdma_devices) = 0;
  // One readable fd per open device (valid until the next Open()).
  virtual std::vector<int> Fds() const = 0;
  // The events pending on `fd`, each already acknowledged; never blocks.
  virtual std::vector<Event> Drain(int fd) = 0;
};

// ibv_get_device_list + ibv_open_device, async fds set non-blocking, ibv_get_async_event +
// ibv_ack_async_event. Only meaningful against the host's own /sys.
std::unique_ptr<VerbsEventSource> NewIbverbsEventSource();

class VerbsEventWatcher {
 public:
  using Callback = std::function<void(const std::string& rdma_device, VerbsHealthEvent event)>;

  VerbsEventWatcher(std::unique_ptr<VerbsEventSource> source, Callback callback);
  ~VerbsEventWatcher();  // Stop()s
  VerbsEventWatcher(const VerbsEventWatcher&) = delete;
  VerbsEventWatcher& operator=(const VerbsEventWatcher&) = delete;

  // Opens `rdma_devices` and (re)starts the thread. kUnavailable when none of them opens (no
  // hardware, no permission): the caller logs it once and relies on the poller. Restarts with
  // the new set when called again (after a rescan changed the devices).
  Status Start(const std::vector<std::string>& rdma_devices);
  // Stops the thread within one wake-up. Idempotent.
  void Stop();

 private:
  void Loop();

  std::unique_ptr<VerbsEventSource> source_;
  Callback callback_;
  int wake_fd_ = -1;
  std::thread thread_;
};

}  // namespace efadra::discovery
