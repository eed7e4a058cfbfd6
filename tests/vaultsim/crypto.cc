#include "crypto.h"

#include <openssl/evp.h>

#include <memory>
#include <stdexcept>

#include "encoding.h"

namespace vaultsim {
namespace {

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

const EVP_CIPHER* Cipher(KeyType type) {
  switch (type) {
    case KeyType::kAes128Gcm96:
      return EVP_aes_128_gcm();
    case KeyType::kAes256Gcm96:
      return EVP_aes_256_gcm();
    case KeyType::kChaCha20Poly1305:
      return EVP_chacha20_poly1305();
  }
  return nullptr;
}

const unsigned char* Bytes(const std::string& s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

const char* KeyTypeName(KeyType type) {
  switch (type) {
    case KeyType::kAes128Gcm96:
      return "aes128-gcm96";
    case KeyType::kAes256Gcm96:
      return "aes256-gcm96";
    case KeyType::kChaCha20Poly1305:
      return "chacha20-poly1305";
  }
  return "";
}

std::optional<KeyType> KeyTypeFromName(const std::string& name) {
  for (KeyType t : {KeyType::kAes128Gcm96, KeyType::kAes256Gcm96, KeyType::kChaCha20Poly1305}) {
    if (name == KeyTypeName(t)) return t;
  }
  return std::nullopt;
}

size_t KeySize(KeyType type) {
  return type == KeyType::kAes128Gcm96 ? 16 : 32;
}

std::string NewKeyMaterial(KeyType type) {
  return RandomBytes(KeySize(type));
}

std::string AeadSeal(KeyType type, const std::string& key, const std::string& plaintext,
                     const std::string& aad) {
  const std::string nonce = RandomBytes(kNonceSize);
  CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  std::string out = nonce;
  out.resize(kNonceSize + plaintext.size() + kTagSize);
  auto* dst = reinterpret_cast<unsigned char*>(out.data()) + kNonceSize;
  int len = 0;
  bool ok = ctx && EVP_EncryptInit_ex(ctx.get(), Cipher(type), nullptr, Bytes(key), Bytes(nonce)) &&
            (aad.empty() || EVP_EncryptUpdate(ctx.get(), nullptr, &len, Bytes(aad),
                                              static_cast<int>(aad.size()))) &&
            EVP_EncryptUpdate(ctx.get(), dst, &len, Bytes(plaintext),
                              static_cast<int>(plaintext.size())) &&
            EVP_EncryptFinal_ex(ctx.get(), dst + len, &len) &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kTagSize),
                                dst + plaintext.size());
  if (!ok) throw std::runtime_error("AEAD seal failed");
  return out;
}

std::optional<std::string> AeadOpen(KeyType type, const std::string& key, const std::string& sealed,
                                    const std::string& aad) {
  if (sealed.size() < kNonceSize + kTagSize) return std::nullopt;
  const size_t ct_len = sealed.size() - kNonceSize - kTagSize;
  std::string tag = sealed.substr(kNonceSize + ct_len);
  std::string plain(ct_len, '\0');
  auto* dst = reinterpret_cast<unsigned char*>(plain.data());
  CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int len = 0;
  bool ok =
      ctx && EVP_DecryptInit_ex(ctx.get(), Cipher(type), nullptr, Bytes(key), Bytes(sealed)) &&
      (aad.empty() ||
       EVP_DecryptUpdate(ctx.get(), nullptr, &len, Bytes(aad), static_cast<int>(aad.size()))) &&
      EVP_DecryptUpdate(ctx.get(), dst, &len, Bytes(sealed) + kNonceSize,
                        static_cast<int>(ct_len)) &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kTagSize),
                          tag.data()) &&
      EVP_DecryptFinal_ex(ctx.get(), dst + len, &len) > 0;
  if (!ok) return std::nullopt;
  return plain;
}

}  // namespace vaultsim
