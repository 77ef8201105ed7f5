#pragma once

namespace efadra::core {

// Caps the number of glibc malloc arenas. glibc gives each new thread an arena of its own, up
// to 8 per core, and every arena keeps the memory its thread freed; the driver's gRPC and HTTP
// threads each allocate a little, so a node sees one retained arena per thread (measured in
// docs/performance.md, "Footprint": about 0.7 MiB of RSS after 10,000 claims). Two arenas serve
// the driver's handful of concurrent calls without lock contention that shows in latency.
// Call it first thing in main(), before any thread starts. The MALLOC_ARENA_MAX environment
// variable, when set, wins (glibc reads it itself). Returns the cap in effect, 0 when the
// allocator is not glibc's own (sanitizer builds replace malloc).
int LimitMallocArenas(int max_arenas);

}  // namespace efadra::core
