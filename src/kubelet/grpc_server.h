// One gRPC server on one unix socket, with the socket-file lifecycle the kubelet expects
// (contracts.md §4.1): the parent directory is created, whatever file sits at the path (a
// stale socket of a crashed instance) is replaced, and on stop the socket is removed, but only
// if the file at the path is still the one this server created.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "efadra/core/status.h"

namespace efadra::kubelet {

class UnixSocketServer {
 public:
  // `services` must outlive the server.
  UnixSocketServer(std::string path, std::vector<grpc::Service*> services, int max_request_bytes);
  ~UnixSocketServer();
  UnixSocketServer(const UnixSocketServer&) = delete;
  UnixSocketServer& operator=(const UnixSocketServer&) = delete;

  Status Start();
  // Waits up to `grace` for in-flight calls, cancels the rest, removes the socket file.
  void Stop(std::chrono::milliseconds grace);

  // True when the server runs and the file at the path is still its socket. False when the
  // file was removed or replaced (the kubelet recreated its directories). Safe to call from any
  // thread (the liveness probe does) while another one starts or stops the server; Start and
  // Stop themselves are called by one thread at a time.
  bool SocketIntact() const;
  const std::string& path() const { return path_; }

 private:
  const std::string path_;
  const std::vector<grpc::Service*> services_;
  const int max_request_bytes_;
  std::unique_ptr<grpc::Server> server_;  // only Start/Stop touch it
  // The identity of the socket file while serving; what SocketIntact reads. `listening_` is
  // set after the identity is stored and cleared before the server goes away.
  std::atomic<bool> listening_{false};
  std::atomic<dev_t> socket_device_{0};
  std::atomic<ino_t> socket_inode_{0};
};

}  // namespace efadra::kubelet
