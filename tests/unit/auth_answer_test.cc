// broker/vault/auth_answer.cc: what the token manager reads from Vault's login, lookup-self and
// renew-self answers, and that it leaves no token behind in the parsed answer.
#include "broker/vault/auth_answer.h"

#include <gtest/gtest.h>
#include <json/reader.h>

#include <memory>
#include <string>

namespace vkms::broker {
namespace {

Json::Value Parse(const std::string& text) {
  Json::CharReaderBuilder rb;
  std::unique_ptr<Json::CharReader> reader(rb.newCharReader());
  Json::Value v;
  std::string errs;
  EXPECT_TRUE(reader->parse(text.data(), text.data() + text.size(), &v, &errs)) << errs;
  return v;
}

void ExpectNoTokenStrings(const Json::Value& json) {
  for (const char* block : {"auth", "data"}) {
    for (const char* f : {"client_token", "id", "accessor"}) {
      EXPECT_FALSE(json[block][f].isString()) << block << "." << f << " left in the answer";
    }
  }
}

TEST(ReadAuthAnswer, LoginTakesTheTokenAndWipesItFromTheAnswer) {
  Json::Value json = Parse(
      R"({"auth":{"client_token":"hvs.secret-token","accessor":"acc.1","lease_duration":2764800,
          "renewable":true,"policies":["vault-kms"]}})");
  AuthAnswer a;
  std::string why;
  ASSERT_TRUE(ReadAuthAnswer(AuthAnswerKind::kLogin, &json, &a, &why)) << why;
  EXPECT_EQ(a.token.view(), "hvs.secret-token");
  EXPECT_EQ(a.lease_s, 2764800);
  EXPECT_EQ(a.increment_s, 2764800);
  EXPECT_TRUE(a.renewable);
  ExpectNoTokenStrings(json);
  EXPECT_EQ(json["auth"]["policies"][0].asString(), "vault-kms") << "only token fields are wiped";
}

TEST(ReadAuthAnswer, LoginWithoutATokenIsRefused) {
  for (const char* text : {R"({"auth":{"lease_duration":60}})", R"({"auth":{"client_token":""}})",
                           R"({"auth":{"client_token":42}})", R"({"auth":null})", R"([])",
                           R"({"errors":["permission denied"]})"}) {
    Json::Value json = Parse(text);
    AuthAnswer a;
    std::string why;
    EXPECT_FALSE(ReadAuthAnswer(AuthAnswerKind::kLogin, &json, &a, &why)) << text;
    EXPECT_EQ(why, "no token in the answer") << text;
    EXPECT_TRUE(a.token.empty());
  }
}

TEST(ReadAuthAnswer, LookupSelfRenewsWithTheCreationTtlAndWipesTheId) {
  Json::Value json = Parse(
      R"({"data":{"id":"hvs.secret-token","accessor":"acc.1","ttl":1200,"creation_ttl":3600,
          "renewable":true}})");
  AuthAnswer a;
  std::string why;
  ASSERT_TRUE(ReadAuthAnswer(AuthAnswerKind::kLookupSelf, &json, &a, &why)) << why;
  EXPECT_TRUE(a.token.empty()) << "lookup-self does not hand out a token";
  EXPECT_EQ(a.lease_s, 1200);
  EXPECT_EQ(a.increment_s, 3600);
  EXPECT_TRUE(a.renewable);
  ExpectNoTokenStrings(json);

  // A root token: ttl 0, never expires, nothing to renew.
  json = Parse(R"({"data":{"id":"s.root","ttl":0,"creation_ttl":0,"renewable":false}})");
  ASSERT_TRUE(ReadAuthAnswer(AuthAnswerKind::kLookupSelf, &json, &a, &why)) << why;
  EXPECT_EQ(a.lease_s, 0);
  EXPECT_EQ(a.increment_s, 0);
  EXPECT_FALSE(a.renewable);
}

TEST(ReadAuthAnswer, RenewSelfReadsTheNewLeaseAndWipesTheEchoedToken) {
  Json::Value json = Parse(
      R"({"auth":{"client_token":"hvs.secret-token","lease_duration":600,"renewable":true}})");
  AuthAnswer a;
  std::string why;
  ASSERT_TRUE(ReadAuthAnswer(AuthAnswerKind::kRenewSelf, &json, &a, &why)) << why;
  EXPECT_TRUE(a.token.empty());
  EXPECT_EQ(a.lease_s, 600);
  EXPECT_TRUE(a.renewable);
  ExpectNoTokenStrings(json);
}

TEST(ReadAuthAnswer, NegativeOrNonNumericDurationsAreMalformedAndHugeOnesCapped) {
  struct Case {
    AuthAnswerKind kind;
    const char* text;
    const char* field;
  } malformed[] = {
      {AuthAnswerKind::kLogin, R"({"auth":{"client_token":"hvs.t","lease_duration":-5}})",
       "lease_duration"},
      {AuthAnswerKind::kRenewSelf, R"({"auth":{"lease_duration":"soon"}})", "lease_duration"},
      {AuthAnswerKind::kLookupSelf, R"({"data":{"id":"hvs.t","ttl":1e300}})", "ttl"},
      {AuthAnswerKind::kLookupSelf, R"({"data":{"ttl":60,"creation_ttl":-1}})", "creation_ttl"},
  };
  for (const Case& c : malformed) {
    Json::Value json = Parse(c.text);
    AuthAnswer a;
    std::string why;
    EXPECT_FALSE(ReadAuthAnswer(c.kind, &json, &a, &why)) << c.text;
    EXPECT_NE(why.find(c.field), std::string::npos) << why;
    EXPECT_TRUE(a.token.empty()) << "nothing is handed out from a malformed answer";
    EXPECT_EQ(a.lease_s, 0);
    ExpectNoTokenStrings(json);
  }

  Json::Value json =
      Parse(R"({"auth":{"client_token":"hvs.t","lease_duration":9223372036854775807}})");
  AuthAnswer a;
  std::string why;
  ASSERT_TRUE(ReadAuthAnswer(AuthAnswerKind::kLogin, &json, &a, &why)) << why;
  EXPECT_EQ(a.lease_s, kMaxLeaseSeconds);
  EXPECT_EQ(a.increment_s, kMaxLeaseSeconds);
}

}  // namespace
}  // namespace vkms::broker
