#include "tests/integration/vault_env.h"

#include <openssl/rand.h>
#include <stdlib.h>

#include <cstdio>
#include <stdexcept>

namespace vkms::testing {
namespace {

std::string RandomSuffix() {
  unsigned char b[4];
  RAND_bytes(b, sizeof b);
  char out[9];
  snprintf(out, sizeof out, "%02x%02x%02x%02x", b[0], b[1], b[2], b[3]);
  return out;
}

}  // namespace

VaultEnv::~VaultEnv() {
  if (!sim_ && setup_) {
    // Real Vault: remove what this test created.
    try {
      setup_->Expect("DELETE", "sys/mounts/" + transit_mount_, Json::Value(), {200, 204, 404});
      setup_->Expect("DELETE", "sys/auth/" + approle_mount_, Json::Value(), {200, 204, 404});
      setup_->Expect("DELETE", "sys/policies/acl/" + policy_, Json::Value(), {200, 204, 404});
      for (const auto& p : extra_policies_) {
        setup_->Expect("DELETE", "sys/policies/acl/" + p, Json::Value(), {200, 204, 404});
      }
    } catch (const std::exception&) {
    }
  }
}

bool VaultEnv::Start(std::string* error) {
  const char* real = getenv("VAULT_ADDR");
  if (real != nullptr && *real != '\0') {
    addr_ = real;
    ca_file_ = getenv("VAULT_CACERT") ? getenv("VAULT_CACERT") : "";
    root_token_ = getenv("VAULT_TOKEN") ? getenv("VAULT_TOKEN") : "";
    std::string suffix = RandomSuffix();
    transit_mount_ = "vkms-it-" + suffix + "-transit";
    approle_mount_ = "vkms-it-" + suffix + "-approle";
    policy_ = "vkms-it-" + suffix;
  } else {
    sim_ = std::make_unique<SimProcess>();
    if (!sim_->Start({}, error)) return false;
    addr_ = sim_->addr();
    ca_file_ = sim_->ca_file();
    root_token_ = sim_->root_token();
  }
  http_ = std::make_unique<VaultHttp>(addr_, ca_file_);
  setup_ = std::make_unique<VaultSetup>(*http_, root_token_);
  if (sim_) control_ = std::make_unique<SimControl>(*http_, root_token_);
  try {
    setup_->EnableTransit(transit_mount_);
    setup_->CreateKey(transit_mount_, key_);
    setup_->EnableAppRole(approle_mount_);
    // Exactly the shipped minimal policy, with this test's mount names.
    std::string hcl;
    for (const char* p : {"encrypt", "decrypt"}) {
      hcl += "path \"" + transit_mount_ + "/" + p + "/" + key_ +
             "\" {\n  capabilities = [\"update\"]\n}\n";
    }
    hcl += "path \"" + transit_mount_ + "/keys/" + key_ + "\" {\n  capabilities = [\"read\"]\n}\n";
    hcl += "path \"auth/token/lookup-self\" {\n  capabilities = [\"read\"]\n}\n";
    hcl += "path \"auth/token/renew-self\" {\n  capabilities = [\"update\"]\n}\n";
    setup_->WritePolicy(policy_, hcl);
    Json::Value role(Json::objectValue);
    role["token_policies"].append(policy_);
    role["token_ttl"] = "1h";
    role["token_max_ttl"] = "24h";
    setup_->CreateRole(approle_mount_, role_, role);
    role_id_ = setup_->ReadRoleId(approle_mount_, role_);
  } catch (const std::exception& e) {
    *error = e.what();
    return false;
  }
  return true;
}

void VaultEnv::CreateRoleWithPolicy(const std::string& name, const std::string& hcl,
                                    bool no_default_policy, std::string* role_id,
                                    std::string* secret_id) {
  setup_->WritePolicy(name, hcl);
  extra_policies_.push_back(name);
  Json::Value role(Json::objectValue);
  role["token_policies"].append(name);
  role["token_no_default_policy"] = no_default_policy;
  role["token_ttl"] = "1h";
  role["token_max_ttl"] = "24h";
  setup_->CreateRole(approle_mount_, name, role);
  *role_id = setup_->ReadRoleId(approle_mount_, name);
  *secret_id = setup_->NewSecretId(approle_mount_, name);
}

std::string VaultEnv::NewSecretId() {
  return setup_->NewSecretId(approle_mount_, role_);
}

int VaultEnv::port() const {
  size_t colon = addr_.rfind(':');
  return colon == std::string::npos ? 443 : atoi(addr_.c_str() + colon + 1);
}

PluginOptions VaultEnv::DefaultPluginOptions() {
  PluginOptions o;
  o.vault_addrs = {addr_};
  o.ca_file = ca_file_;
  o.role_id = role_id_;
  o.secret_id = NewSecretId();
  o.extra_flags = PluginFlags();
  return o;
}

std::vector<std::string> VaultEnv::PluginFlags() const {
  return {"--transit-mount=" + transit_mount_, "--transit-key=" + key_,
          "--approle-mount=" + approle_mount_};
}

}  // namespace vkms::testing
