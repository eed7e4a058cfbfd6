#include "faults.h"

#include <algorithm>

#include "encoding.h"
#include "fields.h"
#include "text.h"

namespace vaultsim {
namespace {

constexpr char kVersion[] = "1.15.6+ent";

// What Vault itself says with these statuses, so clients see realistic bodies.
std::string DefaultFailureText(int status, const std::string& vault_path) {
  switch (status) {
    case 429:
      return "request path \"" + vault_path + "\": rate limit quota exceeded";
    case 503:
      return "Vault is sealed";
    case 500:
      return MultiError({"internal error"});
    case 403:
      return MultiError({"permission denied"});
    default:
      return "vaultsim injected failure (status " + std::to_string(status) + ")";
  }
}

int QueryInt(const std::map<std::string, std::string>& query, const char* name, int fallback) {
  auto it = query.find(name);
  int64_t v = 0;
  return it != query.end() && ParseGoInt(it->second, &v) ? static_cast<int>(v) : fallback;
}

bool QueryBool(const std::map<std::string, std::string>& query, const char* name) {
  auto it = query.find(name);
  return it != query.end() && (it->second.empty() || it->second == "true" || it->second == "1");
}

}  // namespace

Faults::Faults() : cluster_id_(RandomUuid()) {}

bool Faults::Take(std::vector<Rule>& rules, const std::string& path, Rule* hit) {
  for (auto it = rules.begin(); it != rules.end(); ++it) {
    if (!StartsWith(path, it->prefix)) continue;
    *hit = *it;
    if (it->remaining > 0 && --it->remaining == 0) rules.erase(it);
    return true;
  }
  return false;
}

Faults::Decision Faults::Before(const std::string& path, const std::string& target,
                                const std::string& ns) {
  std::lock_guard<std::mutex> lock(mu_);
  Decision d;
  size_t longest = 0;
  for (const auto& [prefix, ms] : latency_ms_) {
    if (StartsWith(path, prefix) && (d.latency_ms == 0 || prefix.size() >= longest)) {
      longest = prefix.size();
      d.latency_ms = ms;
    }
  }
  Rule hit;
  if (Take(drops_, path, &hit)) {
    d.drop = true;
    return d;
  }
  if (Take(fails_, path, &hit)) {
    d.response = Error(
        hit.status, hit.message.empty() ? DefaultFailureText(hit.status, ns + path) : hit.message);
    if (hit.retry_after > 0) {
      d.response->headers.emplace_back("Retry-After", std::to_string(hit.retry_after));
    }
    return d;
  }
  // The health endpoints report seal and standby state instead of failing.
  if (path == "sys/health" || path == "sys/seal-status") return d;
  if (sealed_) {
    d.response = Error(503, "Vault is sealed");
  } else if (no_leader_) {
    d.response = Error(503, "no active Vault instance found");
  } else if (!standby_redirect_.empty()) {
    VaultResponse r;
    r.status = 307;
    r.headers.emplace_back("Location", standby_redirect_ + target);
    d.response = r;
  }
  return d;
}

void Faults::Record(const std::string& stats_key, int status, bool successful_login) {
  std::lock_guard<std::mutex> lock(mu_);
  ++total_;
  ++by_path_[stats_key];
  ++by_status_[status == 0 ? "dropped" : std::to_string(status)];
  if (successful_login) ++logins_;
}

void Faults::Enter(const std::string& stats_key) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t n = ++in_flight_[stats_key];
  int64_t& peak = peak_in_flight_[stats_key];
  peak = std::max(peak, n);
}

void Faults::Leave(const std::string& stats_key) {
  std::lock_guard<std::mutex> lock(mu_);
  if (--in_flight_[stats_key] <= 0) in_flight_.erase(stats_key);
}

VaultResponse Faults::Health(const std::map<std::string, std::string>& query, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  const bool standby = sealed_ || no_leader_ || !standby_redirect_.empty();
  Json::Value b(Json::objectValue);
  b["initialized"] = true;
  b["sealed"] = sealed_;
  b["standby"] = standby;
  b["performance_standby"] = false;
  b["replication_performance_mode"] = "disabled";
  b["replication_dr_mode"] = "disabled";
  b["server_time_utc"] = Json::Int64(now);
  b["version"] = kVersion;
  b["enterprise"] = true;
  if (!sealed_) {
    b["cluster_name"] = "vault-cluster-vaultsim";
    b["cluster_id"] = cluster_id_;
    b["echo_duration_ms"] = 0;
    b["clock_skew_ms"] = 0;
    b["replication_primary_canary_age_ms"] = 0;
  }
  VaultResponse r;
  if (sealed_) {
    r.status = QueryInt(query, "sealedcode", 503);
  } else if (standby && !QueryBool(query, "standbyok")) {
    r.status = QueryInt(query, "standbycode", 429);
  } else {
    r.status = QueryInt(query, "activecode", 200);
  }
  r.body = b;
  return r;
}

