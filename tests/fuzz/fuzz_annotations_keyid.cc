// The KMS v2 value checks both processes run (shared/validate.h) against independent models:
// Annotations, KeyId, Plaintext, and LoggableUid, whose output goes into logs verbatim.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "shared/validate.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace validate = vkms::validate;

bool IsUidChar(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

// A lowercase RFC 1123 DNS name with at least two labels, at most 253 bytes.
bool ModelDnsName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t labels = 0;
  size_t start = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i < name.size() && name[i] != '.') continue;
    std::string_view label = name.substr(start, i - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char c : label) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    }
    ++labels;
    start = i + 1;
  }
  return labels >= 2;
}

bool ModelAnnotations(const std::map<std::string, std::string>& annotations) {
  size_t total = 0;
  for (const auto& [key, value] : annotations) {
    if (!ModelDnsName(key)) return false;
    total += key.size() + value.size();
  }
  return total <= validate::kMaxAnnotationsBytes;
}

void CheckString(std::string_view s) {
  FUZZ_CHECK(validate::KeyId(s).ok() == (s.size() <= validate::kMaxKeyId));
  FUZZ_CHECK(validate::Plaintext(s).ok() == (!s.empty() && s.size() <= validate::kMaxPlaintext));

  std::string uid = validate::LoggableUid(s);
  FUZZ_CHECK(uid.size() <= 64);
  bool valid = !s.empty() && s.size() <= 64;
  for (char c : s) valid = valid && IsUidChar(c);
  if (s.empty()) {
    FUZZ_CHECK(uid == "-");
  } else if (valid) {
    FUZZ_CHECK(uid == s);
  } else {
    FUZZ_CHECK(uid == "invalid");
  }
  for (char c : uid) FUZZ_CHECK(IsUidChar(c));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  CheckString(std::string_view(reinterpret_cast<const char*>(data), size));

  // The same bytes as an annotation map: entries of random-length key and value.
  FuzzedDataProvider fdp(data, size);
  std::map<std::string, std::string> annotations;
  while (fdp.remaining_bytes() > 0) {
    std::string key = fdp.ConsumeRandomLengthString(300);
    std::string value = fdp.ConsumeRandomLengthString(40000);
    CheckString(key);
    annotations[key] = value;
  }
  FUZZ_CHECK(validate::Annotations(annotations).ok() == ModelAnnotations(annotations));
  return 0;
}
