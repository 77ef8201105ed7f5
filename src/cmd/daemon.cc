#include "daemon.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>

namespace efadra::cmd {

Daemon::Daemon() : stop_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

Daemon::~Daemon() {
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

void Daemon::Add(std::unique_ptr<Component> component) {
  components_.push_back(std::move(component));
}

void Daemon::RequestStop() {
  const uint64_t one = 1;
  // Nothing to do on failure: the counter is already non-zero, so Run() wakes anyway.
  [[maybe_unused]] ssize_t written = ::write(stop_fd_, &one, sizeof(one));
}

Status Daemon::Run() {
  if (stop_fd_ < 0) return InternalError(std::string("eventfd: ") + ::strerror(errno));
  // Threads inherit the mask, so block before any component starts a thread; then the
  // signals are only ever delivered through the signalfd below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  if (::pthread_sigmask(SIG_BLOCK, &signals, nullptr) != 0) {
    return InternalError("block SIGTERM/SIGINT failed");
  }
  const int signal_fd = ::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) return InternalError(std::string("signalfd: ") + ::strerror(errno));

  Status result;
  size_t started = 0;
  for (; started < components_.size(); ++started) {
    Component& component = *components_[started];
    Status status = component.Start();
    if (!status.ok()) {
      result = status.WithContext(std::string("start ") + std::string(component.Name()));
      break;
    }
    spdlog::info("started {}", component.Name());
  }

  if (result.ok()) {
    pollfd fds[2] = {{signal_fd, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    while (true) {
      const int ready = ::poll(fds, 2, -1);
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) {
        result = InternalError(std::string("poll: ") + ::strerror(errno));
        break;
      }
      if (fds[0].revents & POLLIN) {
        signalfd_siginfo info{};
        if (::read(signal_fd, &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
          spdlog::info("received {}, shutting down", ::strsignal(static_cast<int>(info.ssi_signo)));
        }
        break;
      }
      if (fds[1].revents & POLLIN) {
        spdlog::info("stop requested, shutting down");
        break;
      }
    }
  }

  const auto stop_begin = std::chrono::steady_clock::now();
  for (size_t i = started; i-- > 0;) {
    components_[i]->Stop();
  }
  const auto stop_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - stop_begin)
                           .count();
  spdlog::info("stopped in {} ms", stop_ms);
  ::close(signal_fd);
  return result;
}

}  // namespace efadra::cmd
