// Vault's request pipeline, in Vault's order: namespace, token, existence check, ACL, handler.
#include <cctype>

#include "handlers.h"

namespace vaultsim {
namespace {

enum class Backend { kNone, kSys, kTokenStore, kAppRole, kCert, kTransit };

struct Route {
  Backend backend = Backend::kNone;
  Mount* mount = nullptr;
  std::string sub;
};

bool Under(const std::string& path, const std::string& prefix, std::string* sub) {
  if (path.compare(0, prefix.size(), prefix) == 0) {
    *sub = path.substr(prefix.size());
    return true;
  }
  if (path + "/" == prefix) {
    sub->clear();
    return true;
  }
  return false;
}

// Longest mount prefix wins, as in Vault's router.
Route Resolve(Namespace& ns, const std::string& path) {
  Route r;
  if (Under(path, "sys/", &r.sub)) {
    r.backend = Backend::kSys;
    return r;
  }
  if (Under(path, "auth/token/", &r.sub)) {
    r.backend = Backend::kTokenStore;
    return r;
  }
  const bool auth = path.compare(0, 5, "auth/") == 0;
  auto& table = auth ? ns.auth_mounts : ns.mounts;
  size_t best = 0;
  for (auto& [mount_path, mount] : table) {
    std::string sub;
    const std::string prefix = (auth ? "auth/" : "") + mount_path;
    if (prefix.size() > best && Under(path, prefix, &sub)) {
      best = prefix.size();
      r.backend = !auth                  ? Backend::kTransit
                  : mount.type == "cert" ? Backend::kCert
                                         : Backend::kAppRole;
      r.mount = &mount;
      r.sub = sub;
    }
  }
  return r;
}

uint32_t CapabilityFor(Op op) {
  switch (op) {
    case Op::kRead:
      return kCapRead;
    case Op::kList:
      return kCapList;
    case Op::kCreate:
      return kCapCreate;
    case Op::kUpdate:
      return kCapUpdate;
    case Op::kDelete:
      return kCapDelete;
  }
  return 0;
}

}  // namespace

Acl TokenAcl(State& st, const Token& token) {
  Acl acl;
  Namespace* ns = st.FindNamespace(token.ns);
  if (!ns) return acl;
  for (const auto& name : token.policies) {
    auto it = ns->policies.find(name);
    if (it != ns->policies.end()) acl.Add(it->second.parsed);
  }
  return acl;
}

bool IsGenericName(const std::string& name) {
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (name.empty() || !word(name.front()) || !word(name.back())) return false;
  for (char c : name) {
    if (!word(c) && c != '-' && c != '.' && c != '@') return false;
  }
  return true;
}

VaultResponse Dispatch(State& st, const VaultRequest& req) {
  std::lock_guard<std::mutex> lock(st.mu);
  Namespace* ns = st.FindNamespace(req.ns);
  if (!ns) return NoHandlerForRoute(req.ns + req.path);
  Route route = Resolve(*ns, req.path);

  Op op = req.op;
  if (op == Op::kUpdate) {
    std::optional<bool> exists;
    if (route.backend == Backend::kTransit) exists = TransitExists(*route.mount, route.sub);
    if (route.backend == Backend::kAppRole) exists = AppRoleExists(*route.mount, route.sub);
    if (exists && !*exists) op = Op::kCreate;
  }

  Token* token = nullptr;
  bool sudo = false;
  bool revoke_after = false;
  const bool unauthenticated =
      (route.backend == Backend::kAppRole && AppRoleUnauthenticated(route.sub)) ||
      (route.backend == Backend::kCert && CertUnauthenticated(route.sub));
  if (!unauthenticated) {
    if (req.token.empty()) return Error(403, "permission denied");
    token = st.FindToken(req.token);
    // A token is usable in its own namespace and below it, never above.
    if (!token || req.ns.compare(0, token->ns.size(), token->ns) != 0) return InvalidToken();
    if (token->IsRoot()) {
      sudo = true;
    } else {
      const std::string acl_path = req.ns.substr(token->ns.size()) + req.path;
      const uint32_t caps = TokenAcl(st, *token).Capabilities(acl_path, op == Op::kList);
      if (!(caps & CapabilityFor(op))) return PermissionDenied();
      sudo = caps & kCapSudo;
      if (route.backend == Backend::kSys && SysNeedsSudo(route.sub) && !sudo) {
        return PermissionDenied();
      }
    }
    // Vault counts a use before serving the request; the last use revokes the token after it.
    if (token->num_uses > 0 && --token->num_uses == 0) revoke_after = true;
  }

  if (route.backend == Backend::kNone) return NoHandlerForRoute(req.ns + req.path);

  Ctx ctx{st, req, *ns, token, route.mount, route.sub, op, sudo};
  VaultResponse resp;
  switch (route.backend) {
    case Backend::kSys:
      resp = HandleSys(ctx);
      break;
    case Backend::kTokenStore:
      resp = HandleTokenStore(ctx);
      break;
    // sys/ only mounts AppRole and cert as auth methods and transit as a secrets engine.
    case Backend::kAppRole:
      resp = HandleAppRole(ctx);
      break;
    case Backend::kCert:
      resp = HandleCert(ctx);
      break;
    case Backend::kTransit:
      resp = HandleTransit(ctx);
      break;
    case Backend::kNone:
      break;
  }
  if (revoke_after) st.RevokeToken(req.token);
  return resp;
}

}  // namespace vaultsim
