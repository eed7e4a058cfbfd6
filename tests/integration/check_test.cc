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

#include "test_pki.h"
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
    return Run(
        {"--approle-role-id-file=" + role_id_path_, "--approle-secret-id-file=" + secret_id_path_},
        vault_.PluginFlags(), std::move(extra));
  }

  // `check` with the flags of `auth` and `vault_flags`, then `extra`.
  Captured Run(const std::vector<std::string>& auth, const std::vector<std::string>& vault_flags,
               std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {BuildDir() + "/vault-kms-broker", "check",
                                     "--vault-addr=" + addr_,
                                     "--vault-ca-file=" + vault_.ca_file()};
    for (const auto& f : auth) argv.push_back(f);
    for (const auto& f : vault_flags) argv.push_back(f);
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

// --auth-method=cert: the client certificate and key are the credential, in a directory of the
// broker user's own (the broker reads them as that user, at every login).
class CertCheckTest : public CheckTest {
 protected:
  void SetUp() override {
    CheckTest::SetUp();
    ca_ = Issue("kms client CA", true);
    creds_ = dir_ + "/creds";
    ASSERT_EQ(mkdir(creds_.c_str(), 0700), 0);
    // The fixture's directory is root's 0700; the broker user must be able to reach creds_.
    chmod(dir_.c_str(), 0755);
    if (geteuid() == 0) {
      EXPECT_EQ(chown(creds_.c_str(), kBrokerUid, kBrokerUid), 0);
    }
    cert_path_ = creds_ + "/tls.crt";
    key_path_ = creds_ + "/tls.key";
  }

  static Pem Issue(const std::string& cn, bool is_ca, const Pem* issuer = nullptr,
                   long not_after_s = 30L * 24 * 3600) {
    CertSpec spec;
    spec.common_name = cn;
    spec.is_ca = is_ca;
    spec.not_before_s = std::min(-3600L, not_after_s - 3600);
    spec.not_after_s = not_after_s;
    return IssueOrThrow(spec, issuer);
  }

  // Writes `leaf` as a deployment would (certificate 0644, key 0400, both the broker user's)
  // and runs `check` with it.
  Captured CheckCert(const Pem& leaf) {
    Write(cert_path_, leaf.cert, 0644);
    Write(key_path_, leaf.key, 0400);
    Captured c = RunCert();
    // The private key is a credential: nothing of it is printed.
    const std::string body = leaf.key.substr(leaf.key.find('\n') + 1, 40);
    EXPECT_EQ(c.out.find(body), std::string::npos) << c.out;
    EXPECT_EQ(c.err.find(body), std::string::npos) << c.err;
    return c;
  }

  // `check` with the files as they are.
  Captured RunCert() {
    std::vector<std::string> vault_flags;
    for (const auto& f : vault_.PluginFlags()) {
      if (f.rfind("--approle-", 0) != 0) vault_flags.push_back(f);
    }
    for (const auto& f : vault_.CertAuthFlags()) vault_flags.push_back(f);
    return Run({"--auth-method=cert", "--vault-client-cert=" + cert_path_,
                "--vault-client-key=" + key_path_},
               vault_flags);
  }

  void Write(const std::string& path, const std::string& pem, mode_t mode) {
    {
      std::ofstream out(path, std::ios::trunc);
      out << pem;
    }
    chmod(path.c_str(), mode);
    if (geteuid() == 0) {
      EXPECT_EQ(chown(path.c_str(), kBrokerUid, kBrokerUid), 0);
    }
  }

  std::string Owner() const { return std::to_string(geteuid() == 0 ? kBrokerUid : geteuid()); }
  std::string CertLogin() const {
    return "cert login at auth/" + CertMount() + " as role vault-kms";
  }
  std::string CertMount() const {
    const std::string flag = vault_.CertAuthFlags()[0];
    return flag.substr(flag.find('=') + 1);
  }

  Pem ca_;
  std::string creds_, cert_path_, key_path_;
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

TEST_F(CertCheckTest, AllPass) {
  vault_.SetUpCertAuth(ca_.cert);
  Captured c = CheckCert(Issue("kms-node-1", false, &ca_));
  EXPECT_EQ(WEXITSTATUS(c.status), 0) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 8u) << c.out;
  for (const auto& line : l) EXPECT_EQ(line.substr(0, 6), "PASS  ") << c.out;
  EXPECT_EQ(l[1], kPassTls + vault_.ca_file() + ", client certificate " + cert_path_);
  ExpectLine(l[2], "PASS  credentials: client certificate " + cert_path_ +
                       ": subject CN=kms-node-1,O=vaultsim, valid until 20");
  EXPECT_NE(l[2].find("Z; client key " + key_path_ + ": mode 0400, owner uid " + Owner()),
            std::string::npos)
      << l[2];
  ExpectLine(l[3],
             "PASS  login: " + CertLogin() + ": policies [default, " + vault_.policy() + "], ttl ");
  ExpectLine(l[7], "PASS  round trip: ");
}

TEST_F(CertCheckTest, KeyTheBrokerUserCannotReadFails) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: reading as --broker-user";
  vault_.SetUpCertAuth(ca_.cert);
  const Pem leaf = Issue("kms-node-1", false, &ca_);
  Write(cert_path_, leaf.cert, 0644);
  Write(key_path_, leaf.key, 0400);
  ASSERT_EQ(chown(key_path_.c_str(), 0, 0), 0);
  chmod(key_path_.c_str(), 0600);
  Captured c = RunCert();
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 9u) << c.out;
  EXPECT_EQ(l[2], "FAIL  credentials: client key " + key_path_ +
                      ": cannot be read by the broker user 65532: Permission denied");
  EXPECT_EQ(l[3], "      fix: chown 65532 " + key_path_ +
                      " (and let that user search every directory above it)");
  // Root reads it (libcurl in `check` does: the TLS steps pass), the broker user cannot.
  EXPECT_EQ(l[1], kPassTls + vault_.ca_file() + ", client certificate " + cert_path_);
  EXPECT_EQ(l[4], "SKIP  login: credentials failed");

  // The files are the broker user's, but a directory above is root's alone.
  ASSERT_EQ(chown(key_path_.c_str(), kBrokerUid, kBrokerUid), 0);
  chmod(dir_.c_str(), 0700);
  c = RunCert();
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  l = Lines(c.out);
  ASSERT_GE(l.size(), 3u) << c.out;
  EXPECT_EQ(l[2], "FAIL  credentials: client certificate " + cert_path_ +
                      ": cannot be read by the broker user 65532: Permission denied");
}

