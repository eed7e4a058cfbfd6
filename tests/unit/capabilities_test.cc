// What the token may do (broker/capabilities.h): the request, the reading of Vault's answer,
// the texts, and VerifyTokenCapabilities against a fake Vault, including its fallback to a
// canary round trip when sys/capabilities-self itself is refused.
#include "broker/capabilities.h"

#include <gtest/gtest.h>
#include <json/json.h>

#include <string>
#include <vector>

namespace vkms::broker {
namespace {

const TransitNames kNames{"transit", "kms"};

Json::Value Parse(std::string_view text) {
  Json::Value v;
  Json::CharReaderBuilder rb;
  std::unique_ptr<Json::CharReader> r(rb.newCharReader());
  std::string errs;
  EXPECT_TRUE(r->parse(text.data(), text.data() + text.size(), &v, &errs)) << text;
  return v;
}

VaultResponse Answer(long status, const Json::Value& json, const std::string& error = "") {
  VaultResponse r;
  r.status = status;
  r.json = json;
  r.error = error;
  return r;
}

// The lists as Vault gives them, under "data" (and at the top level, as its sys/ endpoints do).
Json::Value CapabilitiesAnswer(const std::map<std::string, std::vector<std::string>>& lists) {
  Json::Value data(Json::objectValue);
  for (const auto& [path, caps] : lists) {
    data[path] = Json::Value(Json::arrayValue);
    for (const auto& c : caps) data[path].append(c);
  }
  Json::Value answer = data;
  answer["data"] = data;
  return answer;
}

std::map<std::string, std::vector<std::string>> AllGranted() {
  return {{"transit/encrypt/kms", {"update"}},
          {"transit/decrypt/kms", {"update"}},
          {"transit/keys/kms", {"read"}},
          {"auth/token/renew-self", {"update"}}};
}

TEST(Capabilities, NeededAreEncryptDecryptReadAndRenew) {
  auto needed = NeededCapabilities(kNames);
  ASSERT_EQ(needed.size(), 4u);
  EXPECT_EQ(needed[0].path, "transit/encrypt/kms");
  EXPECT_EQ(needed[0].capability, "update");
  EXPECT_EQ(needed[1].path, "transit/decrypt/kms");
  EXPECT_EQ(needed[1].capability, "update");
  EXPECT_EQ(needed[2].path, "transit/keys/kms");
  EXPECT_EQ(needed[2].capability, "read");
  EXPECT_EQ(needed[3].path, "auth/token/renew-self");
  EXPECT_EQ(needed[3].capability, "update");
  Json::Value body = Parse(CapabilitiesRequestBody(needed));
  ASSERT_EQ(body["paths"].size(), 4u);
  for (Json::ArrayIndex i = 0; i < 4; ++i) EXPECT_EQ(body["paths"][i].asString(), needed[i].path);
  EXPECT_EQ(TransitNames({"team/transit", "k8s"}).DecryptPath(), "team/transit/decrypt/k8s");
}

TEST(Capabilities, ParsesDataOrTopLevelAndRefusesMissingLists) {
  auto needed = NeededCapabilities(kNames);
  GrantedCapabilities granted;
  std::string error;
  Json::Value answer = CapabilitiesAnswer(AllGranted());
  ASSERT_TRUE(ParseCapabilitiesAnswer(answer, needed, &granted, &error)) << error;
  EXPECT_EQ(granted["transit/keys/kms"], std::set<std::string>{"read"});
  EXPECT_TRUE(MissingCapabilities(needed, granted).empty());

  // Only at the top level (no "data"): still read.
  Json::Value top = answer;
  top.removeMember("data");
  ASSERT_TRUE(ParseCapabilitiesAnswer(top, needed, &granted, &error)) << error;
  EXPECT_TRUE(MissingCapabilities(needed, granted).empty());

  Json::Value partial = answer;
  partial["data"].removeMember("transit/decrypt/kms");
  EXPECT_FALSE(ParseCapabilitiesAnswer(partial, needed, &granted, &error));
  EXPECT_EQ(error, "vault's capabilities-self answer has no list for transit/decrypt/kms");
  EXPECT_FALSE(ParseCapabilitiesAnswer(Json::Value("x"), needed, &granted, &error));
}

TEST(Capabilities, RootAllowsEverythingAndDenyNothing) {
  EXPECT_TRUE(Allows({"root"}, "update"));
  EXPECT_TRUE(Allows({"update", "read"}, "read"));
  EXPECT_FALSE(Allows({"deny"}, "update"));
  EXPECT_FALSE(Allows({"deny", "update"}, "update"));
  EXPECT_FALSE(Allows({"create"}, "update"));
  EXPECT_FALSE(Allows({}, "read"));
}

TEST(Capabilities, TextsNameWhatIsMissingAndTheFix) {
  auto needed = NeededCapabilities(kNames);
  GrantedCapabilities granted;
  std::string error;
  auto lists = AllGranted();
  lists["transit/decrypt/kms"] = {"deny"};
  lists["auth/token/renew-self"] = {"read"};
  ASSERT_TRUE(ParseCapabilitiesAnswer(CapabilitiesAnswer(lists), needed, &granted, &error));
  auto missing = MissingCapabilities(needed, granted);
  ASSERT_EQ(missing.size(), 2u);
  EXPECT_EQ(MissingText(missing[0]), "token may not decrypt transit/decrypt/kms");
  EXPECT_EQ(DescribeMissing(missing),
            "token may not decrypt transit/decrypt/kms; token may not renew itself through "
            "auth/token/renew-self");
  EXPECT_EQ(PolicyRule("transit/decrypt/kms", "update"),
            "path \"transit/decrypt/kms\" { capabilities = [\"update\"] }");
  EXPECT_EQ(DeniedText("update", "transit/decrypt/kms", "permission denied"),
            "vault denied update on transit/decrypt/kms: permission denied");
  EXPECT_EQ(KeyUnreadableText("transit/keys/kmss", 403, "permission denied"),
            "key not found or not readable: check --transit-key and the policy "
            "(transit/keys/kmss: HTTP 403: permission denied)");
  EXPECT_EQ(KeyUnreadableText("transit/keys/kmss", 404, ""),
            "key not found or not readable: check --transit-key and the policy "
            "(transit/keys/kmss: HTTP 404)");
}

// A fake Vault for VerifyTokenCapabilities: capabilities-self answers `caps_answer`; encrypt
// and decrypt really round-trip (the "ciphertext" carries the base64 plaintext) unless told to
// answer `decrypt_status`.
struct FakeVault {
  VaultResponse caps_answer = Answer(200, CapabilitiesAnswer(AllGranted()));
  long decrypt_status = 200;
  bool corrupt = false;
  std::vector<std::string> calls;

