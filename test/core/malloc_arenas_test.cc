#include "efadra/core/malloc_arenas.h"

#include <gtest/gtest.h>
#include <malloc.h>
#include <stdio.h>

#include <barrier>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "efadra/core/version.h"

namespace efadra::core {
namespace {

// The arenas glibc has, from malloc_info's XML (one <heap nr="N"> per arena).
int ArenaCount() {
  char* text = nullptr;
  size_t size = 0;
  FILE* out = open_memstream(&text, &size);
  malloc_info(0, out);
  fclose(out);
  const std::string xml(text, size);
  free(text);
  int count = 0;
  for (size_t at = xml.find("<heap nr="); at != std::string::npos; at = xml.find("<heap nr=", at + 1)) {
    ++count;
  }
  return count;
}

TEST(MallocArenasTest, EightThreadsAllocatingAtOnceShareTheCappedArenas) {
  if (kSanitizers[0] != '\0') {
    EXPECT_EQ(LimitMallocArenas(2), 0) << "a sanitizer's allocator has no glibc arenas to cap";
    return;
  }
  ::unsetenv("MALLOC_ARENA_MAX");
  ASSERT_EQ(LimitMallocArenas(2), 2);
  // Every thread allocates while all the others hold their memory, so none can reuse an arena
  // a finished thread gave back: uncapped, glibc gives each its own (up to 8 per core).
  constexpr int kThreads = 8;
  std::barrier all_allocated(kThreads + 1), may_free(kThreads + 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      std::vector<void*> blocks;
      for (int i = 0; i < 64; ++i) blocks.push_back(std::malloc(1024));
      all_allocated.arrive_and_wait();
      may_free.arrive_and_wait();
      for (void* block : blocks) std::free(block);
    });
  }
  all_allocated.arrive_and_wait();
  const int arenas = ArenaCount();
  may_free.arrive_and_wait();
  for (auto& thread : threads) thread.join();
  EXPECT_LE(arenas, 2) << "malloc_info lists " << arenas << " arenas for " << kThreads << " threads";
}

TEST(MallocArenasTest, TheEnvironmentVariableWins) {
  ::setenv("MALLOC_ARENA_MAX", "5", 1);
  const int in_effect = LimitMallocArenas(2);
  ::unsetenv("MALLOC_ARENA_MAX");
  EXPECT_EQ(in_effect, kSanitizers[0] != '\0' ? 0 : 5);
}

}  // namespace
}  // namespace efadra::core