VaultResponse Faults::SealStatus() {
  std::lock_guard<std::mutex> lock(mu_);
  Json::Value b(Json::objectValue);
  b["type"] = "shamir";
  b["initialized"] = true;
  b["sealed"] = sealed_;
  b["t"] = 1;
  b["n"] = 1;
  b["progress"] = 0;
  b["nonce"] = "";
  b["version"] = kVersion;
  b["build_date"] = "2024-03-01T00:00:00Z";
  b["migration"] = false;
  b["recovery_seal"] = false;
  b["storage_type"] = "inmem";
  if (!sealed_) {
    b["cluster_name"] = "vault-cluster-vaultsim";
    b["cluster_id"] = cluster_id_;
  }
  VaultResponse r;
  r.body = b;
  return r;
}

Json::Value Faults::Stats() const {
  Json::Value s(Json::objectValue);
  s["total"] = Json::Int64(total_);
  s["logins"] = Json::Int64(logins_);
  s["by_path"] = Json::Value(Json::objectValue);
  for (const auto& [k, v] : by_path_) s["by_path"][k] = Json::Int64(v);
  s["by_status"] = Json::Value(Json::objectValue);
  for (const auto& [k, v] : by_status_) s["by_status"][k] = Json::Int64(v);
  s["peak_in_flight_by_path"] = Json::Value(Json::objectValue);
  for (const auto& [k, v] : peak_in_flight_) s["peak_in_flight_by_path"][k] = Json::Int64(v);
  return s;
}

VaultResponse Faults::Admin(const std::string& method, const std::string& name,
                            const Json::Value& body, State& st) {
  FieldReader f(body);
  if (name == "stats") {
    if (method != "GET") return Error(405, "use GET /_sim/stats");
    const std::string prefix = f.String("prefix");
    std::lock_guard<std::mutex> lock(mu_);
    VaultResponse r;
    r.body = Stats();
    if (f.Has("prefix")) {
      int64_t n = 0;
      for (const auto& [path, count] : by_path_) {
        if (StartsWith(path, prefix)) n += count;
      }
      r.body["prefix"] = prefix;
      r.body["prefix_count"] = Json::Int64(n);
    }
    return r;
  }
  if (method != "POST" && method != "PUT") return Error(405, "use POST /_sim/" + name);

  // These touch the Vault state; take its lock alone, never together with ours.
  if (name == "revoke-tokens") {
    std::lock_guard<std::mutex> lock(st.mu);
    st.RevokeAllTokensExceptRoot();
    return NoContent();
  }
  if (name == "clock") {
    const int64_t advance = f.Int("advance");
    if (!f.ok()) return Error(400, f.error());
    if (advance < 0) return Error(400, "advance must be >= 0 seconds");
    std::lock_guard<std::mutex> lock(st.mu);
    st.AdvanceClock(advance);
    VaultResponse r;
    r.body["now"] = Json::Int64(st.Now());
    return r;
  }

  std::lock_guard<std::mutex> lock(mu_);
  if (name == "seal" || name == "unseal") {
    sealed_ = name == "seal";
    return NoContent();
  }
  if (name == "reset") {
    sealed_ = false;
    latency_ms_.clear();
    fails_.clear();
    drops_.clear();
    standby_redirect_.clear();
    no_leader_ = false;
    return NoContent();
  }
  if (name == "stats/reset") {
    total_ = logins_ = 0;
    by_path_.clear();
    by_status_.clear();
    peak_in_flight_.clear();
    return NoContent();
  }
  if (name == "latency") {
    const std::string path = f.String("path");
    const int64_t ms = f.Int("ms", -1);
    if (!f.ok()) return Error(400, f.error());
    if (ms < 0) return Error(400, "ms (>= 0) is required");
    if (ms == 0) {
      latency_ms_.erase(path);
    } else {
      latency_ms_[path] = static_cast<int>(ms);
    }
    return NoContent();
  }
  if (name == "fail" || name == "drop") {
    Rule r;
    r.prefix = f.String("path");
    r.remaining = f.Int("count", 1);
    r.status = static_cast<int>(f.Int("status", name == "drop" ? 0 : -1));
    r.retry_after = static_cast<int>(f.Int("retry_after"));
    r.message = f.String("message");
    if (!f.ok()) return Error(400, f.error());
    if (name == "fail" && (r.status < 100 || r.status > 599)) {
      return Error(400, "status (100-599) is required");
    }
    if (r.retry_after < 0) return Error(400, "retry_after must be >= 0");
    auto& rules = name == "fail" ? fails_ : drops_;
    if (r.remaining == 0) {
      // count 0 withdraws earlier rules for exactly this path.
      rules.erase(std::remove_if(rules.begin(), rules.end(),
                                 [&](const Rule& x) { return x.prefix == r.prefix; }),
                  rules.end());
    } else {
      rules.push_back(r);
    }
    return NoContent();
  }
  if (name == "standby") {
    std::string redirect = f.String("redirect");
    const bool no_leader = f.Bool("no_leader");
    if (!f.ok()) return Error(400, f.error());
    while (!redirect.empty() && redirect.back() == '/') redirect.pop_back();
    standby_redirect_ = redirect;
    no_leader_ = no_leader;
    return NoContent();
  }
  return Error(404, "unknown simulator endpoint /_sim/" + name);
}

}  // namespace vaultsim
