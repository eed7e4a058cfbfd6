// `vault-kms-broker check`: the real binary against the simulator (or a real Vault, see
// vault_env.h), one test per kind of misconfiguration an operator meets, asserting the exact
// report lines and the exit status.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/integration/plugin_process.h"
#include "tests/integration/vault_env.h"

namespace vkms::testing {
namespace {

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string Suffix() {
  unsigned char b[4];
  RAND_bytes(b, sizeof b);
  char out[9];
  snprintf(out, sizeof out, "%02x%02x%02x%02x", b[0], b[1], b[2], b[3]);
  return out;
}

// A local TCP port nothing listens on (bound, then released).
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

constexpr const char* kPassTls = "PASS  tls: server name 127.0.0.1 verified against CA file ";

class CheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    ASSERT_TRUE(vault_.Start(&err)) << err;
    char tmpl[] = "/tmp/vkms-check-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    role_id_ = vault_.role_id();
    secret_id_ = vault_.NewSecretId();
    addr_ = vault_.addr();
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // As a deployment would have it: 0400 and, when the test runs as root (so `check` does too),
  // owned by the broker user the flags name (the default 65532), which `check` verifies.
  std::string WriteCredential(const std::string& name, const std::string& value,
                              mode_t mode = 0400) {
    std::string path = dir_ + "/" + name;
    {
      std::ofstream out(path, std::ios::trunc);
      out << value << "\n";
    }
    chmod(path.c_str(), mode);
    if (geteuid() == 0) {
      EXPECT_EQ(chown(path.c_str(), kBrokerUid, kBrokerUid), 0);
    }
    return path;
  }

  Captured Check(mode_t secret_mode = 0400, std::vector<std::string> extra = {}) {
    role_id_path_ = WriteCredential("role-id", role_id_);
    secret_id_path_ = WriteCredential("secret-id", secret_id_, secret_mode);
    std::vector<std::string> argv = {BuildDir() + "/vault-kms-broker",
                                     "check",
                                     "--vault-addr=" + addr_,
                                     "--vault-ca-file=" + vault_.ca_file(),
                                     "--approle-role-id-file=" + role_id_path_,
                                     "--approle-secret-id-file=" + secret_id_path_};
    for (const auto& f : vault_.PluginFlags()) argv.push_back(f);
    // A flag in `extra` replaces the default one of the same name (flags may not repeat).
    for (const auto& f : extra) {
      const std::string name = f.substr(0, f.find('=') + 1);
      argv.erase(std::remove_if(argv.begin(), argv.end(),
                                [&](const std::string& a) { return a.rfind(name, 0) == 0; }),
                 argv.end());
      argv.push_back(f);
    }
    Captured c = RunCaptured(argv, std::chrono::seconds(60));
    // Whatever happened, nothing secret is printed, on either stream.
    for (const std::string* s : {&c.out, &c.err}) {
      EXPECT_EQ(s->find(secret_id_), std::string::npos) << *s;
      EXPECT_EQ(s->find(role_id_), std::string::npos) << *s;
      EXPECT_EQ(s->find(vault_.root_token()), std::string::npos) << *s;
    }
    return c;
  }

  // An AppRole role of its own with `hcl` as its only policy (plus Vault's default policy);
  // the check then logs in with it.
  void UseRoleWithPolicy(const std::string& hcl) {
    const std::string name = "vkms-check-" + Suffix();
    vault_.setup().WritePolicy(name, hcl);
    Json::Value role(Json::objectValue);
    role["token_policies"].append(name);
    role["token_ttl"] = "1h";
    role["token_max_ttl"] = "24h";
    vault_.setup().CreateRole(vault_.approle_mount(), name, role);
    role_id_ = vault_.setup().ReadRoleId(vault_.approle_mount(), name);
    secret_id_ = vault_.setup().NewSecretId(vault_.approle_mount(), name);
    policy_ = name;
  }

