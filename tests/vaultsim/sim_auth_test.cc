// AppRole and token auth: roles, secret-ids, login, token lifecycle and TTLs on the simulated
// clock.
#include <algorithm>

#include "sim_fixture.h"

namespace vkms::testing {
namespace {

class AuthTest : public SimFixture {
 protected:
  void SetUp() override {
    SimFixture::SetUp();
    role_ = Name("r");
    for (char& c : role_) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    policy_ = Name("pol");
    Setup().WritePolicy(policy_, "path \"transit/encrypt/*\" { capabilities = [\"update\"] }");
  }

  void MakeRole(Json::Value params) {
    params["token_policies"] = policy_;
    Setup().CreateRole("approle", role_, params);
    role_id_ = Setup().ReadRoleId("approle", role_);
  }

  HttpResult Login(const std::string& secret_id) {
    Json::Value b;
    b["role_id"] = role_id_;
    b["secret_id"] = secret_id;
    return http_->Call("POST", "auth/approle/login", b);
  }

  std::string role_, policy_, role_id_;
};

TEST_F(AuthTest, RoleRoundTripsDurationsAsSeconds) {
  Json::Value p;
  p["token_ttl"] = "1h30m";
  p["token_max_ttl"] = "2h";
  p["token_period"] = 0;
  p["secret_id_ttl"] = "90s";
  p["secret_id_num_uses"] = 3;
  p["token_num_uses"] = "5";
  p["token_no_default_policy"] = true;
  MakeRole(p);
  HttpResult r = Root("GET", "auth/approle/role/" + role_);
  ASSERT_EQ(r.status, 200) << r.body;
  const Json::Value& d = r.json["data"];
  EXPECT_EQ(d["token_ttl"].asInt(), 5400);
  EXPECT_EQ(d["token_max_ttl"].asInt(), 7200);
  EXPECT_EQ(d["secret_id_ttl"].asInt(), 90);
  EXPECT_EQ(d["secret_id_num_uses"].asInt(), 3);
  EXPECT_EQ(d["token_num_uses"].asInt(), 5);
  EXPECT_TRUE(d["token_no_default_policy"].asBool());
  EXPECT_TRUE(d["bind_secret_id"].asBool());
  EXPECT_EQ(d["token_type"].asString(), "default");
  ASSERT_EQ(d["token_policies"].size(), 1u);
  EXPECT_EQ(d["token_policies"][0].asString(), d["policies"][0].asString());

  HttpResult list = Root("LIST", "auth/approle/role");
  ASSERT_EQ(list.status, 200);
  bool found = false;
  for (const auto& k : list.json["data"]["keys"]) found |= k.asString() == role_;
  EXPECT_TRUE(found);

  Json::Value bad;
  bad["token_ttl"] = "2h";
  bad["token_max_ttl"] = "1h";
  EXPECT_EQ(Root("POST", "auth/approle/role/" + role_, bad).FirstError(),
            "'token_ttl' cannot be greater than 'token_max_ttl'");
  Json::Value none;
  none["bind_secret_id"] = false;
  EXPECT_EQ(Root("POST", "auth/approle/role/" + role_, none).FirstError(),
            "at least one constraint should be enabled on the role");
  EXPECT_EQ(Root("DELETE", "auth/approle/role/" + role_).status, 204);
  EXPECT_EQ(Root("GET", "auth/approle/role/" + role_).status, 404);
}

TEST_F(AuthTest, RoleIdCanBeSet) {
  MakeRole(Obj());
  Json::Value b;
  b["role_id"] = "custom-" + role_;
  EXPECT_EQ(Root("POST", "auth/approle/role/" + role_ + "/role-id", b).status, 204);
  EXPECT_EQ(Setup().ReadRoleId("approle", role_), "custom-" + role_);
}

TEST_F(AuthTest, LoginReturnsVaultsAuthBlock) {
  Json::Value p;
  p["token_ttl"] = "20m";
  MakeRole(p);
  HttpResult s = Root("POST", "auth/approle/role/" + role_ + "/secret-id", Obj());
  ASSERT_EQ(s.status, 200);
  EXPECT_FALSE(s.json["data"]["secret_id_accessor"].asString().empty());
  EXPECT_TRUE(s.json["data"]["secret_id_ttl"].isIntegral());
  EXPECT_TRUE(s.json["data"]["secret_id_num_uses"].isIntegral());

  HttpResult r = Login(s.json["data"]["secret_id"].asString());
  ASSERT_EQ(r.status, 200) << r.body;
  const Json::Value& a = r.json["auth"];
  EXPECT_FALSE(a["client_token"].asString().empty());
  EXPECT_FALSE(a["accessor"].asString().empty());
  std::string lower = policy_;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::vector<std::string> expected = {"default", lower};
  std::sort(expected.begin(), expected.end());
  ASSERT_EQ(a["policies"].size(), 2u);
  EXPECT_EQ(a["policies"][0].asString(), expected[0]);
  EXPECT_EQ(a["policies"][1].asString(), expected[1]);
  EXPECT_EQ(a["token_policies"], a["policies"]);
  EXPECT_EQ(a["metadata"]["role_name"].asString(), role_);
  EXPECT_EQ(a["lease_duration"].asInt(), 1200);
  EXPECT_TRUE(a["renewable"].asBool());
  EXPECT_EQ(a["token_type"].asString(), "service");
  EXPECT_TRUE(a["orphan"].asBool());
  EXPECT_EQ(a["num_uses"].asInt(), 0);
  EXPECT_FALSE(a["entity_id"].asString().empty());

  // The token works for what its policy grants.
  Setup().CreateKey("transit", Name("k"));
  Json::Value enc;
  enc["plaintext"] = "aGk=";
  EXPECT_EQ(As(a["client_token"].asString(), "POST", "transit/encrypt/" + Name("k"), enc).status,
            200);
}

TEST_F(AuthTest, LoginErrors) {
  MakeRole(Obj());
  const std::string secret = Setup().NewSecretId("approle", role_);
  Json::Value b;
  HttpResult r = http_->Call("POST", "auth/approle/login", b);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.FirstError(), "missing role_id");
  b["role_id"] = role_id_;
  r = http_->Call("POST", "auth/approle/login", b);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.FirstError(), "missing secret_id");
  EXPECT_EQ(Login("wrong").FirstError(), "invalid role or secret ID");
  role_id_ = "unknown-role-id";
  r = Login(secret);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.FirstError(), "invalid role or secret ID");
}

