#include "efadra/demo/demo.h"

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "dra/v1/api.grpc.pb.h"
#include "efadra/apidouble/fake_api_server.h"
#include "efadra/claims/claim_preparer.h"
#include "efadra/discovery/discoverer.h"
#include "efadra/kube/client.h"
#include "efadra/kubelet/plugin.h"
#include "efadra/slices/kube_slice_api.h"
#include "efadra/slices/publisher.h"
#include "efadra/slices/resource_slices.h"
#include "efadra/sysfstree/bundled.h"
#include "efadra/sysfstree/topology.h"
#include "efadra/sysfstree/tree_builder.h"
#include "pluginregistration/v1/api.grpc.pb.h"

namespace efadra::demo {
namespace {

namespace dra = k8s::io::kubelet::pkg::apis::dra::v1;

constexpr char kDriver[] = "dra.net";
constexpr char kClaimUid[] = "4f1c2a9e-7d3b-4c55-9a61-0e8f2b6d1c07";

// The scratch directory: given, or made and removed.
class WorkDir {
 public:
  static Result<WorkDir> Make(const std::string& given) {
    if (!given.empty()) {
      std::error_code error;
      std::filesystem::create_directories(given, error);
      if (error) return InvalidArgumentError("work dir " + given + ": " + error.message());
      return WorkDir(given, false);
    }
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr ? tmp : "/tmp") + "/efa-dra-demo-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      return UnavailableError("cannot create a scratch directory under " + pattern);
    }
    return WorkDir(pattern, true);
  }
  WorkDir(WorkDir&& other) noexcept : path_(std::move(other.path_)), owned_(other.owned_) {
    other.owned_ = false;
  }
  ~WorkDir() {
    if (!owned_) return;
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  WorkDir(std::string path, bool owned) : path_(std::move(path)), owned_(owned) {}
  std::string path_;
  bool owned_;
};

std::string Attribute(const nlohmann::json& device, const std::string& name) {
  auto attributes = device.value("attributes", nlohmann::json::object());
  auto it = attributes.find(name);
  if (it == attributes.end()) return "-";
  for (const char* kind : {"string", "int", "bool", "version"}) {
    if (it->contains(kind)) {
      const auto& value = (*it)[kind];
      return value.is_string() ? value.get<std::string>() : value.dump();
    }
  }
  return "-";
}

void PrintSlices(const std::vector<nlohmann::json>& slices, std::ostream& out) {
  for (const auto& slice : slices) {
    const auto& spec = slice["spec"];
    const auto& devices = spec["devices"];
    out << "ResourceSlice " << slice["metadata"].value("name", "?") << ": driver "
        << spec.value("driver", "") << ", pool " << spec["pool"].value("name", "")
        << " (generation " << spec["pool"].value("generation", 0) << "), " << devices.size()
        << " devices\n";
    out << "  DEVICE               PCIE ROOT    NUMA  RDMA DEVICE     UVERBS\n";
    for (const auto& device : devices) {
      char line[160];
      std::snprintf(line, sizeof(line), "  %-20s %-12s %-5s %-15s %s\n",
                    device.value("name", "").c_str(),
                    Attribute(device, "resource.kubernetes.io/pcieRoot").c_str(),
                    Attribute(device, "resource.kubernetes.io/numaNode").c_str(),
                    Attribute(device, std::string(kDriver) + "/rdmaDevice").c_str(),
                    Attribute(device, std::string(kDriver) + "/uverbs").c_str());
      out << line;
    }
  }
}

// An allocated resource.k8s.io/v1 ResourceClaim, as the scheduler leaves it.
nlohmann::json AllocatedClaim(const std::string& node, const std::vector<std::string>& devices,
                              const std::string& root) {
  nlohmann::json results = nlohmann::json::array();
  for (const auto& device : devices) {
    results.push_back({{"request", "efa"}, {"driver", kDriver}, {"pool", node}, {"device", device}});
  }
  return {
      {"apiVersion", "resource.k8s.io/v1"},
      {"kind", "ResourceClaim"},
      {"metadata", {{"namespace", "default"}, {"name", "demo-efa"}, {"uid", kClaimUid}}},
      {"spec",
       {{"devices",
         {{"requests",
           {{{"name", "efa"},
             {"exactly",
              {{"deviceClassName", "efa.networking.k8s.aws"}, {"allocationMode", "All"},
               {"selectors",
                {{{"cel",
                   {{"expression", "device.attributes[\"resource.kubernetes.io\"].pcieRoot == \"" +
                                       root + "\""}}}}}}}}}}}}}}},
      {"status",
       {{"allocation",
         {{"devices", {{"results", results}}},
          {"nodeSelector",
           {{"nodeSelectorTerms",
             {{{"matchFields",
                {{{"key", "metadata.name"}, {"operator", "In"}, {"values", {node}}}}}}}}}}}}}}};
}

std::shared_ptr<grpc::Channel> Unix(const std::string& path) {
  return grpc::CreateChannel("unix:" + path, grpc::InsecureChannelCredentials());
}

std::unique_ptr<grpc::ClientContext> WithDeadline(std::chrono::seconds timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + timeout);
  return context;
}

}  // namespace

