// The topologies bundled into the library at build time (CMake embeds
// test/fixtures/topologies/<instance-type>.yaml into a generated .cc), so `discover --fixture`
// and `demo` need no files on disk. Thread-safe (constant data).
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace efadra::sysfstree {

// The YAML text for `instance_type` ("p5.48xlarge"); nullopt if none is bundled.
std::optional<std::string_view> BundledTopology(std::string_view instance_type);

// Every bundled instance type, sorted.
std::vector<std::string_view> BundledInstanceTypes();

}  // namespace efadra::sysfstree
