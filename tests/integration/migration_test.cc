// Issue 17, end to end through the real binaries: switching from another Vault KMS plugin on
// the same Transit key (its ciphertexts decrypt whatever key_id it stored; another key's do
// not), and knowing when an old key version is no longer needed (Decrypts by key version).
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <ctime>
#include <set>

#include "tests/integration/plugin_fixture.h"
#include "tests/integration/plugin_process.h"
#include "tests/kmsclient/kms_client.h"

namespace vkms::testing {
namespace {

using std::chrono::seconds;

std::string Base64(const std::string& raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(&out[0]),
                                reinterpret_cast<const unsigned char*>(raw.data()),
                                static_cast<int>(raw.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// The value of one series ("name" or "name{labels}") in a /metrics body; -1 when absent.
double Sample(const std::string& body, const std::string& series) {
  const size_t at = body.find("\n" + series + " ");
  return at == std::string::npos ? -1 : atof(body.c_str() + at + series.size() + 2);
}

// The values a label takes across one metric's series.
std::set<std::string> LabelValues(const std::string& body, const std::string& metric,
                                  const std::string& label) {
  std::set<std::string> out;
  const std::string prefix = "\n" + metric + "{" + label + "=\"";
  for (size_t at = body.find(prefix); at != std::string::npos; at = body.find(prefix, at + 1)) {
    const size_t start = at + prefix.size();
    out.insert(body.substr(start, body.find('"', start) - start));
  }
  return out;
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class MigrationTest : public PluginFixture {
 protected:
  // What vault-kubernetes-kms and HashiCorp's vault-kube-kms do: one Transit encrypt call of
  // their own; they store Vault's ciphertext with a key_id of their making.
  std::string TransitEncrypt(const std::string& key, const std::string& plaintext) {
    Json::Value body;
    body["plaintext"] = Base64(plaintext);
    HttpResult r =
        vault_.setup().Expect("POST", vault_.transit_mount() + "/encrypt/" + key, body, {200});
    return r.json["data"]["ciphertext"].asString();
  }

  std::string Metrics(const PluginProcess& plugin) {
    auto [status, body] = HttpGet(plugin.metrics_port(), "/metrics");
    EXPECT_EQ(status, 200);
    return body;
  }
};

TEST_F(MigrationTest, ForeignKeyIdDecryptsATransitCiphertextOfTheConfiguredKey) {
  auto plugin = StartPlugin(Options());
  KmsClient kms(plugin->socket_path());
  const std::string seed = RandomBytes(32);
  const std::string ct = TransitEncrypt(vault_.key(), seed);
  ASSERT_EQ(ct.rfind("vault:v1:", 0), 0u) << ct;

  // vault-kubernetes-kms stores the bare key version; any other key_id works the same way.
  for (const std::string key_id : {"1", "1", "1", "vault-kube-kms/transit/kms/1"}) {
    v2::DecryptResponse dec;
    grpc::Status s = kms.Decrypt(ct, key_id, RandomUid(), &dec);
    ASSERT_TRUE(s.ok()) << key_id << ": " << s.error_message();
    EXPECT_EQ(dec.plaintext(), seed) << key_id;
  }
  // Our own key_id is not foreign.
  v2::EncryptResponse enc;
  ASSERT_TRUE(kms.Encrypt(seed, RandomUid(), &enc).ok());
  v2::DecryptResponse dec;
  ASSERT_TRUE(kms.Decrypt(enc.ciphertext(), enc.key_id(), RandomUid(), &dec).ok());

  const std::string body = Metrics(*plugin);
  EXPECT_EQ(Sample(body, "vault_kms_decrypt_foreign_key_id_total"), 4) << body;
  const double last = Sample(body, "vault_kms_decrypt_foreign_key_id_last_used_timestamp_seconds");
  EXPECT_NEAR(last, static_cast<double>(time(nullptr)), 30) << body;
  EXPECT_EQ(body.find("vault-kube-kms/transit"), std::string::npos) << "no key_id as a label";

  // Logged once per foreign key_id at info, not per call.
  const std::string logs = plugin->Logs();
  EXPECT_EQ(Count(logs, "stored with a foreign key_id"), 2u) << logs;
  const size_t line = logs.rfind('\n', logs.find("stored with a foreign key_id")) + 1;
  const std::string first = logs.substr(line, logs.find('\n', line) - line);
  EXPECT_NE(first.find("\"level\":\"info\""), std::string::npos) << first;
  EXPECT_EQ(Count(logs, "\"key_id\":\"1\""), 1u) << logs;
  EXPECT_NE(logs.find("\"key_id\":\"vault-kube-kms/transit/kms/1\""), std::string::npos) << logs;
}

TEST_F(MigrationTest, CiphertextOfAnotherTransitKeyIsRefused) {
  vault_.setup().CreateKey(vault_.transit_mount(), "another-key");
  auto plugin = StartPlugin(Options());
  const std::string ct = TransitEncrypt("another-key", RandomBytes(32));
  ASSERT_EQ(ct.rfind("vault:v1:", 0), 0u) << ct;
  KmsClient kms(plugin->socket_path());
  v2::DecryptResponse dec;
  grpc::Status s = kms.Decrypt(ct, "1", RandomUid(), &dec);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("message authentication failed"), std::string::npos)
      << s.error_message();
  EXPECT_TRUE(dec.plaintext().empty());
  const std::string body = Metrics(*plugin);
  EXPECT_EQ(Sample(body, "vault_kms_decrypt_foreign_key_id_total"), 0) << body;
  EXPECT_EQ(plugin->Logs().find("stored with a foreign key_id"), std::string::npos);
}

TEST_F(MigrationTest, DecryptsAreCountedByTheKeyVersionTheyNeeded) {
  auto plugin = StartPlugin(Options());
  KmsClient kms(plugin->socket_path());
  v2::EncryptResponse v1;
  ASSERT_TRUE(kms.Encrypt(RandomBytes(32), RandomUid(), &v1).ok());
  const std::string key_path = vault_.transit_mount() + "/keys/" + vault_.key();
  vault_.setup().Expect("POST", key_path + "/rotate");
  std::string key_id;
  ASSERT_TRUE(plugin->WaitKeyIdChange(v1.key_id(), seconds(10), &key_id));
  v2::EncryptResponse v2;
  ASSERT_TRUE(kms.Encrypt(RandomBytes(32), RandomUid(), &v2).ok());
  ASSERT_EQ(v2.ciphertext().rfind("vault:v2:", 0), 0u);

  auto decrypt = [&](const v2::EncryptResponse& e) {
    v2::DecryptResponse dec;
    grpc::Status s = kms.Decrypt(e.ciphertext(), e.key_id(), RandomUid(), &dec);
    EXPECT_TRUE(s.ok()) << s.error_message();
  };
  decrypt(v1);
  decrypt(v1);
  decrypt(v2);
  std::string body = Metrics(*plugin);
  EXPECT_EQ(Sample(body, "vault_kms_decrypt_key_version_total{version=\"1\"}"), 2) << body;
  EXPECT_EQ(Sample(body, "vault_kms_decrypt_key_version_total{version=\"2\"}"), 1) << body;
  const double now = static_cast<double>(time(nullptr));
  EXPECT_NEAR(
      Sample(body, "vault_kms_decrypt_key_version_last_used_timestamp_seconds{version=\"1\"}"), now,
      30);
  EXPECT_EQ(Sample(body, "vault_kms_decrypt_foreign_key_id_total"), 0) << "older key_ids are ours";

  // Eleven more rotations: versions 1 and 2 leave the latest ten and are counted as "older",
  // so the label stays bounded however many versions the key gets.
  for (int i = 0; i < 11; ++i) vault_.setup().Expect("POST", key_path + "/rotate");
  ASSERT_TRUE(WaitUntil(
      [&] {
        key_id = plugin->Status().key_id();
        return key_id.find(":v13:") != std::string::npos;
      },
      seconds(10)))
      << key_id;
  decrypt(v1);
  body = Metrics(*plugin);
  EXPECT_EQ(Sample(body, "vault_kms_decrypt_key_version_total{version=\"older\"}"), 4) << body;
  const std::set<std::string> versions =
      LabelValues(body, "vault_kms_decrypt_key_version_total", "version");
  EXPECT_EQ(versions, std::set<std::string>{"older"}) << body;
}

}  // namespace
}  // namespace vkms::testing
