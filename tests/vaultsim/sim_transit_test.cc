// Transit over real HTTPS: key lifecycle, encrypt/decrypt, ciphertext format and every error
// text a client may see.
#include <openssl/evp.h>

#include <ctime>

#include "sim_fixture.h"

namespace vkms::testing {
namespace {

std::string B64(const std::string& raw) {
  std::string out(4 * ((raw.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(raw.data()),
                          static_cast<int>(raw.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string UnB64(const std::string& text) {
  std::string out(text.size(), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return "<invalid>";
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

class TransitTest : public SimFixture {
 protected:
  void SetUp() override {
    SimFixture::SetUp();
    key_ = Name("k");
    Setup().CreateKey("transit", key_);
  }

  HttpResult Encrypt(const std::string& plaintext, int key_version = 0) {
    Json::Value b;
    b["plaintext"] = B64(plaintext);
    if (key_version) b["key_version"] = key_version;
    return Root("POST", "transit/encrypt/" + key_, b);
  }
  std::string Ciphertext(const std::string& plaintext, int key_version = 0) {
    HttpResult r = Encrypt(plaintext, key_version);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json["data"]["ciphertext"].asString();
  }
  HttpResult Decrypt(const std::string& ciphertext, const std::string& key = "") {
    Json::Value b;
    b["ciphertext"] = ciphertext;
    return Root("POST", "transit/decrypt/" + (key.empty() ? key_ : key), b);
  }
  void Rotate() { ASSERT_EQ(Root("POST", "transit/keys/" + key_ + "/rotate", Obj()).status, 200); }
  HttpResult Configure(const Json::Value& b) {
    return Root("POST", "transit/keys/" + key_ + "/config", b);
  }

  std::string key_;
};

TEST_F(TransitTest, ReadReturnsVaultsKeyShape) {
  const int64_t now = std::time(nullptr);
  HttpResult r = Root("GET", "transit/keys/" + key_);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("Content-Type"), "application/json");
  const Json::Value& d = r.json["data"];
  EXPECT_EQ(d["name"].asString(), key_);
  EXPECT_EQ(d["type"].asString(), "aes256-gcm96");
  for (const char* f : {"derived", "deletion_allowed", "exportable", "allow_plaintext_backup",
                        "supports_signing", "imported_key"}) {
    EXPECT_TRUE(d[f].isBool() && !d[f].asBool()) << f;
  }
  for (const char* f : {"supports_encryption", "supports_decryption", "supports_derivation"}) {
    EXPECT_TRUE(d[f].isBool() && d[f].asBool()) << f;
  }
  EXPECT_EQ(d["latest_version"].asInt(), 1);
  EXPECT_EQ(d["min_decryption_version"].asInt(), 1);
  EXPECT_EQ(d["min_encryption_version"].asInt(), 0);
  EXPECT_EQ(d["min_available_version"].asInt(), 0);
  EXPECT_TRUE(d["auto_rotate_period"].isIntegral());
  EXPECT_EQ(d["auto_rotate_period"].asInt(), 0);
  ASSERT_TRUE(d["keys"].isObject());
  ASSERT_EQ(d["keys"].size(), 1u);
  ASSERT_TRUE(d["keys"]["1"].isIntegral());
  EXPECT_NEAR(static_cast<double>(d["keys"]["1"].asInt64()), static_cast<double>(now), 60);
  EXPECT_EQ(r.json["mount_type"].asString(), "transit");
  for (const char* f :
       {"request_id", "lease_id", "renewable", "lease_duration", "wrap_info", "warnings", "auth"}) {
    EXPECT_TRUE(r.json.isMember(f)) << f;
  }
}

TEST_F(TransitTest, MissingKeyIs404WithEmptyErrors) {
  HttpResult r = Root("GET", "transit/keys/nope-" + key_);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, "{\"errors\":[]}\n");
}

TEST_F(TransitTest, CreatingAnExistingKeyWarnsAndKeepsIt) {
  HttpResult r = Root("POST", "transit/keys/" + key_, Obj());
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json["warnings"][0].asString(), "key " + key_ + " already existed");
  EXPECT_EQ(r.json["data"]["latest_version"].asInt(), 1);
}

TEST_F(TransitTest, RejectsKeyTypesItCannotServe) {
  Json::Value b;
  b["type"] = "rsa-2048";
  HttpResult r = Root("POST", "transit/keys/" + key_ + "-rsa", b);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.FirstError().find("vaultsim supports only"), std::string::npos);
  b["type"] = "rot13";
  r = Root("POST", "transit/keys/" + key_ + "-rot", b);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.FirstError(), "unknown key type rot13");
  Json::Value c;
  c["auto_rotate_period"] = "30m";
  r = Root("POST", "transit/keys/" + key_ + "-rot", c);
  EXPECT_EQ(r.FirstError(), "auto rotate period must be 0 to disable or at least an hour");
}

TEST_F(TransitTest, EncryptProducesVaultCiphertextThatDecrypts) {
  const std::string seed(32, '\x5a');
  HttpResult r = Encrypt(seed);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["data"]["key_version"].asInt(), 1);
  const std::string ct = r.json["data"]["ciphertext"].asString();
  ASSERT_EQ(ct.compare(0, 9, "vault:v1:"), 0) << ct;
  // nonce(12) || ciphertext || tag(16)
  EXPECT_EQ(UnB64(ct.substr(9)).size(), 12 + seed.size() + 16);
  EXPECT_EQ(ct.size(), 9 + 80u);
  HttpResult d = Decrypt(ct);
  ASSERT_EQ(d.status, 200) << d.body;
  EXPECT_EQ(UnB64(d.json["data"]["plaintext"].asString()), seed);
  EXPECT_NE(Ciphertext(seed), ct) << "nonces must be random";
}

TEST_F(TransitTest, EncryptsEmptyPlaintext) {
  const std::string ct = Ciphertext("");
  EXPECT_EQ(UnB64(ct.substr(9)).size(), 28u);
  EXPECT_EQ(Decrypt(ct).json["data"]["plaintext"].asString(), "");
}

TEST_F(TransitTest, EncryptInputErrors) {
  Json::Value b;
  b["plaintext"] = "hello world";
  HttpResult r = Root("POST", "transit/encrypt/" + key_, b);
  EXPECT_EQ(r.status, 400);
  // Vault pre-checks the plaintext with Go's decoder and returns its error verbatim.
  EXPECT_EQ(r.FirstError(), "illegal base64 data at input byte 5");
  r = Root("POST", "transit/encrypt/" + key_, Obj());
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.FirstError(), "missing plaintext to encrypt");
}

TEST_F(TransitTest, KeyVersionBoundsOnEncrypt) {
  Rotate();
  Rotate();
  Json::Value cfg;
  cfg["min_encryption_version"] = 2;
  ASSERT_EQ(Configure(cfg).status, 200);
  HttpResult r = Encrypt("x", 1);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.FirstError(),
            "requested version for encryption is less than the minimum encryption key version");
  r = Encrypt("x", 4);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.FirstError(),
            "requested version for encryption is higher than the latest key version");
  r = Encrypt("x", 2);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json["data"]["key_version"].asInt(), 2);
  EXPECT_EQ(r.json["data"]["ciphertext"].asString().compare(0, 9, "vault:v2:"), 0);
  r = Encrypt("x");
  EXPECT_EQ(r.json["data"]["key_version"].asInt(), 3);
}

