// The kubelet's side of the plugin sockets, for tests: a real gRPC client over the real unix
// sockets, calling the services the way the kubelet does (contracts.md §1.3, §2.4).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "dra/v1/api.grpc.pb.h"
#include "dra/v1beta1/api.grpc.pb.h"
#include "drahealth/v1alpha1/api.grpc.pb.h"
#include "pluginregistration/v1/api.grpc.pb.h"

namespace efadra::kubelet::testing {

namespace dra_v1 = k8s::io::kubelet::pkg::apis::dra::v1;
namespace dra_v1beta1 = k8s::io::kubelet::pkg::apis::dra::v1beta1;

inline std::shared_ptr<grpc::Channel> UnixChannel(const std::string& path) {
  return grpc::CreateChannel("unix:" + path, grpc::InsecureChannelCredentials());
}

// A context with the kubelet's deadline for the call.
inline std::unique_ptr<grpc::ClientContext> Deadline(std::chrono::milliseconds timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

class KubeletClient {
 public:
  // GetInfo with the kubelet's 1 s deadline.
  static grpc::Status GetInfo(const std::string& registration_socket,
                              pluginregistration::PluginInfo* info) {
    auto stub = pluginregistration::Registration::NewStub(UnixChannel(registration_socket));
    pluginregistration::InfoRequest request;
    return stub->GetInfo(Deadline(std::chrono::seconds(1)).get(), request, info);
  }

  static grpc::Status Notify(const std::string& registration_socket, bool registered,
                             const std::string& error = "") {
    auto stub = pluginregistration::Registration::NewStub(UnixChannel(registration_socket));
    pluginregistration::RegistrationStatus status;
    status.set_plugin_registered(registered);
    status.set_error(error);
    pluginregistration::RegistrationStatusResponse response;
    return stub->NotifyRegistrationStatus(Deadline(std::chrono::seconds(5)).get(), status,
                                          &response);
  }

  // What the kubelet does on seeing a registration socket: GetInfo, then accept.
  static grpc::Status Register(const std::string& registration_socket,
                               pluginregistration::PluginInfo* info) {
    grpc::Status status = GetInfo(registration_socket, info);
    if (!status.ok()) return status;
    return Notify(registration_socket, true);
  }

  template <typename Api, typename Request, typename Response>
  static grpc::Status Prepare(const std::string& endpoint, const Request& request,
                              Response* response,
                              std::chrono::milliseconds timeout = std::chrono::seconds(45)) {
    auto stub = Api::NewStub(UnixChannel(endpoint));
    return stub->NodePrepareResources(Deadline(timeout).get(), request, response);
  }

  template <typename Api, typename Request, typename Response>
  static grpc::Status Unprepare(const std::string& endpoint, const Request& request,
                                Response* response) {
    auto stub = Api::NewStub(UnixChannel(endpoint));
    return stub->NodeUnprepareResources(Deadline(std::chrono::seconds(45)).get(), request,
                                        response);
  }
};

template <typename Request>
void AddClaim(Request* request, const std::string& ns, const std::string& name,
              const std::string& uid) {
  auto* claim = request->add_claims();
  claim->set_namespace_(ns);
  claim->set_name(name);
  claim->set_uid(uid);
}

}  // namespace efadra::kubelet::testing
