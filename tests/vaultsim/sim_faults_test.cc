// The /_sim/ fault API and the health endpoints that report it.
#include <chrono>

#include "sim_fixture.h"

namespace vkms::testing {
namespace {

class FaultsTest : public SimFixture {
 protected:
  void SetUp() override {
    SimFixture::SetUp();
    Control().Reset();
    key_ = Name("k");
    Setup().CreateKey("transit", key_);
  }
  void TearDown() override { Control().Reset(); }

  HttpResult Encrypt(const std::string& token = "") {
    Json::Value b;
    b["plaintext"] = "aGk=";
    return http_->Call("POST", "transit/encrypt/" + key_, b,
                       token.empty() ? sim_->root_token() : token);
  }

  std::string key_;
};

TEST_F(FaultsTest, HealthReportsAnActiveUnsealedNode) {
  HttpResult r = http_->Call("GET", "sys/health");
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(r.json["initialized"].asBool());
  EXPECT_FALSE(r.json["sealed"].asBool());
  EXPECT_FALSE(r.json["standby"].asBool());
  EXPECT_FALSE(r.json["performance_standby"].asBool());
  EXPECT_TRUE(r.json["version"].isString());
  EXPECT_TRUE(r.json["cluster_id"].isString());
  EXPECT_TRUE(r.json["server_time_utc"].isIntegral());
  EXPECT_EQ(r.Header("Content-Type"), "application/json");
}

TEST_F(FaultsTest, SealMakesEveryCallFailWith503) {
  Control().Seal();
  HttpResult r = Encrypt();
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.FirstError(), "Vault is sealed");
  HttpResult h = http_->Call("GET", "sys/health");
  EXPECT_EQ(h.status, 503);
  EXPECT_TRUE(h.json["sealed"].asBool());
  EXPECT_TRUE(http_->Call("GET", "sys/seal-status").json["sealed"].asBool());
  Control().Unseal();
  EXPECT_EQ(Encrypt().status, 200);
  EXPECT_EQ(http_->Call("GET", "sys/health").status, 200);
}

TEST_F(FaultsTest, LatencyDelaysMatchingPathsOnly) {
  Control().Latency("transit/encrypt/", 300);
  const auto start = std::chrono::steady_clock::now();
  HttpResult r = Encrypt();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.status, 200);
  EXPECT_GE(std::chrono::duration_cast<std::chrono::milliseconds>(took).count(), 300);
  HttpResult other = Root("GET", "transit/keys/" + key_);
  EXPECT_LT(other.seconds, 0.3);
  Control().Latency("transit/encrypt/", 0);
  EXPECT_LT(Encrypt().seconds, 0.3);
}

TEST_F(FaultsTest, FailReturnsTheStatusWithVaultsTextAndRetryAfter) {
  Control().Fail("transit/encrypt/", 429, 1, 2);
  HttpResult r = Encrypt();
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.FirstError(),
            "request path \"transit/encrypt/" + key_ + "\": rate limit quota exceeded");
  EXPECT_EQ(r.Header("Retry-After"), "2");
  EXPECT_EQ(Encrypt().status, 200) << "count 1 fails exactly one request";

  Control().Fail("transit/", 500, 2);
  EXPECT_EQ(Encrypt().FirstError(), "1 error occurred:\n\t* internal error\n\n");
  EXPECT_EQ(Root("GET", "transit/keys/" + key_).status, 500);
  EXPECT_EQ(Encrypt().status, 200);

  Control().Fail("", 503);
  EXPECT_EQ(http_->Call("GET", "sys/health").status, 503);
}

TEST_F(FaultsTest, DropClosesTheConnectionWithoutAnAnswer) {
  Control().ResetStats();
  Control().Drop("transit/encrypt/", 1);
  // A fresh connection: libcurl silently retries a request once when a *reused* connection
  // dies before answering, which would hide a single drop.
  VaultHttp fresh(sim_->addr(), sim_->ca_file());
  Json::Value b;
  b["plaintext"] = "aGk=";
  HttpResult r = fresh.Call("POST", "transit/encrypt/" + key_, b, sim_->root_token());
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.curl_code, CURLE_OK);
  EXPECT_FALSE(r.error.empty());
  EXPECT_EQ(fresh.Call("POST", "transit/encrypt/" + key_, b, sim_->root_token()).status, 200)
      << "the next request gets a new connection and an answer";
  EXPECT_EQ(Control().Stats()["by_status"]["dropped"].asInt(), 1);

  // On a reused connection two drops defeat that retry.
  ASSERT_EQ(Encrypt().status, 200);
  Control().Drop("transit/encrypt/", 2);
  EXPECT_EQ(Encrypt().status, 0);
  EXPECT_EQ(Control().Stats()["by_status"]["dropped"].asInt(), 3);
}