TEST_F(TransitTest, DecryptErrorsAreVaultsTexts) {
  const std::string ct = Ciphertext("payload");
  const std::string body = ct.substr(9);
  struct Case {
    std::string ciphertext;
    std::string error;
  };
  std::string tampered = UnB64(body);
  tampered[14] ^= 0x01;
  const Case cases[] = {
      {"abc", "invalid ciphertext: no prefix"},
      {"vault:v1", "invalid ciphertext: wrong number of fields"},
      {"vault:vX:" + body, "invalid ciphertext: version number could not be decoded"},
      {"vault:v2:" + body, "invalid ciphertext: version is too new"},
      {"vault:v1:!!!!", "invalid ciphertext: could not decode base64"},
      {"vault:v1:" + B64("short"), "invalid ciphertext length"},
      {"vault:v1:" + B64(tampered), "cipher: message authentication failed"},
      {"vault:v1:" + B64(std::string(20, 'a')), "cipher: message authentication failed"},
  };
  for (const auto& c : cases) {
    HttpResult r = Decrypt(c.ciphertext);
    EXPECT_EQ(r.status, 400) << c.ciphertext;
    EXPECT_EQ(r.FirstError(), c.error) << c.ciphertext;
  }
  HttpResult r = Decrypt(ct, "missing-" + key_);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.FirstError(), "encryption key not found");
  r = Root("POST", "transit/decrypt/" + key_, Obj());
  EXPECT_EQ(r.FirstError(), "missing ciphertext to decrypt");
}

