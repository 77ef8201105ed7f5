// Where the client's ClientConfig comes from: a kubeconfig file (YAML, current-context or a
// named context) or the in-cluster service account.
//
// Every error names the file and the field, e.g.
//   "kubeconfig /root/.kube/config: context \"x\": user \"u\" not found in users".
// Stateless functions; thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "efadra/core/filesystem.h"
#include "efadra/core/status.h"
#include "efadra/kube/client.h"

namespace efadra::kube {

// Reads an environment variable; nullopt when unset. Tests pass a map-backed lambda.
using EnvGetter = std::function<std::optional<std::string>(const std::string&)>;
// The process environment (getenv).
EnvGetter ProcessEnv();

// Parses a kubeconfig. `context` empty -> current-context. A relative `path` is taken
// against the working directory (and shown absolute in messages). Relative file paths in the
// kubeconfig are resolved against its directory (kubectl semantics); *-data fields are base64
// and decoded here (a value that is cut short, or decodes to a PEM block with no END line, is
// an error naming the field); file fields are checked for readability. kInvalidArgument or
// kNotFound with the file and field on any problem.
Result<ClientConfig> LoadKubeconfig(const std::string& path, const std::string& context = "");

// Same, from YAML text already read (`source` names it in messages).
Result<ClientConfig> ParseKubeconfig(const std::string& yaml, const std::string& source,
                                     const std::string& context = "");

// In-cluster: KUBERNETES_SERVICE_HOST/PORT from `env`, the token file
// /var/run/secrets/kubernetes.io/serviceaccount/token (re-read by the client on every request)
// and ca.crt next to it, read through `fs` (tests root it in a temp dir).
Result<ClientConfig> InClusterConfig(std::shared_ptr<const core::Filesystem> fs,
                                     const EnvGetter& env);

// The driver's resolution order: the --kubeconfig flag if non-empty, else $KUBECONFIG (first
// entry of a ':'-separated list), else in-cluster (host filesystem).
Result<ClientConfig> ResolveClientConfig(const std::string& kubeconfig_flag,
                                         const EnvGetter& env = ProcessEnv());

// `path` made absolute against the working directory (unchanged when already absolute or
// when the working directory cannot be read).
std::string AbsolutePath(const std::string& path);

// RFC 4648 base64 (standard alphabet, padding optional, whitespace ignored). Input that
// cannot be the whole output of an encoder (a lone last symbol, short padding, non-zero
// trailing bits) is kInvalidArgument "truncated input".
Result<std::string> DecodeBase64(std::string_view text);

}  // namespace efadra::kube
