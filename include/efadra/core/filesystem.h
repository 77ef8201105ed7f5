// Filesystem: every file access of the driver goes through this interface, rooted at a
// configurable directory (--sysfs-root, --dev-root, --cdi-root, --state-dir), so no module
// hard-codes /sys and tests run against generated trees. Fault-injection tests wrap it
// (disk full, read-only, crash between write and rename).
//
// Paths given to a Filesystem are absolute within its view ("/class/infiniband/x"); the
// implementation maps them under its root. Implementations are thread-safe for concurrent
// calls on different paths; atomic writes to the same path race like rename(2) does.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "efadra/core/status.h"

namespace efadra::core {

enum class FileType { kRegular, kDirectory, kSymlink, kCharDevice, kBlockDevice, kOther };

struct FileInfo {
  FileType type = FileType::kOther;
  uint32_t device_major = 0;  // for device nodes: major/minor of st_rdev
  uint32_t device_minor = 0;
  uint32_t mode = 0;          // permission bits
  uint64_t size = 0;
};

struct WriteOptions {
  // fsync the file and its directory before returning (the checkpoint needs it; CDI specs on a
  // tmpfs do not, see design.md §7).
  bool durable = false;
  uint32_t mode = 0644;
};

class Filesystem {
 public:
  virtual ~Filesystem() = default;

  // The whole file; kNotFound if absent, kResourceExhausted if larger than max_bytes,
  // kPermissionDenied / kInternal for other errno values. Messages name the host path.
  virtual Result<std::string> ReadFile(std::string_view path,
                                       size_t max_bytes = size_t{1} << 20) const = 0;

  // The link text, unresolved (sysfs links are relative: "../../../devices/pci0000:10/...").
  // kNotFound if absent, kInvalidArgument if not a symlink.
  virtual Result<std::string> ReadLink(std::string_view path) const = 0;

  // Entry names (no "." / ".."), sorted. kNotFound if the directory does not exist.
  virtual Result<std::vector<std::string>> ListDir(std::string_view path) const = 0;

  // lstat(2) when follow_symlinks is false, stat(2) otherwise.
  virtual Result<FileInfo> Stat(std::string_view path, bool follow_symlinks = true) const = 0;

  bool Exists(std::string_view path) const { return Stat(path, false).ok(); }

  // Writes to a temporary file in the same directory, then renames it over `path`, so a reader
  // sees the old or the new content, never a mix. The directory must exist.
  virtual Status WriteFileAtomic(std::string_view path, std::string_view content,
                                 const WriteOptions& options) = 0;

  // Removes a file; OK if it does not exist.
  virtual Status RemoveFile(std::string_view path) = 0;

  // fsyncs a directory, so that removals (and creations) of its entries survive a power loss.
  // kNotFound if it does not exist.
  virtual Status SyncDirectory(std::string_view path) = 0;

  // mkdir -p.
  virtual Status CreateDirectories(std::string_view path) = 0;

  // Where `path` is on the host: root + path. Used in messages and in CDI hostPath.
  virtual std::string HostPath(std::string_view path) const = 0;
};

// The steps by which the POSIX filesystem changes the disk, reported as each one completes, so
// that tests can kill the process between two steps of one atomic write, or model a power
// loss that drops whatever was not fsynced. Paths are host paths.
enum class DiskStep {
  kTempFileWritten,  // `path` is the temporary file, `content` what was written to it
  kFileSynced,       // `path` is the temporary file, fsynced
  kRenamed,          // `path` is the target, `from` the temporary file renamed over it
  kRemoved,          // `path` is the removed file (not reported when it did not exist)
  kDirectorySynced,  // `path` is the directory, fsynced
};

struct DiskEvent {
  DiskStep step;
  std::string_view path;
  std::string_view from;     // kRenamed only
  std::string_view content;  // kTempFileWritten only
};

// Told of each DiskStep on the thread that made it; must be thread-safe when the filesystem is
// used from several threads. Production passes none.
class DiskObserver {
 public:
  virtual ~DiskObserver() = default;
  virtual void AfterStep(const DiskEvent& event) = 0;
};

// The real filesystem below `root` ("/" for the whole host). `observer`, if any, must outlive
// the filesystem.
std::unique_ptr<Filesystem> NewPosixFilesystem(std::string root,
                                               DiskObserver* observer = nullptr);

// Joins two path pieces with exactly one '/' between them.
std::string JoinPath(std::string_view a, std::string_view b);

// Lexically normalises an absolute or relative path: removes ".", resolves ".." against the
// preceding component, collapses "//". ".." above the root of an absolute path stays at "/".
std::string CleanPath(std::string_view path);

// Last path component ("0000:10:1b.0" for ".../0000:10:1b.0"); "" for "/".
std::string_view BaseName(std::string_view path);

// Everything before the last component ("/a/b" for "/a/b/c"); "/" for "/a".
std::string_view DirName(std::string_view path);

}  // namespace efadra::core
