#include "slice_validation.h"

#include <regex>
#include <set>
#include <string_view>

namespace efadra::apidouble {
namespace {

using nlohmann::json;

// Limits from kubernetes/kubernetes:pkg/apis/resource/validation (contracts.md §5.2).
constexpr size_t kDriverNameMaxLength = 63;
constexpr size_t kPoolNameMaxLength = 253;
constexpr size_t kDnsSubdomainMaxLength = 253;
constexpr size_t kDnsLabelMaxLength = 63;
constexpr size_t kMaxDevices = 128;
constexpr size_t kMaxDevicesWithTaintsOrCounters = 64;
constexpr size_t kMaxAttributesAndCapacities = 32;
constexpr size_t kAttributeIdMaxLength = 32;
constexpr size_t kAttributeValueMaxLength = 64;
constexpr size_t kMaxTaints = 16;

const std::regex& DnsLabelRe() {
  static const std::regex re("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$");
  return re;
}
const std::regex& DnsSubdomainRe() {
  static const std::regex re(
      "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$");
  return re;
}
const std::regex& CIdentifierRe() {
  static const std::regex re("^[A-Za-z_][A-Za-z0-9_]*$");
  return re;
}
// semver.org 2.0.0 (the suggested regular expression, without the named groups).
const std::regex& SemVerRe() {
  static const std::regex re(
      "^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)"
      "(?:-((?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*)"
      "(?:\\.(?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
      "(?:\\+([0-9a-zA-Z-]+(?:\\.[0-9a-zA-Z-]+)*))?$");
  return re;
}
// Label names (the part after an optional prefix) and values.
const std::regex& LabelNameRe() {
  static const std::regex re("^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$");
  return re;
}
// resource.Quantity, loosely: a signed decimal with an optional suffix or exponent.
const std::regex& QuantityRe() {
  static const std::regex re(
      "^[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[kMGTPE]|m|n|u)?$");
  return re;
}

std::string Quote(const std::string& s) { return json(s).dump(); }

class Causes {
 public:
  void Required(const std::string& field, const std::string& detail = "") {
    Add("FieldValueRequired", "Required value" + Detail(detail), field);
  }
  void Invalid(const std::string& field, const json& value, const std::string& detail) {
    Add("FieldValueInvalid", "Invalid value: " + value.dump() + Detail(detail), field);
  }
  void TooLong(const std::string& field, size_t max, bool bytes = false) {
    Add("FieldValueTooLong",
        "Too long: may not be more than " + std::to_string(max) + (bytes ? " bytes" : ""), field);
  }
  void TooMany(const std::string& field, size_t actual, size_t max) {
    Add("FieldValueTooMany",
        "Too many: " + std::to_string(actual) + ": must have at most " + std::to_string(max) +
            " items",
        field);
  }
  void Duplicate(const std::string& field, const std::string& value) {
    Add("FieldValueDuplicate", "Duplicate value: " + Quote(value), field);
  }
  void NotSupported(const std::string& field, const json& value,
                    const std::vector<std::string>& supported) {
    std::string list;
    for (const auto& s : supported) list += (list.empty() ? "" : ", ") + Quote(s);
    Add("FieldValueNotSupported",
        "Unsupported value: " + value.dump() + ": supported values: " + list, field);
  }
  std::vector<FieldCause> Take() { return std::move(causes_); }

