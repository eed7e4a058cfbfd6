#include "broker/vault/auth_answer.h"

#include <algorithm>

#include "broker/vault/http.h"

namespace vkms::broker {
namespace {

// A duration field: absent or null is 0; a negative or non-numeric one is malformed.
bool ReadSeconds(const Json::Value& block, const char* name, int64_t* out, std::string* why) {
  *out = 0;
  if (!block.isObject() || !block.isMember(name) || block[name].isNull()) return true;
  int64_t n = 0;
  if (!JsonInt64(block[name], &n) || n < 0) {
    *why = std::string("malformed answer: ") + name + " is not a non-negative number";
    return false;
  }
  *out = std::min(n, kMaxLeaseSeconds);
  return true;
}

bool ReadBool(const Json::Value& block, const char* name) {
  return block.isObject() && block[name].isBool() && block[name].asBool();
}

// Takes a string out of the answer and wipes it there.
void TakeToken(Json::Value* block, const char* name, SecretString* out) {
  if (!block->isObject() || !block->isMember(name)) return;
  Json::Value& v = (*block)[name];
  if (v.isString()) {
    std::string s = v.asString();
    if (!s.empty()) *out = SecretString(std::move(s));
  }
  WipeJsonString(&v);
}

bool Read(AuthAnswerKind kind, Json::Value* json, AuthAnswer* out, std::string* why) {
  static const Json::Value kNull;
  const char* block_name = kind == AuthAnswerKind::kLookupSelf ? "data" : "auth";
  const Json::Value& block =
      json->isObject() && (*json)[block_name].isObject() ? (*json)[block_name] : kNull;
  if (kind == AuthAnswerKind::kLogin) {
    if (block.isObject()) TakeToken(&(*json)["auth"], "client_token", &out->token);
    if (out->token.empty()) {
      *why = "no token in the answer";
      return false;
    }
  }
  out->renewable = ReadBool(block, "renewable");
  if (kind == AuthAnswerKind::kLookupSelf) {
    // ttl is what is left; creation_ttl what a renewal should ask for again.
    int64_t creation_ttl = 0;
    if (!ReadSeconds(block, "ttl", &out->lease_s, why) ||
        !ReadSeconds(block, "creation_ttl", &creation_ttl, why)) {
      return false;
    }
    out->increment_s = creation_ttl > 0 ? creation_ttl : out->lease_s;
    return true;
  }
  if (!ReadSeconds(block, "lease_duration", &out->lease_s, why)) return false;
  out->increment_s = out->lease_s;
  return true;
}

}  // namespace

bool ReadAuthAnswer(AuthAnswerKind kind, Json::Value* json, AuthAnswer* out, std::string* why) {
  *out = AuthAnswer();
  bool ok = Read(kind, json, out, why);
  WipeTokenFields(json);
  if (!ok) *out = AuthAnswer();
  return ok;
}

}  // namespace vkms::broker
