// Everything the simulated Vault remembers (in memory only): namespaces with their mounts and
// policies, transit keys, AppRole roles and secret-ids, and tokens. One mutex guards it all;
// handlers run with it held and never block.
#pragma once

#include <json/json.h>

#include <atomic>
#include <cstdint>
#include <ctime>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "acl.h"
#include "crypto.h"

namespace vaultsim {

// Vault's defaults when neither the mount nor the role says otherwise.
inline constexpr int64_t kSystemDefaultTtl = 768 * 3600;
inline constexpr int64_t kSystemMaxTtl = 768 * 3600;

struct KeyVersion {
  std::string material;
  int64_t created = 0;
};

struct TransitKey {
  KeyType type = KeyType::kAes256Gcm96;
  std::map<int, KeyVersion> versions;
  int latest_version = 0;
  int min_decryption_version = 1;
  int min_encryption_version = 0;
  int min_available_version = 0;
  bool deletion_allowed = false;
  bool exportable = false;
  bool allow_plaintext_backup = false;
  int64_t auto_rotate_period = 0;

  void Rotate(int64_t now);
};

struct SecretId {
  std::string accessor;
  int64_t created = 0;
  int64_t ttl = 0;
  int64_t expires = 0;   // 0: never
  int64_t num_uses = 0;  // 0: unlimited
  Json::Value metadata{Json::objectValue};
};

// Vault's tokenutil.TokenParams: the token settings every auth method's roles share.
struct TokenRoleParams {
  std::vector<std::string> policies;
  int64_t token_ttl = 0;
  int64_t token_max_ttl = 0;
  int64_t token_period = 0;
  int64_t token_explicit_max_ttl = 0;
  int64_t token_num_uses = 0;
  bool token_no_default_policy = false;
  std::string token_type = "default";
  std::vector<std::string> token_bound_cidrs;
};

struct AppRole : TokenRoleParams {
  std::string name;
  std::string role_id;
  std::string entity_id;  // Vault creates one entity per role-id alias
  bool bind_secret_id = true;
  int64_t secret_id_ttl = 0;
  int64_t secret_id_num_uses = 0;
  std::vector<std::string> secret_id_bound_cidrs;
  std::map<std::string, SecretId> secret_ids;  // keyed by the secret-id itself
};

// A trusted certificate of the TLS certificate auth method (Vault's CertEntry, the subset the
// simulator serves).
struct CertRole : TokenRoleParams {
  std::string name;
  std::string certificate;  // PEM: a CA (or chain) whose chains are trusted, or a leaf
  std::string display_name;
  std::vector<std::string> allowed_names;
  std::vector<std::string> allowed_common_names;
};

struct Mount {
  std::string path;  // namespace-relative, trailing slash; auth mounts without "auth/"
  std::string type;  // "transit", "approle", "cert"
  std::string accessor;
  std::string uuid;
  std::string description;
  std::map<std::string, TransitKey> keys;
  std::map<std::string, AppRole> roles;
  // TLS certificate auth: trusted certificates by name, the config, and one entity per alias
  // (the certificate's common name), as Vault's identity store would keep.
  std::map<std::string, CertRole> certs;
  bool disable_binding = false;
  std::map<std::string, std::string> cert_entities;
};

struct StoredPolicy {
  std::string text;
  Policy parsed;
};

struct Namespace {
  std::string path;  // "" for root, else "team/"
  std::string id;    // "root", else a short id that suffixes its tokens like Vault's
  std::map<std::string, Mount> mounts;
  std::map<std::string, Mount> auth_mounts;  // besides the implicit token/ method
  std::map<std::string, StoredPolicy> policies;
};

struct Token {
  std::string id;
  std::string accessor;
  std::string ns;
  std::string parent;  // "" for orphans
  std::vector<std::string> policies;
  Json::Value meta;  // null or an object of strings
  std::string display_name;
  std::string path;  // the endpoint that created it, e.g. "auth/approle/login"
  int64_t creation_time = 0;
  int64_t creation_ttl = 0;
  int64_t ttl = 0;        // current lease; 0 = never expires
  int64_t expire_at = 0;  // 0 = never
  int64_t last_renewal = 0;
  int64_t explicit_max_ttl = 0;
  int64_t period = 0;
  int64_t num_uses = 0;  // remaining; 0 = unlimited
  bool renewable = false;
  bool orphan = false;
  std::string entity_id;
  // For AppRole tokens: renewal re-reads the role's TTLs, as Vault's login renew callback does.
  std::string auth_mount;  // namespace-relative "approle/"
  std::string role_name;
  // For TLS certificate auth tokens: the login certificate's key identifiers (raw bytes), which
  // a renewal's certificate must share one of (Vault's login binding).
  std::string cert_subject_key_id;
  std::string cert_authority_key_id;

  bool IsRoot() const;
};

class State {
 public:
  explicit State(std::string root_token);

  std::mutex mu;

  // The simulator's clock: wall time plus what /_sim/clock added. TTLs and creation times use it.
  int64_t Now() const { return static_cast<int64_t>(std::time(nullptr)) + clock_offset_.load(); }
  // Caller holds mu: keys due for auto-rotation rotate as the clock passes their period.
  void AdvanceClock(int64_t seconds);

  Namespace* FindNamespace(const std::string& path);
  Namespace& CreateNamespace(const std::string& path);
  void DeleteNamespace(const std::string& path);
  std::vector<std::string> ChildNamespaces(const std::string& parent) const;

  // Live tokens only: an expired token is forgotten when looked up.
  Token* FindToken(const std::string& id);
  Token* FindTokenByAccessor(const std::string& accessor);
  // Fills in id and accessor (with the namespace suffix Vault adds) when empty.
  Token& AddToken(Token token);
  // Revokes the token and, like Vault, every non-orphan token it created.
  void RevokeToken(const std::string& id);
  void RevokeAllTokensExceptRoot();
  // Disabling an auth method revokes what it issued.
  void RevokeTokensFromAuthMount(const std::string& ns, const std::string& auth_mount);

  const std::string& root_token() const { return root_token_; }
  std::map<std::string, Namespace>& namespaces() { return namespaces_; }

 private:
  std::atomic<int64_t> clock_offset_{0};
  std::string root_token_;
  std::map<std::string, Namespace> namespaces_;
  std::map<std::string, Token> tokens_;
};

// Vault's policyutil.SanitizePolicies: trimmed, lower-cased, deduplicated, sorted, "default"
// added unless asked not to; "root" stands alone.
std::vector<std::string> SanitizePolicies(std::vector<std::string> policies, bool add_default);

}  // namespace vaultsim
