#include "broker/vault/base64.h"

#include <openssl/evp.h>

#include "shared/secret.h"

namespace vkms::broker {
namespace {

bool IsBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

}  // namespace

std::string Base64Encode(std::string_view bytes) {
  std::string out;
  if (bytes.empty()) return out;
  // EVP_EncodeBlock writes 4 * ceil(n / 3) characters plus a NUL.
  out.resize(4 * ((bytes.size() + 2) / 3) + 1);
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(&out[0]),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

bool Base64Decode(std::string_view text, std::string* out) {
  out->clear();
  if (text.empty()) return true;
  // EVP_DecodeBlock tolerates whitespace and does not report padding; validate here so that
  // only canonical Vault encodings pass.
  if (text.size() % 4 != 0) return false;
  size_t pad = 0;
  if (text.back() == '=') pad = (text[text.size() - 2] == '=') ? 2 : 1;
  for (size_t i = 0; i < text.size() - pad; ++i) {
    if (!IsBase64Char(text[i])) return false;
  }
  // Decode straight into *out: the result may be a secret, so no intermediate copies.
  out->resize(3 * (text.size() / 4) + 1);
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(&(*out)[0]),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0 || static_cast<size_t>(n) < pad) {
    WipeString(out);
    return false;
  }
  out->resize(static_cast<size_t>(n) - pad);
  return true;
}

}  // namespace vkms::broker
