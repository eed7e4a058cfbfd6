#include "broker/vault/capabilities.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "broker/vault/base64.h"
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

namespace {

// Every secret copy of one round trip, wiped when the last step lets go of it.
struct Canary {
  std::string plain, b64, ct;
  RoundTripResult res;
  ~Canary() {
    for (std::string* s : {&plain, &b64, &ct}) WipeString(s);
  }
};

// The waiting call as the event loop's: answered at once.
AsyncVaultCall AtOnce(const VaultCall& call) {
  return [&call](HttpMethod method, const std::string& path, std::string body, VaultCallDone done) {
    VaultResponse r = call(method, path, body);
    WipeString(&body);
    done(&r);
  };
}

// What an asynchronous form hands to its `done`, when every call it makes is answered at once
// (AtOnce): `start(done)` has finished by the time it returns.
template <typename Result, typename Start>
Result Answered(Start start) {
  Result out;
  start([&out](Result r) { out = std::move(r); });
  return out;
}

// The canary's decrypt answer: back to the same bytes?
void CanaryDecrypted(Canary* c, VaultResponse* r) {
  RedactSecret(&r->error, c->ct);
  std::string back_b64, back;
  if (r->ok() && r->json["data"]["plaintext"].isString()) {
    back_b64 = r->json["data"]["plaintext"].asString();
  }
  WipeField(&r->json, "plaintext");
  const bool same = Base64Decode(back_b64, &back) && back.size() == c->plain.size() &&
                    CRYPTO_memcmp(back.data(), c->plain.data(), c->plain.size()) == 0;
  for (std::string* s : {&back_b64, &back}) WipeString(s);
  if (!r->ok()) {
    c->res.failed = RoundTripResult::Failed::kDecrypt;
    c->res.answer = Outcome(r);
  } else if (!same) {
    c->res.failed = RoundTripResult::Failed::kCompare;
    c->res.answer = Outcome(r);
  }
}

CapabilityVerdict RoundTripVerdict(const std::vector<NeededCapability>& needed,
                                   const RoundTripResult& rt) {
  CapabilityVerdict v;
  v.by_round_trip = true;
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

}  // namespace

void CanaryRoundTripAsync(const TransitNames& names, uint64_t key_version, AsyncVaultCall call,
                          std::function<void(RoundTripResult)> done) {
  auto c = std::make_shared<Canary>();
  c->plain.assign(kCanaryBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&c->plain[0]), kCanaryBytes) != 1) {
    c->res.failed = RoundTripResult::Failed::kRandom;
    return done(std::move(c->res));
  }
  c->b64 = Base64Encode(c->plain);
  std::string body;
  body.reserve(64 + JsonStringReserve(c->b64.size()));
  body += "{\"plaintext\":";
  AppendJsonString(&body, c->b64);
  body += ",\"key_version\":" + std::to_string(key_version) + "}";
  // `body` moves without a copy (its buffer is far beyond the small-string size).
  call(HttpMethod::kPost, names.EncryptPath(), std::move(body),
       [c, decrypt_path = names.DecryptPath(), call,
        done = std::move(done)](VaultResponse* r) mutable {
         RedactSecret(&r->error, c->b64);
         if (r->ok() && r->json["data"]["ciphertext"].isString()) {
           c->ct = r->json["data"]["ciphertext"].asString();
         }
         WipeField(&r->json, "ciphertext");
         if (c->ct.empty()) {
           c->res.failed = RoundTripResult::Failed::kEncrypt;
           c->res.answer = Outcome(r);
           if (c->res.answer.ok()) c->res.answer.error = "no ciphertext in vault's answer";
           return done(std::move(c->res));
         }
         c->res.ciphertext_bytes = c->ct.size();
         std::string body;
         body.reserve(32 + JsonStringReserve(c->ct.size()));
         body += "{\"ciphertext\":";
         AppendJsonString(&body, c->ct);
         body += "}";
         call(HttpMethod::kPost, decrypt_path, std::move(body),
              [c, done = std::move(done)](VaultResponse* r) {
                CanaryDecrypted(c.get(), r);
                done(std::move(c->res));
              });
       });
}

RoundTripResult CanaryRoundTrip(const TransitNames& names, uint64_t key_version,
                                const VaultCall& call) {
  return Answered<RoundTripResult>(
      [&](auto done) { CanaryRoundTripAsync(names, key_version, AtOnce(call), std::move(done)); });
}

void VerifyTokenCapabilitiesAsync(const TransitNames& names, uint64_t key_version,
                                  AsyncVaultCall call,
                                  std::function<void(CapabilityVerdict)> done) {
  auto needed = std::make_shared<const std::vector<NeededCapability>>(NeededCapabilities(names));
  std::string body = CapabilitiesRequestBody(*needed);
  call(HttpMethod::kPost, kCapabilitiesSelfPath, std::move(body),
       [names, key_version, call, needed, done = std::move(done)](VaultResponse* r) mutable {
         CapabilityVerdict v;
         if (r->ok()) {
           GrantedCapabilities granted;
           std::string error;
           if (!ParseCapabilitiesAnswer(r->json, *needed, &granted, &error)) {
             v.status =
                 Status(Code::kUnavailable, "cannot verify the token's capabilities: " + error);
           } else if (auto missing = MissingCapabilities(*needed, granted); !missing.empty()) {
             v.status = Status(Code::kPermissionDenied, DescribeMissing(missing));
           }
           return done(std::move(v));
         }
         if (r->transport != Code::kOk || r->status != 403) {
           v.status = CallFailure(*r, "cannot verify the token's capabilities");
           return done(std::move(v));
         }
         // The policy does not allow the question: prove encrypt and decrypt instead.
         CanaryRoundTripAsync(names, key_version, std::move(call),
                              [needed, done = std::move(done)](RoundTripResult rt) {
                                done(RoundTripVerdict(*needed, rt));
                              });
       });
}

CapabilityVerdict VerifyTokenCapabilities(const TransitNames& names, uint64_t key_version,
                                          const VaultCall& call) {
  return Answered<CapabilityVerdict>([&](auto done) {
    VerifyTokenCapabilitiesAsync(names, key_version, AtOnce(call), std::move(done));
  });
}

}  // namespace vkms::broker
