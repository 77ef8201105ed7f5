// Fuzzes kube::ParseKubeconfig (YAML from the --kubeconfig file or $KUBECONFIG) with the
// current context and with an explicit one. A malformed kubeconfig must come back as a Status;
// an exception escaping yaml-cpp or a crash is a bug.
//
// File fields (certificate-authority, tokenFile, client-*) are checked for readability on the
// host, so a fuzz input can name any local file; the ReadFile cap (1 MiB) keeps that bounded.
// Seeds: corpus/kubeconfig_fuzzer/ (kubectl-shaped files: token, client certs, data fields).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "efadra/kube/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  for (const char* context : {"", "fuzz"}) {
    auto config = efadra::kube::ParseKubeconfig(yaml, "fuzz.yaml", context);
    if (config.ok()) {
      // The contract: a config that parses has an http(s) server.
      if (config->server.rfind("http://", 0) != 0 && config->server.rfind("https://", 0) != 0) {
        std::abort();
      }
    } else if (config.status().message().find("fuzz.yaml") == std::string::npos) {
      std::abort();  // every error names the file
    }
  }
  // The *-data fields' decoder on its own.
  (void)efadra::kube::DecodeBase64(yaml);
  return 0;
}
