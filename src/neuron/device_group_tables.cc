// Parses the embedded Neuron device-group tables (data/neuron/*.json). The files are transcribed
// from aws-neuron/connected-device-maps-over-efa-for-neuron v1.1.0 (CDM), whose Go library
// DRANET and the Neuron DRA driver both call; keeping the same shape (one table per family, two
// config maps) means a new CDM family is one new file here.
#include "efadra/neuron/device_group_tables.h"

#include <cctype>
#include <charconv>
#include <string_view>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace efadra::neuron {
namespace {

using nlohmann::json;

constexpr std::string_view kJsonSuffix = ".json";
// CDM tables index Neuron devices 0..15; leave head room for larger families without accepting
// nonsense.
constexpr int kMaxNeuronId = 255;

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// "dddd:bb:dd.f" in lowercase, the form sysfs prints and the only form the tables may hold
// (lookups are byte-exact, as in CDM).
bool IsLowercasePciAddress(std::string_view s) {
  if (s.size() != 12 || s[4] != ':' || s[7] != ':' || s[10] != '.') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9, 11}) {
    if (!IsLowerHex(s[i])) return false;
  }
  return true;
}

Result<int> ParseNeuronId(std::string_view s) {
  int value = -1;
  auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (error != std::errc() || end != s.data() + s.size() || s.empty() || value < 0 ||
      value > kMaxNeuronId || (s.size() > 1 && s[0] == '0')) {
    return InvalidArgumentError("Neuron id \"" + std::string(s) + "\" is not a decimal 0.." +
                                std::to_string(kMaxNeuronId));
  }
  return value;
}

Result<json> ParseObject(const TableFile& file) {
  json doc = json::parse(file.content, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return InvalidArgumentError(file.name + ": not valid JSON");
  if (!doc.is_object()) return InvalidArgumentError(file.name + ": top level is not an object");
  auto source = doc.find("source");
  if (source == doc.end() || !source->is_string() || source->get<std::string>().empty()) {
    return InvalidArgumentError(file.name + ": missing the \"source\" string naming the origin");
  }
  return doc;
}

Result<FamilyTable> ParseFamilyTable(const TableFile& file, std::string name) {
  EFADRA_ASSIGN_OR_RETURN(json doc, ParseObject(file));
  FamilyTable table;
  table.name = std::move(name);
  table.source = doc["source"].get<std::string>();
  auto family = doc.find("family");
  if (family != doc.end() && (!family->is_string() || family->get<std::string>() != table.name)) {
    return InvalidArgumentError(file.name + ": \"family\" must equal the file name \"" +
                                table.name + "\"");
  }
  auto entries = doc.find("efa_by_neuron_id");
  if (entries == doc.end() || !entries->is_object() || entries->empty()) {
    return InvalidArgumentError(file.name + ": \"efa_by_neuron_id\" must be a non-empty object");
  }
  for (const auto& [key, value] : entries->items()) {
    auto id = ParseNeuronId(key);
    if (!id.ok()) return id.status().WithContext(file.name + ": efa_by_neuron_id");
    if (!value.is_string() || !IsLowercasePciAddress(value.get<std::string>())) {
      return InvalidArgumentError(file.name + ": efa_by_neuron_id[\"" + key +
                                  "\"] must be a lowercase PCI address like 0000:c9:00.0");
    }
    table.efa_by_neuron_id[*id] = value.get<std::string>();
  }
  return table;
}

}  // namespace

Result<DeviceGroupTables> ParseDeviceGroupTables(const std::vector<TableFile>& files) {
  DeviceGroupTables tables;
  bool have_family_map = false;
  bool have_enabled = false;
  for (const TableFile& file : files) {
    std::string_view name = file.name;
    if (name.size() <= kJsonSuffix.size() || !name.ends_with(kJsonSuffix)) {
      return InvalidArgumentError(file.name + ": table files must be named <name>.json");
    }
    if (name == kFamilyMapFile) {
      EFADRA_ASSIGN_OR_RETURN(json doc, ParseObject(file));
      auto families = doc.find("families");
      if (families == doc.end() || !families->is_object()) {
        return InvalidArgumentError(file.name + ": \"families\" must be an object");
      }
      for (const auto& [family, table] : families->items()) {
        if (!table.is_string() || table.get<std::string>().empty()) {
          return InvalidArgumentError(file.name + ": families[\"" + family +
                                      "\"] must be a table name");
        }
        tables.table_by_family[family] = table.get<std::string>();
      }
      have_family_map = true;
    } else if (name == kEfaEnabledFile) {
      EFADRA_ASSIGN_OR_RETURN(json doc, ParseObject(file));
      auto types = doc.find("instance_types");
      if (types == doc.end() || !types->is_array()) {
        return InvalidArgumentError(file.name + ": \"instance_types\" must be an array");
      }
      for (const json& type : *types) {
        if (!type.is_string() || type.get<std::string>().empty()) {
          return InvalidArgumentError(file.name + ": instance_types holds a non-string");
        }
        tables.efa_enabled_instance_types.insert(type.get<std::string>());
      }
      have_enabled = true;
    } else {
      std::string table_name(name.substr(0, name.size() - kJsonSuffix.size()));
      EFADRA_ASSIGN_OR_RETURN(FamilyTable table, ParseFamilyTable(file, table_name));
      tables.tables[table_name] = std::move(table);
    }
  }
  if (!have_family_map) return NotFoundError(std::string("missing ") + kFamilyMapFile);
  if (!have_enabled) return NotFoundError(std::string("missing ") + kEfaEnabledFile);
  return tables;
}

const DeviceGroupTables& BuiltinDeviceGroupTables() {
  // Function-local static: parsed once, initialisation is thread-safe, no global constructor.
  static const DeviceGroupTables* const kTables = [] {
    auto parsed = ParseDeviceGroupTables(EmbeddedTableFiles());
    if (!parsed.ok()) {
      spdlog::error("embedded Neuron device-group tables: {}; no devicegroup attributes",
                    parsed.status().ToString());
      return new DeviceGroupTables();
    }
    return new DeviceGroupTables(std::move(parsed).value());
  }();
  return *kTables;
}

}  // namespace efadra::neuron
