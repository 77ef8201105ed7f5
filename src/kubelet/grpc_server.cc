#include "grpc_server.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>

namespace efadra::kubelet {
namespace {

// sun_path holds 108 bytes including the terminating NUL.
constexpr size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;

}  // namespace

UnixSocketServer::UnixSocketServer(std::string path, std::vector<grpc::Service*> services,
                                   int max_request_bytes)
    : path_(std::move(path)), services_(std::move(services)), max_request_bytes_(max_request_bytes) {}

UnixSocketServer::~UnixSocketServer() { Stop(std::chrono::milliseconds(0)); }

Status UnixSocketServer::Start() {
  if (server_ != nullptr) return Status::Ok();
  if (path_.size() > kMaxSocketPath) {
    return InvalidArgumentError("socket path " + path_ + " is longer than " +
                                std::to_string(kMaxSocketPath) + " bytes (AF_UNIX limit)");
  }
  std::error_code error;
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), error);
  if (error) {
    return UnavailableError("create directory for socket " + path_ + ": " + error.message());
  }
  // A socket left by a crashed instance would make bind() fail; nobody serves it any more.
  if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
    return UnavailableError("remove stale socket " + path_ + ": " + strerror(errno));
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + path_, grpc::InsecureServerCredentials());
  builder.SetMaxReceiveMessageSize(max_request_bytes_);
  for (grpc::Service* service : services_) builder.RegisterService(service);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr) return UnavailableError("cannot serve gRPC on unix socket " + path_);
  struct stat info {};
  if (::stat(path_.c_str(), &info) != 0) {
    const std::string reason = strerror(errno);
    Stop(std::chrono::milliseconds(0));
    return UnavailableError("socket " + path_ + " vanished right after bind: " + reason);
  }
  socket_device_ = info.st_dev;
  socket_inode_ = info.st_ino;
  listening_ = true;
  return Status::Ok();
}

bool UnixSocketServer::SocketIntact() const {
  if (!listening_) return false;
  struct stat info {};
  if (::stat(path_.c_str(), &info) != 0) return false;
  return S_ISSOCK(info.st_mode) && info.st_dev == socket_device_ && info.st_ino == socket_inode_;
}

void UnixSocketServer::Stop(std::chrono::milliseconds grace) {
  if (server_ == nullptr) return;
  const bool ours = SocketIntact();
  listening_ = false;
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  server_.reset();
  // Never delete a file another instance put at the path after us.
  if (ours) ::unlink(path_.c_str());
}

}  // namespace efadra::kubelet
