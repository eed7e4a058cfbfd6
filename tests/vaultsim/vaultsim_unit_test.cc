// In-process tests of the simulator's Go-compatible encodings and its ACL engine: the texts and
// offsets real Vault produces are what clients parse, so they are pinned here exactly.
#include <gtest/gtest.h>

#include "acl.h"
#include "crypto.h"
#include "encoding.h"
#include "fields.h"

namespace vaultsim {
namespace {

std::string DecodeError(const std::string& text) {
  size_t offset = 999;
  auto decoded = Base64Decode(text, &offset);
  return decoded ? "ok:" + *decoded : Base64ErrorText(offset);
}

TEST(GoBase64, DecodesValidInputIncludingNewlines) {
  EXPECT_EQ(DecodeError("aGVsbG8="), "ok:hello");
  EXPECT_EQ(DecodeError("aGVs\nbG8="), "ok:hello");
  EXPECT_EQ(DecodeError("aG=="), "ok:h");  // non-canonical trailing bits, as Go accepts
  EXPECT_EQ(DecodeError(""), "ok:");
}

TEST(GoBase64, ReportsTheOffsetsGoReports) {
  EXPECT_EQ(DecodeError("hello world"), "illegal base64 data at input byte 5");
  EXPECT_EQ(DecodeError("abc"), "illegal base64 data at input byte 0");
  EXPECT_EQ(DecodeError("aGVsbG8"), "illegal base64 data at input byte 4");
  EXPECT_EQ(DecodeError("a==="), "illegal base64 data at input byte 1");
  EXPECT_EQ(DecodeError("aGk=x"), "illegal base64 data at input byte 4");
  EXPECT_EQ(DecodeError("aG=x"), "illegal base64 data at input byte 2");
  EXPECT_EQ(DecodeError("aG="), "illegal base64 data at input byte 3");
}

TEST(GoBase64, EncodesWithPadding) {
  EXPECT_EQ(Base64Encode("h"), "aA==");
  EXPECT_EQ(Base64Encode("hello"), "aGVsbG8=");
  EXPECT_EQ(Base64Encode(""), "");
}

TEST(GoDuration, FormatsLikeTimeDurationString) {
  EXPECT_EQ(FormatGoDuration(0), "0s");
  EXPECT_EQ(FormatGoDuration(30), "30s");
  EXPECT_EQ(FormatGoDuration(599), "9m59s");
  EXPECT_EQ(FormatGoDuration(3600), "1h0m0s");
  EXPECT_EQ(FormatGoDuration(90061), "25h1m1s");
}

TEST(GoDuration, ParsesLikeTimeParseDuration) {
  int64_t s = -1;
  std::string err;
  ASSERT_TRUE(ParseGoDuration("1h30m", &s, &err));
  EXPECT_EQ(s, 5400);
  ASSERT_TRUE(ParseGoDuration("1.5h", &s, &err));
  EXPECT_EQ(s, 5400);
  ASSERT_TRUE(ParseGoDuration("90s", &s, &err));
  EXPECT_EQ(s, 90);
  ASSERT_TRUE(ParseGoDuration("0", &s, &err));
  EXPECT_EQ(s, 0);
  EXPECT_FALSE(ParseGoDuration("10", &s, &err));
  EXPECT_EQ(err, "time: missing unit in duration \"10\"");
  EXPECT_FALSE(ParseGoDuration("1x", &s, &err));
  EXPECT_EQ(err, "time: unknown unit \"x\" in duration \"1x\"");
  EXPECT_FALSE(ParseGoDuration("", &s, &err));
  EXPECT_EQ(err, "time: invalid duration \"\"");
}

TEST(VaultFields, DurationsAcceptSecondsStringsAndDays) {
  Json::Value data;
  data["a"] = 90;
  data["b"] = "90";
  data["c"] = "1h";
  data["d"] = "2d";
  data["e"] = "soon";
  FieldReader f(data);
  EXPECT_EQ(f.DurationSeconds("a"), 90);
  EXPECT_EQ(f.DurationSeconds("b"), 90);
  EXPECT_EQ(f.DurationSeconds("c"), 3600);
  EXPECT_EQ(f.DurationSeconds("d"), 2 * 86400);
  EXPECT_TRUE(f.ok());
  f.DurationSeconds("e");
  EXPECT_FALSE(f.ok());
  EXPECT_EQ(f.error(),
            "error converting input soon for field \"e\": time: invalid duration \"soon\"");
}

TEST(VaultFields, ListsAcceptArraysAndCommaStrings) {
  Json::Value data;
  data["a"] = "x, y,,z";
  data["b"].append("p,q");
  data["b"].append("r");
  FieldReader f(data);
  EXPECT_EQ(f.StringList("a"), (std::vector<std::string>{"x", "y", "z"}));
  EXPECT_EQ(f.StringList("b"), (std::vector<std::string>{"p", "q", "r"}));
}

TEST(GoInt, MatchesStrconvAtoi) {
  int64_t v = 0;
  EXPECT_TRUE(ParseGoInt("+2", &v));
  EXPECT_EQ(v, 2);
  EXPECT_TRUE(ParseGoInt("-1", &v));
  EXPECT_EQ(v, -1);
  EXPECT_FALSE(ParseGoInt("", &v));
  EXPECT_FALSE(ParseGoInt("1a", &v));
  EXPECT_FALSE(ParseGoInt("99999999999999999999", &v));
}

TEST(MultiErrorText, MatchesGoMultierror) {
  EXPECT_EQ(MultiError({"permission denied"}), "1 error occurred:\n\t* permission denied\n\n");
  EXPECT_EQ(MultiError({"permission denied", "invalid token"}),
            "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n");
}

TEST(Aead, SealsWithNonceAndTagAndDetectsTampering) {
  for (KeyType t : {KeyType::kAes128Gcm96, KeyType::kAes256Gcm96, KeyType::kChaCha20Poly1305}) {
    const std::string key = NewKeyMaterial(t);
    const std::string sealed = AeadSeal(t, key, "secret", "");
    ASSERT_EQ(sealed.size(), kNonceSize + 6 + kTagSize);
    EXPECT_EQ(AeadOpen(t, key, sealed, "").value_or("<failed>"), "secret");
    std::string tampered = sealed;
    tampered[kNonceSize] ^= 1;
    EXPECT_FALSE(AeadOpen(t, key, tampered, "").has_value());
    EXPECT_FALSE(AeadOpen(t, key, sealed, "other aad").has_value());
  }
}

Policy MustParse(const std::string& hcl) {
  Policy p;
  std::string error;
  EXPECT_TRUE(ParsePolicy(hcl, &p, &error)) << error;
  return p;
}

TEST(PolicyParser, ReadsBlocksCommentsAndLegacyPolicyField) {
  Policy p = MustParse(R"(
    # comment
    path "transit/encrypt/kms" { capabilities = ["update", "create"] }  // trailing
    /* block
       comment */
    path "/secret/*" {
      policy = "read"
    }
  )");
  ASSERT_EQ(p.rules.size(), 2u);
  EXPECT_EQ(p.rules[0].pattern, "transit/encrypt/kms");
  EXPECT_EQ(p.rules[0].capabilities, kCapUpdate | kCapCreate);
  EXPECT_EQ(p.rules[1].pattern, "secret/*");
  EXPECT_EQ(p.rules[1].capabilities, kCapRead | kCapList);
}

TEST(PolicyParser, RejectsWhatItCannotEnforce) {
  Policy p;
  std::string error;
  EXPECT_FALSE(ParsePolicy(R"(path "a" { capabilities = ["fly"] })", &p, &error));
  EXPECT_EQ(error, "line 1: path \"a\": invalid capability \"fly\"");
  EXPECT_FALSE(ParsePolicy("path \"a\" {\n allowed_parameters = {}\n}", &p, &error));
  EXPECT_EQ(error, "line 2: vaultsim does not support the policy attribute \"allowed_parameters\"");
  EXPECT_FALSE(ParsePolicy(R"(path "a" { capabilities = ["read"] )", &p, &error));
  EXPECT_FALSE(ParsePolicy(R"(pth "a" {})", &p, &error));
  EXPECT_EQ(error, "line 1: expected 'path', found 'pth'");
}

TEST(AclMatching, SegmentWildcardsAndGlobs) {
  EXPECT_TRUE(PatternMatches("transit/+/kms", "transit/encrypt/kms"));
  EXPECT_FALSE(PatternMatches("transit/+/kms", "transit/encrypt/other"));
  EXPECT_FALSE(PatternMatches("transit/+/kms", "transit/a/b/kms"));
  EXPECT_TRUE(PatternMatches("transit/*", "transit/keys/kms"));
  EXPECT_TRUE(PatternMatches("transit/+/*", "transit/keys/kms/config"));
  EXPECT_FALSE(PatternMatches("transit/+/*", "transit/keys"));
  EXPECT_TRUE(PatternMatches("transit/enc*", "transit/encrypt/kms"));
}

TEST(AclMatching, VaultPriorityOrder) {
  EXPECT_TRUE(HigherPriority("transit/keys/*", "transit/*"));
  EXPECT_TRUE(HigherPriority("transit/keys/kms", "transit/keys/*"));  // no wildcard outranks all
  EXPECT_TRUE(HigherPriority("transit/+/kms", "transit/*"));
  EXPECT_TRUE(HigherPriority("a/+/b", "a/+/+"));
}

TEST(Acl, ExactBeatsGlobAndDenyWinsAcrossPolicies) {
  Acl acl;
  acl.Add(MustParse(R"(path "transit/keys/*" { capabilities = ["read"] }
                       path "transit/keys/secret" { capabilities = ["deny"] })"));
  acl.Add(MustParse(R"(path "transit/keys/kms" { capabilities = ["update"] })"));
  acl.Add(MustParse(R"(path "transit/keys/kms" { capabilities = ["read"] })"));
  EXPECT_EQ(acl.Capabilities("transit/keys/other", false), kCapRead);
  EXPECT_EQ(acl.Capabilities("transit/keys/secret", false), 0u);
  // Same path in two policies: union. The exact rule hides the glob entirely.
  EXPECT_EQ(acl.Capabilities("transit/keys/kms", false), kCapUpdate | kCapRead);
  acl.Add(MustParse(R"(path "transit/keys/kms" { capabilities = ["deny"] })"));
  EXPECT_EQ(acl.Capabilities("transit/keys/kms", false), 0u);
}

TEST(Acl, ListTriesThePathWithoutTrailingSlash) {
  Acl acl;
  acl.Add(MustParse(R"(path "transit/keys" { capabilities = ["list"] })"));
  EXPECT_EQ(acl.Capabilities("transit/keys/", true), kCapList);
  EXPECT_EQ(acl.Capabilities("transit/keys/", false), 0u);
}

}  // namespace
}  // namespace vaultsim
