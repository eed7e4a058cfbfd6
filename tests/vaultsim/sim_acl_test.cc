// Policies and their enforcement on every request, as Vault does it.
#include <cctype>
#include <set>

#include "sim_fixture.h"

namespace vkms::testing {
namespace {

class AclTest : public SimFixture {
 protected:
  void SetUp() override {
    SimFixture::SetUp();
    key_ = Name("k");
    Setup().CreateKey("transit", key_);
  }

  Json::Value Plain() {
    Json::Value b;
    b["plaintext"] = "aGVsbG8=";
    return b;
  }

  std::string key_;
};

const char kDenied[] = "1 error occurred:\n\t* permission denied\n\n";

TEST_F(AclTest, PolicyCrudAndLegacyAlias) {
  const std::string name = Name("p");
  const std::string hcl = "path \"transit/keys/x\" { capabilities = [\"read\"] }\n";
  Setup().WritePolicy(name, hcl);
  HttpResult r = Root("GET", "sys/policies/acl/" + name);
  ASSERT_EQ(r.status, 200);
  std::string lower = name;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  EXPECT_EQ(r.json["data"]["name"].asString(), lower);  // Vault lower-cases policy names
  EXPECT_EQ(r.json["data"]["policy"].asString(), hcl);

  HttpResult list = Root("LIST", "sys/policies/acl");
  ASSERT_EQ(list.status, 200);
  std::set<std::string> keys;
  for (const auto& k : list.json["data"]["keys"]) keys.insert(k.asString());
  EXPECT_TRUE(keys.count("default") && keys.count("root"));

  Json::Value legacy;
  legacy["rules"] = hcl;
  EXPECT_EQ(Root("PUT", "sys/policy/" + name + "-old", legacy).status, 204);
  r = Root("GET", "sys/policy/" + name + "-old");
  EXPECT_EQ(r.json["data"]["rules"].asString(), hcl);

  EXPECT_EQ(Root("DELETE", "sys/policies/acl/" + name).status, 204);
  EXPECT_EQ(Root("GET", "sys/policies/acl/" + name).status, 404);
  EXPECT_EQ(Root("DELETE", "sys/policies/acl/default").FirstError(),
            "cannot delete \"default\" policy");
}

TEST_F(AclTest, BadHclIsRejectedWithAReason) {
  Json::Value b;
  b["policy"] = "path \"a\" { capabilities = [\"read\" }";
  HttpResult r = Root("PUT", "sys/policies/acl/" + Name("bad"), b);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.FirstError().rfind("failed to parse policy: line 1:", 0), 0u) << r.FirstError();
  EXPECT_EQ(Root("PUT", "sys/policies/acl/" + Name("empty"), Obj()).FirstError(),
            "'policy' parameter not supplied or empty");
}

TEST_F(AclTest, AllowsWhatThePolicyGrantsAndDeniesTheRest) {
  const std::string token =
      TokenWithPolicy(Name("p"), "path \"transit/encrypt/" + key_ +
                                     "\" { capabilities = [\"update\"] }\n"
                                     "path \"transit/keys/" +
                                     key_ + "\" { capabilities = [\"read\"] }\n");
  EXPECT_EQ(As(token, "POST", "transit/encrypt/" + key_, Plain()).status, 200);
  EXPECT_EQ(As(token, "GET", "transit/keys/" + key_).status, 200);
  HttpResult r = As(token, "POST", "transit/keys/" + key_ + "/rotate", Obj());
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.FirstError(), kDenied);
  EXPECT_EQ(r.Header("Content-Type"), "application/json");
  EXPECT_EQ(As(token, "DELETE", "transit/keys/" + key_).status, 403);
  EXPECT_EQ(As(token, "GET", "sys/mounts").status, 403);
  // ACL is checked before routing: a path that does not exist is still just "denied".
  EXPECT_EQ(As(token, "GET", "nowhere/at/all").status, 403);
}

TEST_F(AclTest, UpdateOnlyCannotCreateAKeyThroughEncryptButCreateCan) {
  const std::string missing = Name("new");
  const std::string update_only =
      TokenWithPolicy(Name("u"), "path \"transit/encrypt/*\" { capabilities = [\"update\"] }");
  HttpResult r = As(update_only, "POST", "transit/encrypt/" + missing, Plain());
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.FirstError(), kDenied);
  EXPECT_EQ(Root("GET", "transit/keys/" + missing).status, 404);
  EXPECT_EQ(As(update_only, "POST", "transit/encrypt/" + key_, Plain()).status, 200);

  const std::string creator = TokenWithPolicy(
      Name("c"), "path \"transit/encrypt/*\" { capabilities = [\"create\", \"update\"] }");
  r = As(creator, "POST", "transit/encrypt/" + missing, Plain());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["data"]["ciphertext"].asString().compare(0, 9, "vault:v1:"), 0);
  HttpResult k = Root("GET", "transit/keys/" + missing);
  EXPECT_EQ(k.status, 200);
  EXPECT_EQ(k.json["data"]["type"].asString(), "aes256-gcm96");
  // The key exists now, so update alone suffices.
  EXPECT_EQ(As(update_only, "POST", "transit/encrypt/" + missing, Plain()).status, 200);
}

