// Fuzzes kube::ConsumeWatchChunk, the framing of a watch response (newline-separated JSON
// events) that the API server streams into the driver. The first byte picks where the input is
// cut into chunks, as the network may cut it. A bad line must come back as a Status; a throw
// (a mistyped "type", "object" or ERROR "code"), a crash or a line lost between chunks is a
// bug. Seeds: corpus/watch_stream_fuzzer/ (real-shaped watch streams).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "efadra/kube/watch_stream.h"

namespace {

struct Outcome {
  std::string events;  // "type|object\n" per event seen
  std::string status;
  bool stopped = false;
  std::string pending;
};

// Feeds `input` in chunks of `chunk` bytes (all at once for 0); on_event stops at the
// `stop_after`-th event (never for 0).
Outcome Feed(std::string_view input, size_t chunk, size_t stop_after) {
  Outcome out;
  size_t seen = 0;
  auto on_event = [&](const efadra::kube::WatchEvent& event) {
    out.events += event.type + "|" + event.object.dump() + "\n";
    return stop_after == 0 || ++seen < stop_after;
  };
  if (chunk == 0) chunk = input.size() + 1;
  for (size_t at = 0; at < input.size() || at == 0; at += chunk) {
    efadra::Status status =
        efadra::kube::ConsumeWatchChunk(out.pending, input.substr(at, chunk), on_event, &out.stopped);
    if (!status.ok()) {
      out.status = status.ToString();
      break;
    }
    if (out.stopped) break;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = data[0] % 17;  // 0: one chunk
  const size_t stop_after = (data[0] >> 5) % 4;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

  const Outcome whole = Feed(input, 0, stop_after);
  const Outcome cut = Feed(input, chunk, stop_after);
  // Where the network cuts the stream must not change what the driver sees.
  if (whole.events != cut.events || whole.status != cut.status || whole.stopped != cut.stopped) {
    std::abort();
  }
  // Nothing is left pending but an unfinished last line.
  if (whole.status.empty() && !whole.stopped && whole.pending.find('\n') != std::string::npos) {
    std::abort();
  }
  return 0;
}
