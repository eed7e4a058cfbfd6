// The AEADs behind Vault's symmetric transit key types. The wire layout is Vault's:
// nonce (12 bytes) || ciphertext || tag (16 bytes).
#pragma once

#include <optional>
#include <string>

namespace vaultsim {

enum class KeyType { kAes128Gcm96, kAes256Gcm96, kChaCha20Poly1305 };

inline constexpr size_t kNonceSize = 12;
inline constexpr size_t kTagSize = 16;

const char* KeyTypeName(KeyType type);
std::optional<KeyType> KeyTypeFromName(const std::string& name);
size_t KeySize(KeyType type);

std::string NewKeyMaterial(KeyType type);
std::string AeadSeal(KeyType type, const std::string& key, const std::string& plaintext,
                     const std::string& aad);
// nullopt when the tag does not verify (or the input is shorter than nonce + tag).
std::optional<std::string> AeadOpen(KeyType type, const std::string& key, const std::string& sealed,
                                    const std::string& aad);

}  // namespace vaultsim