TEST_F(AuthTest, SecretIdNumUsesIsConsumedPerLogin) {
  Json::Value p;
  p["secret_id_num_uses"] = 2;
  MakeRole(p);
  const std::string secret = Setup().NewSecretId("approle", role_);
  const int64_t logins_before = Control().Stats()["logins"].asInt64();
  EXPECT_EQ(Login(secret).status, 200);
  EXPECT_EQ(Login(secret).status, 200);
  HttpResult third = Login(secret);
  EXPECT_EQ(third.status, 400);
  EXPECT_EQ(third.FirstError(), "invalid role or secret ID");
  EXPECT_EQ(Control().Stats()["logins"].asInt64(), logins_before + 2);
}

TEST_F(AuthTest, SecretIdExpiresOnTheSimulatedClock) {
  Json::Value p;
  p["secret_id_ttl"] = "10m";
  MakeRole(p);
  const std::string secret = Setup().NewSecretId("approle", role_);
  const std::string other = Setup().NewSecretId("approle", role_);
  EXPECT_EQ(Login(secret).status, 200);
  Control().AdvanceClock(601);
  HttpResult r = Login(other);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.FirstError(), "invalid role or secret ID");
}

TEST_F(AuthTest, SecretIdsCanBeDestroyed) {
  MakeRole(Obj());
  const std::string secret = Setup().NewSecretId("approle", role_);
  Json::Value b;
  b["secret_id"] = secret;
  HttpResult lookup = Root("POST", "auth/approle/role/" + role_ + "/secret-id/lookup", b);
  ASSERT_EQ(lookup.status, 200);
  EXPECT_FALSE(lookup.json["data"]["secret_id_accessor"].asString().empty());
  EXPECT_EQ(Root("POST", "auth/approle/role/" + role_ + "/secret-id/destroy", b).status, 204);
  EXPECT_EQ(Login(secret).FirstError(), "invalid role or secret ID");
}

