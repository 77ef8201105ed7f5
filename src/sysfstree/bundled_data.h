// Private to sysfstree: the table the build generates from test/fixtures/topologies/*.yaml
// (embed_topologies.cmake). Constant data.
#pragma once

namespace efadra::sysfstree::internal {

struct BundledFile {
  const char* instance_type;  // file name without .yaml; nullptr ends the table
  const char* yaml;
};

extern const BundledFile kBundledFiles[];

}  // namespace efadra::sysfstree::internal
