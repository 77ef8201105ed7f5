// The hint printed for a mistyped subcommand ("discovr" -> did you mean "discover"?).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace efadra::cmd {

// The name in `known` closest to `typed` by edit distance (insertions, deletions, substitutions
// and swaps of neighbours), or "" when none is within a third of the longer word's length
// (at least 1): "stauts" -> "status", "xyz" -> "".
std::string ClosestCommand(std::string_view typed, const std::vector<std::string>& known);

// "unknown command \"discovr\"; the commands are: run, discover, demo, version, status.
// Did you mean \"discover\"?" (the last sentence only when ClosestCommand finds one).
std::string UnknownCommandMessage(std::string_view typed, const std::vector<std::string>& known);

}  // namespace efadra::cmd
