// The transit secrets engine for symmetric AEAD keys, following Vault's path_keys.go,
// path_keys_config.go, path_rotate.go, path_encrypt.go, path_decrypt.go and keysutil.Policy.
#include <algorithm>
#include <set>

#include "encoding.h"
#include "fields.h"
#include "handlers.h"
#include "text.h"

namespace vaultsim {
namespace {

constexpr char kMountType[] = "transit";

Json::Value KeyData(const std::string& name, const TransitKey& k) {
  Json::Value d(Json::objectValue);
  d["name"] = name;
  d["type"] = KeyTypeName(k.type);
  d["derived"] = false;
  d["deletion_allowed"] = k.deletion_allowed;
  d["exportable"] = k.exportable;
  d["allow_plaintext_backup"] = k.allow_plaintext_backup;
  d["latest_version"] = k.latest_version;
  d["min_available_version"] = k.min_available_version;
  d["min_decryption_version"] = k.min_decryption_version;
  d["min_encryption_version"] = k.min_encryption_version;
  d["supports_encryption"] = true;
  d["supports_decryption"] = true;
  d["supports_derivation"] = true;
  d["supports_signing"] = false;
  d["auto_rotate_period"] = Json::Int64(k.auto_rotate_period);
  d["imported_key"] = false;
  d["keys"] = Json::Value(Json::objectValue);
  for (const auto& [version, v] : k.versions) {
    d["keys"][std::to_string(version)] = Json::Int64(v.created);
  }
  return d;
}

// Key types Vault knows but the simulator does not implement: refused loudly, never faked.
bool IsUnsupportedVaultKeyType(const std::string& type) {
  static const std::set<std::string> kTypes = {
      "ecdsa-p256",  "ecdsa-p384",  "ecdsa-p521", "ed25519",     "rsa-2048",
      "rsa-3072",    "rsa-4096",    "hmac",       "managed_key", "aes128-cmac",
      "aes192-cmac", "aes256-cmac", "ml-dsa",     "hybrid"};
  return kTypes.count(type) > 0;
}

std::string UnsupportedTypeText(const std::string& type) {
  return "vaultsim supports only aes128-gcm96, aes256-gcm96 and chacha20-poly1305 keys, not \"" +
         type + "\"";
}

VaultResponse WriteKey(Ctx& c, const std::string& name) {
  FieldReader f(c.req.data);
  const std::string type = f.String("type", "aes256-gcm96");
  const bool derived = f.Bool("derived");
  const bool convergent = f.Bool("convergent_encryption");
  const bool exportable = f.Bool("exportable");
  const bool plaintext_backup = f.Bool("allow_plaintext_backup");
  const int64_t rotate = f.DurationSeconds("auto_rotate_period");
  const int64_t key_size = f.Int("key_size");
  if (!f.ok()) return Error(400, f.error());
  if (rotate != 0 && rotate < 3600) {
    return Error(400, "auto rotate period must be 0 to disable or at least an hour");
  }
  if (!derived && convergent) {
    return Error(400, "convergent encryption requires derivation to be enabled");
  }
  std::optional<KeyType> kt = KeyTypeFromName(type);
  if (!kt) {
    return Error(400, IsUnsupportedVaultKeyType(type) ? UnsupportedTypeText(type)
                                                      : "unknown key type " + type);
  }
  if (key_size != 0) return Error(400, "key_size is not valid for algorithm " + type);
  if (derived) return Error(400, "vaultsim does not support derived keys");

  std::vector<std::string> warnings;
  auto it = c.mount->keys.find(name);
  if (it != c.mount->keys.end()) {
    warnings.push_back("key " + name + " already existed");
  } else {
    TransitKey key;
    key.type = *kt;
    key.exportable = exportable;
    key.allow_plaintext_backup = plaintext_backup;
    key.auto_rotate_period = rotate;
    key.Rotate(c.st.Now());
    it = c.mount->keys.emplace(name, std::move(key)).first;
  }
  return Respond(KeyData(name, it->second), kMountType, warnings);
}

VaultResponse DeleteKey(Ctx& c, const std::string& name) {
  auto it = c.mount->keys.find(name);
  std::string why;
  if (it == c.mount->keys.end()) {
    why = "could not delete key; not found";
  } else if (!it->second.deletion_allowed) {
    why = "deletion is not allowed for this key";
  } else {
    // Versions die with the key: a key recreated under the same name starts again at 1.
    c.mount->keys.erase(it);
    return NoContent();
  }
  return Error(400, "error deleting policy " + name + ": " + why);
}

VaultResponse ConfigureKey(Ctx& c, const std::string& name) {
  auto it = c.mount->keys.find(name);
  if (it == c.mount->keys.end()) {
    return Error(400, "no existing key named " + name + " could be found");
  }
  // Validate on a copy so a rejected request leaves the key untouched, as Vault's rollback does.
  TransitKey k = it->second;
  FieldReader f(c.req.data);
  std::vector<std::string> warnings;
  if (f.Has("min_decryption_version")) {
    int64_t v = f.Int("min_decryption_version");
    if (!f.ok()) return Error(400, f.error());
    if (v < 0) return Error(400, "min decryption version cannot be negative");
    if (v == 0) {
      v = 1;
      warnings.push_back(
          "since Vault 0.3, transit key numbering starts at 1; forcing minimum to 1");
    }
    if (v != k.min_decryption_version) {
      if (v > k.latest_version) {
        return Error(400, "cannot set min decryption version of " + std::to_string(v) +
                              ", latest key version is " + std::to_string(k.latest_version));
      }
      k.min_decryption_version = static_cast<int>(v);
    }
  }
  if (f.Has("min_encryption_version")) {
    int64_t v = f.Int("min_encryption_version");
    if (!f.ok()) return Error(400, f.error());
    if (v < 0) return Error(400, "min encryption version cannot be negative");
    if (v != k.min_encryption_version) {
      if (v > k.latest_version) {
        return Error(400, "cannot set min encryption version of " + std::to_string(v) +
                              ", latest key version is " + std::to_string(k.latest_version));
      }
      k.min_encryption_version = static_cast<int>(v);
    }
  }
  if (k.min_encryption_version > 0 && k.min_encryption_version < k.min_decryption_version) {
    return Error(400, "cannot set min encryption/decryption values; min encryption version of " +
                          std::to_string(k.min_encryption_version) +
                          " must be greater than or equal to min decryption version of " +
                          std::to_string(k.min_decryption_version));
  }
  if (f.Has("deletion_allowed")) k.deletion_allowed = f.Bool("deletion_allowed");
  // Once set these cannot be unset.
  if (f.Bool("exportable")) k.exportable = true;
  if (f.Bool("allow_plaintext_backup")) k.allow_plaintext_backup = true;
  if (f.Has("auto_rotate_period")) {
    const int64_t rotate = f.DurationSeconds("auto_rotate_period");
    if (f.ok() && rotate != 0 && rotate < 3600) {
      return Error(400, "auto rotate period must be 0 to disable or at least an hour");
    }
    k.auto_rotate_period = rotate;
  }
  if (!f.ok()) return Error(400, f.error());
  it->second = std::move(k);
  return Respond(KeyData(name, it->second), kMountType, warnings);
}

struct BatchItem {
  std::string plaintext;
  std::string ciphertext;
  std::string context;
  std::string nonce;
  std::string associated_data;
  std::string reference;
  int64_t key_version = 0;
};

struct ItemResult {
  std::string text;  // ciphertext or plaintext
  int64_t key_version = 0;
  std::string error;
};

// Go's %T for a value decoded from JSON the way Vault decodes request bodies.
std::string GoTypeName(const Json::Value& v) {
  if (v.isNull()) return "<nil>";
  if (v.isString()) return "string";
  if (v.isBool()) return "bool";
  if (v.isNumeric()) return "json.Number";
  if (v.isArray()) return "[]interface {}";
  return "map[string]interface {}";
}

// Vault's decodeBatchRequestItems, including its mapstructure-style error text.
std::string DecodeBatch(const Json::Value& raw, bool encrypt, std::vector<BatchItem>* out) {
  if (!raw.isArray()) return "source data must be an array or slice, got " + GoTypeName(raw);
  std::vector<std::string> errs;
  for (Json::ArrayIndex i = 0; i < raw.size(); ++i) {
    const Json::Value& item = raw[i];
    const std::string idx = "[" + std::to_string(i) + "]";
    if (!item.isObject()) return idx + " expected a map, got '" + GoTypeName(item) + "'";
    BatchItem b;
    auto str = [&](const char* field, std::string* dst, bool null_ok) {
      if (!item.isMember(field) || (null_ok && item[field].isNull())) return false;
      if (item[field].isString()) {
        *dst = item[field].asString();
      } else {
        errs.push_back("'" + idx + "." + field +
                       "' expected type 'string', got unconvertible type '" +
                       GoTypeName(item[field]) + "'");
      }
      return true;
    };
    str("context", &b.context, true);
    if (!str("ciphertext", &b.ciphertext, true) && !encrypt) {
      errs.push_back("'" + idx + ".ciphertext' missing ciphertext to decrypt");
    }
    if (!str("plaintext", &b.plaintext, false) && encrypt) {
      errs.push_back("'" + idx + ".plaintext' missing plaintext to encrypt");
    }
    str("nonce", &b.nonce, true);
    str("associated_data", &b.associated_data, true);
    str("reference", &b.reference, true);
    if (item.isMember("key_version") && !item["key_version"].isNull()) {
      const Json::Value& kv = item["key_version"];
      if (kv.isIntegral()) {
        b.key_version = kv.asInt64();
      } else {
        errs.push_back("'" + idx + ".key_version' expected type 'int', got unconvertible type '" +
                       GoTypeName(kv) + "'");
      }
    }
    out->push_back(std::move(b));
  }
  if (errs.empty()) return "";
  std::string msg = std::to_string(errs.size()) + " error(s) decoding:\n";
  for (const auto& e : errs) msg += "\n* " + e;
  return msg;
}

bool ReadBatchOrSingle(Ctx& c, bool encrypt, std::vector<BatchItem>* items, bool* batch,
                       VaultResponse* fail) {
  const Json::Value& d = c.req.data;
  *batch = d.isMember("batch_input") && !d["batch_input"].isNull();
  if (*batch) {
    std::string err = DecodeBatch(d["batch_input"], encrypt, items);
    if (!err.empty()) {
      *fail = Error(500, MultiError({"failed to parse batch input: " + err}));
      return false;
    }
    if (items->empty()) {
      *fail = Error(400, "missing batch input to process");
      return false;
    }
    return true;
  }
  FieldReader f(d);
  BatchItem b;
  b.plaintext = f.String("plaintext");
  b.ciphertext = f.String("ciphertext");
  b.context = f.String("context");
  b.nonce = f.String("nonce");
  b.associated_data = f.String("associated_data");
  b.key_version = f.Int("key_version");
  if (!f.ok()) {
    *fail = Error(400, f.error());
    return false;
  }
  if (encrypt && !d.isMember("plaintext")) {
    *fail = Error(400, "missing plaintext to encrypt");
    return false;
  }
  if (!encrypt && b.ciphertext.empty()) {
    *fail = Error(400, "missing ciphertext to decrypt");
    return false;
  }
  items->push_back(std::move(b));
  return true;
}

// Vault's batchRequestResponse: any failed item makes the whole answer a 400 (500 for internal
// errors) carrying the full body, unless partial_failure_response_code overrides it.
VaultResponse FinishBatch(Ctx& c, Json::Value data, std::vector<std::string> warnings,
                          bool successes, bool user_error, bool internal_error) {
  if (!user_error && !internal_error) return Respond(std::move(data), kMountType, warnings);
  int code = user_error ? 400 : 500;
  FieldReader f(c.req.data);
  if (f.Has("partial_failure_response_code") && successes) {
    int64_t override_code = f.Int("partial_failure_response_code");
    if (override_code < 1 || override_code > 599) {
      warnings.push_back(
          "invalid HTTP response code override from partial_failure_response_code, "
          "reverting to " +
          std::to_string(code));
    } else {
      code = static_cast<int>(override_code);
    }
  }
  // Vault renders this body without mount_type.
  return RespondWithStatus(code, std::move(data), "", warnings);
}

// Decodes the per-item base64 inputs the way pathEncryptWrite/pathDecryptWrite pre-check them.
bool PrecheckItem(const BatchItem& item, bool encrypt, std::string* error) {
  size_t off = 0;
  if (encrypt && !Base64Decode(item.plaintext, &off)) {
    *error = Base64ErrorText(off);
    return false;
  }
  if (!encrypt && item.ciphertext.empty()) {
    *error = "missing ciphertext to decrypt";
    return false;
  }
  for (const std::string* field : {&item.context, &item.nonce}) {
    if (!field->empty() && !Base64Decode(*field, &off)) {
      *error = Base64ErrorText(off);
      return false;
    }
  }
  return true;
}

// keysutil's associated-data factory failure is an internal error (500) in Vault.
bool DecodeAssociatedData(const BatchItem& item, std::string* aad, std::string* error) {
  size_t off = 0;
  auto decoded = Base64Decode(item.associated_data, &off);
  if (!decoded) {
    *error =
        "unable to get associated_data/additional_data from factory[0]: " + Base64ErrorText(off);
    return false;
  }
  *aad = *decoded;
  return true;
}

VaultResponse Encrypt(Ctx& c, const std::string& name) {
  std::vector<BatchItem> items;
  bool batch = false;
  VaultResponse fail;
  if (!ReadBatchOrSingle(c, true, &items, &batch, &fail)) return fail;

  std::vector<ItemResult> results(items.size());
  const bool context_set = !items[0].context.empty();
  bool user_error = false, internal_error = false, successes = false;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].context.empty() == context_set) {
      return Error(400, "context should be set either in all the request blocks or in none");
    }
    if (!PrecheckItem(items[i], true, &results[i].error)) user_error = true;
  }

  std::vector<std::string> warnings;
  auto it = c.mount->keys.find(name);
  if (c.op == Op::kCreate) {
    FieldReader f(c.req.data);
    const std::string type = f.String("type", "aes256-gcm96");
    const bool convergent = f.Bool("convergent_encryption");
    if (!f.ok()) return Error(400, f.error());
    if (convergent && !context_set) {
      return Error(
          400, "convergent encryption requires derivation to be enabled, so context is required");
    }
    std::optional<KeyType> kt = KeyTypeFromName(type);
    if (!kt) {
      if (type.rfind("ecdsa-", 0) == 0) {
        return Error(400, "key type " + type + " not supported for this operation");
      }
      return Error(400, IsUnsupportedVaultKeyType(type) ? UnsupportedTypeText(type)
                                                        : "unknown key type " + type);
    }
    if (context_set) return Error(400, "vaultsim does not support derived keys");
    if (it == c.mount->keys.end()) {
      TransitKey key;
      key.type = *kt;
      key.Rotate(c.st.Now());
      it = c.mount->keys.emplace(name, std::move(key)).first;
    } else {
      warnings.push_back(
          "Attempted creation of the key during the encrypt operation, but it was created "
          "beforehand");
    }
  }
  if (it == c.mount->keys.end()) return Error(400, "encryption key not found");
  const TransitKey& key = it->second;

  for (size_t i = 0; i < items.size(); ++i) {
    ItemResult& r = results[i];
    if (!r.error.empty()) continue;
    const BatchItem& item = items[i];
    std::string aad;
    int64_t ver = item.key_version;
    if (!item.nonce.empty()) {
      r.error = "provided nonce not allowed for this key";
    } else if (ver < 0) {
      r.error = "requested version for encryption is negative";
    } else if (ver > key.latest_version) {
      r.error = "requested version for encryption is higher than the latest key version";
    } else if (ver != 0 && ver < key.min_encryption_version) {
      r.error = "requested version for encryption is less than the minimum encryption key version";
    }
    if (!r.error.empty()) {
      user_error = true;
      continue;
    }
    if (!DecodeAssociatedData(item, &aad, &r.error)) {
      internal_error = true;
      continue;
    }
    if (ver == 0) ver = key.latest_version;
    const std::string sealed = AeadSeal(key.type, key.versions.at(static_cast<int>(ver)).material,
                                        *Base64Decode(item.plaintext), aad);
    r.text = "vault:v" + std::to_string(ver) + ":" + Base64Encode(sealed);
    r.key_version = ver;
    successes = true;
  }

  Json::Value data(Json::objectValue);
  if (!batch) {
    if (!results[0].error.empty()) {
      return internal_error ? Error(500, MultiError({results[0].error}))
                            : Error(400, results[0].error);
    }
    data["ciphertext"] = results[0].text;
    data["key_version"] = Json::Int64(results[0].key_version);
    return Respond(data, kMountType, warnings);
  }
  data["batch_results"] = Json::Value(Json::arrayValue);
  for (size_t i = 0; i < items.size(); ++i) {
    Json::Value r(Json::objectValue);
    if (!results[i].text.empty()) r["ciphertext"] = results[i].text;
    if (results[i].key_version != 0) r["key_version"] = Json::Int64(results[i].key_version);
    if (!results[i].error.empty()) r["error"] = results[i].error;
    r["reference"] = items[i].reference;
    data["batch_results"].append(r);
  }
  return FinishBatch(c, data, warnings, successes, user_error, internal_error);
}

