// `efa-dra-driver demo`: the whole driver on a bundled instance topology, with no cluster.
// It builds the instance's sysfs/dev tree in a scratch directory, discovers it, publishes the
// ResourceSlices into an in-process API server double (a real HTTP server on 127.0.0.1),
// allocates a claim of every EFA behind one PCIe root (what the scheduler does for a
// pcieRoot-aligned claim), plays the kubelet over the real unix sockets (registration, then
// NodePrepareResources v1), prints the slice summary, the claim result and the CDI spec, and
// unprepares the claim.
#pragma once

#include <ostream>
#include <string>

#include "efadra/core/status.h"

namespace efadra::demo {

struct DemoOptions {
  std::string instance_type = "p5.48xlarge";  // one of the bundled topologies
  // Where the scratch tree goes; empty: a fresh directory under $TMPDIR, removed at the end.
  std::string work_dir;
  std::string node_name = "ip-10-0-1-23.ec2.internal";
};

// Writes the walkthrough to `out`; an error names the step that failed.
Status RunDemo(const DemoOptions& options, std::ostream& out);

}  // namespace efadra::demo
