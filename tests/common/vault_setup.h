// Setup steps many tests share, against a simulated or a real Vault, and the simulator's fault
// API. A step that gets an unexpected answer throws std::runtime_error naming the request, the
// status and the body, so a broken setup fails the test with a readable message.
#pragma once

#include <json/json.h>

#include <cstdint>
#include <initializer_list>
#include <string>

#include "vault_http.h"

namespace vkms::testing {

class VaultSetup {
 public:
  // `token` needs the rights for each step (the root token does); `ns` is the namespace the
  // steps act in ("" for the root namespace).
  VaultSetup(VaultHttp& http, std::string token, std::string ns = "");

  // One request whose status must be among `ok`.
  HttpResult Expect(const std::string& method, const std::string& path,
                    const Json::Value& body = Json::Value(),
                    std::initializer_list<long> ok = {200, 204});

  void EnableTransit(const std::string& mount = "transit");
  void CreateKey(const std::string& mount, const std::string& name);
  void EnableAppRole(const std::string& mount = "approle");
  void EnableCertAuth(const std::string& mount = "cert");
  // auth/<mount>/certs/<name>: `certificate` (PEM) plus whatever else `params` holds.
  void WriteCertRole(const std::string& mount, const std::string& name,
                     const std::string& certificate, Json::Value params = Json::Value());
  void WritePolicy(const std::string& name, const std::string& hcl);
  void CreateRole(const std::string& mount, const std::string& role, const Json::Value& params);
  std::string ReadRoleId(const std::string& mount, const std::string& role);
  std::string NewSecretId(const std::string& mount, const std::string& role,
                          const Json::Value& params = Json::Value(Json::objectValue));
  // AppRole login; returns the client token.
  std::string Login(const std::string& mount, const std::string& role_id,
                    const std::string& secret_id);
  // auth/token/create; returns the client token.
  std::string CreateToken(const Json::Value& params);
  void CreateNamespace(const std::string& name);

 private:
  VaultHttp& http_;
  std::string token_;
  std::string ns_;
};

// The simulator's /_sim/ API (see tests/vaultsim/README.md). Needs the root token.
class SimControl {
 public:
  SimControl(VaultHttp& http, std::string root_token);

  void Seal();
  void Unseal();
  // Adds `ms` of latency to Vault paths starting with `path_prefix` ("" = all); 0 removes it.
  void Latency(const std::string& path_prefix, int ms);
  // The next `count` matching requests (-1: all until Reset) get `status`.
  void Fail(const std::string& path_prefix, int status, int count = 1, int retry_after = 0);
  // The next `count` matching requests get their connection closed without a response.
  void Drop(const std::string& path_prefix, int count = 1);
  // Standby that redirects to `active_addr` ("" = active again).
  void Standby(const std::string& active_addr);
  void NoLeader();
  void RevokeTokens();
  // Returns the simulator's new notion of "now" (unix seconds).
  int64_t AdvanceClock(int64_t seconds);
  void Reset();
  Json::Value Stats();
  void ResetStats();

  // Requests recorded for Vault paths starting with `prefix` ("ns/" prefixed when namespaced).
  static int64_t CountWithPrefix(const Json::Value& stats, const std::string& prefix);

 private:
  HttpResult Post(const std::string& name, const Json::Value& body);

  VaultHttp& http_;
  std::string token_;
};

}  // namespace vkms::testing
