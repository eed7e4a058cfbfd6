// Vault's answers to a login, lookup-self and renew-self, as the token manager reads them
// (broker/vault/auth_answer.cc). Whatever the answer, the reader must not crash, must keep every
// duration within [0, kMaxLeaseSeconds] (the token manager adds them to steady_clock time
// points), must return a token exactly when a login succeeds, and must leave no token-bearing
// string in the parsed answer.
#include <json/value.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "broker/vault/auth_answer.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/fuzz_json.h"

namespace {

using vkms::broker::AuthAnswer;
using vkms::broker::AuthAnswerKind;

void CheckWiped(const Json::Value& json) {
  if (!json.isObject()) return;
  for (const char* block : {"auth", "data"}) {
    const Json::Value& b = json[block];
    if (!b.isObject()) continue;
    for (const char* f : {"client_token", "id", "accessor"}) {
      FUZZ_CHECK(!b[f].isString());
    }
  }
}

void Check(AuthAnswerKind kind, const Json::Value& parsed) {
  Json::Value json = parsed;  // the reader wipes fields in place
  AuthAnswer out;
  std::string why;
  bool ok = vkms::broker::ReadAuthAnswer(kind, &json, &out, &why);
  CheckWiped(json);
  if (!ok) {
    FUZZ_CHECK(!why.empty());
    FUZZ_CHECK(out.token.empty() && out.lease_s == 0 && out.increment_s == 0 && !out.renewable);
    return;
  }
  FUZZ_CHECK(out.lease_s >= 0 && out.lease_s <= vkms::broker::kMaxLeaseSeconds);
  FUZZ_CHECK(out.increment_s >= 0 && out.increment_s <= vkms::broker::kMaxLeaseSeconds);
  if (kind == AuthAnswerKind::kLogin) {
    FUZZ_CHECK(!out.token.empty());
    FUZZ_CHECK(out.token.view() == parsed["auth"]["client_token"].asString());
  } else {
    FUZZ_CHECK(out.token.empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Json::Value json;
  if (!ParseFuzzJson(data, size, &json)) return 0;
  for (AuthAnswerKind kind :
       {AuthAnswerKind::kLogin, AuthAnswerKind::kLookupSelf, AuthAnswerKind::kRenewSelf}) {
    Check(kind, json);
  }
  return 0;
}
