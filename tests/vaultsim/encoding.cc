#include "encoding.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>
#include <stdexcept>

namespace vaultsim {
namespace {

int Base64Value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

bool IsNewline(unsigned char c) {
  return c == '\n' || c == '\r';
}

// One step of Go's decodeQuantum. Returns false on error with *err_at set; *si advances.
// Go keeps decoding after "trailing garbage" only to report it, so that case is an error here too.
bool DecodeQuantum(const std::string& src, size_t* si, std::string* out, size_t* err_at) {
  int dbuf[4] = {0, 0, 0, 0};
  int dlen = 4;
  for (int j = 0; j < 4; ++j) {
    if (*si == src.size()) {
      if (j == 0) return true;
      // StdEncoding has padding, so a short final quantum is an error at its first byte.
      *err_at = *si - static_cast<size_t>(j);
      return false;
    }
    unsigned char in = static_cast<unsigned char>(src[*si]);
    ++*si;
    int v = Base64Value(in);
    if (v >= 0) {
      dbuf[j] = v;
      continue;
    }
    if (IsNewline(in)) {
      --j;
      continue;
    }
    if (in != '=') {
      *err_at = *si - 1;
      return false;
    }
    // Padding: legal only in the third or fourth position.
    if (j == 0 || j == 1) {
      *err_at = *si - 1;
      return false;
    }
    if (j == 2) {
      while (*si < src.size() && IsNewline(static_cast<unsigned char>(src[*si]))) ++*si;
      if (*si == src.size()) {
        *err_at = src.size();
        return false;
      }
      if (src[*si] != '=') {
        *err_at = *si - 1;
        return false;
      }
      ++*si;
    }
    while (*si < src.size() && IsNewline(static_cast<unsigned char>(src[*si]))) ++*si;
    if (*si < src.size()) {
      *err_at = *si;
      return false;
    }
    dlen = j;
    break;
  }
  uint32_t val = (static_cast<uint32_t>(dbuf[0]) << 18) | (static_cast<uint32_t>(dbuf[1]) << 12) |
                 (static_cast<uint32_t>(dbuf[2]) << 6) | static_cast<uint32_t>(dbuf[3]);
  const char bytes[3] = {static_cast<char>(val >> 16), static_cast<char>(val >> 8),
                         static_cast<char>(val)};
  out->append(bytes, static_cast<size_t>(dlen - 1));
  return true;
}

}  // namespace

std::string Base64Encode(const std::string& raw) {
  std::string out(4 * ((raw.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(raw.data()),
                          static_cast<int>(raw.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// EVP_DecodeBlock is not used because it skips whitespace and does not report where the input
// went wrong; Vault's error text includes Go's exact offset.
std::optional<std::string> Base64Decode(const std::string& text, size_t* error_offset) {
  std::string out;
  out.reserve(text.size() / 4 * 3 + 3);
  size_t si = 0;
  while (si < text.size()) {
    size_t err_at = 0;
    if (!DecodeQuantum(text, &si, &out, &err_at)) {
      if (error_offset) *error_offset = err_at;
      return std::nullopt;
    }
  }
  return out;
}

std::string Base64ErrorText(size_t offset) {
  return "illegal base64 data at input byte " + std::to_string(offset);
}

bool ParseGoInt(const std::string& text, int64_t* out) {
  size_t i = 0;
  bool negative = false;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
    negative = text[i] == '-';
    ++i;
  }
  if (i == text.size()) return false;
  uint64_t value = 0;
  const uint64_t limit = negative ? uint64_t{1} << 63 : (uint64_t{1} << 63) - 1;
  for (; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    value = value * 10 + static_cast<uint64_t>(text[i] - '0');
    if (value > limit) return false;
  }
  *out = negative ? static_cast<int64_t>(0 - value) : static_cast<int64_t>(value);
  return true;
}

bool ParseGoDuration(const std::string& text, int64_t* seconds, std::string* error) {
  const std::string quoted = "\"" + text + "\"";
  auto invalid = [&] {
    *error = "time: invalid duration " + quoted;
    return false;
  };
  size_t i = 0;
  bool negative = false;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) {
    negative = text[i] == '-';
    ++i;
  }
  if (text.substr(i) == "0") {
    *seconds = 0;
    return true;
  }
  if (i == text.size()) return invalid();
  long double total_ns = 0;
  while (i < text.size()) {
    size_t start = i;
    long double value = 0;
    bool digits = false;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      value = value * 10 + (text[i] - '0');
      ++i;
      digits = true;
    }
    if (i < text.size() && text[i] == '.') {
      ++i;
      long double scale = 0.1L;
      while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
        value += (text[i] - '0') * scale;
        scale /= 10;
        ++i;
        digits = true;
      }
    }
    if (!digits || i == start) return invalid();
    size_t unit_start = i;
    while (i < text.size() && !(text[i] >= '0' && text[i] <= '9') && text[i] != '.') ++i;
    const std::string unit = text.substr(unit_start, i - unit_start);
    long double scale_ns;
    if (unit.empty()) {
      *error = "time: missing unit in duration " + quoted;
      return false;
    } else if (unit == "ns") {
      scale_ns = 1;
    } else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") {
      scale_ns = 1e3L;
    } else if (unit == "ms") {
      scale_ns = 1e6L;
    } else if (unit == "s") {
      scale_ns = 1e9L;
    } else if (unit == "m") {
      scale_ns = 60e9L;
    } else if (unit == "h") {
      scale_ns = 3600e9L;
    } else {
      *error = "time: unknown unit \"" + unit + "\" in duration " + quoted;
      return false;
    }
    total_ns += value * scale_ns;
    if (total_ns > static_cast<long double>(std::numeric_limits<int64_t>::max())) return invalid();
  }
  int64_t secs = static_cast<int64_t>(std::trunc(total_ns / 1e9L));
  *seconds = negative ? -secs : secs;
  return true;
}

std::string FormatGoDuration(int64_t seconds) {
  if (seconds == 0) return "0s";
  std::string sign = seconds < 0 ? "-" : "";
  uint64_t s = seconds < 0 ? 0 - static_cast<uint64_t>(seconds) : static_cast<uint64_t>(seconds);
  uint64_t h = s / 3600, m = (s % 3600) / 60, rest = s % 60;
  if (h > 0) {
    return sign + std::to_string(h) + "h" + std::to_string(m) + "m" + std::to_string(rest) + "s";
  }
  if (m > 0) return sign + std::to_string(m) + "m" + std::to_string(rest) + "s";
  return sign + std::to_string(rest) + "s";
}

std::string MultiError(const std::vector<std::string>& errors) {
  std::string out = errors.size() == 1 ? "1 error occurred:\n"
                                       : std::to_string(errors.size()) + " errors occurred:\n";
  for (const auto& e : errors) out += "\t* " + e + "\n";
  return out + "\n";
}

std::string FormatRfc3339(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  return out;
}

std::string RandomUuid() {
  std::string b = RandomBytes(16);
  b[6] = static_cast<char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<char>((b[8] & 0x3f) | 0x80);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[(static_cast<unsigned char>(b[i]) >> 4) & 0xf];
    out += kHex[static_cast<unsigned char>(b[i]) & 0xf];
  }
  return out;
}

std::string RandomBase62(size_t n) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string out;
  while (out.size() < n) {
    for (unsigned char c : RandomBytes(n)) {
      // Rejection sampling keeps the alphabet uniform.
      if (c < 248 && out.size() < n) out += kAlphabet[c % 62];
    }
  }
  return out;
}

}  // namespace vaultsim
