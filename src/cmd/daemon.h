// Daemon: the lifecycle of `efa-dra-driver run`. Components (discovery watcher, slice
// publisher, and later the kubelet plugin and the HTTP server) are started in the order they
// were added and stopped in reverse; Run() blocks until SIGTERM/SIGINT (read from a signalfd,
// so no work happens in a signal handler) or RequestStop().
//
// Add(), Run() from the owning (main) thread; RequestStop() from
// any thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "efadra/core/status.h"

namespace efadra::cmd {

class Component {
 public:
  virtual ~Component() = default;
  // For logs: "publisher", "device watcher", "kubelet plugin", "http server".
  virtual std::string_view Name() const = 0;
  // Returns once the component runs (its threads started). An error stops the daemon.
  virtual Status Start() = 0;
  // Stops promptly (the daemon's whole stop budget is one second); idempotent.
  virtual void Stop() = 0;
};

class Daemon {
 public:
  Daemon();
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  void Add(std::unique_ptr<Component> component);

  // Blocks SIGTERM and SIGINT for the whole process (call before any thread exists, which is
  // why Run() does it first), starts the components, waits for a signal or RequestStop(),
  // then stops the started components in reverse order. Returns the first Start() error, or
  // OK after a requested stop.
  Status Run();

  // Makes Run() return (async-signal-safe: one write to an eventfd).
  void RequestStop();

 private:
  std::vector<std::unique_ptr<Component>> components_;
  int stop_fd_ = -1;  // eventfd
};

}  // namespace efadra::cmd
