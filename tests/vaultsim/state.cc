#include "state.h"

#include <algorithm>
#include <stdexcept>

#include "encoding.h"
#include "text.h"

namespace vaultsim {
namespace {

// The part of Vault's built-in default policy that concerns endpoints the simulator serves.
constexpr char kDefaultPolicy[] = R"(# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}
)";

void AddDefaultPolicy(Namespace& ns) {
  StoredPolicy p;
  p.text = kDefaultPolicy;
  std::string error;
  if (!ParsePolicy(p.text, &p.parsed, &error)) throw std::logic_error("default policy: " + error);
  ns.policies["default"] = std::move(p);
}

}  // namespace

void TransitKey::Rotate(int64_t now) {
  ++latest_version;
  versions[latest_version] = KeyVersion{NewKeyMaterial(type), now};
}

bool Token::IsRoot() const {
  return std::find(policies.begin(), policies.end(), "root") != policies.end();
}

State::State(std::string root_token) : root_token_(std::move(root_token)) {
  Namespace& root = CreateNamespace("");
  Token t;
  t.id = root_token_;
  t.accessor = RandomBase62(24);
  t.policies = {"root"};
  t.display_name = "root";
  t.path = "auth/token/root";
  t.creation_time = Now();
  t.orphan = true;
  t.ns = root.path;
  tokens_[t.id] = t;
}

void State::AdvanceClock(int64_t seconds) {
  clock_offset_ += seconds;
  const int64_t now = Now();
  for (auto& [path, ns] : namespaces_) {
    for (auto& [mpath, mount] : ns.mounts) {
      for (auto& [name, key] : mount.keys) {
        if (key.auto_rotate_period <= 0) continue;
        // Vault's periodic check rotates once per pass however late it is.
        if (now - key.versions[key.latest_version].created >= key.auto_rotate_period) {
          key.Rotate(now);
        }
      }
    }
  }
}

Namespace* State::FindNamespace(const std::string& path) {
  auto it = namespaces_.find(path);
  return it == namespaces_.end() ? nullptr : &it->second;
}

Namespace& State::CreateNamespace(const std::string& path) {
  Namespace& ns = namespaces_[path];
  ns.path = path;
  ns.id = path.empty() ? "root" : RandomBase62(5);
  AddDefaultPolicy(ns);
  return ns;
}

void State::DeleteNamespace(const std::string& path) {
  for (auto it = tokens_.begin(); it != tokens_.end();) {
    it = it->second.ns.compare(0, path.size(), path) == 0 ? tokens_.erase(it) : std::next(it);
  }
  for (auto it = namespaces_.begin(); it != namespaces_.end();) {
    it = it->first.compare(0, path.size(), path) == 0 ? namespaces_.erase(it) : std::next(it);
  }
}

std::vector<std::string> State::ChildNamespaces(const std::string& parent) const {
  std::vector<std::string> out;
  for (const auto& [path, ns] : namespaces_) {
    if (path.size() <= parent.size() || path.compare(0, parent.size(), parent) != 0) continue;
    const std::string rest = path.substr(parent.size());
    if (rest.find('/') == rest.size() - 1) out.push_back(rest);
  }
  return out;
}

Token* State::FindToken(const std::string& id) {
  auto it = tokens_.find(id);
  if (it == tokens_.end()) return nullptr;
  if (it->second.expire_at != 0 && Now() >= it->second.expire_at) {
    RevokeToken(id);
    return nullptr;
  }
  return &it->second;
}

Token* State::FindTokenByAccessor(const std::string& accessor) {
  for (auto& [id, t] : tokens_) {
    if (t.accessor == accessor) return FindToken(id);
  }
  return nullptr;
}

Token& State::AddToken(Token token) {
  const Namespace* ns = FindNamespace(token.ns);
  const std::string suffix = ns && !ns->path.empty() ? "." + ns->id : "";
  if (token.id.empty()) token.id = "hvs." + RandomBase62(24) + suffix;
  if (token.accessor.empty()) token.accessor = RandomBase62(24) + suffix;
  std::string id = token.id;
  return tokens_[id] = std::move(token);
}

void State::RevokeToken(const std::string& id) {
  std::vector<std::string> pending{id};
  while (!pending.empty()) {
    std::string current = pending.back();
    pending.pop_back();
    if (tokens_.erase(current) == 0) continue;
    for (const auto& [child_id, t] : tokens_) {
      if (t.parent == current) pending.push_back(child_id);
    }
  }
}

void State::RevokeAllTokensExceptRoot() {
  for (auto it = tokens_.begin(); it != tokens_.end();) {
    it = it->first == root_token_ ? std::next(it) : tokens_.erase(it);
  }
}

void State::RevokeTokensFromAuthMount(const std::string& ns, const std::string& auth_mount) {
  std::vector<std::string> doomed;
  for (const auto& [id, t] : tokens_) {
    if (t.ns == ns && t.auth_mount == auth_mount) doomed.push_back(id);
  }
  for (const auto& id : doomed) RevokeToken(id);
}

std::vector<std::string> SanitizePolicies(std::vector<std::string> policies, bool add_default) {
  std::vector<std::string> out;
  bool has_default = false;
  for (const auto& raw : policies) {
    const std::string p = Lower(Trim(raw));
    if (p.empty()) continue;
    if (p == "root") return {"root"};
    if (p == "default") has_default = true;
    out.push_back(p);
  }
  if (add_default && !has_default) out.push_back("default");
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace vaultsim
