#include "bench_support.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "efadra/sysfstree/bundled.h"
#include "efadra/sysfstree/topology.h"
#include "efadra/sysfstree/tree_builder.h"

namespace efadra::bench {

Flags::Flags(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; i += 2) values_[argv[i]] = argv[i + 1];
}

std::string Flags::String(const std::string& name, const std::string& fallback) const {
  auto found = values_.find(name);
  return found == values_.end() ? fallback : found->second;
}

long Flags::Long(const std::string& name, long fallback) const {
  auto found = values_.find(name);
  return found == values_.end() ? fallback : std::atol(found->second.c_str());
}

std::string DriverBinary(const std::string& bench, const Flags& flags, const char* argv0) {
  const std::string binary = flags.String(
      "--binary", std::filesystem::path(argv0).parent_path().parent_path() / "efa-dra-driver");
  if (::access(binary.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "%s: %s is not built (use --binary)\n", bench.c_str(), binary.c_str());
    std::exit(1);
  }
  return binary;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index =
      std::min(values.size() - 1, static_cast<size_t>(p * static_cast<double>(values.size())));
  return values[index];
}

pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  // Allocated before fork: the bench has threads (the API double), and a malloc lock one of
  // them held at the fork would never be released in the child. Only system calls after it.
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // no orphaned driver if the bench dies
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out >= 0) ::dup2(out, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

int StopChild(pid_t pid) {
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool Exited(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, WNOHANG) == pid;
}

ProcessSample SampleProcess(pid_t pid) {
  const std::string proc = pid == 0 ? "/proc/self" : "/proc/" + std::to_string(pid);
  ProcessSample sample;
  {
    std::ifstream in(proc + "/status");
    std::string line;
    auto value = [&](const char* key, long& out) {
      const std::string k = key;
      if (line.rfind(k, 0) == 0) out = std::strtol(line.c_str() + k.size(), nullptr, 10);
    };
    while (std::getline(in, line)) {
      value("VmRSS:", sample.rss_kib);
      value("VmHWM:", sample.hwm_kib);
      value("Threads:", sample.threads);
    }
  }
  {
    // Fields 14 and 15 (utime, stime), counted after the ")" that ends the command name (which
    // may itself hold spaces).
    std::ifstream in(proc + "/stat");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t close = text.rfind(')');
    if (close != std::string::npos) {
      std::istringstream fields(text.substr(close + 2));
      std::string field;
      unsigned long long utime = 0, stime = 0;
      for (int i = 3; i <= 15 && fields >> field; ++i) {
        if (i == 14) utime = std::stoull(field);
        if (i == 15) stime = std::stoull(field);
      }
      sample.cpu_s =
          static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
    }
  }
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(proc + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++sample.fds;
  }
  return sample;
}

std::string MakeScratchNode(const std::string& bench, const std::string& instance_type,
                            const std::string& server_url) {
  std::string pattern = "/tmp/" + bench + "-XXXXXX";
  const char* made = ::mkdtemp(pattern.data());
  const auto yaml = sysfstree::BundledTopology(instance_type);
  if (made == nullptr || !yaml) {
    std::fprintf(stderr, "%s: no scratch directory or no bundled %s\n", bench.c_str(),
                 instance_type.c_str());
    std::exit(1);
  }
  const std::string dir = made;
  auto topology = sysfstree::ParseTopology(*yaml);
  if (!topology.ok() || !sysfstree::BuildSysfsTree(*topology, dir + "/sys", dir + "/dev").ok()) {
    std::fprintf(stderr, "%s: cannot build the %s tree\n", bench.c_str(), instance_type.c_str());
    std::exit(1);
  }
  std::ofstream(dir + "/kubeconfig")
      << "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n"
      << "  cluster:\n    server: " << server_url
      << "\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n"
      << "users:\n- name: u\n  user:\n    token: t\n";
  return dir;
}

void ForEachSmapsField(const std::string& smaps_file,
                       const std::function<void(const std::string&, const std::string&, long)>& fn) {
  // A mapping's header line is "start-end perms offset dev inode [path]"; its "Name: N kB"
  // fields follow.
  std::ifstream smaps(smaps_file);
  std::string path;
  for (std::string line; std::getline(smaps, line);) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
        line.find('-') < line.find(' ')) {
      std::istringstream header(line);
      std::string range, perms, offset, dev, inode;
      path.clear();
      header >> range >> perms >> offset >> dev >> inode >> path;
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == std::string::npos || !line.ends_with(" kB")) continue;
    fn(path, line.substr(0, colon), std::strtol(line.c_str() + colon + 1, nullptr, 10));
  }
}

MemorySplit SampleMemory(pid_t pid) {
  MemorySplit memory;
  const std::string proc = "/proc/" + std::to_string(pid);
  // smaps_rollup is one pseudo-mapping summing them all.
  ForEachSmapsField(proc + "/smaps_rollup", [&](const std::string&, const std::string& field, long kib) {
    if (field == "Rss") memory.rss_kib = kib;
    if (field == "Anonymous") memory.anonymous_kib = kib;
  });
  memory.file_kib = memory.rss_kib - memory.anonymous_kib;
  ForEachSmapsField(proc + "/smaps", [&](const std::string& path, const std::string& field, long kib) {
    std::string name = path.empty() ? "[anon]" : std::filesystem::path(path).filename().string();
    if (!path.empty() && path[0] == '[') name = path;
    if (field == "Rss") memory.by_mapping[name].first += kib;
    if (field == "Anonymous") memory.by_mapping[name].second += kib;
  });
  return memory;
}

void PrintMemory(const char* title, const MemorySplit& memory, size_t top) {
  std::printf("%s: RSS %ld KiB = anonymous %ld KiB + file-backed %ld KiB\n", title,
              memory.rss_kib, memory.anonymous_kib, memory.file_kib);
  std::vector<std::pair<std::string, std::pair<long, long>>> rows(memory.by_mapping.begin(),
                                                                    memory.by_mapping.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  std::printf("  %-40s %9s %9s\n", "mapping", "Rss KiB", "Anon KiB");
  for (size_t i = 0; i < rows.size() && i < top; ++i) {
    std::printf("  %-40s %9ld %9ld\n", rows[i].first.c_str(), rows[i].second.first,
                rows[i].second.second);
  }
}

}  // namespace efadra::bench
