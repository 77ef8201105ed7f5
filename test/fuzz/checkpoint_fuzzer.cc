// Fuzzes claims::ParseCheckpoint: checkpoint files survive crashes, disk corruption and
// downgrades, so any content must give a Status. A checkpoint that parses must also survive a
// round trip: SerializeCheckpoint of it parses again to the same content. A schema-1 file
// (migrated) names devices without PCI addresses; the preparer fills them in from the inventory
// before it writes one, and so does the round trip here.
//
// Seeds: corpus/checkpoint_fuzzer/ (files written by SerializeCheckpoint: with admin access,
// with a share id, with no devices; and schema-1 files, which stored a CDI spec).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "efadra/claims/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto checkpoint = efadra::claims::ParseCheckpoint(text, "fuzz.json");
  if (!checkpoint.ok()) {
    if (checkpoint.status().message().find("fuzz.json") == std::string::npos) std::abort();
    return 0;
  }
  if (checkpoint->schema_version > efadra::claims::kCheckpointSchemaVersion) std::abort();
  for (auto& device : checkpoint->devices) {
    if (device.device_name.empty()) std::abort();
    if (checkpoint->schema_version >= 2 && device.pci_address.empty()) std::abort();
    if (device.pci_address.empty()) device.pci_address = "0000:00:00.0";
  }
  const std::string serialized = efadra::claims::SerializeCheckpoint(*checkpoint);
  auto again = efadra::claims::ParseCheckpoint(serialized, "round trip");
  if (!again.ok()) std::abort();
  if (again->schema_version != efadra::claims::kCheckpointSchemaVersion) std::abort();
  if (efadra::claims::SerializeCheckpoint(*again) != serialized) std::abort();
  return 0;
}
