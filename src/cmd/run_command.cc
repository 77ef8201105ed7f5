// `efa-dra-driver run`: the DaemonSet mode (design.md §5). Parses the flags (each also
// EFA_DRA_<FLAG>; the node also from NODE_NAME, the pod UID from POD_UID), builds the object
// graph and hands the components to the Daemon, which runs them until SIGTERM/SIGINT.
// Exit codes: 0 clean stop, 1 bad configuration or a component that cannot start, 2 usage.
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <cctype>
#include <charconv>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "commands.h"
#include "daemon.h"
#include "efadra/claims/claim_preparer.h"
#include "efadra/claims/device_status_writer.h"
#include "efadra/core/filesystem.h"
#include "efadra/discovery/device_watcher.h"
#include "efadra/discovery/discoverer.h"
#include "efadra/discovery/verbs_events.h"
#include "efadra/discovery/verbs_provider.h"
#include "efadra/kube/client.h"
#include "efadra/kube/config.h"
#include "efadra/kubelet/coexistence.h"
#include "efadra/kubelet/conflict_monitor.h"
#include "efadra/kubelet/device_health.h"
#include "efadra/kubelet/health_monitor.h"
#include "efadra/kubelet/plugin.h"
#include "efadra/observe/api_request_observer.h"
#include "efadra/observe/driver_metrics.h"
#include "efadra/observe/http_server.h"
#include "efadra/slices/kube_slice_api.h"
#include "efadra/slices/publisher.h"

namespace efadra::cmd {
namespace {

struct RunFlags {
  std::string node_name;
  std::string driver_name = "dra.net";
  std::string sysfs_root = "/sys";
  std::string dev_root = "/dev";
  std::string kubeconfig;
  std::string registrar_dir = "/var/lib/kubelet/plugins_registry";
  std::string plugin_dir;  // default /var/lib/kubelet/plugins/<driver>
  std::string cdi_root = "/var/run/cdi";
  std::string state_dir;  // default: the plugin dir
  std::string http_address = ":8080";
  std::string resync = "60s";
  std::string health_poll_interval = "2s";
  std::string pod_uid;
  std::string boot_id_file = "/proc/sys/kernel/random/boot_id";
  std::string device_plugin_dir = kubelet::kDefaultDevicePluginDir;
  std::vector<std::string> device_plugin_sockets = {kubelet::kEfaDevicePluginSocket};
  bool taint_unhealthy = false;
  bool claim_device_status = true;
  bool numa_node_list = false;
  SharingFlags sharing;
  bool inject_gdrdrv = false;
  LoggingFlags logging;
};

// "60s", "1m", "500ms", "1h", "1m30s" (Go duration subset); nullopt when malformed or <= 0.
std::optional<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::chrono::milliseconds total{0};
  while (!text.empty()) {
    int64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end == text.data()) return std::nullopt;
    text.remove_prefix(static_cast<size_t>(end - text.data()));
    int64_t unit_ms = 0;
    if (text.rfind("ms", 0) == 0) {
      unit_ms = 1;
      text.remove_prefix(2);
    } else if (text.rfind("s", 0) == 0) {
      unit_ms = 1000;
      text.remove_prefix(1);
    } else if (text.rfind("m", 0) == 0) {
      unit_ms = 60'000;
      text.remove_prefix(1);
    } else if (text.rfind("h", 0) == 0) {
      unit_ms = 3'600'000;
      text.remove_prefix(1);
    } else {
      return std::nullopt;
    }
    total += std::chrono::milliseconds(value * unit_ms);
  }
  if (total.count() <= 0) return std::nullopt;
  return total;
}

void RecordHealth(const kubelet::DeviceHealthTracker& health, observe::DriverMetrics& metrics) {
  for (const auto& [device, state] : health.Current()) {
    metrics.SetDeviceHealthy(device, state == kubelet::DeviceHealthReport::Health::kHealthy);
  }
}

