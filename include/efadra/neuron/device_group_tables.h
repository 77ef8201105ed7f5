// The Neuron device-group tables: per instance family, Neuron device id -> EFA PCI address, plus
// which instance types are EFA-enabled Neuron types and which table each family uses. They are
// data files (data/neuron/*.json) embedded into the binary at build time (src/neuron/
// embed_tables.cmake); see docs/neuron.md.
// Parsing is pure; BuiltinDeviceGroupTables() parses once and is thread-safe.
#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "efadra/core/status.h"

namespace efadra::neuron {

// One embedded data file: its file name ("trn2.json") and its bytes.
struct TableFile {
  std::string name;
  std::string content;
};

// The files named below configure the lookup; every other "<table>.json" is a family table.
inline constexpr char kFamilyMapFile[] = "instance-family-mappings.json";
inline constexpr char kEfaEnabledFile[] = "efa-enabled-instances.json";

// One family table, e.g. "trn2": Neuron device id (0..15) -> EFA PCI address.
struct FamilyTable {
  std::string name;    // "trn2" (the file name without .json)
  std::string source;  // where the data comes from, for logs and docs
  std::map<int, std::string> efa_by_neuron_id;
};

struct DeviceGroupTables {
  std::map<std::string, FamilyTable, std::less<>> tables;           // "trn2" -> table
  std::map<std::string, std::string, std::less<>> table_by_family;  // "trn2e" -> "trn2"
  std::set<std::string, std::less<>> efa_enabled_instance_types;    // "trn2.48xlarge", ...
};

// The data files compiled into this binary (generated from data/neuron/*.json), sorted by name.
std::vector<TableFile> EmbeddedTableFiles();

// Parses and checks `files`. kInvalidArgument naming the file and the field when a file is not
// JSON, lacks "source", has a Neuron id that is not a decimal 0..255, or an EFA address that is
// not a lowercase "dddd:bb:dd.f"; kNotFound when one of the two config files is missing.
// A family that maps to a table with no file is allowed (it gets no attributes; see
// DeviceGroupsNote).
Result<DeviceGroupTables> ParseDeviceGroupTables(const std::vector<TableFile>& files);

// ParseDeviceGroupTables(EmbeddedTableFiles()), parsed on first use. If the embedded data does
// not parse (the unit test prevents that) it logs the error once and returns empty tables, so
// no device gets attributes rather than the driver failing.
const DeviceGroupTables& BuiltinDeviceGroupTables();

}  // namespace efadra::neuron
