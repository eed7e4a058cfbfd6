#include "vault_setup.h"

#include <algorithm>
#include <stdexcept>

namespace vkms::testing {
namespace {

[[noreturn]] void Unexpected(const std::string& what, const HttpResult& r) {
  throw std::runtime_error(what + ": " +
                           (r.status == 0 ? "transport error: " + r.error
                                          : "HTTP " + std::to_string(r.status) + " " + r.body));
}

std::string StringAt(const HttpResult& r, const char* section, const char* field,
                     const std::string& what) {
  const Json::Value& v = r.json[section][field];
  if (!v.isString()) Unexpected(what + " (no " + section + "." + field + ")", r);
  return v.asString();
}

}  // namespace

VaultSetup::VaultSetup(VaultHttp& http, std::string token, std::string ns)
    : http_(http), token_(std::move(token)), ns_(std::move(ns)) {}

HttpResult VaultSetup::Expect(const std::string& method, const std::string& path,
                              const Json::Value& body, std::initializer_list<long> ok) {
  HttpResult r = http_.Call(method, path, body, token_, ns_);
  if (std::find(ok.begin(), ok.end(), r.status) == ok.end()) Unexpected(method + " " + path, r);
  return r;
}

void VaultSetup::EnableTransit(const std::string& mount) {
  Json::Value body;
  body["type"] = "transit";
  Expect("POST", "sys/mounts/" + mount, body);
}

void VaultSetup::CreateKey(const std::string& mount, const std::string& name) {
  Expect("POST", mount + "/keys/" + name, Json::Value(Json::objectValue));
}

void VaultSetup::EnableAppRole(const std::string& mount) {
  Json::Value body;
  body["type"] = "approle";
  Expect("POST", "sys/auth/" + mount, body);
}

void VaultSetup::EnableCertAuth(const std::string& mount) {
  Json::Value body;
  body["type"] = "cert";
  Expect("POST", "sys/auth/" + mount, body);
}

void VaultSetup::WriteCertRole(const std::string& mount, const std::string& name,
                               const std::string& certificate, Json::Value params) {
  if (!params.isObject()) params = Json::Value(Json::objectValue);
  params["certificate"] = certificate;
  Expect("POST", "auth/" + mount + "/certs/" + name, params);
}

void VaultSetup::WritePolicy(const std::string& name, const std::string& hcl) {
  Json::Value body;
  body["policy"] = hcl;
  Expect("PUT", "sys/policies/acl/" + name, body);
}

void VaultSetup::CreateRole(const std::string& mount, const std::string& role,
                            const Json::Value& params) {
  Expect("POST", "auth/" + mount + "/role/" + role,
         params.isNull() ? Json::Value(Json::objectValue) : params);
}

std::string VaultSetup::ReadRoleId(const std::string& mount, const std::string& role) {
  const std::string path = "auth/" + mount + "/role/" + role + "/role-id";
  return StringAt(Expect("GET", path, Json::Value(), {200}), "data", "role_id", "GET " + path);
}

std::string VaultSetup::NewSecretId(const std::string& mount, const std::string& role,
                                    const Json::Value& params) {
  const std::string path = "auth/" + mount + "/role/" + role + "/secret-id";
  return StringAt(Expect("POST", path, params, {200}), "data", "secret_id", "POST " + path);
}

std::string VaultSetup::Login(const std::string& mount, const std::string& role_id,
                              const std::string& secret_id) {
  Json::Value body;
  body["role_id"] = role_id;
  body["secret_id"] = secret_id;
  const std::string path = "auth/" + mount + "/login";
  HttpResult r = http_.Call("POST", path, body, "", ns_);
  if (r.status != 200) Unexpected("POST " + path, r);
  return StringAt(r, "auth", "client_token", "POST " + path);
}

std::string VaultSetup::CreateToken(const Json::Value& params) {
  return StringAt(Expect("POST", "auth/token/create", params, {200}), "auth", "client_token",
                  "POST auth/token/create");
}

void VaultSetup::CreateNamespace(const std::string& name) {
  Expect("POST", "sys/namespaces/" + name, Json::Value(Json::objectValue), {200, 204});
}

SimControl::SimControl(VaultHttp& http, std::string root_token)
    : http_(http), token_(std::move(root_token)) {}

HttpResult SimControl::Post(const std::string& name, const Json::Value& body) {
  HttpResult r = http_.Call("POST", "/_sim/" + name, body, token_);
  if (r.status != 200 && r.status != 204) Unexpected("POST /_sim/" + name, r);
  return r;
}

void SimControl::Seal() {
  Post("seal", Json::Value(Json::objectValue));
}

void SimControl::Unseal() {
  Post("unseal", Json::Value(Json::objectValue));
}

void SimControl::Latency(const std::string& path_prefix, int ms) {
  Json::Value b;
  b["path"] = path_prefix;
  b["ms"] = ms;
  Post("latency", b);
}

void SimControl::Fail(const std::string& path_prefix, int status, int count, int retry_after) {
  Json::Value b;
  b["path"] = path_prefix;
  b["status"] = status;
  b["count"] = count;
  b["retry_after"] = retry_after;
  Post("fail", b);
}

void SimControl::Drop(const std::string& path_prefix, int count) {
  Json::Value b;
  b["path"] = path_prefix;
  b["count"] = count;
  Post("drop", b);
}

void SimControl::Standby(const std::string& active_addr) {
  Json::Value b;
  b["redirect"] = active_addr;
  Post("standby", b);
}

void SimControl::NoLeader() {
  Json::Value b;
  b["no_leader"] = true;
  Post("standby", b);
}

void SimControl::RevokeTokens() {
  Post("revoke-tokens", Json::Value(Json::objectValue));
}

int64_t SimControl::AdvanceClock(int64_t seconds) {
  Json::Value b;
  b["advance"] = Json::Int64(seconds);
  HttpResult r = Post("clock", b);
  if (!r.json["now"].isIntegral()) Unexpected("POST /_sim/clock", r);
  return r.json["now"].asInt64();
}

void SimControl::Reset() {
  Post("reset", Json::Value(Json::objectValue));
}

Json::Value SimControl::Stats() {
  HttpResult r = http_.Call("GET", "/_sim/stats", Json::Value(), token_);
  if (r.status != 200 || !r.json.isObject()) Unexpected("GET /_sim/stats", r);
  return r.json;
}

void SimControl::ResetStats() {
  Post("stats/reset", Json::Value(Json::objectValue));
}

int64_t SimControl::CountWithPrefix(const Json::Value& stats, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& path : stats["by_path"].getMemberNames()) {
    if (path.compare(0, prefix.size(), prefix) == 0) n += stats["by_path"][path].asInt64();
  }
  return n;
}

}  // namespace vkms::testing
