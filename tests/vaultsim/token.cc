// The token auth method (auth/token/) and the TTL rules every token follows, after Vault's
// token_store.go, expiration.go and sdk/framework.CalculateTTL.
#include <algorithm>

#include "encoding.h"
#include "fields.h"
#include "handlers.h"
#include "text.h"

namespace vaultsim {
namespace {

constexpr char kMountType[] = "token";

std::string Quoted(int64_t seconds) {
  return "\"" + FormatGoDuration(seconds) + "\"";
}

// framework.CalculateTTL: the lease a token gets at login or renewal. `start` is the token's
// creation time, so the max TTL counts from there however often it is renewed.
bool CalculateTtl(int64_t now, int64_t increment, int64_t backend_ttl, int64_t period,
                  int64_t backend_max, int64_t explicit_max, int64_t start, int64_t* ttl,
                  std::vector<std::string>* warnings, std::string* error) {
  int64_t max_ttl = kSystemMaxTtl;
  if (backend_max > 0 && backend_max < max_ttl) max_ttl = backend_max;
  if (explicit_max > 0 && explicit_max < max_ttl) max_ttl = explicit_max;
  int64_t max_valid_time = 0;
  if (period > 0) {
    if (period > max_ttl) {
      warnings->push_back("period of " + Quoted(period) + " exceeded the effective max_ttl of " +
                          Quoted(max_ttl) + "; period value is capped accordingly");
      period = max_ttl;
    }
    *ttl = period;
    if (explicit_max > 0) max_valid_time = start + explicit_max;
  } else {
    *ttl = increment > 0 ? increment : backend_ttl > 0 ? backend_ttl : kSystemDefaultTtl;
    max_valid_time = start + max_ttl;
  }
  if (max_valid_time != 0) {
    const int64_t max_valid_ttl = max_valid_time - now;
    if (max_valid_ttl <= 0) {
      *error = "past the max TTL, cannot renew";
      return false;
    }
    if (max_valid_time < now + *ttl) {
      warnings->push_back("TTL of " + Quoted(*ttl) + " exceeded the effective max_ttl of " +
                          Quoted(max_valid_ttl) + "; TTL value is capped accordingly");
      *ttl = max_valid_ttl;
    }
  }
  return true;
}

Json::Value LookupData(State& st, const Token& t) {
  Json::Value d(Json::objectValue);
  d["accessor"] = t.accessor;
  d["creation_time"] = Json::Int64(t.creation_time);
  d["creation_ttl"] = Json::Int64(t.creation_ttl);
  d["display_name"] = t.display_name;
  d["entity_id"] = t.entity_id;
  d["expire_time"] = t.expire_at ? Json::Value(FormatRfc3339(t.expire_at)) : Json::Value();
  d["explicit_max_ttl"] = Json::Int64(t.explicit_max_ttl);
  d["id"] = t.id;
  d["issue_time"] = FormatRfc3339(t.creation_time);
  d["meta"] = t.meta;
  d["num_uses"] = Json::Int64(t.num_uses);
  d["orphan"] = t.orphan;
  d["path"] = t.path;
  d["policies"] = StringArray(t.policies);
  d["renewable"] = t.renewable;
  d["ttl"] = Json::Int64(t.expire_at ? std::max<int64_t>(0, t.expire_at - st.Now()) : 0);
  d["type"] = "service";
  if (t.period > 0) d["period"] = Json::Int64(t.period);
  if (t.last_renewal > 0) {
    d["last_renewal"] = FormatRfc3339(t.last_renewal);
    d["last_renewal_time"] = Json::Int64(t.last_renewal);
  }
  return d;
}

VaultResponse Renew(Ctx& c, Token& t) {
  FieldReader f(c.req.data);
  const int64_t increment = f.DurationSeconds("increment");
  if (!f.ok()) return Error(400, f.error());
  if (!t.renewable || t.ttl == 0) return Error(400, "lease is not renewable");

  int64_t backend_ttl = t.creation_ttl, backend_max = 0, period = t.period;
  Namespace* token_ns = c.st.FindNamespace(t.ns);
  const Mount* auth_mount = nullptr;
  if (token_ns != nullptr && !t.auth_mount.empty()) {
    auto m = token_ns->auth_mounts.find(t.auth_mount);
    if (m != token_ns->auth_mounts.end()) auth_mount = &m->second;
  }
  if (auth_mount != nullptr && auth_mount->type == "cert") {
    if (auto refused = CertRenewal(c, t, &backend_ttl, &backend_max, &period)) return *refused;
  } else if (!t.role_name.empty()) {
    // AppRole's renew callback re-reads the role, so a role change applies on the next renewal.
    Namespace* ns = c.st.FindNamespace(t.ns);
    const AppRole* role = nullptr;
    if (ns) {
      auto m = ns->auth_mounts.find(t.auth_mount);
      if (m != ns->auth_mounts.end()) {
        auto r = m->second.roles.find(t.role_name);
        if (r != m->second.roles.end()) role = &r->second;
      }
    }
    if (!role) {
      return Error(500, MultiError({"role \"" + t.role_name + "\" does not exist during renewal"}));
    }
    backend_ttl = role->token_ttl;
    backend_max = role->token_max_ttl;
    period = role->token_period;
  }
  const int64_t now = c.st.Now();
  int64_t ttl = 0;
  std::vector<std::string> warnings;
  std::string error;
  if (!CalculateTtl(now, increment, backend_ttl, period, backend_max, t.explicit_max_ttl,
                    t.creation_time, &ttl, &warnings, &error)) {
    return Error(500, MultiError({error}));
  }
  t.ttl = ttl;
  t.period = period;
  t.expire_at = now + ttl;
  t.last_renewal = now;
  return RespondAuth(AuthBlock(t), kMountType, warnings);
}

bool IsSubset(const std::vector<std::string>& small, const std::vector<std::string>& big) {
  return std::all_of(small.begin(), small.end(), [&](const std::string& p) {
    return std::find(big.begin(), big.end(), p) != big.end();
  });
}

VaultResponse Create(Ctx& c, bool orphan_endpoint) {
  FieldReader f(c.req.data);
  std::vector<std::string> policies = f.StringList("policies");
  Json::Value meta = f.StringMap("meta");
  bool no_parent = f.Bool("no_parent");
  const bool no_default = f.Bool("no_default_policy");
  const bool renewable = f.Bool("renewable", true);
  int64_t ttl = f.DurationSeconds("ttl");
  int64_t explicit_max = f.DurationSeconds("explicit_max_ttl");
  const int64_t period = f.DurationSeconds("period");
  const int64_t num_uses = f.Int("num_uses");
  const std::string display_name = f.String("display_name");
  const std::string type = f.String("type", "service");
  const std::string id = f.String("id");
  if (!f.ok()) return Error(400, f.error());
  if (type == "batch") return Error(400, "vaultsim does not support batch tokens");
  if (type != "service" && type != "default") {
    return Error(400, "invalid 'type' value \"" + type + "\"");
  }
  if (num_uses < 0) return Error(400, "number of uses cannot be negative");

  const Token& parent = *c.token;
  if (!id.empty() && !c.sudo) {
    return Error(400, "root or sudo privileges required to specify token id");
  }
  if (!id.empty() && c.st.FindToken(id)) {
    return Error(400, "cannot create a token with a duplicate ID");
  }
  if (orphan_endpoint) {
    no_parent = true;
  } else if (no_parent && !c.sudo) {
    return Error(400, "root or sudo privileges required to create orphan token");
  }
  if (period > 0 && !c.sudo) {
    return Error(400, "root or sudo privileges required to create periodic token");
  }
  if (policies.empty()) policies = parent.policies;
  if (c.sudo) {
    policies = SanitizePolicies(policies, !no_default);
  } else {
    policies = SanitizePolicies(policies, false);
    if (!IsSubset(policies, SanitizePolicies(parent.policies, false))) {
      return Error(400, "child policies must be subset of parent");
    }
    const bool parent_has_default = std::find(parent.policies.begin(), parent.policies.end(),
                                              "default") != parent.policies.end();
    if (!no_default && parent_has_default) policies.push_back("default");
    policies = SanitizePolicies(policies, false);
  }

  std::vector<std::string> warnings;
  if (explicit_max > 0) {
    if (explicit_max > kSystemMaxTtl && period == 0) {
      warnings.push_back("Explicit max TTL of " + std::to_string(explicit_max) +
                         " seconds is greater than system/mount allowed value; value is being "
                         "capped to " +
                         std::to_string(kSystemMaxTtl) + " seconds");
      explicit_max = kSystemMaxTtl;
    }
    if (ttl == 0 && period == 0) {
      ttl = explicit_max;
    } else if (ttl > explicit_max) {
      warnings.push_back("Requested TTL of " + std::to_string(ttl) +
                         " seconds higher than explicit max TTL; value being capped to " +
                         std::to_string(explicit_max) + " seconds");
      ttl = explicit_max;
    }
  }

  TokenParams p;
  p.policies = policies;
  p.meta = meta.empty() ? Json::Value() : meta;
  p.display_name = display_name.empty() ? "token" : "token-" + display_name;
  p.path = orphan_endpoint ? "auth/token/create-orphan" : "auth/token/create";
  p.parent = no_parent ? "" : parent.id;
  p.ttl = ttl;
  p.explicit_max_ttl = explicit_max;
  p.period = period;
  p.num_uses = num_uses;
  p.renewable = renewable;
  p.id = id;
  return RespondAuth(AuthBlock(IssueToken(c, p, &warnings)), kMountType, warnings);
}

// The token named in the body (lookup, renew, revoke), as Vault reports a missing one.
Token* BodyToken(Ctx& c, VaultResponse* fail) {
  FieldReader f(c.req.data);
  const std::string id = f.String("token");
  if (!f.ok()) {
    *fail = Error(400, f.error());
    return nullptr;
  }
  if (id.empty()) {
    *fail = Error(400, "missing token");
    return nullptr;
  }
  Token* t = c.st.FindToken(id);
  if (!t) *fail = Error(403, "bad token");
  return t;
}

}  // namespace

Token& IssueToken(Ctx& c, const TokenParams& p, std::vector<std::string>* warnings) {
  const int64_t now = c.st.Now();
  Token t;
  t.id = p.id;
  t.ns = c.req.ns;
  t.parent = p.parent;
  t.orphan = p.parent.empty();
  t.policies = p.policies;
  t.meta = p.meta;
  t.display_name = p.display_name;
  t.path = p.path;
  t.creation_time = now;
  t.explicit_max_ttl = p.explicit_max_ttl;
  t.period = p.period;
  t.num_uses = p.num_uses;
  t.entity_id = p.entity_id;
  t.auth_mount = p.auth_mount;
  t.role_name = p.role_name;
  const bool eternal_root = t.IsRoot() && p.ttl == 0 && p.period == 0 && p.explicit_max_ttl == 0;
  if (!eternal_root) {
    std::string error;
    // Cannot fail at issue time: the max valid time is always in the future.
    CalculateTtl(now, 0, p.ttl, p.period, p.max_ttl, p.explicit_max_ttl, now, &t.ttl, warnings,
                 &error);
  }
  t.creation_ttl = t.ttl;
  t.expire_at = t.ttl > 0 ? now + t.ttl : 0;
  // Vault does not advertise non-expiring tokens as renewable.
  t.renewable = p.renewable && t.ttl > 0;
  return c.st.AddToken(std::move(t));
}

std::string ReadTokenFields(FieldReader& f, TokenRoleParams* r) {
  if (f.Has("token_ttl")) r->token_ttl = f.DurationSeconds("token_ttl");
  if (f.Has("token_max_ttl")) r->token_max_ttl = f.DurationSeconds("token_max_ttl");
  if (f.Has("token_explicit_max_ttl")) {
    r->token_explicit_max_ttl = f.DurationSeconds("token_explicit_max_ttl");
  }
  if (f.Has("token_period")) {
    r->token_period = f.DurationSeconds("token_period");
  } else if (f.Has("period")) {
    r->token_period = f.DurationSeconds("period");
  }
  if (f.Has("token_policies")) {
    r->policies = SanitizePolicies(f.StringList("token_policies"), false);
  } else if (f.Has("policies")) {
    r->policies = SanitizePolicies(f.StringList("policies"), false);
  }
  if (f.Has("token_no_default_policy")) {
    r->token_no_default_policy = f.Bool("token_no_default_policy");
  }
  if (f.Has("token_num_uses")) r->token_num_uses = f.Int("token_num_uses");
  if (f.Has("token_type")) r->token_type = f.String("token_type");
  if (f.Has("token_bound_cidrs")) r->token_bound_cidrs = f.StringList("token_bound_cidrs");
  if (!f.ok()) return f.error();
  if (r->token_num_uses < 0) return "'token_num_uses' cannot be negative";
  if (r->token_max_ttl > 0 && r->token_ttl > r->token_max_ttl) {
    return "'token_ttl' cannot be greater than 'token_max_ttl'";
  }
  if (r->token_type == "batch" || r->token_type == "default-batch") {
    return "vaultsim does not support batch tokens";
  }
  if (r->token_type != "default" && r->token_type != "service" &&
      r->token_type != "default-service") {
    return "invalid 'token_type' value \"" + r->token_type + "\"";
  }
  return "";
}

void WriteTokenFields(const TokenRoleParams& r, Json::Value* d) {
  (*d)["token_bound_cidrs"] = StringArray(r.token_bound_cidrs);
  (*d)["token_explicit_max_ttl"] = Json::Int64(r.token_explicit_max_ttl);
  (*d)["token_max_ttl"] = Json::Int64(r.token_max_ttl);
  (*d)["token_no_default_policy"] = r.token_no_default_policy;
  (*d)["token_num_uses"] = Json::Int64(r.token_num_uses);
  (*d)["token_period"] = Json::Int64(r.token_period);
  (*d)["token_policies"] = StringArray(r.policies);
  (*d)["token_ttl"] = Json::Int64(r.token_ttl);
  (*d)["token_type"] = r.token_type;
}

void ApplyTokenFields(const TokenRoleParams& r, TokenParams* p) {
  p->policies = SanitizePolicies(r.policies, !r.token_no_default_policy);
  p->ttl = r.token_ttl;
  p->max_ttl = r.token_max_ttl;
  p->explicit_max_ttl = r.token_explicit_max_ttl;
  p->period = r.token_period;
  p->num_uses = r.token_num_uses;
}

Json::Value AuthBlock(const Token& t) {
  Json::Value a(Json::objectValue);
  a["client_token"] = t.id;
  a["accessor"] = t.accessor;
  a["policies"] = StringArray(t.policies);
  a["token_policies"] = StringArray(t.policies);
  a["metadata"] = t.meta;
  a["lease_duration"] = Json::Int64(t.ttl);
  a["renewable"] = t.renewable;
  a["entity_id"] = t.entity_id;
  a["token_type"] = "service";
  a["orphan"] = t.orphan;
  a["mfa_requirement"] = Json::nullValue;
  a["num_uses"] = Json::Int64(t.num_uses);
  return a;
}

VaultResponse HandleTokenStore(Ctx& c) {
  const std::string& s = c.sub;
  const bool write = c.op == Op::kUpdate || c.op == Op::kCreate;
  VaultResponse fail;
  if (s == "create" || s == "create-orphan") {
    return write ? Create(c, s == "create-orphan") : UnsupportedOperation();
  }
  if (s == "lookup-self") {
    return c.op == Op::kRead ? Respond(LookupData(c.st, *c.token), kMountType)
                             : UnsupportedOperation();
  }
  if (s == "renew-self") return write ? Renew(c, *c.token) : UnsupportedOperation();
  if (s == "revoke-self") {
    if (!write) return UnsupportedOperation();
    c.st.RevokeToken(c.token->id);
    return NoContent();
  }
  if (s == "lookup" || s == "renew" || s == "revoke") {
    if (!write) return UnsupportedOperation();
    Token* t = BodyToken(c, &fail);
    if (!t) return fail;
    if (s == "lookup") return Respond(LookupData(c.st, *t), kMountType);
    if (s == "renew") return Renew(c, *t);
    c.st.RevokeToken(t->id);
    return NoContent();
  }
  if (s == "lookup-accessor") {
    if (!write) return UnsupportedOperation();
    FieldReader f(c.req.data);
    Token* t = c.st.FindTokenByAccessor(f.String("accessor"));
    if (!t) return Error(400, "invalid accessor");
    Json::Value d = LookupData(c.st, *t);
    d["id"] = "";
    return Respond(d, kMountType);
  }
  return UnsupportedPath();
}

}  // namespace vaultsim
