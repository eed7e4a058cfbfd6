// Input rules for KMS v2 values, checked by the frontend before anything crosses the IPC and
// checked again by the broker (the frontend may be compromised). Pure functions: no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "shared/status.h"

namespace vkms::validate {

// kube-apiserver sends 32-byte DEK seeds; anything up to this size still yields Vault
// ciphertext under the 1024-byte limit the apiserver enforces on Encrypt responses.
constexpr size_t kMaxPlaintext = 512;
constexpr size_t kMaxCiphertext = 1024;  // kube-apiserver's own limit
constexpr size_t kMaxKeyId = 1024;       // kube-apiserver's own limit
constexpr size_t kMaxAnnotationsBytes = 32 * 1024;
// AES-GCM payload in Vault ciphertext: 12-byte nonce + at least 1 byte + 16-byte tag.
constexpr size_t kMinVaultPayload = 12 + 1 + 16;

Status Plaintext(std::string_view plaintext);

// Accepts exactly what Vault's transit decrypt can accept for an AES-GCM key:
// "vault:v<N>:" + standard padded base64. On success *version is N (v0 means 1).
Status VaultCiphertext(std::string_view ciphertext, uint64_t* version);

Status KeyId(std::string_view key_id);

// Annotation keys: lowercase RFC 1123 DNS names with at least two labels, no '/';
// total size of keys and values at most 32 KiB.
Status Annotations(const std::map<std::string, std::string>& annotations);

// The apiserver's uid is a UUID; anything else is replaced so it is safe to log.
std::string LoggableUid(std::string_view uid);

// A key_id for a log line: printable ASCII kept (key_ids hold no secrets), anything else as
// '?', at most 128 characters. Key_ids from Decrypt requests are the caller's bytes.
std::string LoggableKeyId(std::string_view key_id);

}  // namespace vkms::validate