// Discovery behind the publisher's scanner seam; also the latest inventory for the claim
// preparer and the feed of the device-health tracker. Scan() runs on the publisher's thread.
class InventorySource {
 public:
  InventorySource(const std::string& sysfs_root, const std::string& dev_root,
                  kubelet::DeviceHealthTracker& health, kubelet::HealthMonitor& monitor,
                  observe::DriverMetrics& metrics)
      : sysfs_(core::NewPosixFilesystem(sysfs_root)),
        dev_(core::NewPosixFilesystem(dev_root)),
        // efadv only makes sense against the host's own /sys (names must be this host's).
        verbs_(sysfs_root == "/sys" ? discovery::NewIbverbsProvider() : nullptr),
        discoverer_(*sysfs_, *dev_, verbs_.get()),
        health_(health),
        monitor_(monitor),
        metrics_(metrics) {}

  Result<discovery::Inventory> Scan() {
    std::lock_guard<std::mutex> scan_lock(scan_mu_);
    const auto start = std::chrono::steady_clock::now();
    Result<discovery::Inventory> inventory = discoverer_.Discover();
    metrics_.RecordDiscovery(std::chrono::steady_clock::now() - start);
    if (!inventory.ok()) return inventory;
    // The inventory's own warnings repeat on every scan; log each once.
    for (const auto& warning : inventory->warnings) {
      if (logged_.insert(warning).second) spdlog::warn("discovery: {}", warning);
    }
    if (inventory->devices.empty() && !logged_empty_) {
      logged_empty_ = true;
      spdlog::info("no EFA devices on this node; publishing an empty pool");
    }
    health_.Update(*inventory, static_cast<int64_t>(std::time(nullptr)));
    monitor_.Track(*inventory);
    RecordHealth(health_, metrics_);
    std::lock_guard<std::mutex> lock(mu_);
    latest_ = std::make_shared<const discovery::Inventory>(*inventory);
    return inventory;
  }

  // The latest scan; scans first when none has succeeded yet, so a prepare that arrives
  // before the publisher's first scan never sees an empty node.
  std::shared_ptr<const discovery::Inventory> Latest() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (latest_ != nullptr) return latest_;
    }
    Result<discovery::Inventory> scanned = Scan();
    if (!scanned.ok()) spdlog::error("discovery: {}", scanned.status().message());
    std::lock_guard<std::mutex> lock(mu_);
    return latest_ != nullptr ? latest_ : std::make_shared<const discovery::Inventory>();
  }

 private:
  std::unique_ptr<core::Filesystem> sysfs_;
  std::unique_ptr<core::Filesystem> dev_;
  std::unique_ptr<discovery::VerbsProvider> verbs_;
  discovery::Discoverer discoverer_;
  kubelet::DeviceHealthTracker& health_;
  kubelet::HealthMonitor& monitor_;
  observe::DriverMetrics& metrics_;
  std::mutex scan_mu_;  // one scan at a time (the publisher's thread, or a first prepare)
  std::set<std::string> logged_;  // guarded by scan_mu_
  bool logged_empty_ = false;     // guarded by scan_mu_
  mutable std::mutex mu_;
  std::shared_ptr<const discovery::Inventory> latest_;  // null until a scan succeeds; mu_
};

// A Component from two callables, for the parts whose start/stop is one call each.
class FunctionComponent : public Component {
 public:
  FunctionComponent(std::string name, std::function<Status()> start, std::function<void()> stop)
      : name_(std::move(name)), start_(std::move(start)), stop_(std::move(stop)) {}
  std::string_view Name() const override { return name_; }
  Status Start() override { return start_(); }
  void Stop() override { stop_(); }

 private:
  std::string name_;
  std::function<Status()> start_;
  std::function<void()> stop_;
};

