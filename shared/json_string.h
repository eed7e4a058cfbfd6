// JSON string literals, for the log lines (shared/log.h) and the broker's request bodies to
// Vault. Pure: no allocation beyond appending to `out`.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace vkms::json {

// Appends s as a JSON string literal, quotes included. Valid UTF-8 is copied byte for byte;
// control characters, DEL, '"' and '\\' are escaped, and a byte that is not part of valid
// UTF-8 becomes U+FFFD (as Go's encoding/json, and so Vault, would read it anyway): whatever
// the input, the output is valid JSON on one line. It never grows by more than
// StringReserve(s.size()), so a caller building a body that holds a secret can reserve that
// much first and no reallocation leaves an unwiped copy behind.
void AppendJsonString(std::string* out, std::string_view s);

inline size_t StringReserve(size_t n) {
  return 6 * n + 2;
}

}  // namespace vkms::json