TEST_F(AuthTest, TokenExpiresOnTheSimulatedClock) {
  Json::Value p;
  p["token_ttl"] = 60;
  MakeRole(p);
  const std::string token =
      Setup().Login("approle", role_id_, Setup().NewSecretId("approle", role_));
  HttpResult r = As(token, "GET", "auth/token/lookup-self");
  ASSERT_EQ(r.status, 200);
  EXPECT_LE(r.json["data"]["ttl"].asInt(), 60);
  EXPECT_GE(r.json["data"]["ttl"].asInt(), 58);
  Control().AdvanceClock(61);
  r = As(token, "GET", "auth/token/lookup-self");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.FirstError(), "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n");
}

TEST_F(AuthTest, RenewalIsCappedByTheMaxTtlWithVaultsWarning) {
  Json::Value p;
  p["token_ttl"] = "5m";
  p["token_max_ttl"] = "10m";
  MakeRole(p);
  const std::string token =
      Setup().Login("approle", role_id_, Setup().NewSecretId("approle", role_));
  Json::Value small;
  small["increment"] = 60;
  HttpResult r = As(token, "POST", "auth/token/renew-self", small);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["auth"]["lease_duration"].asInt(), 60);
  EXPECT_TRUE(r.json["warnings"].isNull());

  Control().AdvanceClock(1);
  Json::Value big;
  big["increment"] = "1h";
  r = As(token, "POST", "auth/token/renew-self", big);
  ASSERT_EQ(r.status, 200) << r.body;
  // 600 s from login, less the simulated second (and a real one if the wall clock ticked).
  const int lease = r.json["auth"]["lease_duration"].asInt();
  EXPECT_TRUE(lease == 599 || lease == 598) << lease;
  ASSERT_EQ(r.json["warnings"].size(), 1u);
  EXPECT_EQ(r.json["warnings"][0].asString(),
            "TTL of \"1h0m0s\" exceeded the effective max_ttl of \"9m" +
                std::to_string(lease - 540) + "s\"; TTL value is capped accordingly");
  EXPECT_EQ(r.json["auth"]["client_token"].asString(), token);
  EXPECT_LE(As(token, "GET", "auth/token/lookup-self").json["data"]["ttl"].asInt(), lease);
}

TEST_F(AuthTest, PeriodicTokensRenewToThePeriod) {
  Json::Value p;
  p["token_period"] = "30m";
  MakeRole(p);
  const std::string token =
      Setup().Login("approle", role_id_, Setup().NewSecretId("approle", role_));
  Control().AdvanceClock(100);
  Json::Value b;
  b["increment"] = "5m";
  HttpResult r = As(token, "POST", "auth/token/renew-self", b);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json["auth"]["lease_duration"].asInt(), 1800);
  EXPECT_EQ(As(token, "GET", "auth/token/lookup-self").json["data"]["period"].asInt(), 1800);
}

