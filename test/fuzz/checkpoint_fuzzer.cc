// Fuzzes claims::ParseCheckpoint: checkpoint files survive crashes, disk corruption and
// downgrades, so any content must give a Status. A checkpoint that parses must also survive a
// round trip: SerializeCheckpoint of it parses again to the same content.
//
// Seeds: corpus/checkpoint_fuzzer/ (files written by SerializeCheckpoint: with a CDI spec, with
// a share id, with no devices).

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
  const std::string serialized = efadra::claims::SerializeCheckpoint(*checkpoint);
  auto again = efadra::claims::ParseCheckpoint(serialized, "round trip");
  if (!again.ok()) std::abort();
  if (efadra::claims::SerializeCheckpoint(*again) != serialized) std::abort();
  return 0;
}
