// durable_write_bench: what each way of making a new checkpoint-sized file durable costs on the
// disk under --dir, next to the one the driver uses (docs/performance.md, "Claim preparation").
//  rename:  core::Filesystem::WriteFileAtomic with durable = true, the call the checkpoint
//           uses (a temporary file, written, fsync, rename to the final name, directory fsync);
//  create:  the final name created with O_EXCL, written, fsync, fsync of the directory;
//  create, no directory fsync: the same without the directory's fsync (fsync(2) promises
//           nothing for the directory entry: shown for its cost only).
// Each write is followed, untimed, by the file's removal and a directory fsync, as the
// unprepare does; the three take turns, --rounds times, so a drift of the disk hits all alike.
//
// Usage: durable_write_bench [--dir DIR] [--writes N] [--rounds R]   (default /var/tmp)
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "bench_support.h"
#include "efadra/core/filesystem.h"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "durable_write_bench: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

void SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) Die("fsync of directory " + dir);
  ::close(fd);
}

void WriteSynced(const std::string& path, const std::string& content) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) Die("create " + path);
  if (::write(fd, content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
    Die("write " + path);
  }
  if (::fsync(fd) != 0) Die("fsync " + path);
  ::close(fd);
}

enum class Way { kRename, kCreate, kCreateNoDirectorySync };

void Write(Way way, efadra::core::Filesystem& dir_fs, const std::string& dir,
           const std::string& name, const std::string& content) {
  if (way == Way::kRename) {
    // The driver's own code, as the preparer calls it for a checkpoint.
    const efadra::Status written = dir_fs.WriteFileAtomic("/" + name, content, {.durable = true});
    if (!written.ok()) {
      std::fprintf(stderr, "durable_write_bench: %s\n", written.ToString().c_str());
      std::exit(1);
    }
    return;
  }
  WriteSynced(dir + "/" + name, content);
  if (way == Way::kCreate) SyncDirectory(dir);
}

}  // namespace

int main(int argc, char** argv) {
  const efadra::bench::Flags flags(argc, argv);
  std::string dir_template = flags.String("--dir", "/var/tmp") + "/durable-write-bench-XXXXXX";
  if (::mkdtemp(dir_template.data()) == nullptr) Die("mkdtemp " + dir_template);
  const std::string dir = dir_template;
  const auto dir_fs = efadra::core::NewPosixFilesystem(dir);
  const long writes = flags.Long("--writes", 300);
  const long rounds = flags.Long("--rounds", 3);
  const std::string content(1500, 'x');  // about a one-device checkpoint
  const std::map<Way, std::string> names = {
      {Way::kRename, "temporary file + rename + directory fsync (the driver's)"},
      {Way::kCreate, "O_EXCL create + directory fsync"},
      {Way::kCreateNoDirectorySync, "O_EXCL create, no directory fsync"}};
  std::map<Way, std::vector<double>> samples;
  for (long round = 0; round < rounds; ++round) {
    for (const auto& [way, name] : names) {
      for (long i = 0; i < writes; ++i) {
        const std::string file = "checkpoint-" + std::to_string(i) + ".json";
        const std::string path = dir + "/" + file;
        const auto start = Clock::now();
        Write(way, *dir_fs, dir, file, content);
        samples[way].push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - start).count());
        if (::unlink(path.c_str()) != 0) Die("unlink " + path);
        SyncDirectory(dir);
      }
    }
  }
  std::printf("durable_write_bench: %ld writes x %ld rounds of %zu bytes in %s\n", writes, rounds,
              content.size(), dir.c_str());
  for (const auto& [way, name] : names) {
    std::printf("%s: p50 %.3f ms p99 %.3f ms\n", name.c_str(),
                efadra::bench::Percentile(samples[way], 0.50),
                efadra::bench::Percentile(samples[way], 0.99));
  }
  ::rmdir(dir.c_str());
  return 0;
}