// Kernel events -> debounced rescan. Without netlink (no permission, odd kernel) the periodic
// --resync still catches every change, so a failed start is a warning, not fatal.
class DeviceWatcherComponent : public Component {
 public:
  explicit DeviceWatcherComponent(slices::Publisher& publisher)
      : watcher_([&publisher] { publisher.RescanSoon(); }, discovery::DeviceWatcher::Options{}) {}
  std::string_view Name() const override { return "device watcher"; }
  Status Start() override {
    const Status status = watcher_.Start();
    if (!status.ok()) {
      spdlog::warn("device watcher unavailable, relying on periodic rescans: {}", status.message());
    }
    return Status::Ok();
  }
  void Stop() override { watcher_.Stop(); }

 private:
  discovery::DeviceWatcher watcher_;
};

// RFC 4122 text form: 8-4-4-4-12 hex digits (either case; the API server writes lower case).
bool IsUuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

// Control characters of a flag value as '?', so a bad value cannot rewrite the terminal.
std::string EscapeForTerminal(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 128)) {
    const auto u = static_cast<unsigned char>(c);
    out += u < 0x20 || u == 0x7f ? '?' : c;
  }
  return out;
}

// The node's boot id: after a reboot /var/run/cdi is empty and specs must be rewritten.
Result<std::string> ReadBootId(const std::string& path) {
  auto fs = core::NewPosixFilesystem("/");
  EFADRA_ASSIGN_OR_RETURN(std::string id, fs->ReadFile(path, 4096));
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  if (id.empty()) return InvalidArgumentError("boot id file " + path + " is empty");
  return id;
}

// A Warning Event on the Node (namespace default, where node events live), so that
// `kubectl describe node` shows why the driver refuses to prepare. Best effort: a failure is
// logged, the conflict is on /readyz anyway.
void EmitNodeEvent(kube::Client& client, const std::string& node, const std::string& reason,
                   const std::string& message) {
  auto stored = client.Get("/api/v1/nodes/" + node);
  if (!stored.ok()) {
    spdlog::warn("event on node {}: {}", node, stored.status().message());
    return;
  }
  char now[32];
  const std::time_t t = std::time(nullptr);
  std::strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  nlohmann::json event = {
      {"apiVersion", "v1"},
      {"kind", "Event"},
      {"metadata", {{"generateName", node + ".efa-dra-driver-"}, {"namespace", "default"}}},
      {"involvedObject",
       {{"apiVersion", "v1"},
        {"kind", "Node"},
        {"name", node},
        {"uid", stored->value("/metadata/uid"_json_pointer, "")}}},
      {"reason", reason},
      {"message", message},
      {"type", "Warning"},
      {"source", {{"component", "efa-dra-driver"}, {"host", node}}},
      {"reportingComponent", "efa-dra-driver"},
      {"reportingInstance", node},
      {"firstTimestamp", now},
      {"lastTimestamp", now},
      {"count", 1}};
  auto created = client.Create("/api/v1/namespaces/default/events", event);
  if (!created.ok()) spdlog::warn("event on node {}: {}", node, created.status().message());
}

void RecordCalls(observe::DriverMetrics& metrics, const kubelet::CallRecord& call) {
  // Metrics count claims; a call's claims share its latency.
  for (size_t i = 0; i < call.claims; ++i) {
    const bool ok = i >= call.failed_claims;
    if (call.method == "NodePrepareResources") {
      metrics.RecordPrepare(call.api_version, ok, call.duration);
    } else {
      metrics.RecordUnprepare(call.api_version, ok, call.duration);
    }
  }
}

