#include "efadra/kube/config.h"

#include <yaml-cpp/yaml.h>

#include <unistd.h>

#include <cstdlib>

namespace efadra::kube {
namespace {

constexpr char kServiceAccountDir[] = "/var/run/secrets/kubernetes.io/serviceaccount";

// Finds the entry `name` in a kubeconfig list (clusters/contexts/users) and returns its inner
// map (cluster/context/user).
Result<YAML::Node> FindNamed(const YAML::Node& root, const std::string& list,
                             const std::string& inner, const std::string& name,
                             const std::string& where) {
  const YAML::Node items = root[list];
  if (items && items.IsSequence()) {
    for (const YAML::Node& item : items) {
      if (item.IsMap() && item["name"] && item["name"].as<std::string>("") == name) {
        YAML::Node value = item[inner];
        if (!value || !value.IsMap()) {
          return InvalidArgumentError(where + ": " + list + " entry \"" + name + "\" has no " +
                                      inner + " map");
        }
        return value;
      }
    }
  }
  return NotFoundError(where + ": " + inner + " \"" + name + "\" not found in " + list);
}

std::string Str(const YAML::Node& map, const char* key) {
  const YAML::Node n = map[key];
  return n && n.IsScalar() ? n.as<std::string>("") : std::string();
}

std::string Resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || path[0] == '/' || base_dir.empty()) return path;
  return core::JoinPath(base_dir, path);
}

Status CheckReadable(const std::string& path, const std::string& field, const std::string& where) {
  auto fs = core::NewPosixFilesystem("/");
  auto content = fs->ReadFile(path);
  if (!content.ok()) {
    return InvalidArgumentError(where + ": " + field + " " + path + ": " +
                                content.status().message());
  }
  return Status::Ok();
}

// A *-data field that decodes to PEM must hold whole PEM blocks: a value cut short in the
// kubeconfig can still be valid base64 (cut at a 4-character boundary) and would otherwise
// surface much later as an opaque TLS error.
Status CheckWholePem(const std::string& decoded) {
  const size_t begin = decoded.find("-----BEGIN ");
  if (begin == std::string::npos) return Status::Ok();
  if (decoded.find("-----END ", begin) == std::string::npos) {
    return InvalidArgumentError("PEM block has no -----END line (truncated?)");
  }
  return Status::Ok();
}

Result<ClientConfig> Parse(const std::string& yaml, const std::string& where,
                           const std::string& base_dir, const std::string& context_name) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(where + ": not valid YAML: " + e.what());
  }
  if (!root.IsMap()) return InvalidArgumentError(where + ": not a kubeconfig (not a YAML map)");
  try {
    std::string ctx_name = context_name.empty() ? Str(root, "current-context") : context_name;
    if (ctx_name.empty()) {
      return InvalidArgumentError(where + ": current-context is not set (and no context given)");
    }
    const std::string ctx_where = where + ": context \"" + ctx_name + "\"";
    EFADRA_ASSIGN_OR_RETURN(YAML::Node ctx, FindNamed(root, "contexts", "context", ctx_name, where));
    const std::string cluster_name = Str(ctx, "cluster");
    if (cluster_name.empty()) return InvalidArgumentError(ctx_where + ": cluster is not set");
    EFADRA_ASSIGN_OR_RETURN(YAML::Node cluster,
                            FindNamed(root, "clusters", "cluster", cluster_name, ctx_where));
    const std::string cluster_where = where + ": cluster \"" + cluster_name + "\"";

    ClientConfig config;
    config.source = "kubeconfig " + where.substr(where.find(' ') + 1) + " context " + ctx_name;
    config.server = Str(cluster, "server");
    if (config.server.empty()) return InvalidArgumentError(cluster_where + ": server is not set");
    if (config.server.rfind("http://", 0) != 0 && config.server.rfind("https://", 0) != 0) {
      return InvalidArgumentError(cluster_where + ": server \"" + config.server +
                                  "\" is not an http:// or https:// URL");
    }
    config.insecure_skip_tls_verify = Str(cluster, "insecure-skip-tls-verify") == "true";
    if (std::string ca = Str(cluster, "certificate-authority"); !ca.empty()) {
      config.ca_file = Resolve(base_dir, ca);
      EFADRA_RETURN_IF_ERROR(CheckReadable(config.ca_file, "certificate-authority", cluster_where));
    }
    if (std::string data = Str(cluster, "certificate-authority-data"); !data.empty()) {
      auto decoded = DecodeBase64(data);
      Status pem = decoded.ok() ? CheckWholePem(*decoded) : decoded.status();
      if (!pem.ok()) {
        return InvalidArgumentError(cluster_where + ": certificate-authority-data: " +
                                    pem.message());
      }
      config.ca_data = *decoded;
    }

    const std::string user_name = Str(ctx, "user");
    if (!user_name.empty()) {
      EFADRA_ASSIGN_OR_RETURN(YAML::Node user,
                              FindNamed(root, "users", "user", user_name, ctx_where));
      const std::string user_where = where + ": user \"" + user_name + "\"";
      config.token = Str(user, "token");
      if (std::string f = Str(user, "tokenFile"); !f.empty()) {
        config.token_file = Resolve(base_dir, f);
        EFADRA_RETURN_IF_ERROR(CheckReadable(config.token_file, "tokenFile", user_where));
      }
      if (std::string f = Str(user, "client-certificate"); !f.empty()) {
        config.client_cert_file = Resolve(base_dir, f);
        EFADRA_RETURN_IF_ERROR(
            CheckReadable(config.client_cert_file, "client-certificate", user_where));
      }
      if (std::string f = Str(user, "client-key"); !f.empty()) {
        config.client_key_file = Resolve(base_dir, f);
        EFADRA_RETURN_IF_ERROR(CheckReadable(config.client_key_file, "client-key", user_where));
      }
      for (auto [field, out] : {std::pair<const char*, std::string*>{"client-certificate-data",
                                                                     &config.client_cert_data},
                                {"client-key-data", &config.client_key_data}}) {
        if (std::string data = Str(user, field); !data.empty()) {
          auto decoded = DecodeBase64(data);
          Status pem = decoded.ok() ? CheckWholePem(*decoded) : decoded.status();
          if (!pem.ok()) {
            return InvalidArgumentError(user_where + ": " + field + ": " + pem.message());
          }
          *out = *decoded;
        }
      }
      const bool cert = !config.client_cert_file.empty() || !config.client_cert_data.empty();
      const bool key = !config.client_key_file.empty() || !config.client_key_data.empty();
      if (cert && !key) {
        return InvalidArgumentError(user_where +
                                    ": client-certificate given without client-key(-data)");
      }
      if (key && !cert) {
        return InvalidArgumentError(user_where +
                                    ": client-key given without client-certificate(-data)");
      }
    }
    return config;
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(where + ": malformed kubeconfig: " + e.what());
  }
}

}  // namespace

