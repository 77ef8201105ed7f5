// Writes the checkpoint fuzzer's seed corpus with the real SerializeCheckpoint, so the seeds
// carry valid checksums. Rerun after a checkpoint schema change:
//   build-fuzz/test/fuzz/make_checkpoint_seeds test/fuzz/corpus/checkpoint_fuzzer
// The schema-1 seeds (schema1_*.json) were written by a schema-1 build and stay as they are:
// they keep the migration path fuzzed.

#include <cstdio>
#include <fstream>
#include <string>

#include "efadra/claims/checkpoint.h"

namespace {

using efadra::claims::CheckpointDevice;
using efadra::claims::ClaimCheckpoint;

constexpr char kUid[] = "8f2c1f2e-3d4b-4f3e-9b7a-1c2d3e4f5a6b";
constexpr char kBootId[] = "1c4a6f40-8a0e-4f7e-9c43-2b1d8d9f0e11";

CheckpointDevice Device(const std::string& name, const std::string& pci_address) {
  CheckpointDevice device;
  device.request_names = {"efa"};
  device.pool_name = "ip-10-0-1-23.ec2.internal";
  device.device_name = name;
  device.pci_address = pci_address;
  return device;
}

bool Write(const std::string& path, const ClaimCheckpoint& checkpoint) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << efadra::claims::SerializeCheckpoint(checkpoint);
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <dir>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  ClaimCheckpoint one;
  one.claim = {"default", "efa-claim", kUid};
  one.boot_id = kBootId;
  one.devices = {Device("pci-0000-10-1b-0", "0000:10:1b.0")};
  ClaimCheckpoint shared = one;
  shared.devices.push_back(Device("pci-0000-20-1b-0", "0000:20:1b.0"));
  shared.devices.back().request_names = {"efa", "efa-extra"};
  shared.devices.back().share_id = "3f1c9a8e-0000-4000-8000-000000000001";
  ClaimCheckpoint admin = one;
  admin.claim.name = "efa-monitor";
  admin.devices.front().request_names = {"monitor"};
  admin.devices.front().admin_access = true;
  ClaimCheckpoint empty;
  empty.claim = {"ml", "config-only", kUid};
  empty.boot_id = kBootId;
  const bool ok = Write(dir + "/one_device.json", one) && Write(dir + "/shared.json", shared) &&
                  Write(dir + "/admin_access.json", admin) &&
                  Write(dir + "/no_devices.json", empty);
  if (!ok) std::fprintf(stderr, "cannot write to %s\n", dir.c_str());
  return ok ? 0 : 1;
}