int Run(RunFlags flags) {
  if (!ApplyLoggingFlags(flags.logging)) return 2;
  if (flags.node_name.empty()) {
    const char* node = std::getenv("NODE_NAME");
    if (node != nullptr) flags.node_name = node;
  }
  if (flags.pod_uid.empty()) {
    const char* pod_uid = std::getenv("POD_UID");
    if (pod_uid != nullptr) flags.pod_uid = pod_uid;
  }
  if (flags.node_name.empty()) {
    std::cerr << "efa-dra-driver run: --node-name (or NODE_NAME) is required\n";
    return 2;
  }
  // The UID names socket files and is compared with the kubelet's; anything but a UUID is a
  // wiring mistake in the DaemonSet (a wrong fieldRef), better refused than half-used.
  if (!flags.pod_uid.empty() && !IsUuid(flags.pod_uid)) {
    std::cerr << "efa-dra-driver run: --pod-uid (or POD_UID) \"" << EscapeForTerminal(flags.pod_uid)
              << "\" is not a UUID (8-4-4-4-12 hex digits)\n";
    return 2;
  }
  // Relative paths mean the working directory at start-up (the host filesystem used below
  // would otherwise root them at "/"); absolute from here on, so messages show the real path.
  flags.kubeconfig = kube::AbsolutePath(flags.kubeconfig);
  flags.boot_id_file = kube::AbsolutePath(flags.boot_id_file);
  const auto resync = ParseDuration(flags.resync);
  if (!resync.has_value()) {
    std::cerr << "efa-dra-driver run: --resync \"" << flags.resync
              << "\" is not a positive duration (e.g. 60s, 5m)\n";
    return 2;
  }
  const auto health_poll_interval = flags.health_poll_interval == "0"
                                        ? std::optional(std::chrono::milliseconds(0))
                                        : ParseDuration(flags.health_poll_interval);
  if (!health_poll_interval.has_value()) {
    std::cerr << "efa-dra-driver run: --health-poll-interval \"" << flags.health_poll_interval
              << "\" is not a duration (e.g. 2s, 500ms; 0 disables polling)\n";
    return 2;
  }
  auto http_address = observe::ParseHttpAddress(flags.http_address);
  if (!http_address.ok()) {
    std::cerr << "efa-dra-driver run: --http-address: " << http_address.status().message()
              << "\n";
    return 2;
  }
  for (const std::string& name : flags.device_plugin_sockets) {
    if (name.empty() || name.find('/') != std::string::npos) {
      std::cerr << "efa-dra-driver run: --efa-device-plugin-socket \"" << name
                << "\" is not a file name in --device-plugin-dir\n";
      return 2;
    }
  }
  if (flags.plugin_dir.empty()) flags.plugin_dir = "/var/lib/kubelet/plugins/" + flags.driver_name;
  if (flags.state_dir.empty()) flags.state_dir = flags.plugin_dir;
  auto fail = [](const Status& status) {
    std::cerr << "efa-dra-driver run: " << status.message() << "\n";
    return 1;
  };
  auto efa_device_plugins = [&flags] {
    return kubelet::EfaDevicePluginSockets(flags.device_plugin_dir, flags.device_plugin_sockets);
  };
  auto boot_id = ReadBootId(flags.boot_id_file);
  if (!boot_id.ok()) return fail(boot_id.status());

  // Metrics first: every other part records into them.
  observe::Registry registry;
  auto metrics = observe::DriverMetrics::Create(registry);
  if (!metrics.ok()) return fail(metrics.status());

  Result<kube::ClientConfig> config = kube::ResolveClientConfig(flags.kubeconfig);
  if (!config.ok()) return fail(config.status());
  // Few, short client retries: the publisher has its own backoff, and a stop must not wait
  // behind a long retry chain.
  kube::RetryPolicy retry;
  retry.max_attempts = 3;
  retry.initial_backoff = std::chrono::milliseconds(100);
  retry.max_backoff = std::chrono::milliseconds(500);
  Result<std::unique_ptr<kube::Client>> client = kube::Client::Create(*config, retry);
  if (!client.ok()) return fail(client.status());
  observe::ApiRequestObserver api_observer(**metrics);
  (*client)->SetObserver(&api_observer);

  kubelet::DeviceHealthTracker health(flags.node_name);
  // Between rescans: a cheap sysfs poll and verbs async events. A port change it sees asks
  // for a rescan, so the ResourceSlice follows too.
  slices::Publisher* rescan_target = nullptr;
  auto health_sysfs = core::NewPosixFilesystem(flags.sysfs_root);
  auto health_dev = core::NewPosixFilesystem(flags.dev_root);
  kubelet::HealthMonitorOptions monitor_options;
  monitor_options.poll_interval = *health_poll_interval;
  monitor_options.on_port_change = [&rescan_target] {
    if (rescan_target != nullptr) rescan_target->RescanSoon();
  };
  monitor_options.on_health_change = [&health, &metrics] { RecordHealth(health, **metrics); };
  // Verbs names are this host's; against another sysfs tree there is nothing to open.
  kubelet::HealthMonitor health_monitor(
      *health_sysfs, *health_dev, health,
      flags.sysfs_root == "/sys" ? discovery::NewIbverbsEventSource() : nullptr,
      std::move(monitor_options));
  InventorySource inventory(flags.sysfs_root, flags.dev_root, health, health_monitor, **metrics);
  slices::KubeSliceApi slice_api(**client);
  slices::PublisherOptions publisher_options;
  publisher_options.driver_name = flags.driver_name;
  publisher_options.node_name = flags.node_name;
  publisher_options.resync = *resync;
  publisher_options.taint_unhealthy = flags.taint_unhealthy;
  publisher_options.numa_node_list = flags.numa_node_list;
  publisher_options.shares_per_device = flags.sharing.SharesPerDevice();
  publisher_options.other_driver_registered = [&flags] {
    return !kubelet::ForeignRegistrations(flags.registrar_dir, flags.driver_name,
                                          flags.plugin_dir, /*own_socket=*/"")
                .empty();
  };
  // Two pods of a rolling update overlap on the node: only the holder of this lock publishes.
  if (!flags.pod_uid.empty()) {
    std::error_code ignored;  // a missing directory shows as the lock's own error
    std::filesystem::create_directories(flags.plugin_dir, ignored);
    publisher_options.publish_lock_path = flags.plugin_dir + "/publish.lock";
  }
  // The DeviceWatcher already debounces kernel bursts; a second delay would only add latency.
  publisher_options.debounce = std::chrono::milliseconds(0);
  slices::Publisher publisher(
      slice_api, [&inventory] { return inventory.Scan(); }, publisher_options);
  rescan_target = &publisher;

  auto cdi_fs = core::NewPosixFilesystem(flags.cdi_root);
  auto state_fs = core::NewPosixFilesystem(flags.state_dir);
  claims::PreparerOptions preparer_options;
  preparer_options.driver_name = flags.driver_name;
  preparer_options.node_name = flags.node_name;
  preparer_options.dev_root = flags.dev_root;
  preparer_options.sysfs_root = flags.sysfs_root;
  preparer_options.boot_id = *boot_id;
  preparer_options.inject_gdrdrv = flags.inject_gdrdrv;
  if (!flags.pod_uid.empty()) {
    preparer_options.shared_lock_path = kubelet::SharedLockPath(flags.plugin_dir);
  }
  claims::ClaimPreparer preparer(preparer_options, **client, *cdi_fs, *state_fs,
                                 [&inventory] { return inventory.Latest(); });

  kubelet::PluginOptions plugin_options;
  plugin_options.driver_name = flags.driver_name;
  plugin_options.registrar_dir = flags.registrar_dir;
  plugin_options.plugin_dir = flags.plugin_dir;
  plugin_options.pod_uid = flags.pod_uid;
  kubelet::Plugin plugin(plugin_options, preparer, &health);

  // Anything else that may hand out these EFAs makes the driver refuse prepares (a device
  // given twice can reach two containers) and fail /readyz until it is gone.
  kubelet::ConflictMonitor conflicts(std::chrono::seconds(2), [&](const std::string& reason) {
    EmitNodeEvent(**client, flags.node_name, "ConflictingEfaDriver", reason);
  });
  conflicts.AddSource([&efa_device_plugins] {
    std::vector<std::string> reasons;
    for (const auto& socket : efa_device_plugins()) {
      reasons.push_back("the EFA device plugin also serves this node (" + socket +
                        "); the two hand out the same uverbs devices: remove one of them");
    }
    return reasons;
  });
  conflicts.AddSource([&flags, &plugin] {
    std::vector<std::string> reasons;
    for (const auto& socket : kubelet::ForeignRegistrations(
             flags.registrar_dir, flags.driver_name, flags.plugin_dir,
             plugin.RegistrationSocketPath())) {
      reasons.push_back("another program is registered with the kubelet as DRA driver " +
                        flags.driver_name + " (" + socket +
                        ": DRANET from the aws-dranet chart, or a second dra.net driver); "
                        "remove it from this node");
    }
    return reasons;
  });
  conflicts.AddSource([&publisher] {
    std::vector<std::string> reasons;
    for (const auto& slice : publisher.State().foreign_slices) {
      reasons.push_back("ResourceSlice " + slice + " of this node's pool was written by another "
                        "program");
    }
    return reasons;
  });
  plugin.RefusePreparesWhile([&conflicts] { return conflicts.Summary(); });
  // The writer starts its thread when constructed, so it is made by its daemon component:
  // the daemon blocks SIGTERM/SIGINT before any component starts a thread.
  std::unique_ptr<claims::DeviceStatusWriter> status_writer;
  // The kubelet wipes a driver's slices when it loses the driver: publish again at once.
  plugin.OnRegistered([&publisher] { publisher.RepublishNow(); });
  plugin.OnCall([&metrics](const kubelet::CallRecord& call) { RecordCalls(**metrics, call); });

  (*metrics)->published_devices().SetFunction(
      [&publisher] { return publisher.State().devices_published; });
  (*metrics)->published_slices().SetFunction(
      [&publisher] { return publisher.State().slices_published; });
  (*metrics)->prepared_claims().SetFunction(
      [&preparer] { return static_cast<double>(preparer.PreparedClaimUids().size()); });
  (*metrics)->device_plugin_conflict().SetFunction([&efa_device_plugins] {
    return efa_device_plugins().empty() ? 0.0 : 1.0;
  });

  observe::HttpServer http(&registry);
  // A rolling-update pair on the host network shares the port while both run.
  http.ShareListenPort(!flags.pod_uid.empty());
  http.liveness().Add("kubelet-sockets", [&plugin] {
    return plugin.Serving() ? Status::Ok()
                            : UnavailableError("the kubelet plugin sockets are not served");
  });
  // Sockets come back by themselves after a wipe of the plugin dir; a state dir that cannot be
  // written fails every later prepare, so liveness says so (and a restart re-checks it).
  http.liveness().Add("state-dir-writable", [&preparer] { return preparer.CheckStateDir(); });
  http.readiness().Add("kubelet-registration", [&plugin] {
    const kubelet::RegistrationState state = plugin.Registration();
    if (state.phase == kubelet::RegistrationState::Phase::kRegistered) return Status::Ok();
    std::string why(kubelet::PhaseName(state.phase));
    if (!state.error.empty()) why += ": " + state.error;
    return UnavailableError(why);
  });
  http.readiness().Add("resourceslices", [&publisher] {
    // Standing by is ready: the other instance of the rolling update publishes meanwhile, and
    // maxUnavailable 0 waits for this pod to be ready before it stops the old one.
    if (publisher.FirstPublishDone() || publisher.State().standby) return Status::Ok();
    const std::string error = publisher.LastError();
    return UnavailableError(error.empty() ? "not published yet" : error);
  });
  http.readiness().Add("no-conflicting-driver", [&conflicts] {
    const std::string summary = conflicts.Summary();
    return summary.empty() ? Status::Ok() : FailedPreconditionError(summary);
  });
  http.readiness().Add("no-efa-device-plugin", [&efa_device_plugins] {
    const auto sockets = efa_device_plugins();
    if (sockets.empty()) return Status::Ok();
    return FailedPreconditionError("the EFA device plugin also serves this node (" +
                                   sockets.front() +
                                   "); the two cannot run together, remove one of them");
  });

  for (const auto& socket : efa_device_plugins()) {
    spdlog::error(
        "the EFA device plugin serves this node ({}): it hands out the same uverbs devices, so "
        "the two cannot run together; remove the device plugin from this node",
        socket);
  }
  spdlog::info("efa-dra-driver run: node {}, driver {}, sysfs {}, dev {}, API {} ({})",
               flags.node_name, flags.driver_name, flags.sysfs_root, flags.dev_root, config->server,
               config->source);
  Daemon daemon;
  daemon.Add(std::make_unique<FunctionComponent>(
      "http server", [&] { return http.Start(*http_address); }, [&] { http.Stop(); }));
  daemon.Add(std::make_unique<FunctionComponent>(
      "slice publisher", [&] { return publisher.Start(); }, [&] { publisher.Stop(); }));
  daemon.Add(std::make_unique<DeviceWatcherComponent>(publisher));
  daemon.Add(std::make_unique<FunctionComponent>(
      "health monitor", [&] { return health_monitor.Start(); }, [&] { health_monitor.Stop(); }));
  daemon.Add(std::make_unique<FunctionComponent>(
      "conflict monitor",
      [&] {
        conflicts.Start();
        return Status::Ok();
      },
      [&] { conflicts.Stop(); }));
  if (flags.claim_device_status) {
    daemon.Add(std::make_unique<FunctionComponent>(
        "claim status writer",
        [&] {
          claims::DeviceStatusWriterOptions status_options;
          status_options.driver_name = flags.driver_name;
          status_options.field_manager = "efa-dra-driver";
          status_writer = std::make_unique<claims::DeviceStatusWriter>(
              status_options, **client, [&inventory] { return inventory.Latest(); },
              [&metrics](std::string_view reason) {
                (*metrics)->claim_status_failures_total().WithLabels({reason}).Inc();
              });
          plugin.WriteDeviceStatusWith(status_writer.get());
          return Status::Ok();
        },
        [&] { status_writer->Stop(); }));
  }
  daemon.Add(std::make_unique<FunctionComponent>(
      "kubelet plugin",
      [&]() -> Status {
        std::vector<std::string> warnings;
        EFADRA_RETURN_IF_ERROR(preparer.Start(&warnings).WithContext("claim checkpoints"));
        return plugin.Start();
      },
      [&] { plugin.Stop(); }));
  const Status status = daemon.Run();
  if (!status.ok()) {
    spdlog::error("efa-dra-driver run: {}", status.message());
    return 1;
  }
  return 0;
}

}  // namespace

