// Clock: monotonic and wall time behind an interface so tests can drive time. The real clock
// is stateless and thread-safe.
#pragma once

#include <chrono>

namespace efadra::core {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::steady_clock::time_point Now() const = 0;
  virtual std::chrono::system_clock::time_point WallNow() const = 0;
};

// The process-wide real clock (a stateless object; safe to share).
Clock& RealClock();

}  // namespace efadra::core
