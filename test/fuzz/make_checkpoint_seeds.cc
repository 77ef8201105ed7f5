// Writes the checkpoint fuzzer's seed corpus with the real SerializeCheckpoint, so the seeds
// carry valid checksums. Rerun after a checkpoint schema change:
//   build-fuzz/test/fuzz/make_checkpoint_seeds test/fuzz/corpus/checkpoint_fuzzer

#include <cstdio>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "efadra/claims/checkpoint.h"

namespace {

using efadra::claims::ClaimCheckpoint;
using efadra::claims::PreparedDevice;

constexpr char kUid[] = "8f2c1f2e-3d4b-4f3e-9b7a-1c2d3e4f5a6b";

PreparedDevice Device(const std::string& name) {
  return {.request_names = {"efa"},
          .pool_name = "ip-10-0-1-23.ec2.internal",
          .device_name = name,
          .cdi_device_ids = {std::string("dra.net/efa=") + kUid + "-" + name},
          .share_id = std::nullopt};
}

nlohmann::json CdiSpec(const std::string& name) {
  return {{"cdiVersion", "0.6.0"},
          {"kind", "dra.net/efa"},
          {"devices",
           {{{"name", std::string(kUid) + "-" + name},
             {"containerEdits",
              {{"deviceNodes",
                {{{"path", "/dev/infiniband/uverbs0"}, {"type", "c"}, {"major", 231},
                  {"minor", 192}, {"permissions", "rw"}}}},
               {"env", {"EFA_DEVICES=rdmap16s27"}}}}}}}};
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
  ClaimCheckpoint one{.claim = {"default", "efa-claim", kUid},
                      .boot_id = "1c4a6f40-8a0e-4f7e-9c43-2b1d8d9f0e11",
                      .devices = {Device("pci-0000-10-1b-0")},
                      .cdi_spec = CdiSpec("pci-0000-10-1b-0")};
  ClaimCheckpoint shared = one;
  shared.devices.push_back(Device("pci-0000-20-1b-0"));
  shared.devices.back().request_names = {"efa", "efa-extra"};
  shared.devices.back().share_id = "3f1c9a8e-0000-4000-8000-000000000001";
  ClaimCheckpoint empty{.claim = {"ml", "config-only", kUid},
                        .boot_id = "1c4a6f40-8a0e-4f7e-9c43-2b1d8d9f0e11",
                        .devices = {},
                        .cdi_spec = nullptr};
  const bool ok = Write(dir + "/one_device.json", one) && Write(dir + "/shared.json", shared) &&
                  Write(dir + "/no_devices.json", empty);
  if (!ok) std::fprintf(stderr, "cannot write to %s\n", dir.c_str());
  return ok ? 0 : 1;
}
