#include "broker/capabilities.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "broker/base64.h"
#include "shared/secret.h"

namespace vkms::broker {
namespace {

constexpr size_t kCanaryBytes = 32;

std::string HttpText(const VaultResponse& r) {
  std::string s = "HTTP " + std::to_string(r.status);
  return r.error.empty() ? s : s + ": " + r.error;
}

// Why a call got no usable answer, for Health: the transport's reason, or Vault's status.
Status CallFailure(const VaultResponse& r, const std::string& what) {
  if (r.transport == Code::kUnauthenticated) return Status(Code::kUnavailable, r.error);
  if (r.transport != Code::kOk) {
    return Status(
        r.transport == Code::kDeadlineExceeded ? Code::kDeadlineExceeded : Code::kUnavailable,
        what + ": " + TransportFailureReason(r));
  }
  return Status(Code::kUnavailable, what + ": " + HttpText(r));
}

// Keeps only what may be shown of an answer: no body, which may hold ciphertext or plaintext.
VaultResponse Outcome(VaultResponse* r) {
  VaultResponse out;
  out.transport = r->transport;
  out.status = r->status;
  out.error = r->error;
  out.tls_failure = r->tls_failure;
  return out;
}

void WipeField(Json::Value* json, const char* field) {
  if (json->isObject() && (*json)["data"].isObject() && (*json)["data"][field].isString()) {
    WipeJsonString(&(*json)["data"][field]);
  }
}

}  // namespace

std::vector<NeededCapability> NeededCapabilities(const TransitNames& names) {
  return {{names.EncryptPath(), "update", "encrypt"},
          {names.DecryptPath(), "update", "decrypt"},
          {names.KeyPath(), "read", "read"},
          {"auth/token/renew-self", "update", "renew itself through"}};
}

std::string CapabilitiesRequestBody(const std::vector<NeededCapability>& needed) {
  std::string body = "{\"paths\":[";
  for (size_t i = 0; i < needed.size(); ++i) {
    if (i > 0) body += ",";
    AppendJsonString(&body, needed[i].path);
  }
  return body + "]}";
}

bool ParseCapabilitiesAnswer(const Json::Value& answer, const std::vector<NeededCapability>& needed,
                             GrantedCapabilities* granted, std::string* error) {
  granted->clear();
  if (!answer.isObject()) {
    *error = "vault's capabilities-self answer is not a JSON object";
    return false;
  }
  const Json::Value& lists = answer["data"].isObject() ? answer["data"] : answer;
  for (const NeededCapability& n : needed) {
    const Json::Value& list = lists[n.path];
    if (!list.isArray()) {
      *error = "vault's capabilities-self answer has no list for " + n.path;
      return false;
    }
    std::set<std::string>& caps = (*granted)[n.path];
    for (const Json::Value& c : list) {
      if (c.isString()) caps.insert(c.asString());
    }
  }
  return true;
}

bool Allows(const std::set<std::string>& caps, const std::string& capability) {
  if (caps.count("root") > 0) return true;
  return caps.count("deny") == 0 && caps.count(capability) > 0;
}

std::vector<NeededCapability> MissingCapabilities(const std::vector<NeededCapability>& needed,
                                                  const GrantedCapabilities& granted) {
  std::vector<NeededCapability> missing;
  for (const NeededCapability& n : needed) {
    auto it = granted.find(n.path);
    if (it == granted.end() || !Allows(it->second, n.capability)) missing.push_back(n);
  }
  return missing;
}

std::string MissingText(const NeededCapability& missing) {
  return "token may not " + missing.action + " " + missing.path;
}

std::string DescribeMissing(const std::vector<NeededCapability>& missing) {
  std::string out;
  for (const NeededCapability& m : missing) out += (out.empty() ? "" : "; ") + MissingText(m);
  return out;
}

std::string PolicyRule(const std::string& path, const std::string& capability) {
  return "path \"" + path + "\" { capabilities = [\"" + capability + "\"] }";
}

std::string DeniedText(const std::string& capability, const std::string& path,
                       const std::string& vault_reason) {
  return "vault denied " + capability + " on " + path + ": " +
         (vault_reason.empty() ? "permission denied" : vault_reason);
}

std::string KeyUnreadableText(const std::string& key_path, long status,
                              const std::string& vault_reason) {
  std::string answer = "HTTP " + std::to_string(status);
  if (!vault_reason.empty()) answer += ": " + vault_reason;
  return "key not found or not readable: check --transit-key and the policy (" + key_path + ": " +
         answer + ")";
}

RoundTripResult CanaryRoundTrip(const TransitNames& names, uint64_t key_version,
                                const VaultCall& call) {
  RoundTripResult res;
  std::string plain(kCanaryBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&plain[0]), kCanaryBytes) != 1) {
    res.failed = RoundTripResult::Failed::kRandom;
    return res;
  }
  std::string b64 = Base64Encode(plain);
  std::string body;
  body.reserve(64 + JsonStringReserve(b64.size()));
  body += "{\"plaintext\":";
  AppendJsonString(&body, b64);
  body += ",\"key_version\":" + std::to_string(key_version) + "}";
  VaultResponse r = call(HttpMethod::kPost, names.EncryptPath(), body);
  WipeString(&body);
  RedactSecret(&r.error, b64);
  std::string ct;
  if (r.ok() && r.json["data"]["ciphertext"].isString())
    ct = r.json["data"]["ciphertext"].asString();
  WipeField(&r.json, "ciphertext");
  if (ct.empty()) {
    for (std::string* s : {&plain, &b64}) WipeString(s);
    res.failed = RoundTripResult::Failed::kEncrypt;
    res.answer = Outcome(&r);
    if (res.answer.ok()) res.answer.error = "no ciphertext in vault's answer";
    return res;
  }
  res.ciphertext_bytes = ct.size();

  body.reserve(32 + JsonStringReserve(ct.size()));
  body += "{\"ciphertext\":";
  AppendJsonString(&body, ct);
  body += "}";
  r = call(HttpMethod::kPost, names.DecryptPath(), body);
  WipeString(&body);
  RedactSecret(&r.error, ct);
  std::string back_b64, back;
  if (r.ok() && r.json["data"]["plaintext"].isString()) {
    back_b64 = r.json["data"]["plaintext"].asString();
  }
  WipeField(&r.json, "plaintext");
  const bool same = Base64Decode(back_b64, &back) && back.size() == plain.size() &&
                    CRYPTO_memcmp(back.data(), plain.data(), plain.size()) == 0;
  for (std::string* s : {&plain, &b64, &ct, &back_b64, &back}) WipeString(s);
  if (!r.ok()) {
    res.failed = RoundTripResult::Failed::kDecrypt;
    res.answer = Outcome(&r);
  } else if (!same) {
    res.failed = RoundTripResult::Failed::kCompare;
    res.answer = Outcome(&r);
  }
  return res;
}