  std::string Path(const std::string& op, const std::string& key = "") const {
    return vault_.transit_mount() + "/" + op + "/" + (key.empty() ? vault_.key() : key);
  }
  static std::string Grant(const std::string& path, const std::string& caps) {
    return "path \"" + path + "\" { capabilities = [" + caps + "] }\n";
  }
  std::string Health() const {
    return "PASS  address: " + addr_ + ": initialized, unsealed, active, version ";
  }
  std::string Credentials(mode_t secret_mode = 0400) const {
    const std::string owner = std::to_string(geteuid() == 0 ? kBrokerUid : geteuid());
    char mode[8];
    snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(secret_mode));
    return "role-id file " + role_id_path_ + ": mode 0400, owner uid " + owner +
           "; secret-id file " + secret_id_path_ + ": mode " + mode + ", owner uid " + owner;
  }
  std::string Login() const {
    return "PASS  login: approle login at auth/" + vault_.approle_mount() +
           ": policies [default, " + policy_ + "], ttl ";
  }
  std::string KeyLine(const std::string& verdict = "PASS") const {
    return verdict + "  key: " + Path("keys") +
           ": type aes256-gcm96, latest version 1, min decryption version 1, supports encryption";
  }
  std::string PolicyCaps(const std::string& enc = "update") const {
    return Path("encrypt") + " [" + enc + "], " + Path("decrypt") + " [update], " + Path("keys") +
           " [read]";
  }

  VaultEnv vault_;
  std::string dir_, addr_, role_id_, secret_id_, role_id_path_, secret_id_path_;
  std::string policy_ = "vault-kms";
};

// Prefix matches for the parts that vary (Vault version, remaining TTL, ciphertext length).
void ExpectLine(const std::string& line, const std::string& prefix) {
  EXPECT_EQ(line.substr(0, prefix.size()), prefix) << line;
}

TEST_F(CheckTest, AllPass) {
  UseRoleWithPolicy(Grant(Path("encrypt"), "\"update\"") + Grant(Path("decrypt"), "\"update\"") +
                    Grant(Path("keys"), "\"read\""));
  Captured c = Check();
  ASSERT_TRUE(WIFEXITED(c.status)) << c.out << c.err;
  EXPECT_EQ(WEXITSTATUS(c.status), 0) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 8u) << c.out;
  for (const auto& line : l) EXPECT_EQ(line.substr(0, 6), "PASS  ") << c.out;
  ExpectLine(l[0], Health());
  EXPECT_EQ(l[1], kPassTls + vault_.ca_file());
  EXPECT_EQ(l[2], "PASS  credentials: " + Credentials());
  ExpectLine(l[3], Login());
  ExpectLine(l[4], "PASS  token: renewable, ttl ");
  EXPECT_NE(l[4].find(" (issued for 1h), explicit max ttl none"), std::string::npos) << l[4];
  EXPECT_EQ(l[5], KeyLine());
  EXPECT_EQ(l[6], "PASS  policy: " + PolicyCaps());
  ExpectLine(l[7], "PASS  round trip: 32 random bytes encrypted with key version 1 (ciphertext ");
  EXPECT_NE(l[7].find(" bytes) and decrypted back identical"), std::string::npos) << l[7];
}

TEST_F(CheckTest, UnreachableAddress) {
  addr_ = "https://127.0.0.1:" + std::to_string(ClosedPort());
  Captured c = Check();
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  std::vector<std::string> want = {
      "FAIL  address: " + addr_ + ": connection refused",
      "      fix: check --vault-addr (https, host, port) and that no firewall blocks the broker",
      "SKIP  tls: no address completed a TLS handshake",
      "PASS  credentials: " + Credentials(),
      "SKIP  login: no usable Vault address",
      "SKIP  token: no usable Vault address",
      "SKIP  key: no usable Vault address",
      "SKIP  policy: no usable Vault address",
      "SKIP  round trip: no usable Vault address"};
  EXPECT_EQ(Lines(c.out), want) << c.out;
}

TEST_F(CheckTest, WrongCa) {
  SimProcess other;
  std::string err;
  ASSERT_TRUE(other.Start({}, &err)) << err;
  Captured c = Check(0400, {"--vault-ca-file=" + other.ca_file()});
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 10u) << c.out;
  EXPECT_EQ(l[0],
            "WARN  address: " + addr_ + ": health not read, TLS verification failed (see tls)");
  EXPECT_EQ(l[1], "      fix: fix the tls step below");
  ExpectLine(l[2], "FAIL  tls: server name 127.0.0.1 not verified against CA file " +
                       other.ca_file() + ": " + addr_ + ": TLS certificate verification failed");
  EXPECT_EQ(l[3],
            "      fix: set --vault-ca-file to the CA that signed Vault's certificate, or "
            "--vault-tls-server-name to a name the certificate holds");
  EXPECT_EQ(l[4], "PASS  credentials: " + Credentials());
  EXPECT_EQ(l[5], "SKIP  login: no usable Vault address");
  EXPECT_EQ(l[9], "SKIP  round trip: no usable Vault address");
}

