#include "efadra/claims/checkpoint.h"

#include <openssl/evp.h>

#include <array>

namespace efadra::claims {
namespace {

constexpr char kKind[] = "EfaClaimCheckpoint";

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

nlohmann::json DeviceToJson(const PreparedDevice& device) {
  nlohmann::json out = {{"requestNames", device.request_names},
                        {"poolName", device.pool_name},
                        {"deviceName", device.device_name},
                        {"cdiDeviceIds", device.cdi_device_ids}};
  if (device.share_id.has_value()) out["shareId"] = *device.share_id;
  return out;
}

// The checksummed body: everything but the checksum, in nlohmann's sorted-key dump.
nlohmann::json Body(const ClaimCheckpoint& checkpoint) {
  nlohmann::json devices = nlohmann::json::array();
  for (const PreparedDevice& device : checkpoint.devices) devices.push_back(DeviceToJson(device));
  return {{"kind", kKind},
          {"schemaVersion", kCheckpointSchemaVersion},
          {"bootId", checkpoint.boot_id},
          {"claim",
           {{"namespace", checkpoint.claim.namespace_name},
            {"name", checkpoint.claim.name},
            {"uid", checkpoint.claim.uid}}},
          {"devices", std::move(devices)},
          {"cdiSpec", checkpoint.cdi_spec}};
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
  auto version = doc.find("schemaVersion");
  if (version == doc.end() || !version->is_number_integer()) {
    return DataLossError(where + ": no schemaVersion");
  }
  if (version->get<int64_t>() > kCheckpointSchemaVersion) {
    return UnimplementedError(where + ": schemaVersion " + std::to_string(version->get<int64_t>()) +
                              " is newer than this driver understands (" +
                              std::to_string(kCheckpointSchemaVersion) + ")");
  }
  std::string kind, checksum;
  if (!GetString(doc, "kind", &kind) || kind != kKind) {
    return DataLossError(where + ": kind is not " + kKind);
  }
  if (!GetString(doc, "checksum", &checksum)) return DataLossError(where + ": no checksum");

  ClaimCheckpoint checkpoint;
  const nlohmann::json claim = doc.value("claim", nlohmann::json());
  if (!claim.is_object() || !GetString(claim, "namespace", &checkpoint.claim.namespace_name) ||
      !GetString(claim, "name", &checkpoint.claim.name) ||
      !GetString(claim, "uid", &checkpoint.claim.uid) || !GetString(doc, "bootId", &checkpoint.boot_id)) {
    return DataLossError(where + ": claim or bootId missing");
  }
  auto devices = doc.find("devices");
  if (devices == doc.end() || !devices->is_array()) return DataLossError(where + ": no devices");
  for (const auto& item : *devices) {
    PreparedDevice device;
    if (!item.is_object() || !GetStrings(item, "requestNames", &device.request_names) ||
        !GetString(item, "poolName", &device.pool_name) ||
        !GetString(item, "deviceName", &device.device_name) ||
        !GetStrings(item, "cdiDeviceIds", &device.cdi_device_ids)) {
      return DataLossError(where + ": malformed device entry");
    }
    std::string share_id;
    if (GetString(item, "shareId", &share_id)) device.share_id = share_id;
    checkpoint.devices.push_back(std::move(device));
  }
  checkpoint.cdi_spec = doc.value("cdiSpec", nlohmann::json());
  // Recompute over the parsed body: any flipped byte in a value changes the digest.
  const std::string expected = "sha256:" + Sha256Hex(Body(checkpoint).dump());
  if (checksum != expected) return DataLossError(where + ": checksum mismatch (file corrupted)");
  return checkpoint;
}

}  // namespace efadra::claims
