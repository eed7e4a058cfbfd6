#include "shared/validate.h"

#include <gtest/gtest.h>

namespace vkms::validate {
namespace {

// A syntactically valid 32-byte-seed ciphertext: 60 bytes of payload → 80 base64 chars.
const std::string kPayload(80, 'A');

TEST(ValidateCiphertext, AcceptsVaultCiphertext) {
  uint64_t v = 0;
  EXPECT_TRUE(VaultCiphertext("vault:v3:" + kPayload, &v).ok());
  EXPECT_EQ(v, 3u);
  EXPECT_TRUE(VaultCiphertext("vault:v0:" + kPayload, &v).ok());
  EXPECT_EQ(v, 1u) << "v0 means version 1, as in Vault";
  EXPECT_TRUE(VaultCiphertext("vault:v12:" + kPayload.substr(0, 76) + "AA==", &v).ok());
}

TEST(ValidateCiphertext, RejectsWhatCannotBeVaultCiphertext) {
  uint64_t v;
  for (const std::string& bad : {
           std::string(""), std::string("vault:"), std::string("vault:v:") + kPayload,
           std::string("vault:vx:") + kPayload, std::string("vault:v1") + kPayload,
           std::string("vault:v99999999999:") + kPayload,
           std::string("vault:v1:") + kPayload.substr(1),           // not a multiple of 4
           std::string("vault:v1:") + kPayload.substr(4) + "A=A=",  // padding in the middle
           std::string("vault:v1:") + kPayload.substr(4) + "A!AA",  // bad character
           std::string("vault:v1:AAAA"),                            // too short for AES-GCM
           std::string("VAULT:v1:") + kPayload,
           std::string("vault:v1:") + std::string(1100, 'A'),  // over 1024 bytes
       }) {
    Status s = VaultCiphertext(bad, &v);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
  }
}

TEST(ValidatePlaintext, Limits) {
  EXPECT_EQ(Plaintext("").code(), Code::kInvalidArgument);
  EXPECT_TRUE(Plaintext(std::string(32, 's')).ok());
  EXPECT_TRUE(Plaintext(std::string(kMaxPlaintext, 's')).ok());
  Status big = Plaintext(std::string(kMaxPlaintext + 1, 's'));
  EXPECT_EQ(big.code(), Code::kInvalidArgument);
  EXPECT_NE(big.message().find("limit"), std::string::npos);
}

TEST(ValidateKeyId, Limit) {
  EXPECT_TRUE(KeyId(std::string(1024, 'k')).ok());
  EXPECT_EQ(KeyId(std::string(1025, 'k')).code(), Code::kInvalidArgument);
}

TEST(ValidateAnnotations, KeysMustBeFullyQualifiedDnsNames) {
  EXPECT_TRUE(Annotations({{"kms.example.com", "v"}}).ok());
  EXPECT_TRUE(Annotations({}).ok());
  EXPECT_FALSE(Annotations({{"example", "v"}}).ok());
  EXPECT_FALSE(Annotations({{"Kms.example.com", "v"}}).ok());
  EXPECT_FALSE(Annotations({{"kms.example.com/x", "v"}}).ok());
  EXPECT_FALSE(Annotations({{"-kms.example.com", "v"}}).ok());
  EXPECT_FALSE(Annotations({{"kms..com", "v"}}).ok());
  EXPECT_FALSE(Annotations({{"kms.example.com", std::string(33 * 1024, 'v')}}).ok());
}

TEST(ValidateUid, OnlyUuidLikeValuesAreLogged) {
  EXPECT_EQ(LoggableUid("3f1b2c4d-aaaa-4bbb-8ccc-0123456789ab"),
            "3f1b2c4d-aaaa-4bbb-8ccc-0123456789ab");
  EXPECT_EQ(LoggableUid("a\"b"), "invalid");
  EXPECT_EQ(LoggableUid(std::string(65, 'a')), "invalid");
  EXPECT_EQ(LoggableUid(""), "-");
}

TEST(ValidateKeyId, LoggableFormKeepsPrintableTextOnly) {
  EXPECT_EQ(LoggableKeyId("1"), "1");
  EXPECT_EQ(LoggableKeyId("transit/kms:v1:0123abcd"), "transit/kms:v1:0123abcd");
  EXPECT_EQ(LoggableKeyId(std::string("a\nb\x01\xff", 5)), "a?b??");
  EXPECT_EQ(LoggableKeyId(std::string(1024, 'k')), std::string(128, 'k') + "...");
}

}  // namespace
}  // namespace vkms::validate
