#include "efadra/discovery/verbs_events.h"

#include <fcntl.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace efadra::discovery {
namespace {

// Owns the open contexts; the async fd of each is what the watcher polls.
class IbverbsEventSource final : public VerbsEventSource {
 public:
  ~IbverbsEventSource() override { CloseAll(); }

  int Open(const std::vector<std::string>& rdma_devices) override {
    CloseAll();
    int count = 0;
    ibv_device** list = ibv_get_device_list(&count);
    if (list == nullptr) return 0;  // no RDMA subsystem, or no permission
    for (int i = 0; i < count; ++i) {
      const char* name = ibv_get_device_name(list[i]);
      if (name == nullptr) continue;
      bool wanted = false;
      for (const auto& device : rdma_devices) wanted = wanted || device == name;
      if (!wanted) continue;
      ibv_context* context = ibv_open_device(list[i]);
      if (context == nullptr) continue;
      // The watcher drains until EAGAIN, so ibv_get_async_event must not block.
      const int flags = ::fcntl(context->async_fd, F_GETFL);
      if (flags < 0 || ::fcntl(context->async_fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        ibv_close_device(context);
        continue;
      }
      contexts_.push_back({name, context});
    }
    ibv_free_device_list(list);
    return static_cast<int>(contexts_.size());
  }

  std::vector<int> Fds() const override {
    std::vector<int> fds;
    for (const auto& open : contexts_) fds.push_back(open.context->async_fd);
    return fds;
  }

  std::vector<Event> Drain(int fd) override {
    std::vector<Event> events;
    for (const auto& open : contexts_) {
      if (open.context->async_fd != fd) continue;
      ibv_async_event event;
      while (ibv_get_async_event(open.context, &event) == 0) {
        events.push_back({open.name, static_cast<int>(event.event_type)});
        // Every event must be acked, or ibv_close_device blocks forever.
        ibv_ack_async_event(&event);
      }
    }
    return events;
  }

 private:
  struct OpenDevice {
    std::string name;
    ibv_context* context;
  };

  void CloseAll() {
    for (const auto& open : contexts_) ibv_close_device(open.context);
    contexts_.clear();
  }

  std::vector<OpenDevice> contexts_;
};

}  // namespace

VerbsHealthEvent MapVerbsEvent(int ibv_event_type) {
  switch (ibv_event_type) {
    case IBV_EVENT_PORT_ERR:
      return VerbsHealthEvent::kPortDown;
    case IBV_EVENT_PORT_ACTIVE:
      return VerbsHealthEvent::kPortUp;
    case IBV_EVENT_DEVICE_FATAL:
      return VerbsHealthEvent::kDeviceFatal;
    default:
      return VerbsHealthEvent::kIgnored;
  }
}

std::unique_ptr<VerbsEventSource> NewIbverbsEventSource() {
  return std::make_unique<IbverbsEventSource>();
}

VerbsEventWatcher::VerbsEventWatcher(std::unique_ptr<VerbsEventSource> source, Callback callback)
    : source_(std::move(source)), callback_(std::move(callback)) {}

VerbsEventWatcher::~VerbsEventWatcher() {
  Stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

Status VerbsEventWatcher::Start(const std::vector<std::string>& rdma_devices) {
  Stop();
  if (wake_fd_ < 0) {
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) {
      return InternalError(std::string("verbs event watcher: eventfd: ") + std::strerror(errno));
    }
  }
  const int opened = source_->Open(rdma_devices);
  if (opened == 0) {
    return UnavailableError("none of the " + std::to_string(rdma_devices.size()) +
                            " EFA(s) could be opened with libibverbs");
  }
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void VerbsEventWatcher::Stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t ignored = ::write(wake_fd_, &one, sizeof(one));
  thread_.join();
  uint64_t drained = 0;
  ignored = ::read(wake_fd_, &drained, sizeof(drained));
}

void VerbsEventWatcher::Loop() {
  std::vector<pollfd> fds;
  fds.push_back({wake_fd_, POLLIN, 0});
  for (int fd : source_->Fds()) fds.push_back({fd, POLLIN, 0});
  while (true) {
    for (auto& fd : fds) fd.revents = 0;
    const int ready = ::poll(fds.data(), fds.size(), -1);
    if (ready < 0 && errno != EINTR) {
      spdlog::error("verbs event watcher: poll: {}; watcher stopped", std::strerror(errno));
      return;
    }
    if (fds[0].revents != 0) return;  // Stop()
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      for (const auto& event : source_->Drain(fds[i].fd)) {
        const VerbsHealthEvent meaning = MapVerbsEvent(event.ibv_event_type);
        if (meaning != VerbsHealthEvent::kIgnored) callback_(event.rdma_device, meaning);
      }
      // A device that went away hangs up its fd; polling it again would spin.
      if ((fds[i].revents & (POLLHUP | POLLERR | POLLNVAL)) != 0) fds[i].fd = -1;
    }
  }
}

}  // namespace efadra::discovery
