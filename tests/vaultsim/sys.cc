// The parts of Vault's system backend (sys/) that set up and inspect a simulated Vault: secrets
// engines, auth methods, ACL policies, namespaces and capabilities-self. sys/health and
// sys/seal-status are answered by the server itself because they depend on fault state.

#include "encoding.h"
#include "fields.h"
#include "handlers.h"
#include "text.h"

namespace vaultsim {
namespace {

constexpr char kMountType[] = "system";
constexpr char kVersion[] = "1.15.6";

// Mount points Vault reserves for itself.
const char* const kProtectedMounts[] = {"audit/", "auth/", "sys/", "cubbyhole/", "identity/"};

// Vault's sanitizeMountPath: no leading slash, exactly one trailing slash.
std::string MountPath(std::string p) {
  while (!p.empty() && p.front() == '/') p.erase(0, 1);
  while (!p.empty() && p.back() == '/') p.pop_back();
  return p.empty() ? p : p + "/";
}

Json::Value MountInfo(const std::string& type, const std::string& accessor, const std::string& uuid,
                      const std::string& description) {
  Json::Value m(Json::objectValue);
  m["type"] = type;
  m["description"] = description;
  m["accessor"] = accessor;
  m["uuid"] = uuid;
  Json::Value cfg(Json::objectValue);
  cfg["default_lease_ttl"] = 0;
  cfg["max_lease_ttl"] = 0;
  cfg["force_no_cache"] = false;
  m["config"] = cfg;
  m["local"] = false;
  m["seal_wrap"] = false;
  m["external_entropy_access"] = false;
  m["options"] = Json::nullValue;
  m["plugin_version"] = "";
  m["running_plugin_version"] = std::string("v") + kVersion + "+builtin.vault";
  m["running_sha256"] = "";
  m["deprecation_status"] = "supported";
  return m;
}

Json::Value MountInfo(const Mount& m) {
  return MountInfo(m.type, m.accessor, m.uuid, m.description);
}

Mount NewMount(const std::string& path, const std::string& type, const std::string& accessor_prefix,
               const std::string& description) {
  Mount m;
  m.path = path;
  m.type = type;
  m.uuid = RandomUuid();
  m.accessor = accessor_prefix + type + "_" + m.uuid.substr(0, 8);
  m.description = description;
  return m;
}

// Vault refuses a mount that would shadow or be shadowed by an existing one.
std::string Conflict(const std::map<std::string, Mount>& table, const std::string& path) {
  for (const auto& [existing, m] : table) {
    if (StartsWith(existing, path) || StartsWith(path, existing)) return existing;
  }
  return "";
}

VaultResponse Mounts(Ctx& c, const std::string& rest) {
  const std::string path = MountPath(rest);
  if (path.empty()) {
    if (c.op != Op::kRead) return UnsupportedOperation();
    Json::Value data(Json::objectValue);
    for (const auto& [p, m] : c.ns.mounts) data[p] = MountInfo(m);
    data["sys/"] = MountInfo("system", "system_" + c.ns.id, "",
                             "system endpoints used for control, policy and debugging");
    data["cubbyhole/"] =
        MountInfo("cubbyhole", "cubbyhole_" + c.ns.id, "", "per-token private secret storage");
    data["identity/"] = MountInfo("identity", "identity_" + c.ns.id, "", "identity store");
    return Respond(data, kMountType);
  }
  auto it = c.ns.mounts.find(path);
  switch (c.op) {
    case Op::kRead:
      if (it == c.ns.mounts.end()) return Error(400, "No secret engine mount at " + path);
      return Respond(MountInfo(it->second), kMountType);
    case Op::kDelete:
      // Vault answers success for a missing mount so as not to reveal whether it existed.
      if (it != c.ns.mounts.end()) c.ns.mounts.erase(it);
      return NoContent();
    case Op::kCreate:
    case Op::kUpdate: {
      FieldReader f(c.req.data);
      const std::string type = f.String("type");
      const std::string description = f.String("description");
      if (!f.ok()) return Error(400, f.error());
      if (type.empty()) return Error(400, "backend type must be specified as a string");
      for (const char* p : kProtectedMounts) {
        if (c.req.ns.empty() && StartsWith(path, p)) {
          return Error(403, "cannot mount \"" + path + "\"");
        }
      }
      if (type != "transit") {
        return Error(400,
                     "vaultsim only provides the transit secrets engine, not \"" + type + "\"");
      }
      std::string existing = Conflict(c.ns.mounts, path);
      if (!existing.empty()) return Error(409, "path is already in use at " + existing);
      c.ns.mounts[path] = NewMount(path, type, "", description);
      return NoContent();
    }
    case Op::kList:
      break;
  }
  return UnsupportedOperation();
}

VaultResponse AuthMethods(Ctx& c, const std::string& rest) {
  const std::string path = MountPath(rest);
  if (path.empty()) {
    if (c.op != Op::kRead) return UnsupportedOperation();
    Json::Value data(Json::objectValue);
    data["token/"] = MountInfo("token", "auth_token_" + c.ns.id, "", "token based credentials");
    for (const auto& [p, m] : c.ns.auth_mounts) data[p] = MountInfo(m);
    return Respond(data, kMountType);
  }
  auto it = c.ns.auth_mounts.find(path);
  switch (c.op) {
    case Op::kRead:
      if (it == c.ns.auth_mounts.end()) return Error(400, "No auth engine at " + path);
      return Respond(MountInfo(it->second), kMountType);
    case Op::kDelete:
      if (it != c.ns.auth_mounts.end()) {
        c.st.RevokeTokensFromAuthMount(c.req.ns, path);
        c.ns.auth_mounts.erase(it);
      }
      return NoContent();
    case Op::kCreate:
    case Op::kUpdate: {
      FieldReader f(c.req.data);
      const std::string type = f.String("type");
      const std::string description = f.String("description");
      if (!f.ok()) return Error(400, f.error());
      if (type.empty()) return Error(400, "backend type must be specified as a string");
      if (type != "approle") {
        return Error(400, "vaultsim only provides the approle auth method, not \"" + type + "\"");
      }
      // The token method is always mounted at token/.
      const std::string existing = StartsWith(path, "token/") || StartsWith("token/", path)
                                       ? "token/"
                                       : Conflict(c.ns.auth_mounts, path);
      if (!existing.empty()) return Error(409, "path is already in use at " + existing);
      c.ns.auth_mounts[path] = NewMount(path, type, "auth_", description);
      return NoContent();
    }
    case Op::kList:
      break;
  }
  return UnsupportedOperation();
}

std::vector<std::string> PolicyNames(const Ctx& c) {
  std::vector<std::string> names;
  for (const auto& [name, p] : c.ns.policies) names.push_back(name);
  // Vault lists the built-in root policy last, and only in the root namespace.
  if (c.req.ns.empty()) names.push_back("root");
  return names;
}

// Serves both sys/policies/acl/<name> (field "policy") and the older sys/policy/<name>
// (field "rules" on read; "policy" or "rules" on write).
VaultResponse PolicyByName(Ctx& c, std::string name, bool legacy) {
  name = Lower(name);
  const char* text_field = legacy ? "rules" : "policy";
  switch (c.op) {
    case Op::kRead: {
      Json::Value d(Json::objectValue);
      d["name"] = name;
      if (name == "root") {
        d[text_field] = "";
        return Respond(d, kMountType);
      }
      auto it = c.ns.policies.find(name);
      if (it == c.ns.policies.end()) return EmptyError(404);
      d[text_field] = it->second.text;
      return Respond(d, kMountType);
    }
    case Op::kCreate:
    case Op::kUpdate: {
      if (name == "root") return Error(400, "cannot update \"root\" policy");
      FieldReader f(c.req.data);
      std::string text = f.String("policy");
      if (legacy && text.empty()) text = f.String("rules");
      if (!f.ok()) return Error(400, f.error());
      if (text.empty()) return Error(400, "'policy' parameter not supplied or empty");
      StoredPolicy p;
      p.text = text;
      std::string error;
      if (!ParsePolicy(text, &p.parsed, &error)) {
        return Error(400, "failed to parse policy: " + error);
      }
      c.ns.policies[name] = std::move(p);
      return NoContent();
    }
    case Op::kDelete:
      if (name == "root" || name == "default") {
        return Error(400, "cannot delete \"" + name + "\" policy");
      }
      c.ns.policies.erase(name);
      return NoContent();
    case Op::kList:
      break;
  }
  return UnsupportedOperation();
}

Json::Value NamespaceData(const Namespace& ns) {
  Json::Value d(Json::objectValue);
  d["id"] = ns.id;
  d["path"] = ns.path;
  d["custom_metadata"] = Json::Value(Json::objectValue);
  return d;
}

VaultResponse Namespaces(Ctx& c, const std::string& rest) {
  std::string name = rest;
  while (!name.empty() && name.front() == '/') name.erase(0, 1);
  while (!name.empty() && name.back() == '/') name.pop_back();
  if (name.empty()) {
    if (c.op != Op::kList) return UnsupportedOperation();
    std::vector<std::string> keys = c.st.ChildNamespaces(c.req.ns);
    VaultResponse r = ListResponse(keys, kMountType);
    if (r.status == 200) {
      r.body["data"]["key_info"] = Json::Value(Json::objectValue);
      for (const auto& k : keys) {
        r.body["data"]["key_info"][k] = NamespaceData(*c.st.FindNamespace(c.req.ns + k));
      }
    }
    return r;
  }
  const std::string full = c.req.ns + name + "/";
  Namespace* existing = c.st.FindNamespace(full);
  switch (c.op) {
    case Op::kRead:
      return existing ? Respond(NamespaceData(*existing), kMountType) : EmptyError(404);
    case Op::kCreate:
    case Op::kUpdate:
      if (!c.req.ns.empty() || name.find('/') != std::string::npos) {
        return Error(400, "vaultsim supports namespaces directly under the root namespace only");
      }
      if (!existing) existing = &c.st.CreateNamespace(full);
      return Respond(NamespaceData(*existing), kMountType);
    case Op::kDelete:
      if (existing) c.st.DeleteNamespace(full);
      return NoContent();
    case Op::kList:
      break;
  }
  return UnsupportedOperation();
}

VaultResponse CapabilitiesSelf(Ctx& c) {
  if (c.op != Op::kUpdate && c.op != Op::kCreate) return UnsupportedOperation();
  FieldReader f(c.req.data);
  std::vector<std::string> paths = f.StringList("paths");
  if (paths.empty() && f.Has("path")) paths = f.StringList("path");
  if (!f.ok()) return Error(400, f.error());
  if (paths.empty()) return Error(400, "missing paths");
  Json::Value data(Json::objectValue);
  const Acl acl = TokenAcl(c.st, *c.token);
  for (const auto& path : paths) {
    Json::Value caps(Json::arrayValue);
    if (c.token->IsRoot()) {
      caps.append("root");
    } else {
      const std::string acl_path = c.req.ns.substr(c.token->ns.size()) + path;
      auto names = CapabilityNames(acl.Capabilities(acl_path, false));
      if (names.empty()) names.push_back("deny");
      for (const auto& n : names) caps.append(n);
    }
    data[path] = caps;
  }
  // Vault keeps the single-path "capabilities" key for old clients, and only for one path.
  if (paths.size() == 1) data["capabilities"] = data[paths.front()];
  return Respond(data, kMountType);
}

}  // namespace

bool SysNeedsSudo(const std::string& sub) {
  return StartsWith(sub, "auth/");
}

namespace {

VaultResponse RouteSys(Ctx& c) {
  const std::string& s = c.sub;
  if (s == "mounts" || StartsWith(s, "mounts/")) return Mounts(c, s.substr(6));
  if (s == "auth" || StartsWith(s, "auth/")) return AuthMethods(c, s.substr(4));
  if (s == "policies/acl" || s == "policies/acl/") {
    return c.op == Op::kList ? ListResponse(PolicyNames(c), kMountType) : UnsupportedOperation();
  }
  if (StartsWith(s, "policies/acl/")) return PolicyByName(c, s.substr(13), false);
  if (s == "policy" || s == "policy/") {
    if (c.op != Op::kRead && c.op != Op::kList) return UnsupportedOperation();
    Json::Value d(Json::objectValue);
    d["keys"] = Json::Value(Json::arrayValue);
    for (const auto& n : PolicyNames(c)) d["keys"].append(n);
    d["policies"] = d["keys"];
    return Respond(d, kMountType);
  }
  if (StartsWith(s, "policy/")) return PolicyByName(c, s.substr(7), true);
  if (s == "namespaces" || StartsWith(s, "namespaces/")) return Namespaces(c, s.substr(10));
  if (s == "capabilities-self") return CapabilitiesSelf(c);
  return UnsupportedPath();
}

}  // namespace

VaultResponse HandleSys(Ctx& c) {
  VaultResponse r = RouteSys(c);
  // Vault serves /v1/sys/ through logical.HTTPSysInjector: a success's data is also written at
  // the top level of the answer, ahead of the envelope (whose keys win a clash). Older clients
  // read sys/capabilities-self's lists from there.
  if (r.status == 200 && r.body.isObject() && r.body["data"].isObject()) {
    const Json::Value data = r.body["data"];
    for (const auto& k : data.getMemberNames()) {
      if (!r.body.isMember(k)) r.body[k] = data[k];
    }
  }
  return r;
}

}  // namespace vaultsim
