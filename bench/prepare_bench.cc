// prepare_bench: what NodePrepareResources costs, next to its floor.
//  The floor (design.md §7) is one API GET of the claim plus one durable atomic file write
//  (the checkpoint), both measured here in the same run on the same state directory: once
//  apart (each part's own p50/p99), and as the sequence GET-then-write interleaved with the
//  prepares at each concurrency (each worker takes a floor sample, an empty-call sample and a
//  prepare in turn), so that the floor meets the same load, disk queue and scheduler as the
//  prepares it is compared with. The empty call (NodePrepareResources with no claims) is the
//  round trip from the kubelet that every prepare has and the floor does not; the floor plus
//  the empty call taken right after it is the sequence a prepare cannot avoid.
//  The prepares: NodePrepareResources for a one-device claim over the real unix socket (v1, a
//  gRPC client playing the kubelet; CDI specs on /dev/shm, a tmpfs like /var/run/cdi) at
//  concurrency 1 and 8, with claim device status off and then on (same run): p50/p99, the
//  share of the time spent waiting for the API GET (from the client's request observer), the
//  status PATCHes sent, and the process RSS.
// Everything runs in this process: an apidouble::FakeApiServer on 127.0.0.1, the real
// ClaimPreparer and kubelet::Plugin on a generated p5.48xlarge tree (32 EFAs).
//
// Usage: prepare_bench [--iterations N] [--state-dir DIR]   (DIR: where checkpoints go; its
//        filesystem decides the fsync cost; default a scratch dir under /var/tmp)
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "bench_support.h"
#include "dra/v1/api.grpc.pb.h"
#include "efadra/apidouble/fake_api_server.h"
#include "efadra/claims/claim_preparer.h"
#include "efadra/claims/device_status_writer.h"
#include "efadra/discovery/discoverer.h"
#include "efadra/kube/client.h"
#include "efadra/kubelet/plugin.h"
#include "efadra/slices/resource_slices.h"
#include "efadra/sysfstree/bundled.h"
#include "efadra/sysfstree/topology.h"
#include "efadra/sysfstree/tree_builder.h"

namespace {

namespace dra = k8s::io::kubelet::pkg::apis::dra::v1;
using Clock = std::chrono::steady_clock;
constexpr char kNode[] = "bench-node";

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Percentiles {
  double p50 = 0, p99 = 0;
};
Percentiles Of(const std::vector<double>& samples) {
  return {efadra::bench::Percentile(samples, 0.50), efadra::bench::Percentile(samples, 0.99)};
}

// Sums the time the client spent in GETs (the API wait of a prepare).
class GetTimer : public efadra::kube::RequestObserver {
 public:
  void OnRequest(std::string_view verb, int, std::chrono::microseconds latency) override {
    if (verb == "GET") total_us_ += latency.count();
  }
  double TotalMs() const { return static_cast<double>(total_us_.load()) / 1000.0; }
  void Reset() { total_us_ = 0; }

