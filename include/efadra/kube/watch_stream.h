// The framing of a Kubernetes watch response: one JSON object per line,
// {"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR", "object": {...}}. The bytes arrive in chunks
// that split lines anywhere; this turns them into WatchEvents. A pure function over the bytes
// (the client's body callback feeds it), so it is fuzzed on its own (test/fuzz).
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "efadra/core/status.h"
#include "efadra/kube/client.h"

namespace efadra::kube {

// Appends `chunk` to `pending` (the unfinished last line of the previous chunks) and hands each
// complete, non-empty line to on_event as a WatchEvent; what follows the last '\n' stays in
// `pending`. Stops at the first line on_event returns false for (*stopped set, OK), and at:
// kDataLoss for a line that is not a JSON object or whose "type" is not a string or whose
// "object" is not an object (the message quotes the line's start); the status the ERROR event's
// code maps to, after on_event has seen it. A missing "type" is "", a missing "object" is {}.
Status ConsumeWatchChunk(std::string& pending, std::string_view chunk,
                         const std::function<bool(const WatchEvent&)>& on_event, bool* stopped);

}  // namespace efadra::kube
