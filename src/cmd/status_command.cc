// `efa-dra-driver status`: which EFAs a node has according to the API server, their health,
// and which claim and pods hold each one (nodestatus/). Read-only; kubeconfig or in-cluster.
// Exit codes: 0 shown, 1 API unreachable / refused / bad kubeconfig, 2 usage.
#include <iostream>
#include <memory>
#include <string>

#include "commands.h"
#include "efadra/kube/client.h"
#include "efadra/kube/config.h"
#include "efadra/nodestatus/efa_status.h"

namespace efadra::cmd {
namespace {

struct StatusFlags {
  std::string kubeconfig;
  std::string node;
  bool all_nodes = false;
  std::string driver_name = "dra.net";
  std::string output = "table";
  LoggingFlags logging;
};

int RunStatus(const StatusFlags& flags) {
  if (!ApplyLoggingFlags(flags.logging)) return 2;
  auto fail = [](const Status& status) {
    std::cerr << "efa-dra-driver status: " << status.message() << "\n";
    return 1;
  };
  nodestatus::StatusQuery query;
  query.driver = flags.driver_name;
  if (!flags.all_nodes) query.node = flags.node.empty() ? DefaultNodeName() : flags.node;

  auto config = kube::ResolveClientConfig(flags.kubeconfig);
  if (!config.ok()) return fail(config.status());
  // An operator waits at the terminal: a few quick retries, then the error.
  kube::RetryPolicy retry;
  retry.max_attempts = 3;
  retry.initial_backoff = std::chrono::milliseconds(200);
  retry.max_backoff = std::chrono::milliseconds(1000);
  auto client = kube::Client::Create(*config, retry);
  if (!client.ok()) return fail(client.status());
  auto report = nodestatus::CollectStatus(**client, query);
  if (!report.ok()) {
    return fail(report.status().WithContext("API server " + config->server));
  }
  for (const auto& warning : report->warnings) std::cerr << "warning: " << warning << "\n";
  if (flags.output == "json") {
    std::cout << nodestatus::StatusJson(*report).dump(2) << "\n";
  } else if (report->devices.empty()) {
    std::cout << "No " << flags.driver_name << " devices "
              << (query.node.empty() ? "in the cluster" : "on node " + query.node)
              << " (no ResourceSlice of driver " << flags.driver_name << ")\n";
  } else {
    std::cout << nodestatus::StatusTable(*report);
  }
  return 0;
}

}  // namespace

void AddStatusCommand(CLI::App& app, int& exit_code) {
  auto flags = std::make_shared<StatusFlags>();
  auto* command = app.add_subcommand(
      "status",
      "Show this node's EFAs as the API server sees them: health, and which ResourceClaim and "
      "pods hold each one (read-only)");
  command->add_option("--kubeconfig", flags->kubeconfig,
                      "kubeconfig file (else $KUBECONFIG, else in-cluster)");
  auto* node = command->add_option("--node", flags->node,
                                   "Node to show (default: $NODE_NAME, else the hostname)");
  command->add_flag("-A,--all-nodes", flags->all_nodes, "Show every node's EFAs")
      ->excludes(node);
  command->add_option("--driver-name", flags->driver_name, "DRA driver name")
      ->capture_default_str();
  command->add_option("-o,--output", flags->output, "Output format: table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  AddLoggingFlags(*command, flags->logging);
  command->callback([flags, &exit_code] { exit_code = RunStatus(*flags); });
}

}  // namespace efadra::cmd
