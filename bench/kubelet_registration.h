// What a kubelet does to a DRA plugin before calling it, for the benches that drive the real
// binary over its sockets.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

namespace efadra::bench {

// A client context whose deadline is `timeout` from now.
std::unique_ptr<grpc::ClientContext> Deadline(std::chrono::milliseconds timeout);

// GetInfo with the kubelet's 1 s deadline, then NotifyRegistrationStatus(registered) on the
// registration socket; the plugin's DRA endpoint on success, "" otherwise.
std::string Register(const std::string& registration_socket);

}  // namespace efadra::bench