 private:
  static std::string Detail(const std::string& d) { return d.empty() ? "" : ": " + d; }
  void Add(std::string reason, std::string message, std::string field) {
    causes_.push_back({std::move(reason), std::move(message), std::move(field)});
  }
  std::vector<FieldCause> causes_;
};

const json* Find(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string StringOr(const json* j) {
  return j != nullptr && j->is_string() ? j->get<std::string>() : std::string();
}

std::string ToLower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// validateDriverName: required, ≤ 63, DNS subdomain after lower-casing.
void ValidateDriverLike(const std::string& name, const std::string& field, Causes& causes) {
  if (name.empty()) {
    causes.Required(field);
    return;
  }
  if (name.size() > kDriverNameMaxLength) causes.TooLong(field, kDriverNameMaxLength);
  if (!IsDnsSubdomain(ToLower(name))) {
    causes.Invalid(field, name,
                   "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                   "characters, '-' or '.', and must start and end with an alphanumeric "
                   "character");
  }
}

void ValidatePoolName(const std::string& name, const std::string& field, Causes& causes) {
  if (name.empty()) {
    causes.Required(field);
    return;
  }
  if (name.size() > kPoolNameMaxLength) causes.TooLong(field, kPoolNameMaxLength);
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    if (slash == std::string::npos) slash = name.size();
    std::string part = name.substr(start, slash - start);
    if (!IsDnsSubdomain(part)) {
      causes.Invalid(field, name,
                     "a valid pool name is one or more DNS subdomains separated by '/'");
      return;
    }
    start = slash + 1;
  }
}

void ValidateNodeName(const std::string& name, const std::string& field, Causes& causes) {
  if (!IsDnsSubdomain(name)) {
    causes.Invalid(field, name,
                   "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                   "characters, '-' or '.', and must start and end with an alphanumeric "
                   "character");
  }
}

// QualifiedName of an attribute or capacity: C identifier ≤ 32, optionally "<domain>/".
void ValidateQualifiedName(const std::string& name, const std::string& field, Causes& causes) {
  if (name.empty()) {
    causes.Required(field, "name required");
    return;
  }
  size_t slash = name.find('/');
  std::string id = name;
  if (slash != std::string::npos) {
    if (name.find('/', slash + 1) != std::string::npos) {
      causes.Invalid(field, name, "a qualified name must not contain more than one '/'");
      return;
    }
    std::string domain = name.substr(0, slash);
    ValidateDriverLike(domain, field, causes);
    id = name.substr(slash + 1);
  }
  if (id.empty()) {
    causes.Required(field, "the name after the domain is required");
    return;
  }
  if (id.size() > kAttributeIdMaxLength) causes.TooLong(field, kAttributeIdMaxLength);
  if (!IsCIdentifier(id)) {
    causes.Invalid(field, id,
                   "a valid C identifier must start with alphabetic character or '_', followed "
                   "by a string of alphanumeric characters or '_'");
  }
}

void ValidateAttributeValue(const json& value, const std::string& field, Causes& causes) {
  int members = 0;
  for (const char* key : {"int", "bool", "string", "version"}) {
    if (Find(value, key) != nullptr) ++members;
  }
  if (members == 0) {
    causes.Required(field, "exactly one value must be specified");
    return;
  }
  if (members > 1) {
    causes.Invalid(field, value, "exactly one value must be specified");
    return;
  }
  if (const json* s = Find(value, "string")) {
    const std::string text = StringOr(s);
    if (text.size() > kAttributeValueMaxLength) {
      causes.TooLong(field + ".string", kAttributeValueMaxLength, true);
    }
  }
  if (const json* v = Find(value, "version")) {
    const std::string text = StringOr(v);
    if (text.size() > kAttributeValueMaxLength) {
      causes.TooLong(field + ".version", kAttributeValueMaxLength, true);
    } else if (!IsSemVer(text)) {
      causes.Invalid(field + ".version", text,
                     "must be a string compatible with semver.org spec 2.0.0");
    }
  }
}

bool IsLabelKey(const std::string& key) {
  std::string name = key;
  size_t slash = key.find('/');
  if (slash != std::string::npos) {
    std::string prefix = key.substr(0, slash);
    if (prefix.empty() || prefix.size() > kDnsSubdomainMaxLength || !IsDnsSubdomain(prefix)) {
      return false;
    }
    name = key.substr(slash + 1);
  }
  return !name.empty() && name.size() <= kDnsLabelMaxLength && std::regex_match(name, LabelNameRe());
}

bool IsLabelValue(const std::string& value) {
  return value.empty() ||
         (value.size() <= kDnsLabelMaxLength && std::regex_match(value, LabelNameRe()));
}

void ValidateTaint(const json& taint, const std::string& field, Causes& causes) {
  const std::string key = StringOr(Find(taint, "key"));
  if (key.empty()) {
    causes.Required(field + ".key");
  } else if (!IsLabelKey(key)) {
    causes.Invalid(field + ".key", key, "name part must consist of alphanumeric characters, "
                                        "'-', '_' or '.', and must start and end with an "
                                        "alphanumeric character");
  }
  const std::string value = StringOr(Find(taint, "value"));
  if (!IsLabelValue(value)) {
    causes.Invalid(field + ".value", value, "a valid label must be an empty string or consist "
                                            "of alphanumeric characters, '-', '_' or '.'");
  }
  const json* effect = Find(taint, "effect");
  if (effect == nullptr || StringOr(effect).empty()) {
    causes.Required(field + ".effect");
  } else {
    const std::string e = StringOr(effect);
    if (e != "None" && e != "NoSchedule" && e != "NoExecute") {
      causes.NotSupported(field + ".effect", e, {"NoExecute", "NoSchedule", "None"});
    }
  }
}

void ValidateNodeSelector(const json& selector, const std::string& field, Causes& causes) {
  const json* terms = Find(selector, "nodeSelectorTerms");
  if (terms == nullptr || !terms->is_array() || terms->empty()) {
    causes.Required(field + ".nodeSelectorTerms", "must have exactly one node selector term");
  } else if (terms->size() != 1) {
    causes.Invalid(field + ".nodeSelectorTerms", static_cast<int64_t>(terms->size()),
                   "must have exactly one node selector term");
  }
}

void ValidateDevice(const json& device, const std::string& field, std::set<std::string>& names,
                    Causes& causes) {
  const std::string name = StringOr(Find(device, "name"));
  if (name.empty()) {
    causes.Required(field + ".name");
  } else {
    if (name.size() > kDnsLabelMaxLength) causes.TooLong(field + ".name", kDnsLabelMaxLength);
    if (!IsDnsLabel(name)) {
      causes.Invalid(field + ".name", name,
                     "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                     "characters or '-', and must start and end with an alphanumeric character");
    }
    if (!names.insert(name).second) causes.Duplicate(field + ".name", name);
  }
  size_t entries = 0;
  if (const json* attrs = Find(device, "attributes")) {
    entries += attrs->size();
    for (const auto& [key, value] : attrs->items()) {
      const std::string f = field + ".attributes[" + key + "]";
      ValidateQualifiedName(key, f, causes);
      ValidateAttributeValue(value, f, causes);
    }
  }
  if (const json* caps = Find(device, "capacity")) {
    entries += caps->size();
    for (const auto& [key, value] : caps->items()) {
      const std::string f = field + ".capacity[" + key + "]";
      ValidateQualifiedName(key, f, causes);
      const json* q = Find(value, "value");
      if (q == nullptr) {
        causes.Required(f + ".value");
      } else if (q->is_string() && !std::regex_match(q->get<std::string>(), QuantityRe())) {
        causes.Invalid(f + ".value", *q, "quantities must match the regular expression "
                                         "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
      }
    }
  }
  if (entries > kMaxAttributesAndCapacities) {
    causes.Invalid(field, static_cast<int64_t>(entries),
                   "the total number of attributes and capacities must not exceed " +
                       std::to_string(kMaxAttributesAndCapacities));
  }
  if (const json* taints = Find(device, "taints")) {
    if (taints->size() > kMaxTaints) {
      causes.TooMany(field + ".taints", taints->size(), kMaxTaints);
    }
    for (size_t i = 0; i < taints->size(); ++i) {
      ValidateTaint((*taints)[i], field + ".taints[" + std::to_string(i) + "]", causes);
    }
  }
}

void ValidateSpec(const json& spec, Causes& causes) {
  ValidateDriverLike(StringOr(Find(spec, "driver")), "spec.driver", causes);

  const json* pool = Find(spec, "pool");
  if (pool == nullptr) {
    causes.Required("spec.pool.name");
    causes.Required("spec.pool.resourceSliceCount");
  } else {
    ValidatePoolName(StringOr(Find(*pool, "name")), "spec.pool.name", causes);
    const json* gen = Find(*pool, "generation");
    if (gen != nullptr && gen->is_number() && gen->get<int64_t>() < 0) {
      causes.Invalid("spec.pool.generation", *gen, "must be greater than or equal to 0");
    }
    const json* count = Find(*pool, "resourceSliceCount");
    if (count == nullptr || !count->is_number() || count->get<int64_t>() <= 0) {
      causes.Invalid("spec.pool.resourceSliceCount", count == nullptr ? json(0) : *count,
                     "must be greater than zero");
    }
  }

  // Exactly one of the node-selection fields (validateNodeSelectionFields).
  std::vector<std::string> set;
  const std::string node_name = StringOr(Find(spec, "nodeName"));
  if (!node_name.empty()) {
    set.push_back("`nodeName`");
    ValidateNodeName(node_name, "spec.nodeName", causes);
  }
  if (const json* sel = Find(spec, "nodeSelector")) {
    set.push_back("`nodeSelector`");
    ValidateNodeSelector(*sel, "spec.nodeSelector", causes);
  }
  if (const json* all = Find(spec, "allNodes"); all != nullptr && all->is_boolean() && *all) {
    set.push_back("`allNodes`");
  }
  if (const json* per = Find(spec, "perDeviceNodeSelection")) {
    set.push_back("`perDeviceNodeSelection`");
    if (!(per->is_boolean() && *per)) {
      causes.Invalid("spec.perDeviceNodeSelection", *per, "must be either unset or set to true");
    }
  }
  if (set.empty()) {
    causes.Required("spec", "exactly one of `nodeName`, `nodeSelector`, `allNodes`, "
                            "`perDeviceNodeSelection` is required");
  } else if (set.size() > 1) {
    std::string list;
    for (const auto& s : set) list += (list.empty() ? "" : ", ") + s;
    causes.Invalid("spec", "{" + list + "}", "exactly one field must be set, not several");
  }

  if (const json* devices = Find(spec, "devices")) {
    bool restricted = false;
    for (const json& d : *devices) {
      const json* taints = Find(d, "taints");
      const json* counters = Find(d, "consumesCounters");
      if ((taints != nullptr && !taints->empty()) || (counters != nullptr && !counters->empty())) {
        restricted = true;
      }
    }
    const size_t max = restricted ? kMaxDevicesWithTaintsOrCounters : kMaxDevices;
    if (devices->size() > max) causes.TooMany("spec.devices", devices->size(), max);
    std::set<std::string> names;
    for (size_t i = 0; i < devices->size(); ++i) {
      ValidateDevice((*devices)[i], "spec.devices[" + std::to_string(i) + "]", names, causes);
    }
  }
}

// Known JSON fields of resource.k8s.io/v1 ResourceSlice (1.34 with the beta gates on; the 1.36
// alpha list-type attribute values are unknown, as on a server with that gate off).
const std::set<std::string>& Known(std::string_view what) {
  static const std::set<std::string> kTop = {"apiVersion", "kind", "metadata", "spec"};
  static const std::set<std::string> kSpec = {"driver",     "pool",    "nodeName",
                                              "nodeSelector", "allNodes", "perDeviceNodeSelection",
                                              "devices",    "sharedCounters"};
  static const std::set<std::string> kPool = {"name", "generation", "resourceSliceCount"};
  static const std::set<std::string> kDevice = {
      "name",          "attributes",     "capacity",   "consumesCounters",
      "nodeName",      "nodeSelector",   "allNodes",   "taints",
      "bindsToNode",   "bindingConditions", "bindingFailureConditions",
      "allowMultipleAllocations"};
  static const std::set<std::string> kAttribute = {"int", "bool", "string", "version"};
  static const std::set<std::string> kCapacity = {"value", "requestPolicy"};
  static const std::set<std::string> kTaint = {"key", "value", "effect", "timeAdded"};
  static const std::set<std::string> kNone;
  if (what == "top") return kTop;
  if (what == "spec") return kSpec;
  if (what == "pool") return kPool;
  if (what == "device") return kDevice;
  if (what == "attribute") return kAttribute;
  if (what == "capacity") return kCapacity;
  if (what == "taint") return kTaint;
  return kNone;
}

void Prune(json& obj, std::string_view what, const std::string& path,
           std::vector<std::string>& dropped) {
  if (!obj.is_object()) return;
  const auto& known = Known(what);
  for (auto it = obj.begin(); it != obj.end();) {
    if (known.count(it.key()) == 0) {
      dropped.push_back(path.empty() ? it.key() : path + "." + it.key());
      it = obj.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace

bool IsDnsLabel(const std::string& s) {
  return !s.empty() && s.size() <= kDnsLabelMaxLength && std::regex_match(s, DnsLabelRe());
}
bool IsDnsSubdomain(const std::string& s) {
  return !s.empty() && s.size() <= kDnsSubdomainMaxLength && std::regex_match(s, DnsSubdomainRe());
}
bool IsSemVer(const std::string& s) { return std::regex_match(s, SemVerRe()); }
bool IsCIdentifier(const std::string& s) { return std::regex_match(s, CIdentifierRe()); }

std::vector<std::string> DecodeErrors(const json& slice) {
  std::vector<std::string> errors;
  auto expect = [&](const json* j, bool ok, const std::string& path, const char* type) {
    if (j != nullptr && !ok) {
      errors.push_back("json: cannot unmarshal " + std::string(j->type_name()) +
                       " into Go struct field " + path + " of type " + type);
    }
  };
  if (!slice.is_object()) {
    errors.push_back("json: cannot unmarshal " + std::string(slice.type_name()) +
                     " into Go value of type v1.ResourceSlice");
    return errors;
  }
  const json* meta = Find(slice, "metadata");
  expect(meta, meta != nullptr && meta->is_object(), "ResourceSlice.metadata", "v1.ObjectMeta");
  const json* spec = Find(slice, "spec");
  expect(spec, spec != nullptr && spec->is_object(), "ResourceSlice.spec", "v1.ResourceSliceSpec");
  if (spec == nullptr || !spec->is_object()) return errors;
  for (const char* f : {"driver", "nodeName"}) {
    const json* j = Find(*spec, f);
    expect(j, j != nullptr && j->is_string(), std::string("ResourceSlice.spec.") + f, "string");
  }
  const json* pool = Find(*spec, "pool");
  expect(pool, pool != nullptr && pool->is_object(), "ResourceSlice.spec.pool", "v1.ResourcePool");
  if (pool != nullptr && pool->is_object()) {
    const json* name = Find(*pool, "name");
    expect(name, name != nullptr && name->is_string(), "ResourceSlice.spec.pool.name", "string");
    for (const char* f : {"generation", "resourceSliceCount"}) {
      const json* j = Find(*pool, f);
      expect(j, j != nullptr && j->is_number_integer(), std::string("ResourceSlice.spec.pool.") + f,
             "int64");
    }
  }
  for (const char* f : {"allNodes", "perDeviceNodeSelection"}) {
    const json* j = Find(*spec, f);
    expect(j, j != nullptr && j->is_boolean(), std::string("ResourceSlice.spec.") + f, "bool");
  }
  const json* devices = Find(*spec, "devices");
  expect(devices, devices != nullptr && devices->is_array(), "ResourceSlice.spec.devices",
         "[]v1.Device");
  if (devices == nullptr || !devices->is_array()) return errors;
  for (const json& d : *devices) {
    expect(&d, d.is_object(), "ResourceSlice.spec.devices", "v1.Device");
    if (!d.is_object()) continue;
    const json* name = Find(d, "name");
    expect(name, name != nullptr && name->is_string(), "ResourceSlice.spec.devices.name", "string");
    for (const char* f : {"attributes", "capacity"}) {
      const json* m = Find(d, f);
      expect(m, m != nullptr && m->is_object(), std::string("ResourceSlice.spec.devices.") + f,
             "map");
      if (m == nullptr || !m->is_object()) continue;
      for (const auto& [key, value] : m->items()) {
        expect(&value, value.is_object(), std::string("ResourceSlice.spec.devices.") + f,
               "struct");
      }
    }
    if (const json* attrs = Find(d, "attributes"); attrs != nullptr && attrs->is_object()) {
      for (const auto& [key, value] : attrs->items()) {
        if (!value.is_object()) continue;
        const json* i = Find(value, "int");
        expect(i, i != nullptr && i->is_number_integer(),
               "ResourceSlice.spec.devices.attributes.int", "int64");
        const json* b = Find(value, "bool");
        expect(b, b != nullptr && b->is_boolean(), "ResourceSlice.spec.devices.attributes.bool",
               "bool");
        for (const char* f : {"string", "version"}) {
          const json* s = Find(value, f);
          expect(s, s != nullptr && s->is_string(),
                 std::string("ResourceSlice.spec.devices.attributes.") + f, "string");
        }
      }
    }
    const json* taints = Find(d, "taints");
    expect(taints, taints != nullptr && taints->is_array(), "ResourceSlice.spec.devices.taints",
           "[]v1.DeviceTaint");
  }
  return errors;
}

std::vector<FieldCause> ValidateResourceSlice(const json& slice) {
  Causes causes;
  const json* meta = Find(slice, "metadata");
  const std::string name = meta != nullptr ? StringOr(Find(*meta, "name")) : "";
  if (name.empty()) {
    causes.Required("metadata.name", "name or generateName is required");
  } else if (!IsDnsSubdomain(name)) {
    causes.Invalid("metadata.name", name,
                   "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                   "characters, '-' or '.', and must start and end with an alphanumeric "
                   "character");
  }
  const json* spec = Find(slice, "spec");
  if (spec == nullptr) {
    causes.Required("spec.driver");
    causes.Required("spec.pool.name");
  } else {
    ValidateSpec(*spec, causes);
  }
  return causes.Take();
}

std::vector<FieldCause> ValidateResourceSliceUpdate(const json& updated, const json& stored) {
  std::vector<FieldCause> causes = ValidateResourceSlice(updated);
  Causes immutable;
  for (const char* path : {"driver", "nodeName"}) {
    const json* spec_new = Find(updated, "spec");
    const json* spec_old = Find(stored, "spec");
    std::string a = spec_new ? StringOr(Find(*spec_new, path)) : "";
    std::string b = spec_old ? StringOr(Find(*spec_old, path)) : "";
    if (a != b) immutable.Invalid(std::string("spec.") + path, a, "field is immutable");
  }
  auto pool_name = [](const json& slice) {
    const json* spec = Find(slice, "spec");
    const json* pool = spec ? Find(*spec, "pool") : nullptr;
    return pool ? StringOr(Find(*pool, "name")) : std::string();
  };
  if (pool_name(updated) != pool_name(stored)) {
    immutable.Invalid("spec.pool.name", pool_name(updated), "field is immutable");
  }
  for (auto& c : immutable.Take()) causes.push_back(std::move(c));
  return causes;
}

void DropConsumableCapacityFields(json& slice) {
  if (!slice.is_object() || !slice.contains("spec") || !slice["spec"].is_object()) return;
  json& spec = slice["spec"];
  if (!spec.contains("devices") || !spec["devices"].is_array()) return;
  for (json& device : spec["devices"]) {
    if (!device.is_object()) continue;
    device.erase("allowMultipleAllocations");
    if (auto caps = device.find("capacity"); caps != device.end() && caps->is_object()) {
      for (auto& [name, capacity] : caps->items()) {
        if (capacity.is_object()) capacity.erase("requestPolicy");
      }
    }
  }
}

std::vector<std::string> PruneUnknownFields(json& slice) {
  std::vector<std::string> dropped;
  if (!slice.is_object()) return dropped;
  Prune(slice, "top", "", dropped);
  auto spec = slice.find("spec");
  if (spec == slice.end() || !spec->is_object()) return dropped;
  Prune(*spec, "spec", "spec", dropped);
  if (auto pool = spec->find("pool"); pool != spec->end()) Prune(*pool, "pool", "spec.pool", dropped);
  auto devices = spec->find("devices");
  if (devices == spec->end() || !devices->is_array()) return dropped;
  for (size_t i = 0; i < devices->size(); ++i) {
    json& d = (*devices)[i];
    const std::string base = "spec.devices[" + std::to_string(i) + "]";
    Prune(d, "device", base, dropped);
    if (!d.is_object()) continue;
    if (auto attrs = d.find("attributes"); attrs != d.end() && attrs->is_object()) {
      for (auto& [key, value] : attrs->items()) {
        Prune(value, "attribute", base + ".attributes[" + key + "]", dropped);
      }
    }
    if (auto caps = d.find("capacity"); caps != d.end() && caps->is_object()) {
      for (auto& [key, value] : caps->items()) {
        Prune(value, "capacity", base + ".capacity[" + key + "]", dropped);
      }
    }
    if (auto taints = d.find("taints"); taints != d.end() && taints->is_array()) {
      for (size_t t = 0; t < taints->size(); ++t) {
        Prune((*taints)[t], "taint", base + ".taints[" + std::to_string(t) + "]", dropped);
      }
    }
  }
  return dropped;
}

}  // namespace efadra::apidouble