TEST_F(AclTest, ExactPathBeatsGlobAndLongerGlobBeatsShorter) {
  const std::string token =
      TokenWithPolicy(Name("p"),
                      "path \"transit/*\" { capabilities = [\"deny\"] }\n"
                      "path \"transit/keys/*\" { capabilities = [\"read\"] }\n"
                      "path \"transit/keys/" +
                          key_ + "-secret\" { capabilities = [\"deny\"] }\n");
  Setup().CreateKey("transit", key_ + "-secret");
  EXPECT_EQ(As(token, "GET", "transit/keys/" + key_).status, 200);
  EXPECT_EQ(As(token, "GET", "transit/keys/" + key_ + "-secret").status, 403);
  EXPECT_EQ(As(token, "POST", "transit/encrypt/" + key_, Plain()).status, 403);
}

TEST_F(AclTest, SegmentWildcard) {
  const std::string token =
      TokenWithPolicy(Name("p"), "path \"transit/+/" + key_ + "\" { capabilities = [\"update\"] }");
  HttpResult enc = As(token, "POST", "transit/encrypt/" + key_, Plain());
  ASSERT_EQ(enc.status, 200);
  Json::Value d;
  d["ciphertext"] = enc.json["data"]["ciphertext"];
  EXPECT_EQ(As(token, "POST", "transit/decrypt/" + key_, d).status, 200);
  EXPECT_EQ(As(token, "POST", "transit/keys/" + key_ + "/rotate", Obj()).status, 403);
}

TEST_F(AclTest, PoliciesUnionAndDenyWins) {
  const std::string p1 = Name("read");
  const std::string p2 = Name("update");
  const std::string p3 = Name("deny");
  Setup().WritePolicy(p1, "path \"transit/keys/" + key_ + "\" { capabilities = [\"read\"] }");
  Setup().WritePolicy(p2, "path \"transit/keys/" + key_ + "\" { capabilities = [\"update\"] }");
  Setup().WritePolicy(p3, "path \"transit/keys/" + key_ + "\" { capabilities = [\"deny\"] }");
  Json::Value both;
  both["policies"].append(p1);
  both["policies"].append(p2);
  const std::string token = Setup().CreateToken(both);
  EXPECT_EQ(As(token, "GET", "transit/keys/" + key_).status, 200);
  EXPECT_EQ(As(token, "POST", "transit/keys/" + key_, Obj()).status, 200);
  both["policies"].append(p3);
  const std::string denied = Setup().CreateToken(both);
  EXPECT_EQ(As(denied, "GET", "transit/keys/" + key_).status, 403);
}

TEST_F(AclTest, PolicyChangesApplyToExistingTokens) {
  const std::string name = Name("p");
  const std::string token =
      TokenWithPolicy(name, "path \"transit/keys/" + key_ + "\" { capabilities = [\"read\"] }");
  EXPECT_EQ(As(token, "GET", "transit/keys/" + key_).status, 200);
  Setup().WritePolicy(name, "path \"other\" { capabilities = [\"read\"] }");
  EXPECT_EQ(As(token, "GET", "transit/keys/" + key_).status, 403);
}

TEST_F(AclTest, DefaultPolicyCoversSelfServiceUnlessOptedOut) {
  const std::string token =
      TokenWithPolicy(Name("p"), "path \"nothing\" { capabilities = [\"read\"] }");
  EXPECT_EQ(As(token, "GET", "auth/token/lookup-self").status, 200);
  Json::Value params;
  params["policies"].append(Name("p"));
  params["no_default_policy"] = true;
  const std::string bare = Setup().CreateToken(params);
  HttpResult r = As(bare, "GET", "auth/token/lookup-self");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.FirstError(), kDenied);
}

TEST_F(AclTest, MissingAndInvalidTokens) {
  HttpResult r = http_->Call("GET", "transit/keys/" + key_);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.FirstError(), "permission denied");
  r = As("hvs.not-a-token", "GET", "transit/keys/" + key_);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.FirstError(), "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n");
}

