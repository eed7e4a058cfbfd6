// Pieces of broker/vault/backend.cc exposed for unit tests only; nothing else includes this.
#pragma once

#include <string>
#include <vector>

#include "broker/vault/backend.h"
#include "broker/vault/http.h"
#include "shared/status.h"

namespace vkms::broker {

enum class VaultOp { kEncrypt, kDecrypt };

// Maps a failed Transit answer (or transport failure) to the Status the apiserver sees.
// `key_name` is "<mount>/<key>". Messages carry Vault's own text but never request data.
Status MapVaultError(VaultOp op, const VaultResponse& r, const std::string& key_name);

// Reads Vault's answer to a batch decrypt of `sent` (item i sent with reference "i") into
// each item's plaintext and status, and wipes every plaintext left in the answer. An answer
// that does not match the request item for item fails every item.
void ReadDecryptBatchAnswer(VaultResponse* answer,
                            const std::vector<VaultBackend::DecryptItem*>& sent,
                            const std::string& key_name);

// The same for a batch encrypt of `sent` pinned to key `version`: each good item gets its
// ciphertext (checked to be of that version) and `key_id`.
void ReadEncryptBatchAnswer(VaultResponse* answer,
                            const std::vector<VaultBackend::EncryptItem*>& sent, uint64_t version,
                            const std::string& key_id, const std::string& key_name);

// Reads the answer to a single (not batch) encrypt pinned to key `version`.
Status ReadEncryptAnswer(const VaultResponse& r, uint64_t version, std::string* ciphertext,
                         const std::string& key_name);

// Trims leading and trailing '/' so "ns1/" and "/ns1" give the same key_id.
std::string TrimSlashes(const std::string& s);

// "" when the names can be used in Vault paths and key_id; otherwise the reason.
std::string ValidateVaultConfig(const VaultConfig& config);

}  // namespace vkms::broker
