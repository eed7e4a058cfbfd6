// validate::VaultCiphertext against an independent model of Vault transit ciphertext, and
// broker/vault/base64.h on the same bytes. The broker trusts this check to keep malformed
// ciphertext from a possibly compromised frontend away from Vault.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "broker/vault/base64.h"
#include "shared/validate.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using vkms::broker::Base64Decode;
using vkms::broker::Base64Encode;
namespace validate = vkms::validate;

// "vault:v<1..10 digits, at most UINT32_MAX>:" + base64 that Base64Decode accepts, decoding to
// at least kMinVaultPayload bytes; at most kMaxCiphertext bytes in all. v0 means version 1.
bool ModelAccepts(std::string_view ct, uint64_t* version) {
  constexpr std::string_view kPrefix = "vault:v";
  if (ct.empty() || ct.size() > validate::kMaxCiphertext) return false;
  if (ct.substr(0, kPrefix.size()) != kPrefix) return false;
  std::string_view rest = ct.substr(kPrefix.size());
  size_t colon = rest.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon > 10) return false;
  uint64_t v = 0;
  for (char c : rest.substr(0, colon)) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > UINT32_MAX) return false;
  std::string payload;
  std::string_view b64 = rest.substr(colon + 1);
  if (b64.empty() || !Base64Decode(b64, &payload)) return false;
  if (payload.size() < validate::kMinVaultPayload) return false;
  *version = v == 0 ? 1 : v;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);

  uint64_t version = 0;
  bool accepted = validate::VaultCiphertext(input, &version).ok();
  uint64_t model_version = 0;
  bool model = ModelAccepts(input, &model_version);
  FUZZ_CHECK(accepted == model);
  if (accepted) {
    FUZZ_CHECK(input.size() <= validate::kMaxCiphertext);
    FUZZ_CHECK(input.substr(0, 7) == "vault:v");
    FUZZ_CHECK(version >= 1 && version <= UINT32_MAX);
    FUZZ_CHECK(version == model_version);
    std::string_view b64 = input.substr(input.find(':', 7) + 1);
    std::string payload;
    FUZZ_CHECK(Base64Decode(b64, &payload));
    FUZZ_CHECK(payload.size() >= validate::kMinVaultPayload);
    size_t pad = b64.size() - b64.find_last_not_of('=') - 1;
    FUZZ_CHECK(payload.size() == b64.size() / 4 * 3 - pad);
  }

  // Base64 on arbitrary bytes: encoding then decoding gives them back, canonically.
  std::string encoded = Base64Encode(input);
  FUZZ_CHECK(encoded.size() == (size + 2) / 3 * 4);
  std::string decoded;
  FUZZ_CHECK(Base64Decode(encoded, &decoded));
  FUZZ_CHECK(decoded == input);
  // Arbitrary text: whatever Base64Decode accepts has the length its padding implies.
  std::string out;
  if (Base64Decode(input, &out) && !input.empty()) {
    size_t pad = input.size() - input.find_last_not_of('=') - 1;
    FUZZ_CHECK(input.size() % 4 == 0 && pad <= 2);
    FUZZ_CHECK(out.size() == input.size() / 4 * 3 - pad);
  } else if (!input.empty()) {
    FUZZ_CHECK(out.empty());
  }
  return 0;
}
