#include "kubelet_registration.h"

#include "pluginregistration/v1/api.grpc.pb.h"

namespace efadra::bench {

std::unique_ptr<grpc::ClientContext> Deadline(std::chrono::milliseconds timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

std::string Register(const std::string& registration_socket) {
  auto stub = pluginregistration::Registration::NewStub(
      grpc::CreateChannel("unix:" + registration_socket, grpc::InsecureChannelCredentials()));
  pluginregistration::InfoRequest request;
  pluginregistration::PluginInfo info;
  if (!stub->GetInfo(Deadline(std::chrono::seconds(1)).get(), request, &info).ok()) return "";
  pluginregistration::RegistrationStatus status;
  status.set_plugin_registered(true);
  pluginregistration::RegistrationStatusResponse response;
  if (!stub->NotifyRegistrationStatus(Deadline(std::chrono::seconds(5)).get(), status, &response)
           .ok()) {
    return "";
  }
  return info.endpoint();
}

}  // namespace efadra::bench
