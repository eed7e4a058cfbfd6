// The AppRole auth method, after Vault's builtin/credential/approle (path_role.go,
// path_login.go): roles, role-ids, secret-ids with use counts and TTLs, and login.
#include <algorithm>
#include <sstream>

#include "encoding.h"
#include "fields.h"
#include "handlers.h"
#include "text.h"

namespace vaultsim {
namespace {

constexpr char kMountType[] = "approle";

VaultResponse RoleMissing(const std::string& name) {
  return Error(404, "role \"" + name + "\" does not exist");
}

Json::Value RoleData(const AppRole& r) {
  Json::Value d(Json::objectValue);
  d["bind_secret_id"] = r.bind_secret_id;
  d["local_secret_ids"] = false;
  d["secret_id_bound_cidrs"] = StringArray(r.secret_id_bound_cidrs);
  d["secret_id_num_uses"] = Json::Int64(r.secret_id_num_uses);
  d["secret_id_ttl"] = Json::Int64(r.secret_id_ttl);
  WriteTokenFields(r, &d);
  // Deprecated aliases Vault still returns.
  d["policies"] = StringArray(r.policies);
  d["period"] = Json::Int64(r.token_period);
  return d;
}

// Logins find roles by role-id, so two roles must never share one.
bool RoleIdTaken(const Mount& mount, const std::string& role_name, const std::string& role_id) {
  for (const auto& [name, role] : mount.roles) {
    if (name != role_name && role.role_id == role_id) return true;
  }
  return false;
}

VaultResponse WriteRole(Ctx& c, const std::string& name) {
  auto& roles = c.mount->roles;
  auto existing = roles.find(name);
  AppRole r;
  if (existing != roles.end()) {
    r = existing->second;
  } else {
    r.name = name;
    r.role_id = RandomUuid();
    r.entity_id = RandomUuid();
  }
  FieldReader f(c.req.data);
  if (f.Has("bind_secret_id")) r.bind_secret_id = f.Bool("bind_secret_id");
  if (f.Has("secret_id_num_uses")) r.secret_id_num_uses = f.Int("secret_id_num_uses");
  if (f.Has("secret_id_ttl")) r.secret_id_ttl = f.DurationSeconds("secret_id_ttl");
  if (f.Has("secret_id_bound_cidrs"))
    r.secret_id_bound_cidrs = f.StringList("secret_id_bound_cidrs");
  const std::string custom_role_id = f.String("role_id");
  const std::string token_error = ReadTokenFields(f, &r);
  if (!token_error.empty()) return Error(400, token_error);
  if (r.secret_id_num_uses < 0) return Error(400, "secret_id_num_uses cannot be negative");
  if (!r.bind_secret_id && r.secret_id_bound_cidrs.empty() && r.token_bound_cidrs.empty()) {
    return Error(400, "at least one constraint should be enabled on the role");
  }
  if (!custom_role_id.empty()) r.role_id = custom_role_id;
  if (RoleIdTaken(*c.mount, name, r.role_id)) return Error(400, "role_id already in use");
  roles[name] = std::move(r);
  return NoContent();
}

VaultResponse GenerateSecretId(Ctx& c, AppRole& role) {
  if (!role.bind_secret_id) return Error(400, "bind_secret_id is not set on the role");
  FieldReader f(c.req.data);
  int64_t num_uses = role.secret_id_num_uses;
  int64_t ttl = role.secret_id_ttl;
  if (f.Has("num_uses")) {
    num_uses = f.Int("num_uses");
    if (f.ok() && num_uses < 0) return Error(400, "num_uses cannot be negative");
    if (role.secret_id_num_uses > 0 && (num_uses == 0 || num_uses > role.secret_id_num_uses)) {
      return Error(400, "num_uses cannot be higher than the role's secret_id_num_uses");
    }
  }
  if (f.Has("ttl")) {
    ttl = f.DurationSeconds("ttl");
    if (role.secret_id_ttl > 0 && (ttl == 0 || ttl > role.secret_id_ttl)) {
      return Error(400, "ttl cannot be longer than the role's secret_id_ttl");
    }
  }
  Json::Value metadata(Json::objectValue);
  const std::string metadata_text = f.String("metadata");
  if (!f.ok()) return Error(400, f.error());
  if (!metadata_text.empty()) {
    Json::CharReaderBuilder b;
    std::string errs;
    std::istringstream in(metadata_text);
    if (!Json::parseFromStream(b, in, &metadata, &errs) || !metadata.isObject()) {
      return Error(400, "failed to parse metadata: " + errs);
    }
  }
  SecretId s;
  s.accessor = RandomUuid();
  s.created = c.st.Now();
  s.ttl = ttl;
  s.expires = ttl > 0 ? s.created + ttl : 0;
  s.num_uses = num_uses;
  s.metadata = metadata;
  const std::string secret = RandomUuid();
  role.secret_ids[secret] = s;

  Json::Value d(Json::objectValue);
  d["secret_id"] = secret;
  d["secret_id_accessor"] = s.accessor;
  d["secret_id_ttl"] = Json::Int64(ttl);
  d["secret_id_num_uses"] = Json::Int64(num_uses);
  return Respond(d, kMountType);
}

Json::Value SecretIdData(const SecretId& s) {
  Json::Value d(Json::objectValue);
  d["cidr_list"] = Json::Value(Json::arrayValue);
  d["creation_time"] = FormatRfc3339(s.created);
  d["expiration_time"] = s.expires ? FormatRfc3339(s.expires) : "0001-01-01T00:00:00Z";
  d["last_updated_time"] = FormatRfc3339(s.created);
  d["metadata"] = s.metadata;
  d["secret_id_accessor"] = s.accessor;
  d["secret_id_num_uses"] = Json::Int64(s.num_uses);
  d["secret_id_ttl"] = Json::Int64(s.ttl);
  d["token_bound_cidrs"] = Json::Value(Json::arrayValue);
  return d;
}

// A secret-id that is unknown, expired or used up; expired ones are dropped on the way.
SecretId* LiveSecretId(Ctx& c, AppRole& role, const std::string& secret) {
  auto it = role.secret_ids.find(secret);
  if (it == role.secret_ids.end()) return nullptr;
  if (it->second.expires != 0 && c.st.Now() >= it->second.expires) {
    role.secret_ids.erase(it);
    return nullptr;
  }
  return &it->second;
}

VaultResponse Login(Ctx& c) {
  FieldReader f(c.req.data);
  const std::string role_id = Trim(f.String("role_id"));
  const std::string secret = Trim(f.String("secret_id"));
  if (!f.ok()) return Error(400, f.error());
  if (role_id.empty()) return Error(400, "missing role_id");
  auto it = std::find_if(c.mount->roles.begin(), c.mount->roles.end(),
                         [&](const auto& kv) { return kv.second.role_id == role_id; });
  if (it == c.mount->roles.end()) return Error(400, "invalid role or secret ID");
  AppRole& role = it->second;

  Json::Value meta(Json::objectValue);
  if (role.bind_secret_id) {
    if (secret.empty()) return Error(400, "missing secret_id");
    SecretId* s = LiveSecretId(c, role, secret);
    if (!s) return Error(400, "invalid role or secret ID");
    meta = s->metadata;
    // The last permitted use consumes the secret-id, as Vault deletes it at that login.
    if (s->num_uses == 1) {
      role.secret_ids.erase(secret);
    } else if (s->num_uses > 1) {
      --s->num_uses;
    }
  }
  meta["role_name"] = role.name;

  TokenParams p;
  ApplyTokenFields(role, &p);
  p.meta = meta;
  // Vault names login tokens after the mount path: "approle/" -> "approle".
  p.display_name = c.mount->path.substr(0, c.mount->path.size() - 1);
  std::replace(p.display_name.begin(), p.display_name.end(), '/', '-');
  p.path = "auth/" + c.mount->path + "login";
  p.entity_id = role.entity_id;
  p.auth_mount = c.mount->path;
  p.role_name = role.name;
  std::vector<std::string> warnings;
  Token& t = IssueToken(c, p, &warnings);
  return RespondAuth(AuthBlock(t), kMountType, warnings);
}

}  // namespace

std::optional<bool> AppRoleExists(const Mount& mount, const std::string& sub) {
  const auto parts = SplitPath(sub);
  if (parts.size() == 2 && parts[0] == "role" && IsGenericName(parts[1])) {
    return mount.roles.count(Lower(parts[1])) > 0;
  }
  return std::nullopt;
}

bool AppRoleUnauthenticated(const std::string& sub) {
  return sub == "login";
}

VaultResponse HandleAppRole(Ctx& c) {
  const auto parts = SplitPath(c.sub);
  const bool write = c.op == Op::kUpdate || c.op == Op::kCreate;
  if (c.sub == "login") return write ? Login(c) : UnsupportedOperation();
  if (parts[0] != "role") return UnsupportedPath();
  if (parts.size() == 1 || (parts.size() == 2 && parts[1].empty())) {
    if (c.op != Op::kList) return UnsupportedOperation();
    std::vector<std::string> names;
    for (const auto& [name, role] : c.mount->roles) names.push_back(name);
    return ListResponse(names, kMountType);
  }
  if (!IsGenericName(parts[1])) return UnsupportedPath();
  // AppRole stores role names lower-cased, so lookups are case-insensitive.
  const std::string name = Lower(parts[1]);
  auto it = c.mount->roles.find(name);
  AppRole* role = it == c.mount->roles.end() ? nullptr : &it->second;
  const std::string rest = c.sub.substr(parts[0].size() + parts[1].size() + 1);

  if (rest.empty()) {
    switch (c.op) {
      case Op::kRead:
        return role ? Respond(RoleData(*role), kMountType) : EmptyError(404);
      case Op::kCreate:
      case Op::kUpdate:
        return WriteRole(c, name);
      case Op::kDelete:
        c.mount->roles.erase(name);
        return NoContent();
      case Op::kList:
        return UnsupportedOperation();
    }
  }
  if (rest == "/role-id") {
    if (c.op == Op::kRead) {
      if (!role) return EmptyError(404);
      Json::Value d(Json::objectValue);
      d["role_id"] = role->role_id;
      return Respond(d, kMountType);
    }
    if (!write) return UnsupportedOperation();
    if (!role) return RoleMissing(name);
    FieldReader f(c.req.data);
    const std::string role_id = f.String("role_id");
    if (!f.ok()) return Error(400, f.error());
    if (role_id.empty()) return Error(400, "missing role_id");
    if (RoleIdTaken(*c.mount, name, role_id)) return Error(400, "role_id already in use");
    role->role_id = role_id;
    return NoContent();
  }
  if (rest == "/secret-id" || rest == "/secret-id/") {
    if (!role) return RoleMissing(name);
    if (c.op == Op::kList) {
      std::vector<std::string> accessors;
      for (const auto& [secret, s] : role->secret_ids) accessors.push_back(s.accessor);
      return ListResponse(accessors, kMountType);
    }
    return write ? GenerateSecretId(c, *role) : UnsupportedOperation();
  }
  if (rest == "/secret-id/lookup" || rest == "/secret-id/destroy") {
    if (!write && !(c.op == Op::kDelete && rest == "/secret-id/destroy")) {
      return UnsupportedOperation();
    }
    if (!role) return RoleMissing(name);
    FieldReader f(c.req.data);
    const std::string secret = Trim(f.String("secret_id"));
    if (!f.ok()) return Error(400, f.error());
    if (secret.empty()) return Error(400, "missing secret_id");
    if (rest == "/secret-id/destroy") {
      role->secret_ids.erase(secret);
      return NoContent();
    }
    SecretId* s = LiveSecretId(c, *role, secret);
    // Vault answers an unknown secret-id lookup with an empty 204.
    return s ? Respond(SecretIdData(*s), kMountType) : NoContent();
  }
  if (rest == "/secret-id-accessor/destroy") {
    if (!write && c.op != Op::kDelete) return UnsupportedOperation();
    if (!role) return RoleMissing(name);
    FieldReader f(c.req.data);
    const std::string accessor = Trim(f.String("secret_id_accessor"));
    if (!f.ok()) return Error(400, f.error());
    if (accessor.empty()) return Error(400, "missing secret_id_accessor");
    for (auto s = role->secret_ids.begin(); s != role->secret_ids.end(); ++s) {
      if (s->second.accessor == accessor) {
        role->secret_ids.erase(s);
        return NoContent();
      }
    }
    return Error(400, "failed to find accessor entry for secret_id_accessor: \"" + accessor + "\"");
  }
  return UnsupportedPath();
}

}  // namespace vaultsim
