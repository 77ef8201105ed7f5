// fake-apiserver: runs a FakeApiServer until SIGINT/SIGTERM and prints its URL on stdout (one
// line), so benchmarks and manual runs can point `--kubeconfig` or curl at it.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>

#include "efadra/apidouble/fake_api_server.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;

void OnSignal(int) { g_stop = 1; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"In-memory Kubernetes API double for efa-dra-driver"};
  efadra::apidouble::ServerOptions options;
  std::vector<std::string> nodes;
  std::string kubeconfig_out;
  int latency_ms = 0;
  app.add_option("--tls-cert", options.tls_cert_file, "serve HTTPS with this certificate (PEM)");
  app.add_option("--tls-key", options.tls_key_file, "private key of --tls-cert (PEM)");
  app.add_option("--client-ca", options.client_ca_file, "require client certs signed by this CA");
  app.add_option("--token", options.bearer_token, "require this bearer token");
  app.add_option("--node", nodes, "add a Node NAME (uid node-uid-NAME); repeatable");
  app.add_option("--latency-ms", latency_ms, "delay every response");
  app.add_option("--write-kubeconfig", kubeconfig_out,
                 "write a kubeconfig for this server (plain HTTP only) to this file");
  CLI11_PARSE(app, argc, argv);

  efadra::apidouble::FakeApiServer server(options);
  if (auto status = server.Start(); !status.ok()) {
    std::cerr << "fake-apiserver: " << status.ToString() << "\n";
    return 1;
  }
  for (const auto& node : nodes) server.PutNode(node, "node-uid-" + node);
  server.SetLatency(std::chrono::milliseconds(latency_ms));
  if (!kubeconfig_out.empty()) {
    std::ofstream out(kubeconfig_out);
    out << "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        << "clusters:\n- name: fake\n  cluster:\n    server: " << server.url() << "\n"
        << "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n"
        << "users:\n- name: fake\n  user:\n    token: \"" << options.bearer_token << "\"\n";
    if (!out) {
      std::cerr << "fake-apiserver: cannot write " << kubeconfig_out << "\n";
      return 1;
    }
  }
  std::cout << server.url() << std::endl;
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  sigset_t none;
  sigemptyset(&none);
  while (!g_stop) sigsuspend(&none);
  server.Stop();
  return 0;
}