// keysutil.Policy.Decrypt for AEAD keys: same checks, same order, same texts.
bool DecryptOne(const TransitKey& key, const BatchItem& item, std::string* plaintext,
                std::string* error, bool* internal) {
  const std::string& ct = item.ciphertext;
  const std::string prefix = "vault:v";
  if (ct.compare(0, prefix.size(), prefix) != 0) {
    *error = "invalid ciphertext: no prefix";
    return false;
  }
  const std::string rest = ct.substr(prefix.size());
  const size_t colon = rest.find(':');
  if (colon == std::string::npos) {
    *error = "invalid ciphertext: wrong number of fields";
    return false;
  }
  int64_t ver = 0;
  if (!ParseGoInt(rest.substr(0, colon), &ver)) {
    *error = "invalid ciphertext: version number could not be decoded";
    return false;
  }
  if (ver == 0) ver = 1;  // ciphertexts from before key versions started at 1
  if (ver > key.latest_version) {
    *error = "invalid ciphertext: version is too new";
    return false;
  }
  if (key.min_decryption_version > 0 && ver < key.min_decryption_version) {
    *error = "ciphertext or signature version is disallowed by policy (too old)";
    return false;
  }
  auto decoded = Base64Decode(rest.substr(colon + 1));
  if (!decoded) {
    *error = "invalid ciphertext: could not decode base64";
    return false;
  }
  std::string aad;
  if (!DecodeAssociatedData(item, &aad, error)) {
    *internal = true;
    return false;
  }
  if (decoded->size() < kNonceSize) {
    *error = "invalid ciphertext length";
    return false;
  }
  auto it = key.versions.find(static_cast<int>(ver));
  auto opened = it == key.versions.end() ? std::nullopt
                                         : AeadOpen(key.type, it->second.material, *decoded, aad);
  if (!opened) {
    *error = "cipher: message authentication failed";
    return false;
  }
  *plaintext = Base64Encode(*opened);
  return true;
}