TEST_F(AclTest, SudoPathsNeedSudo) {
  const std::string mount = Name("ar");
  Json::Value t;
  t["type"] = "approle";
  const std::string plain = TokenWithPolicy(
      Name("plain"), "path \"sys/auth/*\" { capabilities = [\"create\", \"update\"] }");
  EXPECT_EQ(As(plain, "POST", "sys/auth/" + mount, t).status, 403);
  const std::string sudo = TokenWithPolicy(
      Name("sudo"), "path \"sys/auth/*\" { capabilities = [\"create\", \"update\", \"sudo\"] }");
  EXPECT_EQ(As(sudo, "POST", "sys/auth/" + mount, t).status, 204);
}

TEST_F(AclTest, ChildTokensCannotExceedTheirParent) {
  const std::string parent =
      TokenWithPolicy(Name("p"), "path \"auth/token/create\" { capabilities = [\"update\"] }");
  Json::Value wider;
  wider["policies"].append("root");
  HttpResult r = As(parent, "POST", "auth/token/create", wider);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.FirstError(), "child policies must be subset of parent");
  Json::Value same;
  same["policies"].append(Name("p"));
  r = As(parent, "POST", "auth/token/create", same);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["auth"]["policies"].size(), 2u);  // the policy and "default"
  Json::Value orphan;
  orphan["no_parent"] = true;
  EXPECT_EQ(As(parent, "POST", "auth/token/create", orphan).FirstError(),
            "root or sudo privileges required to create orphan token");
}

TEST_F(AclTest, CapabilitiesSelf) {
  const std::string token = TokenWithPolicy(
      Name("p"), "path \"transit/encrypt/*\" { capabilities = [\"update\", \"create\"] }");
  Json::Value b;
  b["paths"].append("transit/encrypt/" + key_);
  b["paths"].append("sys/mounts");
  HttpResult r = As(token, "POST", "sys/capabilities-self", b);
  ASSERT_EQ(r.status, 200) << r.body;
  const Json::Value& caps = r.json["data"]["transit/encrypt/" + key_];
  ASSERT_EQ(caps.size(), 2u);
  EXPECT_EQ(caps[0].asString(), "create");
  EXPECT_EQ(caps[1].asString(), "update");
  EXPECT_EQ(r.json["data"]["sys/mounts"][0].asString(), "deny");
  // Vault's sys/ handler (logical.HTTPSysInjector) also puts every data key at the top level,
  // where the envelope does not already have it; older clients read the lists from there.
  EXPECT_EQ(r.json["transit/encrypt/" + key_], r.json["data"]["transit/encrypt/" + key_]) << r.body;
  EXPECT_EQ(r.json["sys/mounts"], r.json["data"]["sys/mounts"]) << r.body;
  EXPECT_TRUE(r.json["request_id"].isString()) << "the envelope keeps its own keys";
  EXPECT_EQ(Root("POST", "sys/capabilities-self", b).json["data"]["sys/mounts"][0].asString(),
            "root");
}

// The shape the broker's `check` reads: one list per path, "capabilities" only for one path
// (Vault's compatibility key), "deny" where nothing grants, and a deny rule beating a grant.
TEST_F(AclTest, CapabilitiesSelfSinglePathAndDeny) {
  const std::string enc = "transit/encrypt/" + key_;
  const std::string token =
      TokenWithPolicy(Name("p"),
                      "path \"transit/*\" { capabilities = [\"update\"] }\n"
                      "path \"" +
                          enc +
                          "\" { capabilities = [\"deny\"] }\n"
                          "path \"transit/keys/*\" { capabilities = [\"read\", \"sudo\"] }");
  Json::Value one;
  one["paths"].append("transit/keys/" + key_);
  HttpResult r = As(token, "POST", "sys/capabilities-self", one);
  ASSERT_EQ(r.status, 200) << r.body;
  const Json::Value& d = r.json["data"];
  ASSERT_EQ(d["capabilities"].size(), 2u) << r.body;
  EXPECT_EQ(d["capabilities"][0].asString(), "read");
  EXPECT_EQ(d["capabilities"][1].asString(), "sudo");
  EXPECT_EQ(d["capabilities"], d["transit/keys/" + key_]);

  Json::Value two;
  two["paths"].append(enc);
  two["paths"].append("transit/decrypt/" + key_);
  r = As(token, "POST", "sys/capabilities-self", two);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(r.json["data"].isMember("capabilities")) << r.body;
  ASSERT_EQ(r.json["data"][enc].size(), 1u) << r.body;
  EXPECT_EQ(r.json["data"][enc][0].asString(), "deny");
  ASSERT_EQ(r.json["data"]["transit/decrypt/" + key_].size(), 1u) << r.body;
  EXPECT_EQ(r.json["data"]["transit/decrypt/" + key_][0].asString(), "update");

  // Without a token it is a 403 like every authenticated path.
  EXPECT_EQ(As("", "POST", "sys/capabilities-self", one).status, 403);
}

}  // namespace
}  // namespace vkms::testing
