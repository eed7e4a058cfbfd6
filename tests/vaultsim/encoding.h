// Text formats Vault (a Go program) exposes on the wire, reproduced byte for byte: Go's base64
// decoder and its error offsets, time.Duration parsing and printing, strconv.Atoi, multierror
// strings, RFC 3339 times and Vault's random identifiers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vaultsim {

std::string Base64Encode(const std::string& raw);

// Decodes exactly like Go's base64.StdEncoding.DecodeString (padding required, CR/LF ignored,
// non-canonical trailing bits accepted). On failure returns nullopt and sets *error_offset to the
// byte offset Go reports in "illegal base64 data at input byte N".
std::optional<std::string> Base64Decode(const std::string& text, size_t* error_offset = nullptr);
std::string Base64ErrorText(size_t offset);

// Go's strconv.Atoi: optional sign, decimal digits, 64-bit range.
bool ParseGoInt(const std::string& text, int64_t* out);

// Go's time.ParseDuration, truncated to whole seconds. On failure *error is Go's message.
bool ParseGoDuration(const std::string& text, int64_t* seconds, std::string* error);

// Go's time.Duration.String() for a whole number of seconds: "0s", "30s", "9m59s", "1h0m0s".
std::string FormatGoDuration(int64_t seconds);

// hashicorp/go-multierror's rendering, which Vault puts verbatim into "errors".
std::string MultiError(const std::vector<std::string>& errors);

// UTC, second precision: 2024-01-02T03:04:05Z.
std::string FormatRfc3339(int64_t unix_seconds);

std::string RandomBytes(size_t n);
std::string RandomUuid();
std::string RandomBase62(size_t n);

}  // namespace vaultsim