TEST_F(TransitTest, VersionZeroMeansOneAndFieldsSplitOnFirstColon) {
  const std::string ct = Ciphertext("v0");
  HttpResult r = Decrypt("vault:v0:" + ct.substr(9));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(UnB64(r.json["data"]["plaintext"].asString()), "v0");
  // Everything after the first colon is the payload, so a second colon breaks the base64.
  EXPECT_EQ(Decrypt(ct + ":extra").FirstError(), "invalid ciphertext: could not decode base64");
}

TEST_F(TransitTest, OldVersionsDecryptAfterRotationUntilMinDecryptionVersion) {
  const std::string v1 = Ciphertext("old");
  Rotate();
  HttpResult k = Root("GET", "transit/keys/" + key_);
  EXPECT_EQ(k.json["data"]["latest_version"].asInt(), 2);
  EXPECT_TRUE(k.json["data"]["keys"].isMember("1"));
  EXPECT_TRUE(k.json["data"]["keys"].isMember("2"));
  const std::string v2 = Ciphertext("new");
  EXPECT_EQ(v2.compare(0, 9, "vault:v2:"), 0);
  EXPECT_EQ(UnB64(Decrypt(v1).json["data"]["plaintext"].asString()), "old");

  Json::Value cfg;
  cfg["min_decryption_version"] = 2;
  HttpResult c = Configure(cfg);
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.json["data"]["min_decryption_version"].asInt(), 2);
  HttpResult r = Decrypt(v1);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.FirstError(), "ciphertext or signature version is disallowed by policy (too old)");
  EXPECT_EQ(Decrypt(v2).status, 200);
}

TEST_F(TransitTest, RotateReturnsTheKeyWithANewVersion) {
  HttpResult r = Root("POST", "transit/keys/" + key_ + "/rotate", Obj());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["data"]["latest_version"].asInt(), 2);
  EXPECT_EQ(r.json["data"]["keys"].size(), 2u);
  EXPECT_EQ(Root("POST", "transit/keys/missing-" + key_ + "/rotate", Obj()).FirstError(),
            "key not found");
}

TEST_F(TransitTest, ConfigValidation) {
  Json::Value b;
  b["min_decryption_version"] = 5;
  HttpResult r = Configure(b);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.FirstError(), "cannot set min decryption version of 5, latest key version is 1");
  Rotate();
  Json::Value both;
  both["min_decryption_version"] = 2;
  both["min_encryption_version"] = 1;
  r = Configure(both);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.FirstError(),
            "cannot set min encryption/decryption values; min encryption version of 1 must be "
            "greater than or equal to min decryption version of 2");
  // A rejected config leaves the key unchanged.
  EXPECT_EQ(Root("GET", "transit/keys/" + key_).json["data"]["min_decryption_version"].asInt(), 1);
  Json::Value neg;
  neg["min_encryption_version"] = -1;
  EXPECT_EQ(Configure(neg).FirstError(), "min encryption version cannot be negative");
  Json::Value rot;
  rot["auto_rotate_period"] = "2h";
  r = Configure(rot);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json["data"]["auto_rotate_period"].asInt(), 7200);
  EXPECT_EQ(Root("POST", "transit/keys/missing-" + key_ + "/config", rot).FirstError(),
            "no existing key named missing-" + key_ + " could be found");
}

