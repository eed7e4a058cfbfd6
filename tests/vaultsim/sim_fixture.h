// One simulator per test suite (started in SetUpTestSuite, stopped by pid in TearDownTestSuite),
// with transit mounted at transit/ and AppRole at approle/, a root-token client, and helpers.
// Tests in a suite share the simulator, so each names its keys and roles after itself.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "sim_process.h"
#include "vault_http.h"
#include "vault_setup.h"

namespace vkms::testing {

class SimFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sim_ = std::make_unique<SimProcess>();
    std::string error;
    if (!sim_->Start({}, &error)) {
      sim_.reset();
      FAIL() << "vaultsim did not start: " << error;
    }
    http_ = std::make_unique<VaultHttp>(sim_->addr(), sim_->ca_file());
    VaultSetup root(*http_, sim_->root_token());
    root.EnableTransit("transit");
    root.EnableAppRole("approle");
  }

  static void TearDownTestSuite() {
    // Close the client's keep-alive connection first so the simulator exits at once.
    http_.reset();
    sim_.reset();
  }

  void SetUp() override { ASSERT_TRUE(sim_ && http_) << "no simulator for this suite"; }

  // A name unique to the running test, valid as a Vault key or role name.
  static std::string Name(const std::string& prefix = "t") {
    return prefix + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  static HttpResult Root(const std::string& method, const std::string& path,
                         const Json::Value& body = Json::Value(), const std::string& ns = "") {
    return http_->Call(method, path, body, sim_->root_token(), ns);
  }
  static HttpResult As(const std::string& token, const std::string& method, const std::string& path,
                       const Json::Value& body = Json::Value(), const std::string& ns = "") {
    return http_->Call(method, path, body, token, ns);
  }
  static VaultSetup Setup(const std::string& ns = "") {
    return VaultSetup(*http_, sim_->root_token(), ns);
  }
  static SimControl Control() { return SimControl(*http_, sim_->root_token()); }

  // A token carrying exactly `policy` (plus default), created by the root token.
  static std::string TokenWithPolicy(const std::string& policy_name, const std::string& hcl) {
    Setup().WritePolicy(policy_name, hcl);
    Json::Value params;
    params["policies"].append(policy_name);
    return Setup().CreateToken(params);
  }

  static Json::Value Obj() { return Json::Value(Json::objectValue); }

  inline static std::unique_ptr<SimProcess> sim_;
  inline static std::unique_ptr<VaultHttp> http_;
};

}  // namespace vkms::testing