TEST_F(CheckTest, SecretIdReadableByOthersWarns) {
  Captured c = Check(0644);
  EXPECT_EQ(WEXITSTATUS(c.status), 0) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 9u) << c.out;
  EXPECT_EQ(l[2], "WARN  credentials: " + Credentials(0644) + ", group/other can read it");
  EXPECT_EQ(l[3], "      fix: chmod 0400 " + secret_id_path_);
  for (size_t i : {0, 1, 4, 5, 6, 7, 8}) EXPECT_EQ(l[i].substr(0, 6), "PASS  ") << l[i];
}

TEST_F(CheckTest, WrongSecretIdFailsLogin) {
  secret_id_ = "00000000-1111-2222-3333-444444444444";
  Captured c = Check();
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 9u) << c.out;
  EXPECT_EQ(l[3], "FAIL  login: approle login at auth/" + vault_.approle_mount() +
                      ": invalid role or secret ID");
  EXPECT_EQ(l[4],
            "      fix: check that the role-id and secret-id belong to the same role, the "
            "secret-id is neither expired nor used up, and --approle-mount");
  EXPECT_EQ(l[5], "SKIP  token: login failed");
  EXPECT_EQ(l[6], "SKIP  key: login failed");
  EXPECT_EQ(l[7], "SKIP  policy: login failed");
  EXPECT_EQ(l[8], "SKIP  round trip: login failed");
}

TEST_F(CheckTest, MissingKeyFails) {
  // The policy is right for the key the flags name; only the key itself is missing.
  const std::string key = "missing-" + Suffix();
  UseRoleWithPolicy(Grant(Path("encrypt", key), "\"update\"") +
                    Grant(Path("decrypt", key), "\"update\"") +
                    Grant(Path("keys", key), "\"read\""));
  Captured c = Check(0400, {"--transit-key=" + key});
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 9u) << c.out;
  EXPECT_EQ(l[5], "FAIL  key: " + Path("keys", key) + ": not found (HTTP 404)");
  EXPECT_EQ(l[6], "      fix: vault write -f " + Path("keys", key) + " type=aes256-gcm96");
  EXPECT_EQ(l[7], "PASS  policy: " + Path("encrypt", key) + " [update], " + Path("decrypt", key) +
                      " [update], " + Path("keys", key) + " [read]");
  EXPECT_EQ(l[8], "SKIP  round trip: key failed");
}

TEST_F(CheckTest, PolicyWithoutDecryptFails) {
  UseRoleWithPolicy(Grant(Path("encrypt"), "\"update\"") + Grant(Path("keys"), "\"read\""));
  Captured c = Check();
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 9u) << c.out;
  EXPECT_EQ(l[5], KeyLine());
  EXPECT_EQ(l[6], "FAIL  policy: " + Path("encrypt") + " [update], " + Path("decrypt") +
                      " [deny], " + Path("keys") + " [read]; " + Path("decrypt") + " lacks update");
  EXPECT_EQ(l[7], "      fix: add path \"" + Path("decrypt") +
                      "\" { capabilities = [\"update\"] } to the broker's policy");
  EXPECT_EQ(l[8], "SKIP  round trip: policy failed");
}

TEST_F(CheckTest, CreateOnEncryptWarns) {
  UseRoleWithPolicy(Grant(Path("encrypt"), "\"create\", \"update\"") +
                    Grant(Path("decrypt"), "\"update\"") + Grant(Path("keys"), "\"read\""));
  Captured c = Check();
  EXPECT_EQ(WEXITSTATUS(c.status), 0) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 9u) << c.out;
  EXPECT_EQ(l[6], "WARN  policy: " + PolicyCaps("create, update") + "; " + Path("encrypt") +
                      " has create: a mistyped --transit-key would silently create a new key");
  EXPECT_EQ(l[7],
            "      fix: remove \"create\" from " + Path("encrypt") + " in the broker's policy");
  ExpectLine(l[8], "PASS  round trip: ");
}

TEST_F(CheckTest, InvalidFlagsStillExitTwo) {
  Captured c = RunCaptured({BuildDir() + "/vault-kms-broker", "check", "--vault-addr=http://x"});
  EXPECT_EQ(WEXITSTATUS(c.status), 2) << c.out << c.err;
  c = RunCaptured({BuildDir() + "/vault-kms-broker", "--vault-addr=https://x:1", "check"});
  EXPECT_EQ(WEXITSTATUS(c.status), 2) << c.out << c.err;
  EXPECT_NE(c.err.find("unexpected argument \"check\""), std::string::npos) << c.err;
}

}  // namespace
}  // namespace vkms::testing
