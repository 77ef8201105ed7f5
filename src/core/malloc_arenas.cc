#include "efadra/core/malloc_arenas.h"

#include <malloc.h>

#include <cstdlib>

#include "efadra/core/version.h"

namespace efadra::core {

int LimitMallocArenas(int max_arenas) {
  if (kSanitizers[0] != '\0') return 0;
  if (const char* set = std::getenv("MALLOC_ARENA_MAX"); set != nullptr && *set != '\0') {
    return std::atoi(set);
  }
  return mallopt(M_ARENA_MAX, max_arenas) == 1 ? max_arenas : 0;
}

}  // namespace efadra::core