TEST_F(TransitTest, DeletionNeedsDeletionAllowedAndRecreationRestartsVersions) {
  Rotate();
  const int64_t first_created =
      Root("GET", "transit/keys/" + key_).json["data"]["keys"]["1"].asInt64();
  HttpResult r = Root("DELETE", "transit/keys/" + key_);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.FirstError(),
            "error deleting policy " + key_ + ": deletion is not allowed for this key");
  Json::Value allow;
  allow["deletion_allowed"] = true;
  ASSERT_EQ(Configure(allow).status, 200);
  EXPECT_EQ(Root("DELETE", "transit/keys/" + key_).status, 204);
  EXPECT_EQ(Root("GET", "transit/keys/" + key_).status, 404);

  Control().AdvanceClock(120);
  Setup().CreateKey("transit", key_);
  HttpResult k = Root("GET", "transit/keys/" + key_);
  EXPECT_EQ(k.json["data"]["latest_version"].asInt(), 1);
  EXPECT_EQ(k.json["data"]["keys"].size(), 1u);
  EXPECT_GE(k.json["data"]["keys"]["1"].asInt64(), first_created + 120);
}

TEST_F(TransitTest, AutoRotationFollowsTheSimulatedClock) {
  Json::Value rot;
  rot["auto_rotate_period"] = "1h";
  ASSERT_EQ(Configure(rot).status, 200);
  Control().AdvanceClock(3601);
  EXPECT_EQ(Root("GET", "transit/keys/" + key_).json["data"]["latest_version"].asInt(), 2);
}

TEST_F(TransitTest, ListKeys) {
  HttpResult r = Root("LIST", "transit/keys");
  ASSERT_EQ(r.status, 200);
  bool found = false;
  for (const auto& k : r.json["data"]["keys"]) found |= k.asString() == key_;
  EXPECT_TRUE(found);
  Setup().EnableTransit(Name("empty"));
  EXPECT_EQ(Root("LIST", Name("empty") + "/keys").status, 404);
}

TEST_F(TransitTest, BatchEncryptDecryptEchoesReferencesAndFlagsPartialFailure) {
  Json::Value b;
  Json::Value ok;
  ok["plaintext"] = B64("one");
  ok["reference"] = "r1";
  Json::Value bad;
  bad["plaintext"] = "not base64!";
  bad["reference"] = "r2";
  b["batch_input"].append(ok);
  b["batch_input"].append(bad);
  HttpResult r = Root("POST", "transit/encrypt/" + key_, b);
  // Any failed item makes the whole answer a 400 that still carries every result.
  EXPECT_EQ(r.status, 400);
  const Json::Value& res = r.json["data"]["batch_results"];
  ASSERT_EQ(res.size(), 2u) << r.body;
  EXPECT_EQ(res[0]["reference"].asString(), "r1");
  EXPECT_EQ(res[0]["key_version"].asInt(), 1);
  EXPECT_FALSE(res[0].isMember("error"));
  EXPECT_EQ(res[1]["reference"].asString(), "r2");
  EXPECT_EQ(res[1]["error"].asString(), "illegal base64 data at input byte 3");
  EXPECT_FALSE(res[1].isMember("ciphertext"));

  b["partial_failure_response_code"] = 207;
  EXPECT_EQ(Root("POST", "transit/encrypt/" + key_, b).status, 207);

  Json::Value d;
  Json::Value item;
  item["ciphertext"] = res[0]["ciphertext"];
  item["reference"] = "back";
  d["batch_input"].append(item);
  Json::Value broken;
  broken["ciphertext"] = "vault:v9:AAAA";
  d["batch_input"].append(broken);
  r = Root("POST", "transit/decrypt/" + key_, d);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(UnB64(r.json["data"]["batch_results"][0]["plaintext"].asString()), "one");
  EXPECT_EQ(r.json["data"]["batch_results"][0]["reference"].asString(), "back");
  EXPECT_EQ(r.json["data"]["batch_results"][1]["error"].asString(),
            "invalid ciphertext: version is too new");

  Json::Value all_good;
  all_good["batch_input"].append(item);
  EXPECT_EQ(Root("POST", "transit/decrypt/" + key_, all_good).status, 200);
}