VaultResponse Decrypt(Ctx& c, const std::string& name) {
  std::vector<BatchItem> items;
  bool batch = false;
  VaultResponse fail;
  if (!ReadBatchOrSingle(c, false, &items, &batch, &fail)) return fail;

  std::vector<ItemResult> results(items.size());
  const bool context_set = !items[0].context.empty();
  bool user_error = false, internal_error = false, successes = false;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].context.empty() == context_set) {
      return Error(400, "context should be set either in all the request blocks or in none");
    }
    if (!PrecheckItem(items[i], false, &results[i].error)) user_error = true;
  }
  auto it = c.mount->keys.find(name);
  if (it == c.mount->keys.end()) return Error(400, "encryption key not found");

  for (size_t i = 0; i < items.size(); ++i) {
    if (!results[i].error.empty()) continue;
    bool internal = false;
    if (DecryptOne(it->second, items[i], &results[i].text, &results[i].error, &internal)) {
      successes = true;
    } else {
      (internal ? internal_error : user_error) = true;
    }
  }

  Json::Value data(Json::objectValue);
  if (!batch) {
    if (!results[0].error.empty()) {
      return internal_error ? Error(500, MultiError({results[0].error}))
                            : Error(400, results[0].error);
    }
    data["plaintext"] = results[0].text;
    return Respond(data, kMountType);
  }
  data["batch_results"] = Json::Value(Json::arrayValue);
  for (size_t i = 0; i < items.size(); ++i) {
    Json::Value r(Json::objectValue);
    r["plaintext"] = results[i].text;
    if (!results[i].error.empty()) r["error"] = results[i].error;
    r["reference"] = items[i].reference;
    data["batch_results"].append(r);
  }
  return FinishBatch(c, data, {}, successes, user_error, internal_error);
}

}  // namespace