TEST_F(FaultsTest, StandbyRedirectsAndNoLeaderFails) {
  Control().Standby("https://127.0.0.1:9/");
  HttpResult r = Root("GET", "transit/keys/" + key_ + "?context=x");
  EXPECT_EQ(r.status, 307);
  EXPECT_EQ(r.Header("Location"), "https://127.0.0.1:9/v1/transit/keys/" + key_ + "?context=x");
  HttpResult h = http_->Call("GET", "sys/health");
  EXPECT_EQ(h.status, 429);
  EXPECT_TRUE(h.json["standby"].asBool());
  EXPECT_EQ(http_->Call("GET", "sys/health?standbyok=true").status, 200);

  Control().NoLeader();
  r = Encrypt();
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.FirstError(), "no active Vault instance found");

  Control().Standby("");
  EXPECT_EQ(Encrypt().status, 200);
}

TEST_F(FaultsTest, RevokeTokensForcesAFreshLogin) {
  Json::Value role;
  role["token_policies"] = "default";
  Setup().CreateRole("approle", "faults", role);
  const std::string role_id = Setup().ReadRoleId("approle", "faults");
  const std::string token =
      Setup().Login("approle", role_id, Setup().NewSecretId("approle", "faults"));
  EXPECT_EQ(As(token, "GET", "auth/token/lookup-self").status, 200);
  Control().RevokeTokens();
  HttpResult r = As(token, "GET", "auth/token/lookup-self");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.FirstError(), "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n");
  const std::string fresh =
      Setup().Login("approle", role_id, Setup().NewSecretId("approle", "faults"));
  EXPECT_EQ(As(fresh, "GET", "auth/token/lookup-self").status, 200);
  EXPECT_EQ(Root("GET", "auth/token/lookup-self").status, 200) << "the root token survives";
}

TEST_F(FaultsTest, ClockAdvances) {
  const int64_t before = Control().AdvanceClock(0);
  const int64_t after = Control().AdvanceClock(3600);
  EXPECT_GE(after - before, 3600);
  EXPECT_LT(after - before, 3610);
  EXPECT_GE(http_->Call("GET", "sys/health").json["server_time_utc"].asInt64(), after);
}

TEST_F(FaultsTest, ResetClearsEveryFault) {
  Control().Seal();
  Control().Fail("", 500, -1);
  Control().Latency("", 500);
  Control().Reset();
  HttpResult r = Encrypt();
  EXPECT_EQ(r.status, 200);
  EXPECT_LT(r.seconds, 0.5);
}

TEST_F(FaultsTest, StatsCountRequestsPerPathAndStatus) {
  Control().ResetStats();
  Json::Value s = Control().Stats();
  EXPECT_EQ(s["total"].asInt(), 0);
  Encrypt();
  Encrypt();
  Root("GET", "transit/keys/nope");
  s = Control().Stats();
  EXPECT_EQ(s["total"].asInt(), 3);
  EXPECT_EQ(s["by_path"]["transit/encrypt/" + key_].asInt(), 2);
  EXPECT_EQ(SimControl::CountWithPrefix(s, "transit/"), 3);
  HttpResult p =
      http_->Call("GET", "/_sim/stats?prefix=transit/encrypt/", Json::Value(), sim_->root_token());
  EXPECT_EQ(p.json["prefix_count"].asInt(), 2);
  EXPECT_EQ(s["by_status"]["200"].asInt(), 2);
  EXPECT_EQ(s["by_status"]["404"].asInt(), 1);
  EXPECT_EQ(s["logins"].asInt(), 0);
}

TEST_F(FaultsTest, AdminApiNeedsTheRootToken) {
  HttpResult r = http_->Call("POST", "/_sim/seal", Obj(), "not-root");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(http_->Call("GET", "/_sim/stats").status, 403);
  EXPECT_EQ(Encrypt().status, 200) << "the refused seal had no effect";
  Json::Value bad;
  bad["status"] = 42;
  EXPECT_EQ(http_->Call("POST", "/_sim/fail", bad, sim_->root_token()).status, 400);
}

}  // namespace
}  // namespace vkms::testing
