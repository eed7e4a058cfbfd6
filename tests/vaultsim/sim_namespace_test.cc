// Namespaces (X-Vault-Namespace): separate mounts, policies and tokens.
#include "sim_fixture.h"

namespace vkms::testing {
namespace {

class NamespaceTest : public SimFixture {
 protected:
  void SetUp() override {
    SimFixture::SetUp();
    ns_ = Name("ns");
    Setup().CreateNamespace(ns_);
    VaultSetup in_ns = Setup(ns_);
    in_ns.EnableTransit("transit");
    in_ns.CreateKey("transit", "kms");
    in_ns.EnableAppRole("approle");
    in_ns.WritePolicy("kms", "path \"transit/encrypt/kms\" { capabilities = [\"update\"] }");
    Json::Value role;
    role["token_policies"] = "kms";
    in_ns.CreateRole("approle", "kms", role);
    ns_token_ = in_ns.Login("approle", in_ns.ReadRoleId("approle", "kms"),
                            in_ns.NewSecretId("approle", "kms"));
  }

  static Json::Value Plain() {
    Json::Value b;
    b["plaintext"] = "aGk=";
    return b;
  }

  std::string ns_;
  std::string ns_token_;
};

TEST_F(NamespaceTest, MountsAndKeysLiveInTheirNamespace) {
  EXPECT_EQ(Root("POST", "transit/encrypt/kms", Plain(), ns_).status, 200);
  HttpResult keys = Root("GET", "transit/keys/kms", Json::Value(), ns_);
  ASSERT_EQ(keys.status, 200);
  EXPECT_EQ(keys.json["data"]["name"].asString(), "kms");
  // The root namespace has its own transit/ without this key.
  EXPECT_EQ(Root("GET", "transit/keys/kms").status, 404);
  EXPECT_TRUE(Root("GET", "sys/mounts", Json::Value(), ns_).json["data"].isMember("transit/"));
  EXPECT_TRUE(Root("GET", "sys/auth", Json::Value(), ns_).json["data"].isMember("approle/"));
}

TEST_F(NamespaceTest, TokensAreBoundToTheirNamespace) {
  EXPECT_EQ(As(ns_token_, "POST", "transit/encrypt/kms", Plain(), ns_).status, 200);
  Setup().CreateKey("transit", "kms");
  HttpResult r = As(ns_token_, "POST", "transit/encrypt/kms", Plain());
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.FirstError(), "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n");
  HttpResult lookup = As(ns_token_, "GET", "auth/token/lookup-self", Json::Value(), ns_);
  ASSERT_EQ(lookup.status, 200);
  EXPECT_EQ(lookup.json["data"]["path"].asString(), "auth/approle/login");
}

TEST_F(NamespaceTest, RootNamespaceTokensNeedPoliciesNamingTheNamespace) {
  const std::string plain = TokenWithPolicy(
      Name("plain"), "path \"transit/encrypt/kms\" { capabilities = [\"update\"] }");
  EXPECT_EQ(As(plain, "POST", "transit/encrypt/kms", Plain(), ns_).status, 403);
  const std::string scoped = TokenWithPolicy(
      Name("scoped"), "path \"" + ns_ + "/transit/encrypt/kms\" { capabilities = [\"update\"] }");
  EXPECT_EQ(As(scoped, "POST", "transit/encrypt/kms", Plain(), ns_).status, 200);
}

TEST_F(NamespaceTest, PoliciesAreSeparate) {
  HttpResult r = Root("GET", "sys/policies/acl/kms", Json::Value(), ns_);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Root("GET", "sys/policies/acl/kms").status, 404);
  HttpResult list = Root("LIST", "sys/policies/acl", Json::Value(), ns_);
  for (const auto& k : list.json["data"]["keys"]) EXPECT_NE(k.asString(), "root");
}

TEST_F(NamespaceTest, ListReadDeleteAndUnknownNamespaces) {
  HttpResult list = Root("LIST", "sys/namespaces");
  ASSERT_EQ(list.status, 200);
  EXPECT_TRUE(list.json["data"]["key_info"].isMember(ns_ + "/"));
  HttpResult read = Root("GET", "sys/namespaces/" + ns_);
  ASSERT_EQ(read.status, 200);
  EXPECT_EQ(read.json["data"]["path"].asString(), ns_ + "/");

  HttpResult unknown = Root("GET", "transit/keys/kms", Json::Value(), "no-such-" + ns_);
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.FirstError(), "no handler for route \"no-such-" + ns_ +
                                      "/transit/keys/kms\". route entry not found.");

  EXPECT_EQ(Root("DELETE", "sys/namespaces/" + ns_).status, 204);
  EXPECT_EQ(Root("GET", "transit/keys/kms", Json::Value(), ns_).status, 404);
  EXPECT_EQ(As(ns_token_, "GET", "auth/token/lookup-self", Json::Value(), ns_).status, 404);
}

}  // namespace
}  // namespace vkms::testing
