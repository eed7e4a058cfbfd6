// Standard padded base64 (RFC 4648 section 4), the encoding Vault Transit uses for plaintext
// and inside "vault:vN:" ciphertext. Broker-internal: the frontend never needs base64.
//
// Callers: broker/vault/backend.cc. Both functions work on arbitrary bytes and never log; callers
// holding secrets wipe the outputs themselves.
#pragma once

#include <string>
#include <string_view>

namespace vkms::broker {

std::string Base64Encode(std::string_view bytes);

// Strict: only the standard alphabet, length a multiple of 4, '=' only as final padding, no
// whitespace. Returns false (and leaves *out empty) on anything else.
bool Base64Decode(std::string_view text, std::string* out);

}  // namespace vkms::broker
