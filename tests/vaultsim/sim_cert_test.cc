// TLS certificate auth in the simulator: trusted certificates, login with the connection's
// client certificate (Vault's error texts for none, unknown, constrained-out and expired ones),
// and the renewal binding to the login certificate.
#include <stdlib.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fstream>

#include "sim_fixture.h"
#include "test_pki.h"

namespace vkms::testing {
namespace {

class CertAuthTest : public SimFixture {
 protected:
  static void SetUpTestSuite() {
    SimFixture::SetUpTestSuite();
    if (http_) Setup().EnableCertAuth("cert");
  }

  void SetUp() override {
    SimFixture::SetUp();
    char tmpl[] = "/tmp/vkms-certtest-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // Vault stores both lower-cased.
    role_ = Name("c");
    policy_ = Name("pol");
    for (std::string* s : {&role_, &policy_}) {
      for (char& c : *s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    Setup().WritePolicy(policy_, "path \"transit/encrypt/*\" { capabilities = [\"update\"] }");
    CertSpec ca;
    ca.common_name = "kms CA " + role_;
    ca.is_ca = true;
    ca_ = IssueOrThrow(ca);
  }

  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  Pem Leaf(const std::string& cn, const Pem& issuer, long not_after_s = 3600) {
    CertSpec s;
    s.common_name = cn;
    s.not_after_s = not_after_s;
    return IssueOrThrow(s, &issuer);
  }

  // A client of its own (its own TLS connection) presenting `pem`; null pem: no certificate.
  std::unique_ptr<VaultHttp> ClientWith(const Pem* pem) {
    auto c = std::make_unique<VaultHttp>(sim_->addr(), sim_->ca_file());
    if (pem != nullptr) {
      const std::string base = dir_ + "/" + std::to_string(files_++);
      std::ofstream(base + ".pem") << pem->cert;
      std::ofstream(base + "-key.pem") << pem->key;
      c->SetClientCertificate(base + ".pem", base + "-key.pem");
    }
    return c;
  }

  void MakeRole(const std::string& certificate, Json::Value params = Json::Value()) {
    if (!params.isObject()) params = Obj();
    params["token_policies"] = policy_;
    Setup().WriteCertRole("cert", role_, certificate, params);
  }

  HttpResult Login(VaultHttp& client, const std::string& name = "") {
    Json::Value b = Obj();
    if (!name.empty()) b["name"] = name;
    return client.Call("POST", "auth/cert/login", b);
  }

  std::string dir_, role_, policy_;
  Pem ca_;
  int files_ = 0;
};

TEST_F(CertAuthTest, RoleRoundTripsAndIsListed) {
  Json::Value p;
  p["allowed_common_names"] = "kms-*,node-a";
  p["token_ttl"] = "1h";
  p["token_max_ttl"] = "24h";
  MakeRole(ca_.cert, p);
  HttpResult r = Root("GET", "auth/cert/certs/" + role_);
  ASSERT_EQ(r.status, 200) << r.body;
  const Json::Value& d = r.json["data"];
  EXPECT_EQ(d["certificate"].asString(), ca_.cert);
  EXPECT_EQ(d["display_name"].asString(), role_);
  ASSERT_EQ(d["allowed_common_names"].size(), 2u);
  EXPECT_EQ(d["allowed_common_names"][0].asString(), "kms-*");
  EXPECT_EQ(d["token_ttl"].asInt(), 3600);
  EXPECT_EQ(d["token_max_ttl"].asInt(), 86400);
  ASSERT_EQ(d["token_policies"].size(), 1u);
  HttpResult list = Root("LIST", "auth/cert/certs");
  ASSERT_EQ(list.status, 200) << list.body;
  bool found = false;
  for (const auto& k : list.json["data"]["keys"]) found |= k.asString() == role_;
  EXPECT_TRUE(found);

  Json::Value bad;
  bad["certificate"] = "not a certificate";
  EXPECT_EQ(Root("POST", "auth/cert/certs/" + role_, bad).FirstError(),
            "failed to parse certificate");
  CertSpec server_leaf;
  server_leaf.common_name = "server only";
  server_leaf.extended_usage = "serverAuth";
  bad["certificate"] = IssueOrThrow(server_leaf, &ca_).cert;
  EXPECT_EQ(Root("POST", "auth/cert/certs/" + role_, bad).FirstError(),
            "nonCA certificates should have TLS client authentication set as an extended key "
            "usage");
  Json::Value ttl;
  ttl["token_ttl"] = "2h";
  ttl["token_max_ttl"] = "1h";
  EXPECT_EQ(Root("POST", "auth/cert/certs/" + role_, ttl).FirstError(),
            "'token_ttl' cannot be greater than 'token_max_ttl'");
  EXPECT_EQ(Root("DELETE", "auth/cert/certs/" + role_).status, 204);
  EXPECT_EQ(Root("GET", "auth/cert/certs/" + role_).status, 404);
}

TEST_F(CertAuthTest, LoginWithACertificateTheRoleTrusts) {
  Json::Value p;
  p["token_ttl"] = "10m";
  MakeRole(ca_.cert, p);
  Pem leaf = Leaf("kms-node-1", ca_);
  auto client = ClientWith(&leaf);
  HttpResult r = Login(*client, role_);
  ASSERT_EQ(r.status, 200) << r.body;
  const Json::Value& auth = r.json["auth"];
  EXPECT_FALSE(auth["client_token"].asString().empty());
  EXPECT_EQ(auth["lease_duration"].asInt(), 600);
  EXPECT_TRUE(auth["renewable"].asBool());
  EXPECT_EQ(auth["metadata"]["cert_name"].asString(), role_);
  EXPECT_EQ(auth["metadata"]["common_name"].asString(), "kms-node-1");
  EXPECT_FALSE(auth["metadata"]["serial_number"].asString().empty());
  EXPECT_NE(auth["metadata"]["subject_key_id"].asString().find(':'), std::string::npos);
  EXPECT_EQ(r.json["mount_type"].asString(), "cert");
  bool has_policy = false;
  for (const auto& pol : auth["policies"]) has_policy |= pol.asString() == policy_;
  EXPECT_TRUE(has_policy);

  // The token works, and its display name is Vault's "<mount>-<display_name>".
  HttpResult self =
      client->Call("GET", "auth/token/lookup-self", Json::Value(), auth["client_token"].asString());
  ASSERT_EQ(self.status, 200) << self.body;
  EXPECT_EQ(self.json["data"]["display_name"].asString(), "cert-" + role_);
  EXPECT_EQ(self.json["data"]["path"].asString(), "auth/cert/login");

  // Without a name every trusted certificate is tried.
  EXPECT_EQ(Login(*ClientWith(&leaf)).status, 200);
}

TEST_F(CertAuthTest, LoginRefusalsUseVaultsTexts) {
  Json::Value p;
  p["allowed_common_names"] = "kms-*";
  MakeRole(ca_.cert, p);

  HttpResult none = Login(*ClientWith(nullptr), role_);
  EXPECT_EQ(none.status, 400);
  EXPECT_EQ(none.FirstError(), "client certificate must be supplied");

  CertSpec other_ca;
  other_ca.common_name = "some other CA";
  other_ca.is_ca = true;
  Pem stranger_ca = IssueOrThrow(other_ca);
  Pem stranger = Leaf("kms-stranger", stranger_ca);
  HttpResult unknown = Login(*ClientWith(&stranger), role_);
  EXPECT_EQ(unknown.status, 400);
  EXPECT_EQ(unknown.FirstError(), "invalid certificate or no client certificate supplied");

  Pem wrong_name = Leaf("web-frontend", ca_);
  HttpResult constrained = Login(*ClientWith(&wrong_name), role_);
  EXPECT_EQ(constrained.status, 400);
  EXPECT_EQ(constrained.FirstError(),
            "no chain matching all constraints could be found for this login certificate");

  // An unknown role name trusts nothing.
  Pem good = Leaf("kms-a", ca_);
  EXPECT_EQ(Login(*ClientWith(&good), role_ + "-missing").FirstError(),
            "invalid certificate or no client certificate supplied");
}

TEST_F(CertAuthTest, ExpiredCertificateIsRefusedWithGosText) {
  MakeRole(ca_.cert);
  CertSpec s;
  s.common_name = "kms-expired";
  s.not_before_s = -2 * 86400;
  s.not_after_s = -86400;
  Pem expired = IssueOrThrow(s, &ca_);
  HttpResult r = Login(*ClientWith(&expired), role_);
  EXPECT_EQ(r.status, 500);
  const std::string e = r.FirstError();
  EXPECT_NE(e.find("failed to verify client's certificate: x509: certificate has expired or is "
                   "not yet valid: current time "),
            std::string::npos)
      << e;
  EXPECT_NE(e.find(" is after "), std::string::npos) << e;

  // The simulated clock counts: a valid certificate expires when the clock passes its end.
  const long ahead = static_cast<long>(Control().AdvanceClock(0) - time(nullptr));
  Pem short_lived = Leaf("kms-short", ca_, /*not_after_s=*/ahead + 120);
  ASSERT_EQ(Login(*ClientWith(&short_lived), role_).status, 200);
  Control().AdvanceClock(600);
  HttpResult later = Login(*ClientWith(&short_lived), role_);
  EXPECT_EQ(later.status, 500) << later.body;
}

TEST_F(CertAuthTest, ALeafCanBeTrustedByItself) {
  Pem leaf = Leaf("kms-pinned", ca_);
  MakeRole(leaf.cert);
  EXPECT_EQ(Login(*ClientWith(&leaf), role_).status, 200);
  Pem sibling = Leaf("kms-pinned", ca_);  // same CA, same name, another certificate
  EXPECT_EQ(Login(*ClientWith(&sibling), role_).status, 400);
}

TEST_F(CertAuthTest, RenewalIsBoundToTheLoginCertificate) {
  Json::Value p;
  p["token_ttl"] = "10m";
  MakeRole(ca_.cert, p);
  Pem leaf = Leaf("kms-renew", ca_);
  auto client = ClientWith(&leaf);
  HttpResult login = Login(*client, role_);
  ASSERT_EQ(login.status, 200) << login.body;
  const std::string token = login.json["auth"]["client_token"].asString();

  HttpResult renewed = client->Call("POST", "auth/token/renew-self", Obj(), token);
  EXPECT_EQ(renewed.status, 200) << renewed.body;
  // A renewed certificate from the same CA shares the authority key id: still the client.
  Pem renewed_leaf = Leaf("kms-renew", ca_);
  EXPECT_EQ(ClientWith(&renewed_leaf)->Call("POST", "auth/token/renew-self", Obj(), token).status,
            200);
  HttpResult bare = ClientWith(nullptr)->Call("POST", "auth/token/renew-self", Obj(), token);
  EXPECT_EQ(bare.status, 400);
  EXPECT_EQ(bare.FirstError(), "client certificate must be supplied");

  // Binding can be switched off, as in Vault.
  Json::Value cfg;
  cfg["disable_binding"] = true;
  ASSERT_EQ(Root("POST", "auth/cert/config", cfg).status, 204);
  EXPECT_EQ(ClientWith(nullptr)->Call("POST", "auth/token/renew-self", Obj(), token).status, 200);
  cfg["disable_binding"] = false;
  ASSERT_EQ(Root("POST", "auth/cert/config", cfg).status, 204);

  // The role's policies changed: no renewal.
  Json::Value changed;
  changed["token_policies"] = policy_ + ",other";
  Setup().WriteCertRole("cert", role_, ca_.cert, changed);
  HttpResult refused = client->Call("POST", "auth/token/renew-self", Obj(), token);
  EXPECT_EQ(refused.status, 500);
  EXPECT_NE(refused.FirstError().find("policies have changed, not renewing"), std::string::npos)
      << refused.body;
}

}  // namespace
}  // namespace vkms::testing