std::optional<bool> TransitExists(const Mount& mount, const std::string& sub) {
  const auto parts = SplitPath(sub);
  if (parts.size() == 2 && parts[0] == "encrypt" && IsGenericName(parts[1])) {
    return mount.keys.count(parts[1]) > 0;
  }
  return std::nullopt;
}

VaultResponse HandleTransit(Ctx& c) {
  const auto parts = SplitPath(c.sub);
  const bool named = parts.size() >= 2 && IsGenericName(parts[1]);
  if (parts[0] == "keys" && (parts.size() == 1 || (parts.size() == 2 && parts[1].empty()))) {
    if (c.op != Op::kList) return UnsupportedOperation();
    std::vector<std::string> names;
    for (const auto& [name, key] : c.mount->keys) names.push_back(name);
    return ListResponse(names, kMountType);
  }
  if (parts[0] == "keys" && named && parts.size() == 2) {
    switch (c.op) {
      case Op::kRead: {
        auto it = c.mount->keys.find(parts[1]);
        if (it == c.mount->keys.end()) return EmptyError(404);
        return Respond(KeyData(parts[1], it->second), kMountType);
      }
      case Op::kCreate:
      case Op::kUpdate:
        return WriteKey(c, parts[1]);
      case Op::kDelete:
        return DeleteKey(c, parts[1]);
      case Op::kList:
        return UnsupportedOperation();
    }
  }
  if (parts[0] == "keys" && named && parts.size() == 3 &&
      (parts[2] == "config" || parts[2] == "rotate")) {
    if (c.op != Op::kUpdate && c.op != Op::kCreate) return UnsupportedOperation();
    if (parts[2] == "config") return ConfigureKey(c, parts[1]);
    auto it = c.mount->keys.find(parts[1]);
    if (it == c.mount->keys.end()) return Error(400, "key not found");
    it->second.Rotate(c.st.Now());
    return Respond(KeyData(parts[1], it->second), kMountType);
  }
  if ((parts[0] == "encrypt" || parts[0] == "decrypt") && named && parts.size() == 2) {
    if (c.op != Op::kUpdate && !(c.op == Op::kCreate && parts[0] == "encrypt")) {
      return UnsupportedOperation();
    }
    return parts[0] == "encrypt" ? Encrypt(c, parts[1]) : Decrypt(c, parts[1]);
  }
  return UnsupportedPath();
}

}  // namespace vaultsim