EnvGetter ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

Result<std::string> DecodeBase64(std::string_view text) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0;
  size_t symbols = 0;
  for (char c : text) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+') {
      v = 62;
    } else if (c == '/') {
      v = 63;
    } else if (c == '=') {
      ++pad;
      continue;
    } else {
      return InvalidArgumentError(std::string("invalid base64 character '") + c + "'");
    }
    if (pad > 0) return InvalidArgumentError("invalid base64: data after '=' padding");
    ++symbols;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // A cut-off value shows as a lone last symbol, padding that does not complete the last
  // 4-symbol group, or leftover bits that a real encoder always sets to zero.
  if (bits >= 6 || pad > 2 || symbols % 4 == 1) {
    return InvalidArgumentError("invalid base64: truncated input");
  }
  if (pad > 0 && (symbols + pad) % 4 != 0) {
    return InvalidArgumentError("invalid base64: truncated input (padding does not complete "
                                "the last group)");
  }
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    return InvalidArgumentError("invalid base64: truncated input (non-zero trailing bits)");
  }
  return out;
}

Result<ClientConfig> ParseKubeconfig(const std::string& yaml, const std::string& source,
                                     const std::string& context) {
  return Parse(yaml, "kubeconfig " + source, "", context);
}

std::string AbsolutePath(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char cwd[4096];
  if (::getcwd(cwd, sizeof(cwd)) == nullptr) return path;
  return core::JoinPath(cwd, path);
}

Result<ClientConfig> LoadKubeconfig(const std::string& given_path, const std::string& context) {
  // Relative to the working directory, as a user typing it means; the host filesystem would
  // otherwise root it at "/". Absolute from here on, so messages show where it was read.
  const std::string path = AbsolutePath(given_path);
  auto fs = core::NewPosixFilesystem("/");
  auto content = fs->ReadFile(path);
  if (!content.ok()) {
    return Status(content.status().code() == StatusCode::kNotFound ? StatusCode::kNotFound
                                                                   : StatusCode::kInvalidArgument,
                  "kubeconfig " + path + ": " + content.status().message());
  }
  return Parse(*content, "kubeconfig " + path, std::string(core::DirName(path)), context);
}

Result<ClientConfig> InClusterConfig(std::shared_ptr<const core::Filesystem> fs,
                                     const EnvGetter& env) {
  auto host = env("KUBERNETES_SERVICE_HOST");
  auto port = env("KUBERNETES_SERVICE_PORT");
  if (!host || host->empty() || !port || port->empty()) {
    return FailedPreconditionError(
        "in-cluster config: KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set (not "
        "running in a pod? pass --kubeconfig)");
  }
  ClientConfig config;
  config.source = "in-cluster service account";
  std::string h = *host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";  // IPv6 literal
  config.server = "https://" + h + ":" + *port;
  const std::string token_path = std::string(kServiceAccountDir) + "/token";
  auto token = fs->ReadFile(token_path);
  if (!token.ok()) {
    return token.status().WithContext("in-cluster config: service account token " +
                                      fs->HostPath(token_path));
  }
  config.token_file = token_path;
  const std::string ca_path = std::string(kServiceAccountDir) + "/ca.crt";
  auto ca = fs->ReadFile(ca_path);
  if (!ca.ok()) {
    return ca.status().WithContext("in-cluster config: CA bundle " + fs->HostPath(ca_path));
  }
  config.ca_data = *ca;
  // The cluster CA rotates in place; the client re-reads it (ClientConfig::ca_reload_file).
  config.ca_reload_file = ca_path;
  config.filesystem = std::move(fs);
  return config;
}

Result<ClientConfig> ResolveClientConfig(const std::string& kubeconfig_flag,
                                         const EnvGetter& env) {
  if (!kubeconfig_flag.empty()) return LoadKubeconfig(kubeconfig_flag);
  if (auto kc = env("KUBECONFIG"); kc && !kc->empty()) {
    return LoadKubeconfig(kc->substr(0, kc->find(':')));
  }
  return InClusterConfig(core::NewPosixFilesystem("/"), env);
}

}  // namespace efadra::kube