void AddRunCommand(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<RunFlags>();
  auto* command = app.add_subcommand(
      "run", "DaemonSet mode: discover EFA devices, publish ResourceSlices, serve the kubelet");
  command->add_option("--node-name", flags->node_name, "This node's name (also NODE_NAME)")
      ->envname("EFA_DRA_NODE_NAME");
  command->add_option("--driver-name", flags->driver_name, "DRA driver name")
      ->envname("EFA_DRA_DRIVER_NAME")
      ->capture_default_str();
  command->add_option("--sysfs-root", flags->sysfs_root, "Where sysfs is mounted")
      ->envname("EFA_DRA_SYSFS_ROOT")
      ->capture_default_str();
  command->add_option("--dev-root", flags->dev_root, "Where /dev is mounted")
      ->envname("EFA_DRA_DEV_ROOT")
      ->capture_default_str();
  command
      ->add_option("--kubeconfig", flags->kubeconfig,
                   "kubeconfig file (else $KUBECONFIG, else in-cluster)")
      ->envname("EFA_DRA_KUBECONFIG");
  command
      ->add_option("--registrar-dir", flags->registrar_dir, "Kubelet plugin registration directory")
      ->envname("EFA_DRA_REGISTRAR_DIR")
      ->capture_default_str();
  command
      ->add_option("--plugin-dir", flags->plugin_dir,
                   "Plugin socket directory (default /var/lib/kubelet/plugins/<driver>)")
      ->envname("EFA_DRA_PLUGIN_DIR");
  command->add_option("--cdi-root", flags->cdi_root, "CDI spec directory")
      ->envname("EFA_DRA_CDI_ROOT")
      ->capture_default_str();
  command
      ->add_option("--state-dir", flags->state_dir,
                   "Checkpoint directory (default: the plugin dir)")
      ->envname("EFA_DRA_STATE_DIR");
  command
      ->add_option("--http-address", flags->http_address, "Address of /healthz, /readyz, /metrics")
      ->envname("EFA_DRA_HTTP_ADDRESS")
      ->capture_default_str();
  command->add_option("--resync", flags->resync, "Hardware rescan period (e.g. 60s, 5m)")
      ->envname("EFA_DRA_RESYNC")
      ->capture_default_str();
  command
      ->add_option("--health-poll-interval", flags->health_poll_interval,
                   "How often port state, the uverbs node and hw_counters are polled between "
                   "rescans (e.g. 2s, 500ms; 0 disables)")
      ->envname("EFA_DRA_HEALTH_POLL_INTERVAL")
      ->capture_default_str();
  command
      ->add_option("--pod-uid", flags->pod_uid,
                   "This pod's UID (also POD_UID): per-pod socket names for rolling updates")
      ->envname("EFA_DRA_POD_UID");
  command
      ->add_option("--boot-id-file", flags->boot_id_file,
                   "Where the node's boot id is read (a reboot rewrites the CDI specs)")
      ->envname("EFA_DRA_BOOT_ID_FILE")
      ->capture_default_str();
  command
      ->add_option("--device-plugin-dir", flags->device_plugin_dir,
                   "Kubelet device-plugin directory, checked for a conflicting EFA device plugin")
      ->envname("EFA_DRA_DEVICE_PLUGIN_DIR")
      ->capture_default_str();
  command
      ->add_option("--efa-device-plugin-socket", flags->device_plugin_sockets,
                   "File name in --device-plugin-dir of an EFA device plugin whose presence "
                   "refuses prepares (exact match; repeat or comma-separate for several)")
      ->envname("EFA_DRA_EFA_DEVICE_PLUGIN_SOCKET")
      ->delimiter(',')
      ->capture_default_str();
  command
      ->add_flag("--taint-unhealthy", flags->taint_unhealthy,
                 "Put a NoSchedule taint on unhealthy devices in the ResourceSlice (needs the "
                 "DRADeviceTaints feature; slices then hold at most 64 devices)")
      ->envname("EFA_DRA_TAINT_UNHEALTHY");
  command
      ->add_flag("--claim-device-status,!--no-claim-device-status", flags->claim_device_status,
                 "Write status.devices of prepared ResourceClaims (Ready condition and device "
                 "data, server-side apply; needs DRAResourceClaimDeviceStatus and RBAC on "
                 "resourceclaims/status)")
      ->envname("EFA_DRA_CLAIM_DEVICE_STATUS");
  command
      ->add_flag("--numa-node-list", flags->numa_node_list,
                 "Publish resource.kubernetes.io/numaNode as a list (the device's NUMA node, then "
                 "the nodes equally local to it); needs the DRAListTypeAttributes feature gate")
      ->envname("EFA_DRA_NUMA_NODE_LIST");
  AddSharingFlags(*command, flags->sharing);
  command
      ->add_flag("--inject-gdrdrv", flags->inject_gdrdrv,
                 "Also inject GDRCopy's <dev-root>/gdrdrv into every prepared claim (GPUDirect "
                 "RDMA without a privileged pod), where the host has that char device")
      ->envname("EFA_DRA_INJECT_GDRDRV");
  AddLoggingFlags(*command, flags->logging);
  command->callback([flags, &exit_code] { exit_code = Run(*flags); });
}

}  // namespace efadra::cmd
