#include "efadra/core/http_url.h"

namespace efadra::core {

Result<HttpUrl> ParseHttpUrl(std::string_view url) {
  auto refuse = [&](std::string_view why) {
    return InvalidArgumentError("URL \"" + std::string(url.substr(0, 256)) + "\": " +
                                std::string(why));
  };
  HttpUrl out;
  std::string_view rest;
  if (url.rfind("https://", 0) == 0) {
    out.tls = true;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else {
    return refuse("is not an http(s) URL");
  }
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return refuse("has a query or fragment");
  }
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) out.base_path = std::string(rest.substr(slash));
  while (!out.base_path.empty() && out.base_path.back() == '/') out.base_path.pop_back();
  if (authority.find('@') != std::string_view::npos) return refuse("has userinfo");

  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return refuse("has an unterminated IPv6 address");
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return refuse("has text after the IPv6 address");
      port_text = after.substr(1);
      if (port_text.empty()) return refuse("has an empty port");
    }
  } else {
    const size_t colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return refuse("has an empty port");
    }
  }
  if (out.host.empty()) return refuse("has no host");
  out.port = out.tls ? 443 : 80;
  if (!port_text.empty()) {
    if (port_text.size() > 5) return refuse("has a port out of range");
    int port = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9') return refuse("has a port that is not a number");
      port = port * 10 + (c - '0');
    }
    if (port < 1 || port > 65535) return refuse("has a port out of range");
    out.port = port;
  }
  return out;
}

}  // namespace efadra::core
