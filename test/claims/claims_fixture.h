// Shared set-up for the claims tests: a generated p5.48xlarge sysfs + dev tree, discovered by
// the real Discoverer, and helpers to build allocated ResourceClaim objects.
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "efadra/claims/claim_preparer.h"
#include "efadra/discovery/discoverer.h"
#include "efadra/kube/client.h"
#include "efadra/sysfstree/bundled.h"
#include "efadra/sysfstree/topology.h"
#include "efadra/sysfstree/tree_builder.h"
#include "support/test_support.h"

namespace efadra::claims::testing {

inline constexpr char kNode[] = "ip-10-0-1-23.ec2.internal";
inline constexpr char kDriver[] = "dra.net";

// Discovers the tree already built under root/sys and root/dev.
inline std::shared_ptr<const discovery::Inventory> DiscoverTree(const std::string& root) {
  auto sysfs = core::NewPosixFilesystem(root + "/sys");
  auto dev = core::NewPosixFilesystem(root + "/dev");
  auto inventory = discovery::Discoverer(*sysfs, *dev, nullptr).Discover();
  if (!inventory.ok()) {
    throw std::runtime_error("discover " + root + ": " + inventory.status().ToString());
  }
  return std::make_shared<const discovery::Inventory>(std::move(*inventory));
}

// Builds the bundled topology under dir/sys and dir/dev and discovers it.
inline std::shared_ptr<const discovery::Inventory> DiscoverBundled(
    const efadra::testing::TempDir& dir, const std::string& instance_type = "p5.48xlarge",
    bool char_devices = false) {
  auto yaml = sysfstree::BundledTopology(instance_type);
  if (!yaml) throw std::runtime_error("no bundled topology " + instance_type);
  auto topology = sysfstree::ParseTopology(*yaml);
  if (!topology.ok()) throw std::runtime_error(topology.status().ToString());
  Status built = sysfstree::BuildSysfsTree(*topology, dir.Sub("sys"), dir.Sub("dev"),
                                           {.char_devices = char_devices});
  if (!built.ok()) throw std::runtime_error(built.ToString());
  return DiscoverTree(dir.path());
}

// A client of the API double at `url` that retries briefly: failure tests should not wait out
// the production backoff.
inline std::unique_ptr<kube::Client> QuickRetryClient(const std::string& url) {
  kube::ClientConfig config;
  config.server = url;
  auto client = kube::Client::Create(config, {.max_attempts = 2,
                                              .initial_backoff = std::chrono::milliseconds(5),
                                              .max_backoff = std::chrono::milliseconds(20)});
  if (!client.ok()) throw std::runtime_error(client.status().ToString());
  return std::move(*client);
}

// The preparer options of the claims tests (and of their crash child process): the generated
// tree is under root/sys and root/dev.
inline PreparerOptions FixturePreparerOptions(const std::string& root,
                                              const std::string& boot_id) {
  PreparerOptions options;
  options.driver_name = kDriver;
  options.node_name = kNode;
  options.dev_root = root + "/dev";
  options.sysfs_root = root + "/sys";
  options.boot_id = boot_id;
  return options;
}

struct AllocatedDevice {
  std::string request;
  std::string device;
  std::string driver = kDriver;
  std::string pool = kNode;
  bool admin_access = false;
};

// An allocated resource.k8s.io/v1 ResourceClaim with these results.
inline nlohmann::json AllocatedClaim(const std::string& ns, const std::string& name,
                                     const std::string& uid,
                                     const std::vector<AllocatedDevice>& devices) {
  nlohmann::json results = nlohmann::json::array();
  for (const auto& d : devices) {
    nlohmann::json r = {{"request", d.request}, {"driver", d.driver}, {"pool", d.pool},
                        {"device", d.device}};
    if (d.admin_access) r["adminAccess"] = true;
    results.push_back(r);
  }
  return {{"apiVersion", "resource.k8s.io/v1"},
          {"kind", "ResourceClaim"},
          {"metadata", {{"namespace", ns}, {"name", name}, {"uid", uid}}},
          {"spec", {{"devices", {{"requests", nlohmann::json::array()}}}}},
          {"status",
           {{"allocation",
             {{"devices", {{"results", results}}},
              {"nodeSelector",
               {{"nodeSelectorTerms",
                 {{{"matchFields",
                    {{{"key", "metadata.name"}, {"operator", "In"}, {"values", {kNode}}}}}}}}}}}}}}};
}

// Validates spec files with the CDI JSON schema (test/fixtures/cdi-schema-v1.1.0). Returns ""
// when valid, the validator's output otherwise, or "SKIP: reason" when python3/jsonschema is
// not available.
std::string ValidateCdiSpecs(const std::vector<std::string>& paths);

}  // namespace efadra::claims::testing
