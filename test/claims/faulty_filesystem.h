// A core::Filesystem wrapper for fault injection (the style of leveldb's fault_injection_test):
// it forwards to a real filesystem, counts writes and records their options, and fails chosen
// writes the way a full or read-only disk would. CrashingDisk, below, kills the process at a
// step inside one write (between the steps the POSIX filesystem reports).
#pragma once

#include <signal.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "efadra/core/filesystem.h"

namespace efadra::claims::testing {

class FaultyFilesystem final : public core::Filesystem {
 public:
  explicit FaultyFilesystem(core::Filesystem& real) : real_(real) {}

  // Writes, removals and directory syncs of paths containing `substring` fail with `status`
  // until cleared; the first `pass_first` of them still succeed.
  void FailWrites(const std::string& substring, Status status, int pass_first = 0) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_substring_ = substring;
    fail_status_ = std::move(status);
    pass_first_ = pass_first;
  }
  void ClearFailures() { FailWrites("", Status::Ok()); }

  // The process dies by SIGKILL (as by `kill -9`) just before, or just after, the first write
  // of a path containing `substring`. For tests that fork a child to crash.
  enum class CrashWhen { kBeforeWrite, kAfterWrite };
  void CrashAt(const std::string& substring, CrashWhen when) {
    std::lock_guard<std::mutex> lock(mu_);
    crash_substring_ = substring;
    crash_when_ = when;
  }
  struct Write {
    std::string path;
    core::WriteOptions options;
  };
  // Every WriteFileAtomic call so far, in order, with the options it was given.
  std::vector<Write> WriteLog() const {
    std::lock_guard<std::mutex> lock(mu_);
    return write_log_;
  }
  int writes() const { return writes_; }
  int removals() const { return removals_; }
  int directory_syncs() const { return directory_syncs_; }

  Result<std::string> ReadFile(std::string_view path, size_t max_bytes) const override {
    return real_.ReadFile(path, max_bytes);
  }
  Result<std::string> ReadLink(std::string_view path) const override {
    return real_.ReadLink(path);
  }
  Result<std::vector<std::string>> ListDir(std::string_view path) const override {
    return real_.ListDir(path);
  }
  Result<core::FileInfo> Stat(std::string_view path, bool follow) const override {
    return real_.Stat(path, follow);
  }
  Status WriteFileAtomic(std::string_view path, std::string_view content,
                         const core::WriteOptions& options) override {
    ++writes_;
    {
      std::lock_guard<std::mutex> lock(mu_);
      write_log_.push_back({std::string(path), options});
    }
    if (Status injected = Injected(path); !injected.ok()) return injected;
    MaybeCrash(path, CrashWhen::kBeforeWrite);
    Status written = real_.WriteFileAtomic(path, content, options);
    MaybeCrash(path, CrashWhen::kAfterWrite);
    return written;
  }
  Status RemoveFile(std::string_view path) override {
    ++removals_;
    if (Status injected = Injected(path); !injected.ok()) return injected;
    return real_.RemoveFile(path);
  }
  Status SyncDirectory(std::string_view path) override {
    ++directory_syncs_;
    if (Status injected = Injected(path); !injected.ok()) return injected;
    return real_.SyncDirectory(path);
  }
  Status CreateDirectories(std::string_view path) override {
    return real_.CreateDirectories(path);
  }
  std::string HostPath(std::string_view path) const override { return real_.HostPath(path); }

 private:
  Status Injected(std::string_view path) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (fail_substring_.empty() || path.find(fail_substring_) == std::string_view::npos) {
      return Status::Ok();
    }
    if (pass_first_ > 0) {
      --pass_first_;
      return Status::Ok();
    }
    return fail_status_.WithContext(std::string(path));
  }

  void MaybeCrash(std::string_view path, CrashWhen when) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (!crash_substring_.empty() && crash_when_ == when &&
        path.find(crash_substring_) != std::string_view::npos) {
      ::raise(SIGKILL);
    }
  }

  core::Filesystem& real_;
  mutable std::mutex mu_;
  std::string crash_substring_;                     // guarded by mu_
  CrashWhen crash_when_ = CrashWhen::kBeforeWrite;  // guarded by mu_
  std::string fail_substring_;  // guarded by mu_
  Status fail_status_;          // guarded by mu_
  mutable int pass_first_ = 0;  // guarded by mu_
  std::vector<Write> write_log_;  // guarded by mu_
  std::atomic<int> writes_{0};
  std::atomic<int> removals_{0};
  std::atomic<int> directory_syncs_{0};
};

// Dies by SIGKILL right after the first `step` on a host path containing `substring`, once
// armed: inside an atomic write (after the temporary file is written, after its fsync, after the
// rename, before the directory fsync) or at a removal. Give it to core::NewPosixFilesystem.
class CrashingDisk final : public core::DiskObserver {
 public:
  void Arm(core::DiskStep step, std::string substring) {
    std::lock_guard<std::mutex> lock(mu_);
    step_ = step;
    substring_ = std::move(substring);
  }
  void AfterStep(const core::DiskEvent& event) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!substring_.empty() && event.step == step_ &&
        event.path.find(substring_) != std::string_view::npos) {
      ::raise(SIGKILL);
    }
  }

 private:
  std::mutex mu_;
  core::DiskStep step_ = core::DiskStep::kTempFileWritten;  // guarded by mu_
  std::string substring_;                                   // guarded by mu_; "" = unarmed
};

}  // namespace efadra::claims::testing