// Vault's pathEncryptWrite reads key_version from each batch item; a top-level key_version is
// read only by the single form and ignored next to batch_input.
TEST_F(TransitTest, BatchEncryptTakesKeyVersionPerItemNotFromTheTopLevel) {
  Root("POST", "transit/keys/" + key_ + "/rotate", Json::Value(Json::objectValue));
  Json::Value b;
  Json::Value pinned;
  pinned["plaintext"] = B64("pinned");
  pinned["key_version"] = 1;
  pinned["reference"] = "0";
  Json::Value latest;
  latest["plaintext"] = B64("latest");
  latest["reference"] = "1";
  b["batch_input"].append(pinned);
  b["batch_input"].append(latest);
  b["key_version"] = 1;
  HttpResult r = Root("POST", "transit/encrypt/" + key_, b);
  ASSERT_EQ(r.status, 200) << r.body;
  const Json::Value& res = r.json["data"]["batch_results"];
  ASSERT_EQ(res.size(), 2u) << r.body;
  EXPECT_EQ(res[0]["ciphertext"].asString().rfind("vault:v1:", 0), 0u) << r.body;
  EXPECT_EQ(res[0]["key_version"].asInt(), 1);
  EXPECT_EQ(res[1]["ciphertext"].asString().rfind("vault:v2:", 0), 0u) << r.body;
  EXPECT_EQ(res[1]["key_version"].asInt(), 2);
}

TEST_F(TransitTest, NestedMountsAndUnknownPaths) {
  const std::string mount = "team/" + Name("transit");
  Setup().EnableTransit(mount);
  Setup().CreateKey(mount, "k");
  Json::Value b;
  b["plaintext"] = B64("nested");
  EXPECT_EQ(Root("POST", mount + "/encrypt/k", b).status, 200);

  Json::Value t;
  t["type"] = "transit";
  HttpResult dup = Root("POST", "sys/mounts/" + mount, t);
  EXPECT_EQ(dup.status, 409);
  EXPECT_EQ(dup.FirstError(), "path is already in use at " + mount + "/");

  HttpResult r = Root("GET", "transit/nothing/here");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.FirstError(), "1 error occurred:\n\t* unsupported path\n\n");
  r = Root("GET", "nomount-" + key_ + "/x");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.FirstError(),
            "no handler for route \"nomount-" + key_ + "/x\". route entry not found.");
  r = Root("GET", "transit/encrypt/" + key_);
  EXPECT_EQ(r.status, 405);
}

TEST_F(TransitTest, MountsCanBeListedAndRemoved) {
  const std::string mount = Name("m");
  Setup().EnableTransit(mount);
  HttpResult r = Root("GET", "sys/mounts");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json["data"][mount + "/"]["type"].asString(), "transit");
  EXPECT_TRUE(r.json["data"].isMember("sys/"));
  EXPECT_EQ(Root("DELETE", "sys/mounts/" + mount).status, 204);
  EXPECT_FALSE(Root("GET", "sys/mounts").json["data"].isMember(mount + "/"));
  Json::Value t;
  t["type"] = "transit";
  EXPECT_EQ(Root("POST", "sys/mounts/sys/x", t).status, 403);
}

}  // namespace
}  // namespace vkms::testing
