// Vault's JSON answers as the broker parses them (broker/vault_http.cc's reader settings):
// KeyCache::ParseKeyMetadata on a keys/<name> answer, and SafeVaultErrors on an error body.
// Vault is reached over TLS but is not trusted to be well-formed: neither may crash, and what
// they return must stay within the limits their callers rely on.
#include <json/value.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "broker/key_cache.h"
#include "broker/vault_backend.h"
#include "broker/vault_http.h"
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
  return 0;
}