TEST_F(CertCheckTest, ExpiredCertificateFailsWithTheFileAndTheTime) {
  vault_.SetUpCertAuth(ca_.cert);
  Captured c = CheckCert(Issue("kms-node-1", false, &ca_, -86400));
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 9u) << c.out;
  ExpectLine(l[2], "FAIL  credentials: client certificate " + cert_path_ + " expired at 20");
  EXPECT_NE(l[2].find("Z; install a renewed one"), std::string::npos) << l[2];
  EXPECT_EQ(l[3], "      fix: install a valid certificate at " + cert_path_ +
                      " (the broker reads it again at every login)");
  EXPECT_EQ(l[4], "SKIP  login: credentials failed");
}

TEST_F(CertCheckTest, KeyOfAnotherCertificateFails) {
  vault_.SetUpCertAuth(ca_.cert);
  Pem leaf = Issue("kms-node-1", false, &ca_);
  leaf.key = Issue("kms-node-2", false, &ca_).key;
  Captured c = CheckCert(leaf);
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  bool said = false;
  for (const auto& line : Lines(c.out)) {
    said = said || line == "FAIL  credentials: client key " + key_path_ +
                               " is not the key of the client certificate " + cert_path_;
  }
  EXPECT_TRUE(said) << c.out;
}

TEST_F(CertCheckTest, CertificateTheRoleDoesNotTrustFailsLogin) {
  vault_.SetUpCertAuth(Issue("another CA", true).cert);
  Captured c = CheckCert(Issue("kms-node-1", false, &ca_));
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 9u) << c.out;
  EXPECT_EQ(l[2].substr(0, 6), "PASS  ") << l[2];
  EXPECT_EQ(l[3], "FAIL  login: " + CertLogin() +
                      ": invalid certificate or no client certificate supplied");
  EXPECT_EQ(l[4], "      fix: vault read auth/" + CertMount() +
                      "/certs/vault-kms: its certificate must be the CA that issued " + cert_path_ +
                      " (or that certificate itself), and allowed_common_names "
                      "must admit it");
  EXPECT_EQ(l[5], "SKIP  token: login failed");
}

TEST_F(CertCheckTest, ShortTokenTtlWarnsWithTheRoleToFix) {
  Json::Value role;
  role["token_ttl"] = "1m";
  role["token_max_ttl"] = "1h";
  vault_.SetUpCertAuth(ca_.cert, role);
  Captured c = CheckCert(Issue("kms-node-1", false, &ca_));
  EXPECT_EQ(WEXITSTATUS(c.status), 0) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 9u) << c.out;
  ExpectLine(l[4], "WARN  token: renewable, ttl ");
  EXPECT_NE(l[4].find("; ttl below 5m"), std::string::npos) << l[4];
  EXPECT_EQ(l[5], "      fix: raise token_ttl on the cert role to 5m or more");
}

}  // namespace
}  // namespace vkms::testing
