// Plain-text tables for the CLI: left-aligned columns two spaces apart, no trailing spaces.
#pragma once

#include <string>
#include <vector>

namespace efadra::core {

// `rows[0]` is the header; every row has the same number of cells. One line per row, each
// ending in "\n".
std::string FormatColumns(const std::vector<std::vector<std::string>>& rows);

}  // namespace efadra::core
