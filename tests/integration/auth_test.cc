// Issue 17, end to end through the real binaries: TLS certificate auth (--auth-method=cert)
// and a token file kept fresh by Vault Agent (--auth-method=token).
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "test_pki.h"
#include "tests/integration/plugin_fixture.h"
#include "tests/integration/plugin_process.h"
#include "tests/kmsclient/kms_client.h"

namespace vkms::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Encrypt then Decrypt through the plugin; "" when both worked, else what failed.
std::string RoundTrip(const std::string& socket) {
  KmsClient kms(socket);
  const std::string seed = RandomBytes(32);
  v2::EncryptResponse enc;
  grpc::Status s = kms.Encrypt(seed, RandomUid(), &enc);
  if (!s.ok()) return "Encrypt: " + s.error_message();
  v2::DecryptResponse dec;
  s = kms.Decrypt(enc.ciphertext(), enc.key_id(), RandomUid(), &dec);
  if (!s.ok()) return "Decrypt: " + s.error_message();
  return dec.plaintext() == seed ? "" : "Decrypt returned another plaintext";
}

class CertAuthTest : public PluginFixture {
 protected:
  void SetUp() override {
    PluginFixture::SetUp();
    ca_ = NewCa("kms client CA");
  }

  static Pem NewCa(const std::string& name) {
    CertSpec spec;
    spec.common_name = name;
    spec.is_ca = true;
    return IssueOrThrow(spec);
  }

  static Pem Leaf(const Pem& ca, const std::string& cn = "kms-node-1") {
    CertSpec spec;
    spec.common_name = cn;
    return IssueOrThrow(spec, &ca);
  }

  PluginOptions CertOptions(const Pem& leaf) {
    PluginOptions o = Options();
    o.cert_auth = true;
    o.client_cert_pem = leaf.cert;
    o.client_key_pem = leaf.key;
    for (const auto& f : vault_.CertAuthFlags()) o.extra_flags.push_back(f);
    return o;
  }

  int64_t Logins() { return vault_.sim().Stats()["logins"].asInt64(); }

  Pem ca_;
};

TEST_F(CertAuthTest, LogsInWithTheClientCertificateAndServes) {
  vault_.SetUpCertAuth(ca_.cert);
  Pem leaf = Leaf(ca_);
  auto plugin = StartPlugin(CertOptions(leaf));
  EXPECT_EQ(RoundTrip(plugin->socket_path()), "") << plugin->Logs();
  const std::string logs = plugin->Logs();
  EXPECT_NE(logs.find("\"msg\":\"vault login succeeded\""), std::string::npos) << logs;
  EXPECT_NE(logs.find("\"method\":\"cert\""), std::string::npos) << logs;
  // The private key is a credential like a secret-id: never in any output.
  const std::string key_body = leaf.key.substr(leaf.key.find('\n') + 1, 40);
  EXPECT_EQ(logs.find(key_body), std::string::npos);
  if (vault_.is_sim()) {
    EXPECT_EQ(SimCount("auth/" + vault_.approle_mount() + "/login"), 0) << "no AppRole login";
  }
}

TEST_F(CertAuthTest, RenewsTheTokenAndLogsInAgainAtMaxTtl) {
  REQUIRE_SIM();
  // Renewed at 2/3 of 3 s; the 8 s max TTL then forces a new login, as with AppRole.
  Json::Value role;
  role["token_ttl"] = "3s";
  role["token_max_ttl"] = "8s";
  vault_.SetUpCertAuth(ca_.cert, role);
  auto plugin = StartPlugin(CertOptions(Leaf(ca_)));
  const int64_t logins = Logins();
  const int64_t renewals = SimCount("auth/token/renew-self");
  ASSERT_TRUE(WaitUntil(
      [&] { return Logins() > logins && SimCount("auth/token/renew-self") >= renewals + 2; },
      seconds(20)))
      << "renewals " << SimCount("auth/token/renew-self") - renewals << ", logins "
      << Logins() - logins << "\n"
      << plugin->Logs();
  EXPECT_EQ(RoundTrip(plugin->socket_path()), "") << plugin->Logs();
  EXPECT_EQ(plugin->Logs().find("vault token renewal failed"), std::string::npos)
      << "each renewal presents the certificate Vault binds the token to\n"
      << plugin->Logs();
}

