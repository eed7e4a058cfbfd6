// What the broker's Vault token must be allowed to do, and how to tell from Vault's answers
// what it may not, in words an operator can act on ("token may not decrypt
// transit/decrypt/kms").
//
// Callers: KeyCache (VerifyTokenCapabilities at start and at every key refresh), MapVaultError
// and KeyCache::Refresh (the text of a denied call), and `check` (its key, policy and round-trip
// steps). Everything here is pure except VerifyTokenCapabilities and CanaryRoundTrip, which
// reach Vault only through the VaultCall they are given. Paths are relative to the namespace
// the calls are sent in; mount and key are VaultConfig's, already normalised. Nothing here
// returns or logs plaintext, ciphertext or a token.
#pragma once

#include <json/value.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "broker/vault_http.h"
#include "shared/status.h"

namespace vkms::broker {

inline constexpr const char kCapabilitiesSelfPath[] = "sys/capabilities-self";

struct TransitNames {
  std::string mount, key;
  std::string EncryptPath() const { return mount + "/encrypt/" + key; }
  std::string DecryptPath() const { return mount + "/decrypt/" + key; }
  std::string KeyPath() const { return mount + "/keys/" + key; }
};

struct NeededCapability {
  std::string path;        // "transit/decrypt/kms"
  std::string capability;  // "update" or "read"
  std::string action;      // "decrypt": "token may not decrypt transit/decrypt/kms"
};

// Everything the broker does with its token: encrypt, decrypt, read the key's metadata, renew
// itself — in that order.
std::vector<NeededCapability> NeededCapabilities(const TransitNames& names);

// {"paths":[...]} for sys/capabilities-self.
std::string CapabilitiesRequestBody(const std::vector<NeededCapability>& needed);

// path -> the capabilities Vault listed for it ("deny" and "root" included).
using GrantedCapabilities = std::map<std::string, std::set<std::string>>;

// Reads a sys/capabilities-self answer: the lists under "data", or at the top level where
// Vault's sys/ endpoints also put them. False with *error when a needed path has no list.
bool ParseCapabilitiesAnswer(const Json::Value& answer, const std::vector<NeededCapability>& needed,
                             GrantedCapabilities* granted, std::string* error);

// Vault's rule: "root" allows everything, "deny" nothing.
bool Allows(const std::set<std::string>& caps, const std::string& capability);

std::vector<NeededCapability> MissingCapabilities(const std::vector<NeededCapability>& needed,
                                                  const GrantedCapabilities& granted);

// "token may not decrypt transit/decrypt/kms".
std::string MissingText(const NeededCapability& missing);
// One MissingText per entry, joined with "; ".
std::string DescribeMissing(const std::vector<NeededCapability>& missing);
// The policy rule that grants it: path "transit/decrypt/kms" { capabilities = ["update"] }.
std::string PolicyRule(const std::string& path, const std::string& capability);

// A call Vault refused with 403: "vault denied update on transit/decrypt/kms: permission
// denied". `vault_reason` is Vault's own (safe) text.
std::string DeniedText(const std::string& capability, const std::string& path,
                       const std::string& vault_reason);

// A key read that found nothing or was refused (a typo in --transit-key is refused by the ACL
// before Vault looks for the key, so both mean the same to an operator).
std::string KeyUnreadableText(const std::string& key_path, long status,
                              const std::string& vault_reason);

// The Vault calls below, with the broker's token, namespace and deadline bound in.
using VaultCall =
    std::function<VaultResponse(HttpMethod method, const std::string& path, std::string_view body)>;

struct RoundTripResult {
  enum class Failed { kNothing, kRandom, kEncrypt, kDecrypt, kCompare };
  Failed failed = Failed::kNothing;
  // The failed call's outcome: transport, status and Vault's safe error text (no body).
  VaultResponse answer;
  size_t ciphertext_bytes = 0;
  bool ok() const { return failed == Failed::kNothing; }
};

// Encrypts 32 random bytes with key version `key_version` and decrypts them back. The random
// bytes, their ciphertext and every copy in Vault's answers are wiped before it returns.
RoundTripResult CanaryRoundTrip(const TransitNames& names, uint64_t key_version,
                                const VaultCall& call);

struct CapabilityVerdict {
  // Ok, or why the token cannot serve: PermissionDenied names each missing capability
  // (DescribeMissing); otherwise why Vault could not be asked.
  Status status;
  // sys/capabilities-self was refused (a policy older than deploy/vault/kms-policy.hcl, with
  // token_no_default_policy): a canary round trip proved encrypt and decrypt instead.
  bool by_round_trip = false;
};

// Asks sys/capabilities-self for everything NeededCapabilities lists. When the policy does not
// allow that question, falls back to a CanaryRoundTrip with `key_version`: it proves exactly
// what keeps the apiserver's Secrets readable (encrypt, then decrypt), and the key read that
// precedes this call proves read; only renew-self stays unproved, and a failed renewal already
// makes the broker log in again. Reporting "cannot verify" as unhealthy instead would take
// every plugin set up with an older policy out of service on upgrade, although it works.
CapabilityVerdict VerifyTokenCapabilities(const TransitNames& names, uint64_t key_version,
                                          const VaultCall& call);

}  // namespace vkms::broker
