// Vault's JSON answers as the broker parses them (broker/vault/http.cc's reader settings):
// KeyCache::ParseKeyMetadata on a keys/<name> answer, SafeVaultErrors on an error body, and
// ReadDecryptBatchAnswer / ReadEncryptBatchAnswer / ReadEncryptAnswer on Transit answers.
// Vault is reached over TLS but is not trusted to be well-formed: neither may crash, and what
// they return must stay within the limits their callers rely on.
#include <json/value.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "broker/vault/backend.h"
#include "broker/vault/backend_internal.h"
#include "broker/vault/http.h"
#include "broker/vault/key_cache.h"
#include "shared/validate.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_json.h"

namespace {

using vkms::broker::KeyCache;
using vkms::broker::KeyMetadata;

void CheckKeyMetadata(const Json::Value& data, const std::string& ns, const std::string& mount,
                      const std::string& key) {
  KeyMetadata meta;
  vkms::Status s = KeyCache::ParseKeyMetadata(data, ns, mount, key, &meta);
  if (!s.ok()) {
    FUZZ_CHECK(!s.message().empty());
    return;
  }
  FUZZ_CHECK(!meta.key_id.empty());
  FUZZ_CHECK(meta.key_id.size() <= vkms::validate::kMaxKeyId);
  FUZZ_CHECK(vkms::validate::KeyId(meta.key_id).ok());
  FUZZ_CHECK(meta.latest_version >= 1);
  FUZZ_CHECK(meta.min_encryption_version <= meta.latest_version);
  FUZZ_CHECK(meta.type.size() <= 64);
  auto latest = meta.creation.find(meta.latest_version);
  FUZZ_CHECK(latest != meta.creation.end());
  FUZZ_CHECK(meta.key_id ==
             vkms::broker::MakeKeyId(ns, mount, key, meta.latest_version, latest->second));
  std::string prefix = mount + "/" + key + ":v" + std::to_string(meta.latest_version) + ":";
  FUZZ_CHECK(meta.key_id.compare(0, prefix.size(), prefix) == 0);
  FUZZ_CHECK(meta.key_id.size() == prefix.size() + 32);
}

void CheckErrors(const Json::Value& json, size_t max_len) {
  std::string safe = vkms::broker::SafeVaultErrors(json, max_len);
  // "cut to max_len": max_len bytes of text, then "..." when something was cut.
  FUZZ_CHECK(safe.size() <= max_len + 3);
  for (char c : safe) {
    unsigned char u = static_cast<unsigned char>(c);
    FUZZ_CHECK(u >= 0x20 && u != 0x7f);
  }
}

// Whatever the answer, each item ends with a status, a plaintext only when ok (never the
// one it came in with), and no
// plaintext string left unwiped in the answer.
void CheckBatchAnswer(const Json::Value& json, long status, size_t n) {
  vkms::broker::VaultResponse r;
  r.status = status;
  r.json = json;
  std::vector<vkms::broker::VaultBackend::DecryptItem> items(n);
  std::vector<vkms::broker::VaultBackend::DecryptItem*> sent;
  for (auto& item : items) {
    item.plaintext = "stale";
    sent.push_back(&item);
  }
  vkms::broker::ReadDecryptBatchAnswer(&r, sent, "transit/kms");
  for (const auto& item : items) {
    FUZZ_CHECK(item.status.ok() || item.plaintext.empty());
    FUZZ_CHECK(item.status.ok() || !item.status.message().empty());
  }
  const Json::Value& results = r.json.isObject() && r.json["data"].isObject()
                                   ? r.json["data"]["batch_results"]
                                   : Json::Value::nullSingleton();
  for (Json::ArrayIndex i = 0; results.isArray() && i < results.size(); ++i) {
    if (!results[i].isObject() || !results[i]["plaintext"].isString()) continue;
    for (char c : results[i]["plaintext"].asString()) FUZZ_CHECK(c == '\0');
  }
}

// Whatever the answer, an Encrypt item ends either ok with a ciphertext of exactly the pinned
// version within the KMS v2 limit and the pinned key_id, or with an error and nothing else.
void CheckEncryptItem(const vkms::broker::VaultBackend::EncryptItem& item,
                      const std::string& key_id) {
  if (!item.status.ok()) {
    FUZZ_CHECK(!item.status.message().empty());
    FUZZ_CHECK(item.ciphertext.empty() && item.key_id.empty());
    return;
  }
  FUZZ_CHECK(item.ciphertext.rfind("vault:v7:", 0) == 0 && item.ciphertext.size() > 9);
  FUZZ_CHECK(item.ciphertext.size() <= vkms::validate::kMaxCiphertext);
  FUZZ_CHECK(item.key_id == key_id);
}

void CheckEncryptAnswers(const Json::Value& json, long status, size_t n) {
  const std::string key_id = "transit/kms:v7:0123456789abcdef0123456789abcdef";
  vkms::broker::VaultResponse r;
  r.status = status;
  r.json = json;
  std::vector<vkms::broker::VaultBackend::EncryptItem> items(n);
  std::vector<vkms::broker::VaultBackend::EncryptItem*> sent;
  for (auto& item : items) sent.push_back(&item);
  vkms::broker::ReadEncryptBatchAnswer(&r, sent, 7, key_id, "transit/kms");
  for (const auto& item : items) CheckEncryptItem(item, key_id);
  vkms::broker::VaultBackend::EncryptItem one;
  one.status = vkms::broker::ReadEncryptAnswer(r, 7, &one.ciphertext, "transit/kms");
  if (one.status.ok()) one.key_id = key_id;
  CheckEncryptItem(one, key_id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Json::Value json;
  if (!ParseFuzzJson(data, size, &json)) return 0;

  CheckErrors(json, 200);
  CheckErrors(json, 16);
  CheckErrors(json, 0);

  // KeyCache::Refresh hands over the answer's "data" member; a bare key object is fuzzed too.
  const Json::Value& body = json;
  const Json::Value& data_member =
      body.isObject() && body.isMember("data") ? body["data"] : Json::Value::nullSingleton();
  for (const Json::Value* d : {&data_member, &body}) {
    CheckKeyMetadata(*d, "", "transit", "kms");
    CheckKeyMetadata(*d, "team-a/sub", "kms/transit", "k8s-prod");
    // Long enough that the version's digits decide whether key_id fits in 1024 bytes.
    CheckKeyMetadata(*d, "", std::string(980, 'm'), "kms");
  }
  for (long status : {200L, 400L, 500L}) {
    for (size_t n : {1u, 2u, 3u}) {
      CheckBatchAnswer(json, status, n);
      CheckEncryptAnswers(json, status, n);
    }
  }
  return 0;
}