Status RunDemo(const DemoOptions& options, std::ostream& out) {
  EFADRA_ASSIGN_OR_RETURN(WorkDir dir, WorkDir::Make(options.work_dir));

  // 1. The node: a generated sysfs + /dev tree of the instance type, discovered for real.
  auto yaml = sysfstree::BundledTopology(options.instance_type);
  if (!yaml) {
    std::string known;
    for (auto type : sysfstree::BundledInstanceTypes()) known += " " + std::string(type);
    return NotFoundError("no bundled topology for " + options.instance_type + " (bundled:" +
                         known + ")");
  }
  EFADRA_ASSIGN_OR_RETURN(auto topology, sysfstree::ParseTopology(*yaml));
  EFADRA_RETURN_IF_ERROR(
      sysfstree::BuildSysfsTree(topology, dir.Sub("sys"), dir.Sub("dev"), {}).WithContext("build tree"));
  auto sysfs = core::NewPosixFilesystem(dir.Sub("sys"));
  auto dev = core::NewPosixFilesystem(dir.Sub("dev"));
  discovery::Discoverer discoverer(*sysfs, *dev, nullptr);
  const auto discover_start = std::chrono::steady_clock::now();
  EFADRA_ASSIGN_OR_RETURN(discovery::Inventory found, discoverer.Discover());
  const auto discover_time = std::chrono::steady_clock::now() - discover_start;
  auto inventory = std::make_shared<const discovery::Inventory>(std::move(found));
  out << "== 1. Discovery: " << options.instance_type << " (bundled fixture), "
      << inventory->devices.size() << " EFA devices in "
      << std::chrono::duration_cast<std::chrono::microseconds>(discover_time).count() / 1000.0
      << " ms\n\n";
  if (inventory->devices.empty()) return FailedPreconditionError("the fixture has no EFA");

  // 2. Publishing into an in-process API server double.
  apidouble::FakeApiServer api;
  EFADRA_RETURN_IF_ERROR(api.Start().WithContext("start the API server double"));
  api.PutNode(options.node_name, "0b5e3c6f-1d2a-4e8b-9c7d-6a5f4e3d2c1b");
  kube::ClientConfig config;
  config.server = api.url();
  EFADRA_ASSIGN_OR_RETURN(auto client, kube::Client::Create(config, {}));
  slices::KubeSliceApi slice_api(*client);
  slices::PublisherOptions publisher_options;
  publisher_options.driver_name = kDriver;
  publisher_options.node_name = options.node_name;
  slices::Publisher publisher(
      slice_api, [&] { return Result<discovery::Inventory>(*inventory); }, publisher_options);
  EFADRA_RETURN_IF_ERROR(publisher.Start().WithContext("start the publisher"));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!publisher.FirstPublishDone() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!publisher.FirstPublishDone()) {
    return DeadlineExceededError("slices not published within 10 s: " + publisher.LastError());
  }
  const auto published = api.ResourceSlices();
  out << "== 2. Published to the API server (" << api.url() << ")\n";
  PrintSlices(published, out);
  out << "\n";

  // 3. The scheduler's part: a claim of every EFA behind the first device's PCIe root.
  const std::string root = inventory->devices.front().pcie_root;
  std::vector<std::string> devices;
  for (const auto& device : inventory->devices) {
    if (device.pcie_root == root) devices.push_back(slices::DeviceName(device.pci_address));
  }
  api.PutResourceClaim(AllocatedClaim(options.node_name, devices, root));
  out << "== 3. ResourceClaim default/demo-efa allocated: all EFAs with pcieRoot " << root
      << " (" << devices.size() << " devices)\n\n";

  // 4. The kubelet's part, over the real unix sockets.
  auto cdi_fs = core::NewPosixFilesystem(dir.Sub("cdi"));
  auto state_fs = core::NewPosixFilesystem(dir.Sub("state"));
  claims::PreparerOptions preparer_options;
  preparer_options.driver_name = kDriver;
  preparer_options.node_name = options.node_name;
  preparer_options.dev_root = dir.Sub("dev");
  preparer_options.sysfs_root = dir.Sub("sys");
  preparer_options.boot_id = "demo-boot";
  claims::ClaimPreparer preparer(preparer_options, *client, *cdi_fs, *state_fs,
                                 [&] { return inventory; });
  EFADRA_RETURN_IF_ERROR(preparer.Start());
  kubelet::PluginOptions plugin_options;
  plugin_options.driver_name = kDriver;
  plugin_options.registrar_dir = dir.Sub("plugins_registry");
  plugin_options.plugin_dir = dir.Sub("plugins/" + std::string(kDriver));
  kubelet::Plugin plugin(plugin_options, preparer);
  EFADRA_RETURN_IF_ERROR(plugin.Start());

  auto registration = pluginregistration::Registration::NewStub(Unix(plugin.RegistrationSocketPath()));
  pluginregistration::PluginInfo info;
  grpc::Status rpc = registration->GetInfo(WithDeadline(std::chrono::seconds(1)).get(),
                                           pluginregistration::InfoRequest(), &info);
  if (!rpc.ok()) return UnavailableError("GetInfo: " + rpc.error_message());
  pluginregistration::RegistrationStatus accepted;
  accepted.set_plugin_registered(true);
  pluginregistration::RegistrationStatusResponse ack;
  rpc = registration->NotifyRegistrationStatus(WithDeadline(std::chrono::seconds(5)).get(),
                                               accepted, &ack);
  if (!rpc.ok()) return UnavailableError("NotifyRegistrationStatus: " + rpc.error_message());
  out << "== 4. Kubelet registration on " << plugin.RegistrationSocketPath() << "\n"
      << "  GetInfo: type " << info.type() << ", name " << info.name() << ", versions";
  for (const auto& version : info.supported_versions()) out << " " << version;
  out << "\n  endpoint " << info.endpoint() << "\n\n";

  auto dra_stub = dra::DRAPlugin::NewStub(Unix(info.endpoint()));
  dra::NodePrepareResourcesRequest prepare;
  auto* claim = prepare.add_claims();
  claim->set_namespace_("default");
  claim->set_name("demo-efa");
  claim->set_uid(kClaimUid);
  dra::NodePrepareResourcesResponse prepared;
  const auto prepare_start = std::chrono::steady_clock::now();
  rpc = dra_stub->NodePrepareResources(WithDeadline(std::chrono::seconds(45)).get(), prepare,
                                       &prepared);
  const auto prepare_time = std::chrono::steady_clock::now() - prepare_start;
  if (!rpc.ok()) return UnavailableError("NodePrepareResources: " + rpc.error_message());
  const auto& result = prepared.claims().at(kClaimUid);
  if (!result.error().empty()) return UnknownError("NodePrepareResources: " + result.error());
  out << "== 5. NodePrepareResources (v1) for claim default/demo-efa: " << result.devices_size()
      << " devices in "
      << std::chrono::duration_cast<std::chrono::microseconds>(prepare_time).count() / 1000.0
      << " ms\n";
  for (const auto& device : result.devices()) {
    out << "  " << device.device_name() << "  request " << device.request_names(0) << "  cdi "
        << device.cdi_device_ids(0) << "\n";
  }
  const std::string spec_name = "dra.net-efa_" + std::string(kClaimUid) + ".json";
  EFADRA_ASSIGN_OR_RETURN(std::string spec, cdi_fs->ReadFile("/" + spec_name, 1 << 20));
  out << "\n== 6. CDI spec " << dir.Sub("cdi/" + spec_name)
      << " (what the container runtime injects)\n"
      << spec << "\n";

  dra::NodeUnprepareResourcesRequest unprepare;
  *unprepare.add_claims() = *claim;
  dra::NodeUnprepareResourcesResponse unprepared;
  rpc = dra_stub->NodeUnprepareResources(WithDeadline(std::chrono::seconds(45)).get(), unprepare,
                                         &unprepared);
  if (!rpc.ok()) return UnavailableError("NodeUnprepareResources: " + rpc.error_message());
  if (const auto& error = unprepared.claims().at(kClaimUid).error(); !error.empty()) {
    return UnknownError("NodeUnprepareResources: " + error);
  }
  out << "== 7. NodeUnprepareResources: claim released, CDI spec "
      << (cdi_fs->Exists("/" + spec_name) ? "still present (unexpected)" : "removed") << "\n";
  plugin.Stop();
  publisher.Stop();
  client.reset();  // closes its pooled connections, so the server need not wait them out
  api.Stop();
  return Status::Ok();
}

}  // namespace efadra::demo
