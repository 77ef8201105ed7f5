#include "efadra/core/filesystem.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace efadra::core {
namespace {

Status ErrnoStatus(int err, std::string_view what, const std::string& path) {
  std::string message = std::string(what) + " " + path + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return NotFoundError(std::move(message));
    case EACCES:
    case EPERM:
      return PermissionDeniedError(std::move(message));
    case ENOSPC:
    case EDQUOT:
      return ResourceExhaustedError(std::move(message));
    case EROFS:
      return FailedPreconditionError(std::move(message));
    case EINVAL:
      return InvalidArgumentError(std::move(message));
    default:
      return InternalError(std::move(message));
  }
}

// Closes a file descriptor on scope exit.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

Status WriteAll(int fd, std::string_view content, const std::string& path) {
  size_t written = 0;
  while (written < content.size()) {
    ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "write", path);
    }
    written += static_cast<size_t>(n);
  }
  return Status::Ok();
}

class PosixFilesystem final : public Filesystem {
 public:
  PosixFilesystem(std::string root, DiskObserver* observer)
      : root_(CleanPath(root.empty() ? "/" : root)), observer_(observer) {}

  Result<std::string> ReadFile(std::string_view path, size_t max_bytes) const override {
    const std::string host = HostPath(path);
    int fd = ::open(host.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "open", host);
    FdCloser closer(fd);
    std::string content;
    char buffer[4096];
    while (true) {
      ssize_t n = ::read(fd, buffer, sizeof(buffer));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, "read", host);
      }
      if (n == 0) break;
      if (content.size() + static_cast<size_t>(n) > max_bytes) {
        return ResourceExhaustedError("read " + host + ": larger than " +
                                      std::to_string(max_bytes) + " bytes");
      }
      content.append(buffer, static_cast<size_t>(n));
    }
    return content;
  }

  Result<std::string> ReadLink(std::string_view path) const override {
    const std::string host = HostPath(path);
    std::string target(4096, '\0');
    ssize_t n = ::readlink(host.c_str(), target.data(), target.size());
    if (n < 0) return ErrnoStatus(errno, "readlink", host);
    target.resize(static_cast<size_t>(n));
    return target;
  }

  Result<std::vector<std::string>> ListDir(std::string_view path) const override {
    const std::string host = HostPath(path);
    DIR* dir = ::opendir(host.c_str());
    if (dir == nullptr) return ErrnoStatus(errno, "opendir", host);
    std::vector<std::string> names;
    while (struct dirent* entry = ::readdir(dir)) {
      std::string_view name(entry->d_name);
      if (name == "." || name == "..") continue;
      names.emplace_back(name);
    }
    ::closedir(dir);
    std::sort(names.begin(), names.end());
    return names;
  }

  Result<FileInfo> Stat(std::string_view path, bool follow_symlinks) const override {
    const std::string host = HostPath(path);
    struct stat st {};
    int rc = follow_symlinks ? ::stat(host.c_str(), &st) : ::lstat(host.c_str(), &st);
    if (rc != 0) return ErrnoStatus(errno, follow_symlinks ? "stat" : "lstat", host);
    FileInfo info;
    if (S_ISREG(st.st_mode)) {
      info.type = FileType::kRegular;
    } else if (S_ISDIR(st.st_mode)) {
      info.type = FileType::kDirectory;
    } else if (S_ISLNK(st.st_mode)) {
      info.type = FileType::kSymlink;
    } else if (S_ISCHR(st.st_mode)) {
      info.type = FileType::kCharDevice;
    } else if (S_ISBLK(st.st_mode)) {
      info.type = FileType::kBlockDevice;
    }
    if (info.type == FileType::kCharDevice || info.type == FileType::kBlockDevice) {
      info.device_major = major(st.st_rdev);
      info.device_minor = minor(st.st_rdev);
    }
    info.mode = st.st_mode & 07777;
    info.size = static_cast<uint64_t>(st.st_size);
    return info;
  }

  Status WriteFileAtomic(std::string_view path, std::string_view content,
                         const WriteOptions& options) override {
    const std::string host = HostPath(path);
    const std::string dir(DirName(host));
    // A unique temporary name per writer: concurrent writers of different files in one
    // directory never collide, and a crash leaves only a ".tmp" file that readers ignore.
    static std::atomic<uint64_t> counter{0};
    const std::string tmp = dir + "/." + std::string(BaseName(host)) + ".tmp." +
                            std::to_string(::getpid()) + "." + std::to_string(counter++);
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, options.mode);
    if (fd < 0) return ErrnoStatus(errno, "create", tmp);
    FdCloser closer(fd);
    Status status = WriteAll(fd, content, tmp);
    if (status.ok() && ::fchmod(fd, options.mode) != 0) status = ErrnoStatus(errno, "chmod", tmp);
    if (status.ok()) Report(DiskStep::kTempFileWritten, tmp, {}, content);
    if (status.ok() && options.durable) {
      if (::fsync(fd) != 0) {
        status = ErrnoStatus(errno, "fsync", tmp);
      } else {
        Report(DiskStep::kFileSynced, tmp);
      }
    }
    if (status.ok() && ::close(closer.Release()) != 0) status = ErrnoStatus(errno, "close", tmp);
    if (status.ok() && ::rename(tmp.c_str(), host.c_str()) != 0) {
      status = ErrnoStatus(errno, "rename to " + host + " from", tmp);
    }
    if (!status.ok()) {
      ::unlink(tmp.c_str());
      return status;
    }
    Report(DiskStep::kRenamed, host, tmp);
    // The rename is only durable once the directory entry is on disk.
    if (options.durable) return SyncHostDirectory(dir);
    return Status::Ok();
  }

  Status RemoveFile(std::string_view path) override {
    const std::string host = HostPath(path);
    if (::unlink(host.c_str()) != 0) {
      if (errno == ENOENT) return Status::Ok();
      return ErrnoStatus(errno, "unlink", host);
    }
    Report(DiskStep::kRemoved, host);
    return Status::Ok();
  }

  Status SyncDirectory(std::string_view path) override { return SyncHostDirectory(HostPath(path)); }

  Status CreateDirectories(std::string_view path) override {
    const std::string host = HostPath(path);
    std::string partial;
    size_t pos = 0;
    while (pos <= host.size()) {
      size_t next = host.find('/', pos);
      if (next == std::string::npos) next = host.size();
      partial = host.substr(0, next);
      pos = next + 1;
      if (partial.empty()) continue;
      if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
        return ErrnoStatus(errno, "mkdir", partial);
      }
    }
    struct stat st {};
    if (::stat(host.c_str(), &st) != 0) return ErrnoStatus(errno, "stat", host);
    if (!S_ISDIR(st.st_mode)) return FailedPreconditionError(host + " exists and is not a directory");
    return Status::Ok();
  }

  std::string HostPath(std::string_view path) const override {
    std::string clean = CleanPath(std::string("/") + std::string(path));
    if (root_ == "/") return clean;
    if (clean == "/") return root_;
    return root_ + clean;
  }

 private:
  Status SyncHostDirectory(const std::string& dir) {
    int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) return ErrnoStatus(errno, "open directory", dir);
    FdCloser dir_closer(dir_fd);
    if (::fsync(dir_fd) != 0) return ErrnoStatus(errno, "fsync directory", dir);
    Report(DiskStep::kDirectorySynced, dir);
    return Status::Ok();
  }

  void Report(DiskStep step, std::string_view path, std::string_view from = {},
              std::string_view content = {}) {
    if (observer_ != nullptr) observer_->AfterStep(DiskEvent{step, path, from, content});
  }

  const std::string root_;
  DiskObserver* const observer_;
};

}  // namespace

std::unique_ptr<Filesystem> NewPosixFilesystem(std::string root, DiskObserver* observer) {
  return std::make_unique<PosixFilesystem>(std::move(root), observer);
}

std::string JoinPath(std::string_view a, std::string_view b) {
  if (a.empty()) return std::string(b);
  if (b.empty()) return std::string(a);
  std::string out(a);
  if (out.back() == '/' && b.front() == '/') {
    out.append(b.substr(1));
  } else if (out.back() != '/' && b.front() != '/') {
    out.push_back('/');
    out.append(b);
  } else {
    out.append(b);
  }
  return out;
}

std::string CleanPath(std::string_view path) {
  const bool absolute = !path.empty() && path.front() == '/';
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string_view::npos) next = path.size();
    std::string_view part = path.substr(pos, next - pos);
    pos = next + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty() && parts.back() != "..") {
        parts.pop_back();
      } else if (!absolute) {
        parts.push_back(part);
      }
      continue;
    }
    parts.push_back(part);
  }
  std::string out = absolute ? "/" : "";
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out.push_back('/');
    out.append(parts[i]);
  }
  if (out.empty()) out = ".";
  return out;
}

std::string_view BaseName(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  if (path == "/") return "";
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string_view DirName(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace efadra::core
