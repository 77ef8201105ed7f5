// A power-loss model of one directory tree, fed by the steps the real POSIX filesystem reports
// (core::DiskObserver). It keeps the image that would survive a power cut: a file's content
// survives only if the file was fsynced before its rename, and a rename or removal survives
// only once its directory was fsynced. PowerLoss() rewrites the tree on disk to that image, as
// the machine would find it after the cut. The tree's files when the model starts count as on
// disk already; directories themselves are not modelled (they are never removed).
//
// Content that was renamed into place but never fsynced comes back empty: the zero-length file
// that ext4's delayed allocation can leave. Thread-safe.
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>

#include "efadra/core/filesystem.h"

namespace efadra::claims::testing {

class PowerLossDisk final : public core::DiskObserver {
 public:
  explicit PowerLossDisk(std::string root) : root_(std::filesystem::path(root).lexically_normal()) {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(root_, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file()) durable_[it->path().string()] = ReadAll(it->path());
    }
  }

  void AfterStep(const core::DiskEvent& event) override {
    const std::string path(event.path);
    if (!Inside(path)) return;
    std::lock_guard<std::mutex> lock(mu_);
    switch (event.step) {
      case core::DiskStep::kTempFileWritten:
        files_[path] = {std::string(event.content), false};
        break;
      case core::DiskStep::kFileSynced:
        files_[path].synced = true;
        break;
      case core::DiskStep::kRenamed: {
        const File file = files_[std::string(event.from)];
        files_.erase(std::string(event.from));
        pending_[Parent(path)][path] = file.synced ? file.content : std::string();
        break;
      }
      case core::DiskStep::kRemoved:
        pending_[Parent(path)][path] = std::nullopt;
        break;
      case core::DiskStep::kDirectorySynced: {
        auto dir = pending_.find(path);
        if (dir == pending_.end()) break;
        for (const auto& [file, content] : dir->second) {
          if (content) {
            durable_[file] = *content;
          } else {
            durable_.erase(file);
          }
        }
        pending_.erase(dir);
        break;
      }
    }
  }

  // Makes the tree what a power cut now would leave: every regular file not in the durable
  // image is removed (temporaries included), every one in it gets its durable content.
  void PowerLoss() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::filesystem::path> present;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(root_)) {
      if (entry.is_regular_file()) present.push_back(entry.path());
    }
    for (const auto& path : present) std::filesystem::remove(path);
    for (const auto& [path, content] : durable_) {
      std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
    }
    files_.clear();
    pending_.clear();
  }

 private:
  struct File {
    std::string content;
    bool synced = false;
  };

  bool Inside(const std::string& path) const {
    const std::string root = root_.string();
    return path == root || path.rfind(root + "/", 0) == 0;
  }
  static std::string Parent(const std::string& path) {
    return std::filesystem::path(path).parent_path().string();
  }
  static std::string ReadAll(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
  }

  const std::filesystem::path root_;
  std::mutex mu_;
  std::map<std::string, File> files_;  // guarded by mu_: temporaries written, not yet renamed
  // guarded by mu_: per directory, the entries changed since its last fsync (nullopt: removed)
  std::map<std::string, std::map<std::string, std::optional<std::string>>> pending_;
  std::map<std::string, std::string> durable_;  // guarded by mu_: what survives a power cut
};

}  // namespace efadra::claims::testing