TEST_F(AuthTest, TokenCreateLookupRenewRevoke) {
  Json::Value params;
  params["policies"].append(policy_);
  params["ttl"] = "1h";
  params["explicit_max_ttl"] = "2h";
  params["display_name"] = "tester";
  params["meta"]["owner"] = "tests";
  HttpResult c = Root("POST", "auth/token/create", params);
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.json["auth"]["lease_duration"].asInt(), 3600);
  EXPECT_FALSE(c.json["auth"]["orphan"].asBool());
  const std::string token = c.json["auth"]["client_token"].asString();

  HttpResult l = As(token, "GET", "auth/token/lookup-self");
  ASSERT_EQ(l.status, 200);
  const Json::Value& d = l.json["data"];
  EXPECT_EQ(d["id"].asString(), token);
  EXPECT_EQ(d["accessor"].asString(), c.json["auth"]["accessor"].asString());
  EXPECT_EQ(d["creation_ttl"].asInt(), 3600);
  EXPECT_EQ(d["explicit_max_ttl"].asInt(), 7200);
  EXPECT_EQ(d["display_name"].asString(), "token-tester");
  EXPECT_EQ(d["meta"]["owner"].asString(), "tests");
  EXPECT_EQ(d["path"].asString(), "auth/token/create");
  EXPECT_EQ(d["type"].asString(), "service");
  EXPECT_TRUE(d["expire_time"].isString());
  EXPECT_EQ(d["expire_time"].asString().back(), 'Z');
  EXPECT_TRUE(d["issue_time"].isString());
  EXPECT_TRUE(d["creation_time"].isIntegral());

  HttpResult root = Root("GET", "auth/token/lookup-self");
  EXPECT_TRUE(root.json["data"]["expire_time"].isNull());
  EXPECT_EQ(root.json["data"]["policies"][0].asString(), "root");

  Json::Value inc;
  inc["increment"] = "3h";
  HttpResult r = As(token, "POST", "auth/token/renew-self", inc);
  ASSERT_EQ(r.status, 200);
  EXPECT_LE(r.json["auth"]["lease_duration"].asInt(), 7200);
  EXPECT_GE(r.json["auth"]["lease_duration"].asInt(), 7190);

  EXPECT_EQ(As(token, "POST", "auth/token/revoke-self", Obj()).status, 204);
  EXPECT_EQ(As(token, "GET", "auth/token/lookup-self").status, 403);
}

TEST_F(AuthTest, NonRenewableTokensSayLeaseIsNotRenewable) {
  Json::Value params;
  params["policies"].append(policy_);
  params["renewable"] = false;
  const std::string token = Setup().CreateToken(params);
  HttpResult r = As(token, "POST", "auth/token/renew-self", Obj());
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.FirstError(), "lease is not renewable");
}

TEST_F(AuthTest, NumUsesAndParentRevocation) {
  Json::Value limited;
  limited["policies"].append(policy_);
  limited["num_uses"] = 2;
  const std::string token = Setup().CreateToken(limited);
  EXPECT_EQ(As(token, "GET", "auth/token/lookup-self").json["data"]["num_uses"].asInt(), 1);
  EXPECT_EQ(As(token, "GET", "auth/token/lookup-self").status, 200);
  EXPECT_EQ(As(token, "GET", "auth/token/lookup-self").status, 403);

  const std::string parent =
      TokenWithPolicy(Name("parent"), "path \"auth/token/create\" { capabilities = [\"update\"] }");
  Json::Value child_params;
  child_params["policies"].append(Name("parent"));
  HttpResult child = As(parent, "POST", "auth/token/create", child_params);
  ASSERT_EQ(child.status, 200) << child.body;
  const std::string child_token = child.json["auth"]["client_token"].asString();
  EXPECT_EQ(As(child_token, "GET", "auth/token/lookup-self").status, 200);
  EXPECT_EQ(As(parent, "POST", "auth/token/revoke-self", Obj()).status, 204);
  EXPECT_EQ(As(child_token, "GET", "auth/token/lookup-self").status, 403);
}

TEST_F(AuthTest, DisablingTheAuthMethodRevokesItsTokens) {
  const std::string mount = Name("ar");
  Setup().EnableAppRole(mount);
  Json::Value p;
  p["token_policies"] = policy_;
  Setup().CreateRole(mount, "r", p);
  const std::string token =
      Setup().Login(mount, Setup().ReadRoleId(mount, "r"), Setup().NewSecretId(mount, "r"));
  EXPECT_EQ(As(token, "GET", "auth/token/lookup-self").status, 200);
  HttpResult auths = Root("GET", "sys/auth");
  EXPECT_EQ(auths.json["data"][mount + "/"]["type"].asString(), "approle");
  EXPECT_EQ(auths.json["data"]["token/"]["type"].asString(), "token");
  EXPECT_EQ(Root("DELETE", "sys/auth/" + mount).status, 204);
  EXPECT_EQ(As(token, "GET", "auth/token/lookup-self").status, 403);
}

}  // namespace
}  // namespace vkms::testing
