// soak_bench: does `efa-dra-driver run` stay flat under a long stream of claims?
// Runs the real binary as a child on a generated p5.48xlarge tree (32 EFAs) against an
// in-process FakeApiServer and plays the kubelet over the real unix sockets: registers
// (GetInfo + NotifyRegistrationStatus), then for --seconds puts a fresh allocated
// ResourceClaim into the API, prepares it, unprepares it and deletes it, every --interval-ms.
// A fresh claim UID each cycle makes any per-claim state that is never dropped show up as
// growth. Every --sample-seconds it samples the child from /proc/<pid>/{status,stat,fd}.
//
// Prints: RSS start/end/max and drift, CPU per minute, fds and threads first vs last (no growth
// expected), prepare/unprepare counts and p50/p99 latency, API requests and writes in the steady
// part (ResourceSlice writes should be 0). docs/performance.md ("Soak") records the figures.
//
// Usage: soak_bench [--seconds 180] [--interval-ms 5] [--sample-seconds 5] [--resync 1s]
//                   [--binary PATH]
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "dra/v1/api.grpc.pb.h"
#include "efadra/apidouble/fake_api_server.h"
#include "efadra/sysfstree/bundled.h"
#include "efadra/sysfstree/topology.h"
#include "efadra/sysfstree/tree_builder.h"
#include "pluginregistration/v1/api.grpc.pb.h"

namespace {

namespace dra = k8s::io::kubelet::pkg::apis::dra::v1;
using Clock = std::chrono::steady_clock;

constexpr char kNode[] = "soak-node";
constexpr char kDriver[] = "dra.net";

pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    FILE* out = std::fopen(log.c_str(), "a");
    if (out != nullptr) ::dup2(::fileno(out), 2);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
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

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  const int port = ntohs(address.sin_port);
  ::close(fd);
  return port;
}

// One look at the child through /proc.
struct Sample {
  double at_s = 0;    // since the steady part began
  long rss_kib = 0;   // VmRSS
  long threads = 0;   // Threads
  double cpu_s = 0;   // utime + stime
  long fds = 0;       // entries of /proc/<pid>/fd
};

long StatusValue(const std::string& status, const std::string& key) {
  const size_t at = status.find("\n" + key);
  if (at == std::string::npos) return -1;
  return std::strtol(status.c_str() + at + 1 + key.size(), nullptr, 10);
}

Sample TakeSample(pid_t pid, double at_s) {
  const std::string proc = "/proc/" + std::to_string(pid);
  Sample s;
  s.at_s = at_s;
  {
    std::ifstream in(proc + "/status");
    const std::string status = "\n" + std::string((std::istreambuf_iterator<char>(in)),
                                                  std::istreambuf_iterator<char>());
    s.rss_kib = StatusValue(status, "VmRSS:");
    s.threads = StatusValue(status, "Threads:");
  }
  {
    // Fields 14 and 15 (utime, stime) counted after the ")" that ends the command name.
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
      s.cpu_s = static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
    }
  }
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(proc + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++s.fds;
  }
  return s;
}

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  if (values.empty()) return 0;
  const size_t index = std::min(
      values.size() - 1, static_cast<size_t>(p * static_cast<double>(values.size() - 1) + 0.5));
  return values[index];
}

// An allocated resource.k8s.io/v1 ResourceClaim for one device of our pool (the shape of
// test/claims/claims_fixture.h AllocatedClaim).
nlohmann::json Claim(const std::string& name, const std::string& uid, const std::string& device) {
  return {{"apiVersion", "resource.k8s.io/v1"},
          {"kind", "ResourceClaim"},
          {"metadata", {{"namespace", "soak"}, {"name", name}, {"uid", uid}}},
          {"spec", {{"devices", {{"requests", nlohmann::json::array()}}}}},
          {"status",
           {{"allocation",
             {{"devices",
               {{"results",
                 {{{"request", "efa"}, {"driver", kDriver}, {"pool", kNode},
                   {"device", device}}}}}}}}}}};
}

