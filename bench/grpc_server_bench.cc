// grpc_server_bench: what the DRA socket's gRPC round trip costs with gRPC's synchronous server
// at its default polling threads (one to two, started and stopped as calls come), the same
// server with --min-pollers/--max-pollers threads kept, and a completion-queue server whose
// own threads run each call where they take it off the queue (docs/performance.md, "Claim
// preparation").
//  Both serve the DRA v1 service on a unix socket in this process with a handler that answers
//  at once, so only gRPC is measured; clients call NodePrepareResources with no claims at
//  concurrency 1 and 8, pausing 0.2 ms between calls (a kubelet does not call back to back).
//  The servers take turns, --rounds times each, so a change of the machine's load hits all.
//  Per server and concurrency: p50/p99 of the call and the context switches per call of the
//  whole process and its CPU time per call (client and server together; the pause costs two
//  of the context switches). First, as the
//  floor under any call: a bare ping-pong of 64 bytes between two threads over a unix
//  socketpair (two wake-ups per round trip), with the same pause.
//
// Usage: grpc_server_bench [--calls N] [--rounds R] [--queue-threads T] [--min-pollers M]
//                          [--max-pollers M]
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "bench_support.h"
#include "dra/v1/api.grpc.pb.h"

namespace {

namespace dra = k8s::io::kubelet::pkg::apis::dra::v1;
using Clock = std::chrono::steady_clock;

rusage Usage() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return usage;
}
long ContextSwitches(const rusage& usage) { return usage.ru_nvcsw + usage.ru_nivcsw; }
double CpuMs(const rusage& usage) {
  auto ms = [](const timeval& t) { return t.tv_sec * 1e3 + t.tv_usec / 1e3; };
  return ms(usage.ru_utime) + ms(usage.ru_stime);
}

class SyncDra final : public dra::DRAPlugin::Service {
  grpc::Status NodePrepareResources(grpc::ServerContext*, const dra::NodePrepareResourcesRequest*,
                                    dra::NodePrepareResourcesResponse*) override {
    return grpc::Status::OK;
  }
};

// A completion-queue server: `threads` threads share one queue; each call asks for its
// successor when it arrives, then answers on the thread that took it.
class QueueServedDra {
 public:
  QueueServedDra(grpc::ServerBuilder& builder, int threads) : threads_(threads) {
    builder.RegisterService(&service_);
    queue_ = builder.AddCompletionQueue();
  }
  void Serve() {
    for (int i = 0; i < threads_; ++i) {
      Ask();
      workers_.emplace_back([this] {
        void* tag = nullptr;
        bool ok = false;
        while (queue_->Next(&tag, &ok)) {
          auto* call = static_cast<Call*>(tag);
          if (!ok || call->answered) {
            delete call;
            continue;
          }
          // A new call comes off the queue only before the server's Shutdown returned, and Stop
          // (which shuts the queue) comes after it: no request can reach a shut queue.
          Ask();
          call->answered = true;
          call->writer.Finish(call->response, grpc::Status::OK, call);
        }
      });
    }
  }
  // After the server's Shutdown.
  void Stop() {
    queue_->Shutdown();
    for (auto& worker : workers_) worker.join();
  }

 private:
  struct Call {
    grpc::ServerContext context;
    dra::NodePrepareResourcesRequest request;
    dra::NodePrepareResourcesResponse response;
    grpc::ServerAsyncResponseWriter<dra::NodePrepareResourcesResponse> writer{&context};
    bool answered = false;
  };
  void Ask() {
    auto* call = new Call;
    service_.RequestNodePrepareResources(&call->context, &call->request, &call->writer,
                                         queue_.get(), queue_.get(), call);
  }

  const int threads_;
  dra::DRAPlugin::AsyncService service_;
  std::unique_ptr<grpc::ServerCompletionQueue> queue_;
  std::vector<std::thread> workers_;
};

struct Figures {
  std::vector<double> call_ms;
  long context_switches = 0;
  double cpu_ms = 0;
};

void Call(const std::string& address, int concurrency, int calls, Figures& into) {
  std::mutex mu;
  const rusage before = Usage();
  std::vector<std::thread> clients;
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&] {
      auto stub = dra::DRAPlugin::NewStub(
          grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
      std::vector<double> mine;
      for (int i = 0; i < calls; ++i) {
        dra::NodePrepareResourcesRequest request;
        dra::NodePrepareResourcesResponse response;
        grpc::ClientContext context;
        const auto start = Clock::now();
        const grpc::Status status = stub->NodePrepareResources(&context, request, &response);
        if (!status.ok()) {
          std::fprintf(stderr, "grpc_server_bench: call failed: %s\n",
                       status.error_message().c_str());
          std::exit(1);
        }
        mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
        ::usleep(200);
      }
      std::lock_guard<std::mutex> lock(mu);
      into.call_ms.insert(into.call_ms.end(), mine.begin(), mine.end());
    });
  }
  for (auto& client : clients) client.join();
  const rusage after = Usage();
  into.context_switches += ContextSwitches(after) - ContextSwitches(before);
  into.cpu_ms += CpuMs(after) - CpuMs(before);
}