  VaultCall Call() {
    return [this](HttpMethod, const std::string& path, std::string_view body) {
      calls.push_back(path);
      if (path == kCapabilitiesSelfPath) return caps_answer;
      Json::Value in = Parse(body);
      Json::Value out(Json::objectValue);
      if (path == "transit/encrypt/kms") {
        EXPECT_EQ(in["key_version"].asUInt64(), 7u);
        out["data"]["ciphertext"] = "vault:v7:" + in["plaintext"].asString();
        return Answer(200, out);
      }
      if (decrypt_status != 200) return Answer(decrypt_status, out, "permission denied");
      std::string b64 = in["ciphertext"].asString().substr(9);
      if (corrupt) b64 = std::string(b64.size() - 4, 'A') + "AAA=";
      out["data"]["plaintext"] = b64;
      return Answer(200, out);
    };
  }
};

TEST(VerifyTokenCapabilities, AllGrantedIsOkWithOneCall) {
  FakeVault v;
  CapabilityVerdict verdict = VerifyTokenCapabilities(kNames, 7, v.Call());
  EXPECT_TRUE(verdict.status.ok()) << verdict.status.ToString();
  EXPECT_FALSE(verdict.by_round_trip);
  EXPECT_EQ(v.calls, std::vector<std::string>{"sys/capabilities-self"});
}

TEST(VerifyTokenCapabilities, EncryptWithoutDecryptIsNamed) {
  FakeVault v;
  auto lists = AllGranted();
  lists["transit/decrypt/kms"] = {"deny"};
  v.caps_answer = Answer(200, CapabilitiesAnswer(lists));
  CapabilityVerdict verdict = VerifyTokenCapabilities(kNames, 7, v.Call());
  EXPECT_EQ(verdict.status.code(), Code::kPermissionDenied);
  EXPECT_EQ(verdict.status.message(), "token may not decrypt transit/decrypt/kms");
}

TEST(VerifyTokenCapabilities, RefusedQuestionFallsBackToARoundTrip) {
  FakeVault v;
  v.caps_answer = Answer(403, Json::Value(), "permission denied");
  CapabilityVerdict verdict = VerifyTokenCapabilities(kNames, 7, v.Call());
  EXPECT_TRUE(verdict.status.ok()) << verdict.status.ToString();
  EXPECT_TRUE(verdict.by_round_trip);
  EXPECT_EQ(v.calls, (std::vector<std::string>{"sys/capabilities-self", "transit/encrypt/kms",
                                               "transit/decrypt/kms"}));

  FakeVault denied;
  denied.caps_answer = v.caps_answer;
  denied.decrypt_status = 403;
  verdict = VerifyTokenCapabilities(kNames, 7, denied.Call());
  EXPECT_EQ(verdict.status.code(), Code::kPermissionDenied);
  EXPECT_EQ(verdict.status.message(), "token may not decrypt transit/decrypt/kms");
  EXPECT_TRUE(verdict.by_round_trip);

  FakeVault wrong;
  wrong.caps_answer = v.caps_answer;
  wrong.corrupt = true;
  verdict = VerifyTokenCapabilities(kNames, 7, wrong.Call());
  EXPECT_EQ(verdict.status.code(), Code::kInternal);
  EXPECT_NE(verdict.status.message().find("decrypted to a different value"), std::string::npos);
}

TEST(VerifyTokenCapabilities, VaultThatCannotBeAskedSaysWhy) {
  FakeVault v;
  v.caps_answer = VaultResponse();
  v.caps_answer.transport = Code::kUnavailable;
  v.caps_answer.error = "connection refused";
  CapabilityVerdict verdict = VerifyTokenCapabilities(kNames, 7, v.Call());
  EXPECT_EQ(verdict.status.code(), Code::kUnavailable);
  EXPECT_EQ(verdict.status.message(),
            "cannot verify the token's capabilities: vault unreachable: connection refused");
  v.caps_answer.tls_failure = true;
  v.caps_answer.error = "TLS certificate verification failed";
  verdict = VerifyTokenCapabilities(kNames, 7, v.Call());
  EXPECT_EQ(verdict.status.message(),
            "cannot verify the token's capabilities: vault TLS error: TLS certificate "
            "verification failed");
  v.caps_answer = Answer(503, Json::Value(), "Vault is sealed");
  verdict = VerifyTokenCapabilities(kNames, 7, v.Call());
  EXPECT_EQ(verdict.status.message(),
            "cannot verify the token's capabilities: HTTP 503: Vault is sealed");
}

}  // namespace
}  // namespace vkms::broker
