#include "efadra/claims/checkpoint.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>

#include <nlohmann/json.hpp>

namespace efadra::claims {
namespace {

constexpr char kKind[] = "EfaClaimCheckpoint";
constexpr char kPeersKey[] = "peerClaimUids";

std::string Sha256Hex(std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

nlohmann::json ClaimToJson(const ClaimRef& claim) {
  return {{"namespace", claim.namespace_name}, {"name", claim.name}, {"uid", claim.uid}};
}

nlohmann::json DeviceToJson(const CheckpointDevice& device) {
  nlohmann::json out = {{"requestNames", device.request_names},
                        {"poolName", device.pool_name},
                        {"deviceName", device.device_name},
                        {"pciAddress", device.pci_address},
                        {"adminAccess", device.admin_access}};
  if (device.share_id.has_value()) out["shareId"] = *device.share_id;
  return out;
}

// The checksummed body: everything but the checksum, in nlohmann's sorted-key dump.
nlohmann::json Body(const ClaimCheckpoint& checkpoint) {
  nlohmann::json devices = nlohmann::json::array();
  for (const CheckpointDevice& device : checkpoint.devices) devices.push_back(DeviceToJson(device));
  nlohmann::json body = {{"kind", kKind},
                         {"schemaVersion", kCheckpointSchemaVersion},
                         {"bootId", checkpoint.boot_id},
                         {"claim", ClaimToJson(checkpoint.claim)},
                         {"devices", std::move(devices)}};
  // Only when present: a file without peers keeps the body (and checksum) it always had.
  if (!checkpoint.peer_claim_uids.empty()) body[kPeersKey] = checkpoint.peer_claim_uids;
  return body;
}

bool GetString(const nlohmann::json& object, const char* key, std::string* out) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return false;
  *out = it->get<std::string>();
  return true;
}

bool GetStrings(const nlohmann::json& object, const char* key, std::vector<std::string>* out) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_array()) return false;
  for (const auto& item : *it) {
    if (!item.is_string()) return false;
    out->push_back(item.get<std::string>());
  }
  return true;
}

// An optional string field: absent is fine, any other type is not.
bool GetOptionalString(const nlohmann::json& object, const char* key,
                       std::optional<std::string>* out) {
  auto it = object.find(key);
  if (it == object.end()) return true;
  if (!it->is_string()) return false;
  *out = it->get<std::string>();
  return true;
}

}  // namespace

std::string SerializeCheckpoint(const ClaimCheckpoint& checkpoint) {
  nlohmann::json body = Body(checkpoint);
  body["checksum"] = "sha256:" + Sha256Hex(body.dump());
  return body.dump(2) + "\n";
}

Result<ClaimCheckpoint> ParseCheckpoint(std::string_view content, std::string_view source) {
  const std::string where = "checkpoint " + std::string(source);
  nlohmann::json doc = nlohmann::json::parse(content, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return DataLossError(where + ": not a JSON object");
  auto version_it = doc.find("schemaVersion");
  if (version_it == doc.end() || !version_it->is_number_integer()) {
    return DataLossError(where + ": no schemaVersion");
  }
  const int64_t version = version_it->get<int64_t>();
  if (version > kCheckpointSchemaVersion) {
    return UnimplementedError(where + ": schemaVersion " + std::to_string(version) +
                              " is newer than this driver understands (" +
                              std::to_string(kCheckpointSchemaVersion) + ")");
  }
  if (version < 1) {
    return DataLossError(where + ": schemaVersion " + std::to_string(version) + " is invalid");
  }
  std::string kind, checksum;
  if (!GetString(doc, "kind", &kind) || kind != kKind) {
    return DataLossError(where + ": kind is not " + kKind);
  }
  if (!GetString(doc, "checksum", &checksum)) return DataLossError(where + ": no checksum");

  ClaimCheckpoint checkpoint;
  checkpoint.schema_version = static_cast<int>(version);
  const nlohmann::json claim = doc.value("claim", nlohmann::json());
  if (!claim.is_object() || !GetString(claim, "namespace", &checkpoint.claim.namespace_name) ||
      !GetString(claim, "name", &checkpoint.claim.name) ||
      !GetString(claim, "uid", &checkpoint.claim.uid) ||
      !GetString(doc, "bootId", &checkpoint.boot_id)) {
    return DataLossError(where + ": claim or bootId missing");
  }
  auto devices = doc.find("devices");
  if (devices == doc.end() || !devices->is_array()) return DataLossError(where + ": no devices");
  // Schema 1 stored CDI ids per device and the whole spec; they count for the checksum only.
  nlohmann::json schema1_devices = nlohmann::json::array();
  for (const auto& item : *devices) {
    CheckpointDevice device;
    if (!item.is_object() || !GetStrings(item, "requestNames", &device.request_names) ||
        !GetString(item, "poolName", &device.pool_name) ||
        !GetString(item, "deviceName", &device.device_name) || device.device_name.empty() ||
        !GetOptionalString(item, "shareId", &device.share_id)) {
      return DataLossError(where + ": malformed device entry");
    }
    if (version == 1) {
      std::vector<std::string> cdi_ids;
      if (!GetStrings(item, "cdiDeviceIds", &cdi_ids)) {
        return DataLossError(where + ": malformed device entry");
      }
      nlohmann::json stored = {{"requestNames", device.request_names},
                               {"poolName", device.pool_name},
                               {"deviceName", device.device_name},
                               {"cdiDeviceIds", cdi_ids}};
      if (device.share_id.has_value()) stored["shareId"] = *device.share_id;
      schema1_devices.push_back(std::move(stored));
    } else {
      auto admin = item.find("adminAccess");
      if (!GetString(item, "pciAddress", &device.pci_address) || device.pci_address.empty() ||
          admin == item.end() || !admin->is_boolean()) {
        return DataLossError(where + ": malformed device entry");
      }
      device.admin_access = admin->get<bool>();
    }
    checkpoint.devices.push_back(std::move(device));
  }
  if (version >= 2 && doc.contains(kPeersKey)) {
    if (!GetStrings(doc, kPeersKey, &checkpoint.peer_claim_uids) ||
        std::any_of(checkpoint.peer_claim_uids.begin(), checkpoint.peer_claim_uids.end(),
                    [](const std::string& uid) { return uid.empty(); })) {
      return DataLossError(where + ": " + kPeersKey + " is not a list of claim UIDs");
    }
  }
  // Recompute over the parsed body: any flipped byte in a value changes the digest.
  nlohmann::json body;
  if (version == 1) {
    body = {{"kind", kKind},
            {"schemaVersion", 1},
            {"bootId", checkpoint.boot_id},
            {"claim", ClaimToJson(checkpoint.claim)},
            {"devices", std::move(schema1_devices)},
            {"cdiSpec", doc.value("cdiSpec", nlohmann::json())}};
  } else {
    body = Body(checkpoint);
  }
  if (checksum != "sha256:" + Sha256Hex(body.dump())) {
    return DataLossError(where + ": checksum mismatch (file corrupted)");
  }
  return checkpoint;
}

}  // namespace efadra::claims
