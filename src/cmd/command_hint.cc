#include "command_hint.h"

#include <algorithm>

namespace efadra::cmd {
namespace {

// Optimal string alignment distance: Levenshtein plus one-step transpositions, the most common
// typing slip ("stauts").
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

std::string ClosestCommand(std::string_view typed, const std::vector<std::string>& known) {
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const auto& name : known) {
    const size_t distance = EditDistance(typed, name);
    const size_t limit = std::max<size_t>(1, std::max(typed.size(), name.size()) / 3);
    if (distance <= limit && distance < best_distance) {
      best = name;
      best_distance = distance;
    }
  }
  return best;
}

std::string UnknownCommandMessage(std::string_view typed, const std::vector<std::string>& known) {
  std::string message = "unknown command \"" + std::string(typed) + "\"; the commands are:";
  for (size_t i = 0; i < known.size(); ++i) message += (i == 0 ? " " : ", ") + known[i];
  message += ".";
  if (const std::string closest = ClosestCommand(typed, known); !closest.empty()) {
    message += " Did you mean \"" + closest + "\"?";
  }
  return message;
}

}  // namespace efadra::cmd
