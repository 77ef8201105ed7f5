#include "efadra/discovery/device_watcher.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace efadra::discovery {
namespace {

// The uevent multicast group the kernel itself sends on (udev re-broadcasts on group 2).
constexpr uint32_t kKernelUeventGroup = 1;

class KernelEventSource final : public EventSource {
 public:
  ~KernelEventSource() override {
    if (route_ != nullptr) nl_socket_free(route_);
    if (uevent_fd_ >= 0) ::close(uevent_fd_);
  }

  // Idempotent: Start() after Stop() reuses the open sockets.
  Status Open() override {
    if (opened_) return Status::Ok();
    if (route_ == nullptr) route_ = nl_socket_alloc();
    if (route_ == nullptr) return InternalError("netlink route socket: out of memory");
    nl_socket_disable_seq_check(route_);
    nl_socket_modify_cb(route_, NL_CB_VALID, NL_CB_CUSTOM, &KernelEventSource::OnLinkMessage, this);
    if (nl_socket_get_fd(route_) < 0) {
      if (int err = nl_connect(route_, NETLINK_ROUTE); err < 0) {
        return UnavailableError(std::string("netlink route socket: connect: ") + nl_geterror(err));
      }
      if (int err = nl_socket_add_membership(route_, RTNLGRP_LINK); err < 0) {
        return UnavailableError(std::string("netlink route socket: join RTNLGRP_LINK: ") +
                                nl_geterror(err));
      }
      nl_socket_set_nonblocking(route_);
    }
    if (uevent_fd_ < 0) {
      const int fd =
          ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT);
      if (fd < 0) return UnavailableError(std::string("uevent socket: ") + std::strerror(errno));
      sockaddr_nl addr{};
      addr.nl_family = AF_NETLINK;
      addr.nl_groups = kKernelUeventGroup;
      if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        const int err = errno;
        ::close(fd);
        return UnavailableError(std::string("uevent socket: bind: ") + std::strerror(err));
      }
      uevent_fd_ = fd;
    }
    opened_ = true;
    return Status::Ok();
  }

  std::vector<int> Fds() const override { return {nl_socket_get_fd(route_), uevent_fd_}; }

  int Drain(int fd) override {
    int events = 0;
    if (fd == uevent_fd_) {
      char buffer[8192];
      while (true) {
        ssize_t n = ::recv(uevent_fd_, buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        // The kernel dropped uevents (receive buffer overrun): something changed; rescan.
        if (n < 0 && errno == ENOBUFS) {
          ++events;
          continue;
        }
        if (n <= 0) break;
        if (IsRelevantUevent(std::string_view(buffer, static_cast<size_t>(n)))) ++events;
      }
      return events;
    }
    link_events_ = 0;
    // Non-blocking: returns once the socket is empty (-NLE_AGAIN).
    int err = 0;
    while ((err = nl_recvmsgs_default(route_)) >= 0) {
    }
    // Anything but "empty" (e.g. -NLE_NOMEM after an overrun) may have lost events: rescan.
    if (err != -NLE_AGAIN) ++link_events_;
    return link_events_;
  }

 private:
  static int OnLinkMessage(nl_msg* msg, void* arg) {
    const nlmsghdr* header = nlmsg_hdr(msg);
    if (header->nlmsg_type == RTM_NEWLINK || header->nlmsg_type == RTM_DELLINK) {
      ++static_cast<KernelEventSource*>(arg)->link_events_;
    }
    return NL_OK;
  }

  nl_sock* route_ = nullptr;
  int uevent_fd_ = -1;
  bool opened_ = false;
  int link_events_ = 0;
};

}  // namespace

std::unique_ptr<EventSource> NewKernelEventSource() {
  return std::make_unique<KernelEventSource>();
}

bool IsRelevantUevent(std::string_view datagram) {
  // Kernel format: "ACTION@DEVPATH\0KEY=VALUE\0...". udev's own re-broadcasts start with
  // "libudev\0" and repeat what the kernel already sent.
  if (datagram.substr(0, 8) == std::string_view("libudev\0", 8)) return false;
  std::string_view action;
  std::string_view subsystem;
  size_t pos = datagram.find('\0');
  while (pos != std::string_view::npos && pos < datagram.size()) {
    const size_t start = pos + 1;
    size_t end = datagram.find('\0', start);
    if (end == std::string_view::npos) end = datagram.size();
    const std::string_view field = datagram.substr(start, end - start);
    if (field.substr(0, 7) == "ACTION=") action = field.substr(7);
    if (field.substr(0, 10) == "SUBSYSTEM=") subsystem = field.substr(10);
    pos = end;
  }
  const bool action_ok = action == "add" || action == "remove" || action == "change";
  const bool subsystem_ok =
      subsystem == "infiniband" || subsystem == "infiniband_verbs" || subsystem == "pci";
  return action_ok && subsystem_ok;
}

void Debouncer::OnEvent(TimePoint now) { deadline_ = now + window_; }

bool Debouncer::Fire(TimePoint now) {
  if (!deadline_ || now < *deadline_) return false;
  deadline_.reset();
  return true;
}

DeviceWatcher::DeviceWatcher(Callback callback, Options options)
    : DeviceWatcher(std::move(callback), NewKernelEventSource(), options) {}

DeviceWatcher::DeviceWatcher(Callback callback, std::unique_ptr<EventSource> source,
                             Options options)
    : callback_(std::move(callback)), source_(std::move(source)), options_(options) {}

DeviceWatcher::~DeviceWatcher() {
  Stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

Status DeviceWatcher::Start() {
  if (thread_.joinable()) return FailedPreconditionError("device watcher already started");
  EFADRA_RETURN_IF_ERROR(source_->Open().WithContext("device watcher"));
  if (wake_fd_ < 0) {
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) {
      return InternalError(std::string("device watcher: eventfd: ") + std::strerror(errno));
    }
  }
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void DeviceWatcher::Stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  // The loop polls this fd with every other one, so it wakes at once.
  [[maybe_unused]] ssize_t ignored = ::write(wake_fd_, &one, sizeof(one));
  thread_.join();
  uint64_t drained = 0;
  ignored = ::read(wake_fd_, &drained, sizeof(drained));
}

void DeviceWatcher::Loop() {
  Debouncer debouncer(options_.debounce);
  std::vector<pollfd> fds;
  fds.push_back({wake_fd_, POLLIN, 0});
  for (int fd : source_->Fds()) fds.push_back({fd, POLLIN, 0});
  while (true) {
    int timeout_ms = -1;
    if (auto deadline = debouncer.Deadline()) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      timeout_ms = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    for (auto& fd : fds) fd.revents = 0;
    const int ready = ::poll(fds.data(), fds.size(), timeout_ms);
    if (ready < 0 && errno != EINTR) {
      spdlog::error("device watcher: poll: {}; watcher stopped", std::strerror(errno));
      return;
    }
    if (fds[0].revents != 0) return;  // Stop()
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      if (source_->Drain(fds[i].fd) > 0) debouncer.OnEvent(std::chrono::steady_clock::now());
      // A closed or broken source would wake poll forever; stop polling it.
      if ((fds[i].revents & (POLLHUP | POLLERR | POLLNVAL)) != 0) {
        spdlog::warn("device watcher: event source fd {} closed; no longer watched", fds[i].fd);
        fds[i].fd = -1;
      }
    }
    if (debouncer.Fire(std::chrono::steady_clock::now())) callback_();
  }
}

}  // namespace efadra::discovery
