#include "efadra/core/clock.h"

namespace efadra::core {
namespace {

class SystemClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() const override {
    return std::chrono::steady_clock::now();
  }
  std::chrono::system_clock::time_point WallNow() const override {
    return std::chrono::system_clock::now();
  }
};

}  // namespace

Clock& RealClock() {
  static SystemClock clock;  // stateless: no initialisation-order or teardown concerns
  return clock;
}

}  // namespace efadra::core
