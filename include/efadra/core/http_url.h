// The parts of an "http://host[:port][/prefix]" or "https://..." base URL that an HTTP client
// needs to connect (cpp-httplib takes host and port apart, not a URL). Pure functions.
#pragma once

#include <string>
#include <string_view>

#include "efadra/core/status.h"

namespace efadra::core {

struct HttpUrl {
  bool tls = false;       // https
  std::string host;       // "10.0.0.1", "api.example.com", "fd00:ec2::254" (no brackets)
  int port = 0;           // explicit, or 80 / 443
  std::string base_path;  // "" or "/prefix" without a trailing '/': requests go below it
};

// kInvalidArgument naming `url` when the scheme is not http/https, the host is empty, the
// port is not 1-65535, or the URL has userinfo, a query or a fragment.
Result<HttpUrl> ParseHttpUrl(std::string_view url);

}  // namespace efadra::core