std::unique_ptr<grpc::ClientContext> Deadline(std::chrono::milliseconds timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

// GetInfo with the kubelet's 1 s deadline, then accept; the endpoint on success.
std::string Register(const std::string& socket) {
  auto stub = pluginregistration::Registration::NewStub(
      grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
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

}  // namespace

int main(int argc, char** argv) {
  int seconds = 180;
  int interval_ms = 5;
  int sample_seconds = 5;
  std::string resync = "1s";
  std::string binary =
      std::filesystem::path(argv[0]).parent_path().parent_path() / "efa-dra-driver";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--seconds")
      seconds = std::atoi(argv[i + 1]);
    else if (flag == "--interval-ms")
      interval_ms = std::atoi(argv[i + 1]);
    else if (flag == "--sample-seconds")
      sample_seconds = std::max(1, std::atoi(argv[i + 1]));
    else if (flag == "--resync")
      resync = argv[i + 1];
    else if (flag == "--binary")
      binary = argv[i + 1];
  }
  if (::access(binary.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "soak_bench: %s is not built (use --binary)\n", binary.c_str());
    return 1;
  }

  char dir_template[] = "/tmp/soak-bench-XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  const auto yaml = efadra::sysfstree::BundledTopology("p5.48xlarge");
  auto topology = yaml ? efadra::sysfstree::ParseTopology(*yaml)
                       : efadra::Result<efadra::sysfstree::Topology>(
                             efadra::NotFoundError("p5.48xlarge not bundled"));
  if (!topology.ok() ||
      !efadra::sysfstree::BuildSysfsTree(*topology, dir + "/sys", dir + "/dev").ok()) {
    std::fprintf(stderr, "soak_bench: cannot build the p5 tree\n");
    return 1;
  }

  efadra::apidouble::FakeApiServer server;
  if (!server.Start().ok()) return 1;
  server.PutNode(kNode, "uid-soak-node");
  {
    std::ofstream kubeconfig(dir + "/kubeconfig");
    kubeconfig << "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n"
               << "  cluster:\n    server: " << server.url()
               << "\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n"
               << "users:\n- name: u\n  user:\n    token: t\n";
    std::ofstream(dir + "/boot_id") << "soak-boot\n";
  }
  const int http_port = FreePort();
  const std::vector<std::string> args = {binary,
                                         "run",
                                         "--node-name", kNode,
                                         "--sysfs-root", dir + "/sys",
                                         "--dev-root", dir + "/dev",
                                         "--kubeconfig", dir + "/kubeconfig",
                                         "--registrar-dir", dir + "/registry",
                                         "--plugin-dir", dir + "/plugins/dra.net",
                                         "--cdi-root", dir + "/cdi",
                                         "--state-dir", dir + "/state",
                                         "--boot-id-file", dir + "/boot_id",
                                         "--device-plugin-dir", dir + "/device-plugins",
                                         "--http-address", "127.0.0.1:" + std::to_string(http_port),
                                         "--resync", resync,
                                         "--log-format", "json"};
  const std::string log = dir + "/driver.log";
  const pid_t pid = Spawn(args, log);
  auto fail = [&](const char* what) {
    std::fprintf(stderr, "soak_bench: %s; driver log %s\n", what, log.c_str());
    if (!Exited(pid)) StopChild(pid);
    return 1;
  };

  // Register the way the kubelet does once the registration socket is served, and wait for the
  // first slice: the steady part starts after both.
  std::string endpoint;
  const auto start = Clock::now();
  while (endpoint.empty() || server.ResourceSlices().empty()) {
    if (Clock::now() - start > std::chrono::seconds(30)) return fail("not registered in 30 s");
    if (Exited(pid)) return fail("the driver exited");
    if (endpoint.empty()) endpoint = Register(dir + "/registry/dra.net-reg.sock");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::vector<std::string> devices;
  for (const auto& slice : server.ResourceSlices()) {
    for (const auto& device : slice["spec"].value("devices", nlohmann::json::array())) {
      devices.push_back(device.value("name", ""));
    }
  }
  if (devices.empty()) return fail("the slice has no devices");
  // Let the first-publish follow-ups (watch establishment) settle before measuring.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  server.ClearRequests();

  // Sampler.
  std::vector<Sample> samples;
  std::mutex samples_mu;
  std::atomic<bool> done{false};
  const auto steady = Clock::now();
  auto since = [&] { return std::chrono::duration<double>(Clock::now() - steady).count(); };
  std::thread sampler([&] {
    auto next = steady;
    while (!done.load()) {
      {
        std::lock_guard<std::mutex> lock(samples_mu);
        samples.push_back(TakeSample(pid, since()));
      }
      next += std::chrono::seconds(sample_seconds);
      while (!done.load() && Clock::now() < next) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  });

  // The kubelet keeps one connection to the plugin; so does this loop.
  auto stub =
      dra::DRAPlugin::NewStub(grpc::CreateChannel("unix:" + endpoint, grpc::InsecureChannelCredentials()));
  std::vector<double> prepare_ms, unprepare_ms;
  size_t errors = 0;
  std::string first_error;
  auto error = [&](const std::string& message) {
    if (errors++ == 0) first_error = message;
  };
  const auto end = steady + std::chrono::seconds(seconds);
  for (long cycle = 0; Clock::now() < end; ++cycle) {
    if (Exited(pid)) {
      done = true;
      sampler.join();
      return fail("the driver exited during the soak");
    }
    const std::string name = "claim-" + std::to_string(cycle);
    const std::string uid = "uid-soak-" + std::to_string(cycle);
    server.PutResourceClaim(
        Claim(name, uid, devices[static_cast<size_t>(cycle) % devices.size()]));

    dra::NodePrepareResourcesRequest prepare;
    auto* claim = prepare.add_claims();
    claim->set_namespace_("soak");
    claim->set_name(name);
    claim->set_uid(uid);
    dra::NodePrepareResourcesResponse prepared;
    auto t0 = Clock::now();
    grpc::Status status =
        stub->NodePrepareResources(Deadline(std::chrono::seconds(45)).get(), prepare, &prepared);
    prepare_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (!status.ok()) {
      error("prepare " + uid + ": " + status.error_message());
    } else if (!prepared.claims().at(uid).error().empty()) {
      error("prepare " + uid + ": " + prepared.claims().at(uid).error());
    }

    dra::NodeUnprepareResourcesRequest unprepare;
    auto* ref = unprepare.add_claims();
    ref->set_namespace_("soak");
    ref->set_name(name);
    ref->set_uid(uid);
    dra::NodeUnprepareResourcesResponse unprepared;
    t0 = Clock::now();
    status = stub->NodeUnprepareResources(Deadline(std::chrono::seconds(45)).get(), unprepare,
                                          &unprepared);
    unprepare_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (!status.ok()) {
      error("unprepare " + uid + ": " + status.error_message());
    } else if (!unprepared.claims().at(uid).error().empty()) {
      error("unprepare " + uid + ": " + unprepared.claims().at(uid).error());
    }
    server.DeleteResourceClaim("soak", name);
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
  }
  {
    std::lock_guard<std::mutex> lock(samples_mu);
    samples.push_back(TakeSample(pid, since()));
  }
  done = true;
  sampler.join();

  const auto requests = server.Requests();
  size_t slice_writes = 0, claim_gets = 0;
  for (const auto& r : requests) {
    const bool slice = r.path.find("/resourceslices") != std::string::npos;
    if (slice && r.method != "GET") ++slice_writes;
    if (r.method == "GET" && r.path.find("/resourceclaims/") != std::string::npos) ++claim_gets;
  }
  const size_t writes = server.WriteCount();
  const int code = StopChild(pid);

  const Sample& first = samples.front();
  const Sample& last = samples.back();
  long max_rss = 0;
  for (const Sample& s : samples) max_rss = std::max(max_rss, s.rss_kib);
  // The RSS after the first minute is the baseline for drift: the first minute grows arenas
  // and gRPC's pools to their working size.
  const Sample* after_warmup = &first;
  for (const Sample& s : samples) {
    if (s.at_s >= 60 && after_warmup == &first) after_warmup = &s;
  }
  const double minutes = (last.at_s - first.at_s) / 60.0;
  const double warm_minutes = (last.at_s - after_warmup->at_s) / 60.0;

  std::printf("soak_bench: p5.48xlarge tree (%zu devices), FakeApiServer on %s, resync %s\n",
              devices.size(), server.url().c_str(), resync.c_str());
  std::printf("steady part: %.0f s, a fresh claim prepared+unprepared every %d ms + latency\n",
              last.at_s, interval_ms);
  std::printf("samples every %d s (%zu):\n  t(s)   RSS(KiB)  CPU(s)  fds  threads\n",
              sample_seconds, samples.size());
  for (const Sample& s : samples) {
    std::printf("  %5.0f  %8ld  %6.2f  %3ld  %3ld\n", s.at_s, s.rss_kib, s.cpu_s, s.fds,
                s.threads);
  }
  std::printf("RSS: start %ld KiB, end %ld KiB, max %ld KiB, drift %+ld KiB (%+.1f KiB/min); "
              "after the first minute %+ld KiB (%+.1f KiB/min)\n",
              first.rss_kib, last.rss_kib, max_rss, last.rss_kib - first.rss_kib,
              minutes > 0 ? static_cast<double>(last.rss_kib - first.rss_kib) / minutes : 0.0,
              last.rss_kib - after_warmup->rss_kib,
              warm_minutes > 0
                  ? static_cast<double>(last.rss_kib - after_warmup->rss_kib) / warm_minutes
                  : 0.0);
  std::printf("CPU: %.2f s in %.1f min = %.2f s per minute (%.1f%% of one core)\n",
              last.cpu_s - first.cpu_s, minutes,
              minutes > 0 ? (last.cpu_s - first.cpu_s) / minutes : 0.0,
              minutes > 0 ? 100.0 * (last.cpu_s - first.cpu_s) / (minutes * 60) : 0.0);
  std::printf("fds: first %ld, last %ld; threads: first %ld, last %ld\n", first.fds, last.fds,
              first.threads, last.threads);
  std::printf("prepare: %zu calls, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", prepare_ms.size(),
              Percentile(prepare_ms, 0.5), Percentile(prepare_ms, 0.99),
              prepare_ms.empty() ? 0.0 : *std::max_element(prepare_ms.begin(), prepare_ms.end()));
  std::printf("unprepare: %zu calls, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
              unprepare_ms.size(), Percentile(unprepare_ms, 0.5), Percentile(unprepare_ms, 0.99),
              unprepare_ms.empty() ? 0.0
                                   : *std::max_element(unprepare_ms.begin(), unprepare_ms.end()));
  std::printf("errors: %zu%s%s\n", errors, errors > 0 ? ", first: " : "", first_error.c_str());
  std::printf("API in the steady part: %zu requests (%zu claim GETs), %zu writes, "
              "%zu ResourceSlice writes\n",
              requests.size(), claim_gets, writes, slice_writes);
  std::printf("SIGTERM: exit code %d\n", code);
  std::filesystem::remove_all(dir);
  return 0;
}