TEST_F(CertAuthTest, CertificateReplacedOnDiskIsUsedAtTheNextLogin) {
  REQUIRE_SIM();
  vault_.SetUpCertAuth(ca_.cert);
  auto plugin = StartPlugin(CertOptions(Leaf(ca_)));
  ASSERT_EQ(RoundTrip(plugin->socket_path()), "") << plugin->Logs();

  // The client CA is rotated: Vault now trusts only the new one, and the node's certificate
  // is renewed from it on disk (an atomic rename, as cert-manager does). The broker's pooled
  // connections, and any TLS session it could resume, still carry the old certificate.
  Pem new_ca = NewCa("kms client CA 2");
  Pem renewed = Leaf(new_ca);
  plugin->WriteClientCertificate(renewed.cert, renewed.key);
  vault_.SetUpCertAuth(new_ca.cert);
  const int64_t logins = Logins();
  vault_.sim().RevokeTokens();

  EXPECT_EQ(RoundTrip(plugin->socket_path()), "") << plugin->Logs();
  EXPECT_EQ(Logins(), logins + 1) << "one new login, with the renewed certificate";
}

TEST_F(CertAuthTest, ExpiredCertificateIsRefusedWithAClearError) {
  REQUIRE_SIM();
  vault_.SetUpCertAuth(ca_.cert);
  CertSpec spec;
  spec.common_name = "kms-node-1";
  spec.not_before_s = -2 * 86400;
  spec.not_after_s = -86400;
  auto plugin = StartPlugin(CertOptions(IssueOrThrow(spec, &ca_)), /*wait_healthy=*/false);
  std::string healthz;
  ASSERT_TRUE(WaitUntil(
      [&] {
        healthz = plugin->Status().healthz();
        return healthz.find("expired") != std::string::npos;
      },
      seconds(10)))
      << healthz << "\n"
      << plugin->Logs();
  // Vault's reason, and the file with what to do about it.
  EXPECT_NE(healthz.find("certificate has expired"), std::string::npos) << healthz;
  EXPECT_NE(healthz.find("client certificate " + plugin->dir() + "/creds/client.pem expired at"),
            std::string::npos)
      << healthz;
  KmsClient kms(plugin->socket_path());
  v2::EncryptResponse enc;
  grpc::Status s = kms.Encrypt(RandomBytes(32), RandomUid(), &enc);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(s.error_message().find("expired"), std::string::npos) << s.error_message();
  EXPECT_EQ(Logins(), 0);
}

// The broker's flags are checked before anything starts: exit 2 and one line naming the flag.
TEST(CertAuthFlagsTest, CertMethodWithoutACertificateExitsTwo) {
  std::string out;
  EXPECT_EQ(
      RunBrokerExpectingExit({"--vault-addr=https://127.0.0.1:1", "--auth-method=cert"}, &out), 2);
  EXPECT_NE(out.find("--vault-client-cert"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

// Vault Agent's auto-auth sink replaces the token file (write to a temporary file, rename) each
// time it authenticates; the broker reads the file again when its token stops working.
class VaultAgentTokenTest : public PluginFixture {
 protected:
  std::string NewToken() {
    Json::Value params(Json::objectValue);
    params["policies"].append(vault_.policy());
    params["ttl"] = "1h";
    return vault_.setup().CreateToken(params);
  }
};

TEST_F(VaultAgentTokenTest, ReplacedTokenFileIsReadWhenTheOldTokenIsRevoked) {
  const std::string first = NewToken();
  PluginOptions o = Options();
  o.token = first;
  auto plugin = StartPlugin(o);
  ASSERT_EQ(RoundTrip(plugin->socket_path()), "") << plugin->Logs();

  // The agent re-authenticates and writes its new token; the old one is revoked.
  const std::string second = NewToken();
  plugin->WriteToken(second);
  Json::Value revoke;
  revoke["token"] = first;
  vault_.setup().Expect("POST", "auth/token/revoke", revoke);

  EXPECT_EQ(RoundTrip(plugin->socket_path()), "") << plugin->Logs();
  const std::string logs = plugin->Logs();
  EXPECT_NE(logs.find("vault refused the token; logging in again"), std::string::npos) << logs;
  for (const std::string& t : {first, second}) EXPECT_EQ(logs.find(t), std::string::npos);
}

}  // namespace
}  // namespace vkms::testing
