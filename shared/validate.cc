#include "shared/validate.h"

namespace vkms::validate {
namespace {

bool IsBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

bool IsDnsLabel(std::string_view label) {
  if (label.empty() || label.size() > 63) return false;
  if (label.front() == '-' || label.back() == '-') return false;
  for (char c : label) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

}  // namespace

Status Plaintext(std::string_view plaintext) {
  if (plaintext.empty()) return Status(Code::kInvalidArgument, "plaintext is empty");
  if (plaintext.size() > kMaxPlaintext) {
    return Status(Code::kInvalidArgument, "plaintext is " + std::to_string(plaintext.size()) +
                                              " bytes; the limit is " +
                                              std::to_string(kMaxPlaintext));
  }
  return Status::Ok();
}

Status VaultCiphertext(std::string_view ct, uint64_t* version) {
  constexpr std::string_view kPrefix = "vault:v";
  if (ct.empty()) return Status(Code::kInvalidArgument, "ciphertext is empty");
  if (ct.size() > kMaxCiphertext) {
    return Status(Code::kInvalidArgument, "ciphertext is " + std::to_string(ct.size()) +
                                              " bytes; the limit is " +
                                              std::to_string(kMaxCiphertext));
  }
  if (ct.substr(0, kPrefix.size()) != kPrefix) {
    return Status(Code::kInvalidArgument,
                  "ciphertext is not Vault transit ciphertext (no vault:v prefix)");
  }
  std::string_view rest = ct.substr(kPrefix.size());
  size_t colon = rest.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon > 10) {
    return Status(Code::kInvalidArgument, "ciphertext has no valid key version");
  }
  uint64_t v = 0;
  for (char c : rest.substr(0, colon)) {
    if (c < '0' || c > '9')
      return Status(Code::kInvalidArgument, "ciphertext has no valid key version");
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > UINT32_MAX) return Status(Code::kInvalidArgument, "ciphertext key version out of range");
  std::string_view b64 = rest.substr(colon + 1);
  if (b64.empty() || b64.size() % 4 != 0) {
    return Status(Code::kInvalidArgument, "ciphertext payload is not padded base64");
  }
  size_t pad = 0;
  for (size_t i = 0; i < b64.size(); ++i) {
    char c = b64[i];
    if (c == '=') {
      // Padding only at the end, at most two characters.
      if (i < b64.size() - 2)
        return Status(Code::kInvalidArgument, "ciphertext payload is not padded base64");
      ++pad;
    } else if (pad > 0 || !IsBase64Char(c)) {
      return Status(Code::kInvalidArgument, "ciphertext payload is not padded base64");
    }
  }
  size_t decoded = b64.size() / 4 * 3 - pad;
  if (decoded < kMinVaultPayload) {
    return Status(Code::kInvalidArgument, "ciphertext payload is too short to be AES-GCM output");
  }
  *version = v == 0 ? 1 : v;
  return Status::Ok();
}

Status KeyId(std::string_view key_id) {
  if (key_id.size() > kMaxKeyId) {
    return Status(Code::kInvalidArgument, "key_id is " + std::to_string(key_id.size()) +
                                              " bytes; the limit is " + std::to_string(kMaxKeyId));
  }
  return Status::Ok();
}

Status Annotations(const std::map<std::string, std::string>& annotations) {
  size_t total = 0;
  for (const auto& [key, value] : annotations) {
    total += key.size() + value.size();
    if (key.empty() || key.size() > 253 || key.find('/') != std::string::npos) {
      return Status(Code::kInvalidArgument, "annotation key is not a DNS name");
    }
    size_t labels = 0, start = 0;
    std::string_view k(key);
    while (start <= k.size()) {
      size_t dot = k.find('.', start);
      std::string_view label =
          k.substr(start, dot == std::string_view::npos ? k.npos : dot - start);
      if (!IsDnsLabel(label)) {
        return Status(Code::kInvalidArgument, "annotation key is not a lowercase DNS name");
      }
      ++labels;
      if (dot == std::string_view::npos) break;
      start = dot + 1;
    }
    if (labels < 2) {
      return Status(Code::kInvalidArgument, "annotation key must be a fully qualified domain name");
    }
  }
  if (total > kMaxAnnotationsBytes) {
    return Status(Code::kInvalidArgument,
                  "annotations exceed " + std::to_string(kMaxAnnotationsBytes) + " bytes");
  }
  return Status::Ok();
}

std::string LoggableUid(std::string_view uid) {
  if (uid.empty()) return "-";
  if (uid.size() > 64) return "invalid";
  for (char c : uid) {
    bool ok =
        (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
    if (!ok) return "invalid";
  }
  return std::string(uid);
}

std::string LoggableKeyId(std::string_view key_id) {
  constexpr size_t kMax = 128;
  std::string out;
  for (char c : key_id.substr(0, kMax)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (key_id.size() > kMax) out += "...";
  return out;
}

}  // namespace vkms::validate
