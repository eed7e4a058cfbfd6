// The Vault an integration test runs against: the in-repo simulator by default, or a real
// Vault when VAULT_ADDR (with VAULT_TOKEN, and VAULT_CACERT for a private CA) is set. Against a
// real Vault every mount, policy and role gets a unique name and is removed afterwards; tests
// that need the simulator's fault API call RequireSim(), which skips them there.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "sim_process.h"
#include "tests/integration/plugin_process.h"
#include "vault_http.h"
#include "vault_setup.h"

namespace vkms::testing {

class VaultEnv {
 public:
  VaultEnv() = default;
  ~VaultEnv();

  // Starts (or connects to) Vault and configures transit + key + AppRole + the minimal policy.
  bool Start(std::string* error);
  bool is_sim() const { return sim_ != nullptr; }

  const std::string& addr() const { return addr_; }
  const std::string& ca_file() const { return ca_file_; }
  const std::string& root_token() const { return root_token_; }
  const std::string& transit_mount() const { return transit_mount_; }
  const std::string& approle_mount() const { return approle_mount_; }
  const std::string& key() const { return key_; }
  const std::string& role() const { return role_; }
  const std::string& role_id() const { return role_id_; }
  std::string NewSecretId();
  int port() const;

  VaultHttp& http() { return *http_; }
  VaultSetup& setup() { return *setup_; }
  // Only with the simulator.
  SimControl& sim() { return *control_; }
  SimProcess* sim_process() { return sim_.get(); }

  // A policy holding `hcl` and an AppRole role with it as its only policy (plus Vault's default
  // policy unless `no_default_policy`, as deploy/vault/setup.sh's role), both named `name`;
  // sets the role's role-id and a fresh secret-id. Removed with the rest at the end.
  void CreateRoleWithPolicy(const std::string& name, const std::string& hcl, bool no_default_policy,
                            std::string* role_id, std::string* secret_id);

  // The flags that point the plugin at this Vault's transit mount, key and AppRole mount.
  std::vector<std::string> PluginFlags() const;
  // Everything a plugin needs to run against this Vault, with a fresh secret-id.
  PluginOptions DefaultPluginOptions();

 private:
  std::unique_ptr<SimProcess> sim_;
  std::unique_ptr<VaultHttp> http_;
  std::unique_ptr<VaultSetup> setup_;
  std::unique_ptr<SimControl> control_;
  std::string addr_, ca_file_, root_token_;
  std::string transit_mount_ = "transit", approle_mount_ = "approle", key_ = "kms";
  std::string policy_ = "vault-kms", role_ = "vault-kms", role_id_;
  std::vector<std::string> extra_policies_;
};

}  // namespace vkms::testing