 private:
  std::atomic<int64_t> total_us_{0};
};

nlohmann::json Claim(const std::string& name, const std::string& uid, const std::string& device) {
  nlohmann::json result = {{"request", "efa"}, {"driver", "dra.net"}, {"pool", kNode},
                           {"device", device}};
  return {{"apiVersion", "resource.k8s.io/v1"},
          {"kind", "ResourceClaim"},
          {"metadata", {{"namespace", "bench"}, {"name", name}, {"uid", uid}}},
          {"spec", {{"devices", {{"requests", nlohmann::json::array()}}}}},
          {"status", {{"allocation", {{"devices", {{"results", {result}}}}}}}}};
}

// One floor sample: one GET of a claim and one durable atomic write of a checkpoint-sized file
// of the worker's own, timed together. Then, untimed, the file is removed and its directory
// synced, as the untimed unprepare after each prepare does, so that the floor and the prepares
// put the same flushes in the disk's queue.
efadra::Result<double> FloorOnce(efadra::kube::Client& client, efadra::core::Filesystem& state_fs,
                                 const std::string& file) {
  static const std::string payload(1500, 'x');
  const auto start = Clock::now();
  auto got = client.Get("/apis/resource.k8s.io/v1/namespaces/bench/resourceclaims/floor");
  if (!got.ok()) return got.status();
  EFADRA_RETURN_IF_ERROR(state_fs.WriteFileAtomic(file, payload, {.durable = true}));
  const double ms = Ms(Clock::now() - start);
  EFADRA_RETURN_IF_ERROR(state_fs.RemoveFile(file));
  EFADRA_RETURN_IF_ERROR(state_fs.SyncDirectory("/"));
  return ms;
}

// What the gRPC call itself costs: NodePrepareResources with no claims (the server checks the
// request and answers an empty map).
efadra::Result<double> EmptyCallOnce(dra::DRAPlugin::Stub& stub) {
  dra::NodePrepareResourcesRequest request;
  dra::NodePrepareResourcesResponse response;
  grpc::ClientContext context;
  const auto start = Clock::now();
  grpc::Status status = stub.NodePrepareResources(&context, request, &response);
  if (!status.ok()) return efadra::UnavailableError("empty NodePrepareResources: " +
                                                     status.error_message());
  return Ms(Clock::now() - start);
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "prepare_bench: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 300;
  std::string state_root = "/var/tmp";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--iterations") {
      iterations = std::atoi(argv[i + 1]);
    } else if (flag == "--state-dir") {
      state_root = argv[i + 1];
    } else {
      return Fail("unknown flag " + flag);
    }
  }
  spdlog::set_level(spdlog::level::warn);
  std::string scratch_template = "/tmp/prepare-bench-XXXXXX";
  const std::string scratch = ::mkdtemp(scratch_template.data());
  std::string state_template = state_root + "/prepare-bench-state-XXXXXX";
  if (::mkdtemp(state_template.data()) == nullptr) return Fail("cannot create " + state_template);
  const std::string state_dir = state_template;

  auto topology = efadra::sysfstree::ParseTopology(*efadra::sysfstree::BundledTopology("p5.48xlarge"));
  if (!topology.ok() ||
      !efadra::sysfstree::BuildSysfsTree(*topology, scratch + "/sys", scratch + "/dev").ok()) {
    return Fail("cannot build the p5.48xlarge tree");
  }
  auto sysfs = efadra::core::NewPosixFilesystem(scratch + "/sys");
  auto dev = efadra::core::NewPosixFilesystem(scratch + "/dev");
  efadra::discovery::Discoverer discoverer(*sysfs, *dev, nullptr);
  auto discovered = discoverer.Discover();
  if (!discovered.ok()) return Fail(discovered.status().ToString());
  auto inventory = std::make_shared<const efadra::discovery::Inventory>(std::move(*discovered));

  efadra::apidouble::FakeApiServer api;
  if (!api.Start().ok()) return Fail("cannot start the API server double");
  efadra::kube::ClientConfig config;
  config.server = api.url();
  auto client = efadra::kube::Client::Create(config);
  if (!client.ok()) return Fail(client.status().ToString());
  GetTimer get_timer;
  (*client)->SetObserver(&get_timer);

  // The floor, part 1: one GET of a claim.
  api.PutResourceClaim(Claim("floor", "uid-floor", "x"));
  std::vector<double> get_ms;
  for (int i = 0; i < iterations; ++i) {
    const auto start = Clock::now();
    auto got = (*client)->Get("/apis/resource.k8s.io/v1/namespaces/bench/resourceclaims/floor");
    get_ms.push_back(Ms(Clock::now() - start));
    if (!got.ok()) return Fail(got.status().ToString());
  }
  // The floor, part 2: one durable atomic write of a checkpoint-sized file.
  auto state_fs = efadra::core::NewPosixFilesystem(state_dir);
  std::vector<double> write_ms;
  const std::string payload(1500, 'x');
  for (int i = 0; i < iterations; ++i) {
    const auto start = Clock::now();
    efadra::Status written = state_fs->WriteFileAtomic("/floor.json", payload, {.durable = true});
    write_ms.push_back(Ms(Clock::now() - start));
    if (!written.ok()) return Fail(written.ToString());
  }
  state_fs->RemoveFile("/floor.json").IgnoreError();

  // CDI specs go to a tmpfs, as /var/run/cdi is one on nodes.
  std::string cdi_template = "/dev/shm/prepare-bench-cdi-XXXXXX";
  const std::string cdi_dir =
      ::mkdtemp(cdi_template.data()) != nullptr ? cdi_template : scratch + "/cdi";
  auto cdi_fs = efadra::core::NewPosixFilesystem(cdi_dir);
  efadra::claims::PreparerOptions preparer_options;
  preparer_options.node_name = kNode;
  preparer_options.dev_root = scratch + "/dev";
  preparer_options.sysfs_root = scratch + "/sys";
  preparer_options.boot_id = "bench";
  efadra::claims::ClaimPreparer preparer(preparer_options, **client, *cdi_fs, *state_fs,
                                         [&] { return inventory; });
  if (!preparer.Start().ok()) return Fail("claim preparer did not start");
  std::printf("prepare_bench: p5.48xlarge tree, %d iterations, state dir %s\n", iterations,
              state_dir.c_str());
  const auto get = Of(get_ms);
  const auto write = Of(write_ms);
  std::printf("floor: API GET p50 %.3f ms p99 %.3f ms; durable atomic write p50 %.3f ms p99 %.3f ms;"
              " sum p50 %.3f ms p99 %.3f ms\n",
              get.p50, get.p99, write.p50, write.p99, get.p50 + write.p50, get.p99 + write.p99);

  // The floor at each concurrency is measured interleaved with the prepares it is compared
  // with: each worker takes one floor sample, one empty-call sample and one prepare in turn, so
  // all three meet the same load, the same disk queue and the same scheduler, and a drift of
  // the disk's speed during the run moves them alike. The floor's GETs go through a client of
  // their own (the same configuration) so that the prepares' API wait is counted alone.
  auto floor_client = efadra::kube::Client::Create(config);
  if (!floor_client.ok()) return Fail(floor_client.status().ToString());
  // Claim device status off and on (--claim-device-status, the default), alternating twice so
  // that a change in the machine's load hits both alike: the status write is queued and sent
  // by the writer's thread, so the prepare must cost the same either way.
  struct Samples {
    // floor_and_call_ms: the floor sample plus the empty-call sample taken right after it, the
    // sequence a prepare cannot avoid: the kubelet's call, the GET, the durable write.
    std::vector<double> prepare_ms, floor_ms, empty_call_ms, floor_and_call_ms;
    int failures = 0;
    double get_wait_ms = 0;
  };
  std::map<std::pair<bool, int>, Samples> samples;  // (claim status, concurrency)
  size_t status_patches = 0;
  bool status_idle = true;
  int round = 0;
  for (const bool claim_status : {false, true, false, true}) {
    std::unique_ptr<efadra::claims::DeviceStatusWriter> status_writer;
    if (claim_status) {
      status_writer = std::make_unique<efadra::claims::DeviceStatusWriter>(
          efadra::claims::DeviceStatusWriterOptions{}, **client, [&] { return inventory; });
    }
    efadra::kubelet::PluginOptions plugin_options;
    plugin_options.registrar_dir = scratch + "/registry";
    plugin_options.plugin_dir = scratch + "/plugin";
    efadra::kubelet::Plugin plugin(plugin_options, preparer);
    plugin.WriteDeviceStatusWith(status_writer.get());
    if (!plugin.Start().ok()) return Fail("plugin did not start");
    const size_t patches_before = api.Requests().size();

    for (int concurrency : {1, 8}) {
      ++round;
      // Each worker owns one device and prepares/unprepares a fresh claim on it, so claims
      // never conflict; the unprepare is not timed.
      const int per_worker = std::max(1, iterations / concurrency);
      auto claim_id = [&](int w, int i) {
        return std::to_string(round) + "-" + std::to_string(w) + "-" + std::to_string(i);
      };
      for (int w = 0; w < concurrency; ++w) {
        const std::string device =
            efadra::slices::DeviceName(inventory->devices[static_cast<size_t>(w)].pci_address);
        for (int i = 0; i < per_worker; ++i) {
          api.PutResourceClaim(Claim("c" + claim_id(w, i), "uid-" + claim_id(w, i), device));
        }
      }
      get_timer.Reset();
      std::mutex mu;
      Samples round_samples;
      efadra::Status first_failure;  // of a floor or empty-call sample: the bench stops
      std::vector<std::thread> workers;
      for (int w = 0; w < concurrency; ++w) {
        workers.emplace_back([&, w] {
          auto stub = dra::DRAPlugin::NewStub(grpc::CreateChannel(
              "unix:" + plugin.DraSocketPath(), grpc::InsecureChannelCredentials()));
          const std::string floor_file = "/floor-" + std::to_string(w) + ".json";
          for (int i = 0; i < per_worker; ++i) {
            auto floor = FloorOnce(**floor_client, *state_fs, floor_file);
            auto empty = EmptyCallOnce(*stub);
            const std::string id = claim_id(w, i);
            dra::NodePrepareResourcesRequest request;
            auto* claim = request.add_claims();
            claim->set_namespace_("bench");
            claim->set_name("c" + id);
            claim->set_uid("uid-" + id);
            dra::NodePrepareResourcesResponse response;
            grpc::ClientContext context;
            const auto start = Clock::now();
            grpc::Status status = stub->NodePrepareResources(&context, request, &response);
            const double ms = Ms(Clock::now() - start);
            const bool failed =
                !status.ok() || !response.claims().at("uid-" + id).error().empty();
            {
              std::lock_guard<std::mutex> lock(mu);
              round_samples.prepare_ms.push_back(ms);
              round_samples.failures += failed ? 1 : 0;
              if (floor.ok()) round_samples.floor_ms.push_back(*floor);
              if (empty.ok()) round_samples.empty_call_ms.push_back(*empty);
              if (floor.ok() && empty.ok()) {
                round_samples.floor_and_call_ms.push_back(*floor + *empty);
              }
              if (first_failure.ok() && !floor.ok()) first_failure = floor.status();
              if (first_failure.ok() && !empty.ok()) first_failure = empty.status();
            }
            dra::NodeUnprepareResourcesRequest unprepare;
            *unprepare.add_claims() = *claim;
            dra::NodeUnprepareResourcesResponse unprepared;
            grpc::ClientContext unprepare_context;
            stub->NodeUnprepareResources(&unprepare_context, unprepare, &unprepared);
          }
        });
      }
      for (auto& worker : workers) worker.join();
      // A floor with silently missing samples would flatter the ratio.
      if (!first_failure.ok()) return Fail(first_failure.ToString());
      Samples& into = samples[{claim_status, concurrency}];
      into.get_wait_ms += get_timer.TotalMs();
      into.failures += round_samples.failures;
      for (auto [to, from] : {std::pair{&into.prepare_ms, &round_samples.prepare_ms},
                              std::pair{&into.floor_ms, &round_samples.floor_ms},
                              std::pair{&into.empty_call_ms, &round_samples.empty_call_ms},
                              std::pair{&into.floor_and_call_ms,
                                        &round_samples.floor_and_call_ms}}) {
        to->insert(to->end(), from->begin(), from->end());
      }
    }
    if (status_writer != nullptr) {
      status_idle = status_writer->WaitIdle(std::chrono::seconds(30)) && status_idle;
      const auto requests = api.Requests();
      for (size_t i = patches_before; i < requests.size(); ++i) {
        status_patches += requests[i].method == "PATCH" ? 1 : 0;
      }
    }
    plugin.Stop();
  }
  for (const auto& [key, result] : samples) {
    const auto& [claim_status, concurrency] = key;
    double total_ms = 0;
    for (double ms : result.prepare_ms) total_ms += ms;
    const auto prepare = Of(result.prepare_ms);
    const auto floor = Of(result.floor_ms);
    const auto empty = Of(result.empty_call_ms);
    const auto floor_and_call = Of(result.floor_and_call_ms);
    std::printf(
        "claim status %s, concurrency %d: floor (GET then durable write) p50 %.3f ms p99 %.3f ms; "
        "gRPC call with no claims p50 %.3f ms p99 %.3f ms; floor + that call p50 %.3f ms p99 "
        "%.3f ms; NodePrepareResources (1 device) %zu calls, %d failed, p50 %.3f ms p99 %.3f ms; "
        "p99 / floor p99 = %.2f; p99 / (floor + call) p99 = %.2f; API GET wait %.0f%% of "
        "prepare time\n",
        claim_status ? "on " : "off", concurrency, floor.p50, floor.p99, empty.p50, empty.p99,
        floor_and_call.p50, floor_and_call.p99, result.prepare_ms.size(), result.failures,
        prepare.p50, prepare.p99, prepare.p99 / floor.p99, prepare.p99 / floor_and_call.p99,
        100.0 * result.get_wait_ms / total_ms);
  }
  std::printf("claim status writes: %zu PATCH requests (an apply after each prepare and each "
              "unprepare, coalesced per claim), writer %s\n",
              status_patches, status_idle ? "idle after each round" : "still busy after 30 s");
  std::printf("RSS of this process (driver parts + API double + client): %.1f MiB\n",
              static_cast<double>(efadra::bench::SampleProcess(0).rss_kib) / 1024.0);
  client->reset();
  floor_client->reset();
  api.Stop();
  std::filesystem::remove_all(scratch);
  std::filesystem::remove_all(state_dir);
  std::filesystem::remove_all(cdi_dir);
  return 0;
}
