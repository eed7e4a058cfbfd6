// The Vault request pipeline (namespace, token, existence check, ACL) and the backends it routes
// to. Every function here runs with State::mu held.
#pragma once

#include <optional>
#include <string>

#include "fields.h"
#include "state.h"
#include "vault_types.h"

namespace vaultsim {

struct Ctx {
  State& st;
  const VaultRequest& req;
  Namespace& ns;
  Token* token;     // null on unauthenticated paths
  Mount* mount;     // the matched secrets engine or auth method; null for sys/ and auth/token/
  std::string sub;  // the path below the mount, e.g. "encrypt/kms"
  Op op;            // after the existence check
  bool sudo;        // root token, or sudo capability on this path (Vault's "isSudo")
};

// Runs one request through Vault's pipeline and the backend that owns the path.
VaultResponse Dispatch(State& st, const VaultRequest& req);

// Existence checks decide create vs update; nullopt where the path has none (Vault's rule).
std::optional<bool> TransitExists(const Mount& mount, const std::string& sub);
std::optional<bool> AppRoleExists(const Mount& mount, const std::string& sub);
bool AppRoleUnauthenticated(const std::string& sub);
bool CertUnauthenticated(const std::string& sub);
// Paths Vault's system backend lists as root-protected (they need the sudo capability).
bool SysNeedsSudo(const std::string& sub);

VaultResponse HandleTransit(Ctx& c);
VaultResponse HandleAppRole(Ctx& c);
VaultResponse HandleCert(Ctx& c);

// What a TLS certificate auth token's renewal must pass (Vault's cert pathLoginRenew): unless
// the mount disables binding, the renewing connection's certificate must verify against the
// token's certificate role and share a key identifier with the login certificate; the role must
// still exist with the same policies. On success fills the role's TTLs and returns nullopt;
// otherwise the error response.
std::optional<VaultResponse> CertRenewal(Ctx& c, const Token& token, int64_t* ttl, int64_t* max_ttl,
                                         int64_t* period);
VaultResponse HandleTokenStore(Ctx& c);
VaultResponse HandleSys(Ctx& c);

// The ACL a token carries: its policies, read from the token's own namespace.
Acl TokenAcl(State& st, const Token& token);

// Token issuing shared by auth/token/create and AppRole login (token.cc).
struct TokenParams {
  std::string id;                     // empty: generated
  std::vector<std::string> policies;  // already sanitized
  Json::Value meta;                   // null or object of strings
  std::string display_name;
  std::string path;
  std::string parent;
  int64_t ttl = 0;      // requested or backend TTL; 0 = mount default
  int64_t max_ttl = 0;  // backend (role) max; 0 = system max
  int64_t explicit_max_ttl = 0;
  int64_t period = 0;
  int64_t num_uses = 0;
  bool renewable = true;
  std::string entity_id;
  std::string auth_mount;
  std::string role_name;
};
// Computes the TTL like Vault's framework.CalculateTTL and stores the token; warnings are
// Vault's texts for capped values.
Token& IssueToken(Ctx& c, const TokenParams& p, std::vector<std::string>* warnings);

// Vault's tokenutil, for the roles of AppRole and cert: reads the token_* fields a role write
// carries (and the deprecated `policies` and `period`) into *r, then checks them; "" or the
// error text (Vault's). Writes them back for a role read. Fills the token settings of a login.
std::string ReadTokenFields(FieldReader& f, TokenRoleParams* r);
void WriteTokenFields(const TokenRoleParams& r, Json::Value* data);
void ApplyTokenFields(const TokenRoleParams& r, TokenParams* p);
Json::Value AuthBlock(const Token& t);

// Vault's GenericNameRegex: \w(([\w-.@]+)?\w)?
bool IsGenericName(const std::string& name);

}  // namespace vaultsim
