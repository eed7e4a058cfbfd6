// Vault's answers to a login, auth/token/lookup-self and auth/token/renew-self, read into what
// the token manager schedules by. Vault is reached over TLS but not trusted to be well formed:
// the reader never throws, keeps every duration within kMaxLeaseSeconds (so time arithmetic
// cannot overflow), and wipes every token-bearing field of the answer whatever it returns.
#pragma once

#include <json/value.h>

#include <cstdint>
#include <string>

#include "shared/secret.h"

namespace vkms::broker {

// Ten years: far beyond any Vault max_ttl, small enough for steady_clock arithmetic.
constexpr int64_t kMaxLeaseSeconds = int64_t{10} * 365 * 24 * 3600;

enum class AuthAnswerKind {
  kLogin,       // {"auth": {"client_token", "lease_duration", "renewable", ...}}
  kLookupSelf,  // {"data": {"id", "ttl", "creation_ttl", "renewable", ...}}
  kRenewSelf,   // {"auth": {"client_token", "lease_duration", "renewable", ...}}
};

struct AuthAnswer {
  SecretString token;       // kLogin only
  int64_t lease_s = 0;      // 0 = does not expire
  int64_t increment_s = 0;  // what to ask for at the next renewal
  bool renewable = false;
};

// Reads what `kind` needs from `*json` into `*out` and wipes auth.client_token, auth.accessor,
// data.id and data.accessor in `*json`, whatever the outcome. Returns false with a reason
// (no request data in it) when a login carries no token or a duration is negative or not a
// number; durations above kMaxLeaseSeconds are capped.
bool ReadAuthAnswer(AuthAnswerKind kind, Json::Value* json, AuthAnswer* out, std::string* why);

}  // namespace vkms::broker