// The bare round trip: `count` ping-pongs with an echo thread over a socketpair.
std::vector<double> PingPong(int count) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    std::perror("grpc_server_bench: socketpair");
    std::exit(1);
  }
  std::thread echo([fd = pair[1]] {
    char buffer[64];
    while (::read(fd, buffer, sizeof buffer) == static_cast<ssize_t>(sizeof buffer)) {
      if (::write(fd, buffer, sizeof buffer) != static_cast<ssize_t>(sizeof buffer)) return;
    }
  });
  std::vector<double> samples;
  char buffer[64] = {};
  for (int i = 0; i < count; ++i) {
    const auto start = Clock::now();
    if (::write(pair[0], buffer, sizeof buffer) != static_cast<ssize_t>(sizeof buffer) ||
        ::read(pair[0], buffer, sizeof buffer) != static_cast<ssize_t>(sizeof buffer)) {
      std::perror("grpc_server_bench: ping-pong");
      std::exit(1);
    }
    samples.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    ::usleep(200);
  }
  ::shutdown(pair[0], SHUT_RDWR);
  echo.join();
  ::close(pair[0]);
  ::close(pair[1]);
  return samples;
}

}  // namespace

int main(int argc, char** argv) {
  const efadra::bench::Flags flags(argc, argv);
  const int calls = static_cast<int>(flags.Long("--calls", 1000));
  const int rounds = static_cast<int>(flags.Long("--rounds", 3));
  const int queue_threads = static_cast<int>(flags.Long("--queue-threads", 8));
  const int min_pollers = static_cast<int>(flags.Long("--min-pollers", 2));
  const int max_pollers = static_cast<int>(flags.Long("--max-pollers", 16));
  char scratch_template[] = "/tmp/grpc-server-bench-XXXXXX";
  if (::mkdtemp(scratch_template) == nullptr) {
    std::perror("grpc_server_bench: mkdtemp /tmp/grpc-server-bench-XXXXXX");
    return 1;
  }
  const std::string scratch = scratch_template;
  const std::string address = "unix:" + scratch + "/dra.sock";
  std::map<std::pair<std::string, int>, Figures> figures;  // (server, concurrency)
  for (int round = 0; round < rounds; ++round) {
    for (const std::string kind : {"sync", "sync-pollers", "queue"}) {
      const bool queued = kind == "queue";
      grpc::ServerBuilder builder;
      builder.AddListeningPort(address, grpc::InsecureServerCredentials());
      SyncDra sync_service;
      std::unique_ptr<QueueServedDra> queue_served;
      if (queued) {
        queue_served = std::make_unique<QueueServedDra>(builder, queue_threads);
      } else {
        builder.RegisterService(&sync_service);
      }
      if (kind == "sync-pollers") {
        builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS,
                                    min_pollers);
        builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                                    max_pollers);
      }
      auto server = builder.BuildAndStart();
      if (server == nullptr) {
        std::fprintf(stderr, "grpc_server_bench: cannot serve on %s\n", address.c_str());
        return 1;
      }
      if (queue_served != nullptr) queue_served->Serve();
      const std::string name =
          queued                   ? "completion queue, " + std::to_string(queue_threads) + " threads"
          : kind == "sync-pollers" ? "synchronous, " + std::to_string(min_pollers) + " to " +
                                         std::to_string(max_pollers) + " pollers"
                                   : "synchronous (gRPC defaults)";
      for (const int concurrency : {1, 8}) {
        Call(address, concurrency, concurrency == 1 ? calls : calls / 8,
             figures[{name, concurrency}]);
      }
      server->Shutdown();
      if (queue_served != nullptr) queue_served->Stop();
    }
  }
  std::printf("grpc_server_bench: empty NodePrepareResources over a unix socket, %d rounds\n",
              rounds);
  const std::vector<double> bare = PingPong(calls);
  std::printf("bare unix-socket ping-pong between two threads: %zu round trips, p50 %.3f ms p99 "
              "%.3f ms\n",
              bare.size(), efadra::bench::Percentile(bare, 0.50),
              efadra::bench::Percentile(bare, 0.99));
  for (const auto& [key, result] : figures) {
    const auto& [name, concurrency] = key;
    const double calls_made = static_cast<double>(result.call_ms.size());
    std::printf("%s, concurrency %d: %zu calls, p50 %.3f ms p99 %.3f ms, %.1f context switches "
                "and %.3f ms of CPU per call\n",
                name.c_str(), concurrency, result.call_ms.size(),
                efadra::bench::Percentile(result.call_ms, 0.50),
                efadra::bench::Percentile(result.call_ms, 0.99),
                static_cast<double>(result.context_switches) / calls_made,
                result.cpu_ms / calls_made);
  }
  ::rmdir(scratch.c_str());
  return 0;
}