CapabilityVerdict VerifyTokenCapabilities(const TransitNames& names, uint64_t key_version,
                                          const VaultCall& call) {
  CapabilityVerdict v;
  const std::vector<NeededCapability> needed = NeededCapabilities(names);
  VaultResponse r = call(HttpMethod::kPost, kCapabilitiesSelfPath, CapabilitiesRequestBody(needed));
  if (r.ok()) {
    GrantedCapabilities granted;
    std::string error;
    if (!ParseCapabilitiesAnswer(r.json, needed, &granted, &error)) {
      v.status = Status(Code::kUnavailable, "cannot verify the token's capabilities: " + error);
      return v;
    }
    std::vector<NeededCapability> missing = MissingCapabilities(needed, granted);
    if (!missing.empty()) v.status = Status(Code::kPermissionDenied, DescribeMissing(missing));
    return v;
  }
  if (r.transport != Code::kOk || r.status != 403) {
    v.status = CallFailure(r, "cannot verify the token's capabilities");
    return v;
  }

  v.by_round_trip = true;
  RoundTripResult rt = CanaryRoundTrip(names, key_version, call);
  switch (rt.failed) {
    case RoundTripResult::Failed::kNothing:
      break;
    case RoundTripResult::Failed::kRandom:
      v.status = Status(Code::kInternal, "no random bytes from OpenSSL for the canary round trip");
      break;
    case RoundTripResult::Failed::kEncrypt:
    case RoundTripResult::Failed::kDecrypt: {
      const NeededCapability& n =
          rt.failed == RoundTripResult::Failed::kEncrypt ? needed[0] : needed[1];
      if (rt.answer.transport == Code::kOk && rt.answer.status == 403) {
        v.status = Status(Code::kPermissionDenied, MissingText(n));
      } else {
        v.status = CallFailure(rt.answer, "canary " + n.action + " failed");
      }
      break;
    }
    case RoundTripResult::Failed::kCompare:
      v.status = Status(Code::kInternal,
                        "canary round trip: vault decrypted to a different value (is every "
                        "--vault-addr a node of the same cluster?)");
      break;
  }
  return v;
}

}  // namespace vkms::broker
