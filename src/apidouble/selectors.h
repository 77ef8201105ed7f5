// Field and label selectors as kube-apiserver parses them for list/watch, reduced to what the
// driver and its tests use: comma-separated requirements with `=`, `==`, `!=`, and (labels
// only) bare `key` / `!key` existence tests. Set-based label selectors (`in`, `notin`) are
// rejected with an error instead of being silently mis-evaluated.
//
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "efadra/core/status.h"

namespace efadra::apidouble {

struct Requirement {
  enum class Op { kEquals, kNotEquals, kExists, kNotExists };
  std::string key;
  Op op = Op::kEquals;
  std::string value;
};

using Selector = std::vector<Requirement>;

// kInvalidArgument naming the bad term.
Result<Selector> ParseLabelSelector(std::string_view text);
Result<Selector> ParseFieldSelector(std::string_view text);

// True when every requirement holds for the object's metadata.labels.
bool MatchesLabels(const Selector& selector, const nlohmann::json& object);

// The value of a dotted field path ("spec.nodeName") as the field-selector sees it: strings as
// is, absent fields as "".
std::string FieldValue(const nlohmann::json& object, std::string_view path);

bool MatchesFields(const Selector& selector, const nlohmann::json& object);

}  // namespace efadra::apidouble
