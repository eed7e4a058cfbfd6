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
#include <functional>
#include <sstream>

#include "broker/check.h"
#include "shared/log.h"
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

// A loopback TCP socket that stays bound and listening until closed; its port in *port.
int ListeningPort(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  listen(fd, 1);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

bool Root() {
  return geteuid() == 0;
}

#define REQUIRE_ROOT()                                                                 \
  do {                                                                                 \
    if (!Root()) GTEST_SKIP() << "needs root: `check` opens the files as another uid"; \
  } while (0)

constexpr const char* kPassTls = "PASS  tls: server name 127.0.0.1 verified against CA file ";

// Every report, whatever it says, has the same shape: one verdict line per step, exactly one
// fix line under each WARN and FAIL, nothing else (no JSON log line) and nothing on stderr.
void ExpectReportShape(const Captured& c) {
  EXPECT_EQ(c.err, "") << "check printed on stderr";
  auto l = Lines(c.out);
  for (size_t i = 0; i < l.size(); ++i) {
    const std::string word = l[i].substr(0, 6);
    const bool verdict =
        word == "PASS  " || word == "WARN  " || word == "FAIL  " || word == "SKIP  ";
    const bool fix = l[i].rfind("      fix: ", 0) == 0;
    EXPECT_TRUE(verdict || fix) << "line " << i << " is neither a verdict nor a fix: " << l[i];
    const bool needs_fix = word == "WARN  " || word == "FAIL  ";
    const bool has_fix = i + 1 < l.size() && l[i + 1].rfind("      fix: ", 0) == 0;
    if (verdict) {
      EXPECT_EQ(needs_fix, has_fix) << l[i];
    }
    if (fix) {
      EXPECT_TRUE(i > 0 && (l[i - 1].rfind("WARN  ", 0) == 0 || l[i - 1].rfind("FAIL  ", 0) == 0))
          << "a fix line must follow its WARN or FAIL: " << l[i];
    }
  }
}

class CheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    ASSERT_TRUE(vault_.Start(&err)) << err;
    char tmpl[] = "/tmp/vkms-check-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // As /etc/vault-kms in a deployment: root's, and the broker user may enter it.
    chmod(dir_.c_str(), 0755);
    std::filesystem::create_directory(dir_ + "/run");
    chmod((dir_ + "/run").c_str(), 0755);
    // Vault's CA next to the credentials, readable by the broker user (the simulator's own
    // directory is root's alone, as a CA under /root would be).
    ca_ = dir_ + "/ca.pem";
    std::filesystem::copy_file(vault_.ca_file(), ca_);
    chmod(ca_.c_str(), 0644);
    role_id_ = vault_.role_id();
    secret_id_ = vault_.NewSecretId();
    addr_ = vault_.addr();
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // As a deployment would have it: 0400 and, when the test runs as root (so `check` does too),
  // owned by the broker user the flags name (the default 65532), which `check` reads them as.
  std::string WriteCredential(const std::string& name, const std::string& value,
                              mode_t mode = 0400) {
    std::string path = dir_ + "/" + name;
    {
      std::ofstream out(path, std::ios::trunc);
      out << value << "\n";
    }
    chmod(path.c_str(), mode);
    if (Root()) {
      EXPECT_EQ(chown(path.c_str(), kBrokerUid, kBrokerUid), 0);
    }
    return path;
  }

  // `check` with the flags a deployment gives, a socket in a root-owned directory and a metrics
  // port the kernel picks; `extra` replaces the default of the same flag. `prepare` runs after
  // the credential files are written (to break them).
  Captured Check(mode_t secret_mode = 0400, std::vector<std::string> extra = {},
                 const std::function<void()>& prepare = nullptr) {
    role_id_path_ = WriteCredential("role-id", role_id_);
    secret_id_path_ = WriteCredential("secret-id", secret_id_, secret_mode);
    if (prepare) prepare();
    std::vector<std::string> argv = {BuildDir() + "/vault-kms-broker",
                                     "check",
                                     "--vault-addr=" + addr_,
                                     "--vault-ca-file=" + ca_,
                                     "--approle-role-id-file=" + role_id_path_,
                                     "--approle-secret-id-file=" + secret_id_path_,
                                     "--socket=unix://" + dir_ + "/run/kms.sock",
                                     "--metrics-listen=127.0.0.1:0"};
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
    ExpectReportShape(c);
    return c;
  }

  // An AppRole role of its own with `hcl` as its only policy (plus Vault's default policy
  // unless `no_default_policy`); the check then logs in with it.
  void UseRoleWithPolicy(const std::string& hcl, bool no_default_policy = false) {
    policy_ = "vkms-check-" + Suffix();
    vault_.CreateRoleWithPolicy(policy_, hcl, no_default_policy, &role_id_, &secret_id_);
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
  static std::string BrokerUser() {
    return Root() ? "uid 65532 (--broker-user)"
                  : "uid " + std::to_string(geteuid()) + " (the broker's own)";
  }
  std::string Files(mode_t secret_mode = 0400) const {
    const std::string owner = std::to_string(Root() ? kBrokerUid : geteuid());
    char mode[8];
    snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(secret_mode));
    return "as " + BrokerUser() + ": role-id file " + role_id_path_ + ": mode 0400, owner uid " +
           owner + "; secret-id file " + secret_id_path_ + ": mode " + mode + ", owner uid " +
           owner + (secret_mode & 077 ? ", group/other can read it" : "") + "; CA file " + ca_ +
           ": mode 0644, owner uid " + std::to_string(geteuid());
  }
  std::string SocketLine() const {
    return "PASS  socket: directory " + dir_ + "/run: owner uid " + std::to_string(geteuid()) +
           ", mode 0755, no unprivileged uid can change it";
  }
  static constexpr const char* kMetrics =
      "PASS  metrics: --metrics-listen 127.0.0.1:0 can be bound";
  std::string Login() const {
    return "PASS  login: approle login at auth/" + vault_.approle_mount() +
           ": policies [default, " + policy_ + "], ttl ";
  }
  std::string KeyLine(const std::string& verdict = "PASS") const {
    return verdict + "  key: " + Path("keys") +
           ": type aes256-gcm96, latest version 1, min decryption version 1, supports encryption";
  }
  std::string PolicyCaps(const std::string& enc = "update", const std::string& dec = "update",
                         const std::string& key = "") const {
    return Path("encrypt", key) + " [" + enc + "], " + Path("decrypt", key) + " [" + dec + "], " +
           Path("keys", key) + " [read], auth/token/renew-self [update]";
  }
  std::string MinimalPolicy() const {
    return Grant(Path("encrypt"), "\"update\"") + Grant(Path("decrypt"), "\"update\"") +
           Grant(Path("keys"), "\"read\"");
  }

  VaultEnv vault_;
  std::string dir_, ca_, addr_, role_id_, secret_id_, role_id_path_, secret_id_path_;
  std::string policy_ = "vault-kms";
};

// Prefix matches for the parts that vary (Vault version, remaining TTL, ciphertext length).
void ExpectLine(const std::string& line, const std::string& prefix) {
  EXPECT_EQ(line.substr(0, prefix.size()), prefix) << line;
}

TEST_F(CheckTest, AllPass) {
  UseRoleWithPolicy(MinimalPolicy());
  Captured c = Check();
  ASSERT_TRUE(WIFEXITED(c.status)) << c.out << c.err;
  EXPECT_EQ(WEXITSTATUS(c.status), 0) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 10u) << c.out;
  for (const auto& line : l) EXPECT_EQ(line.substr(0, 6), "PASS  ") << c.out;
  ExpectLine(l[0], Health());
  EXPECT_EQ(l[1], kPassTls + ca_);
  EXPECT_EQ(l[2], "PASS  files: " + Files());
  EXPECT_EQ(l[3], SocketLine());
  EXPECT_EQ(l[4], kMetrics);
  ExpectLine(l[5], Login());
  ExpectLine(l[6], "PASS  token: renewable, ttl ");
  EXPECT_NE(l[6].find(" (issued for 1h), explicit max ttl none"), std::string::npos) << l[6];
  EXPECT_EQ(l[7], KeyLine());
  EXPECT_EQ(l[8], "PASS  policy: " + PolicyCaps());
  ExpectLine(l[9], "PASS  round trip: 32 random bytes encrypted with key version 1 (ciphertext ");
  EXPECT_NE(l[9].find(" bytes) and decrypted back identical"), std::string::npos) << l[9];
}

TEST_F(CheckTest, UnreachableAddress) {
  addr_ = "https://127.0.0.1:" + std::to_string(ClosedPort());
  Captured c = Check();
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  std::vector<std::string> want = {
      "FAIL  address: " + addr_ + ": connection refused",
      "      fix: check --vault-addr (https, host, port) and that no firewall blocks the broker",
      "SKIP  tls: no address completed a TLS handshake",
      "PASS  files: " + Files(),
      SocketLine(),
      kMetrics,
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
  ca_ = dir_ + "/other-ca.pem";
  std::filesystem::copy_file(other.ca_file(), ca_);
  chmod(ca_.c_str(), 0644);
  Captured c = Check();
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 12u) << c.out;
  EXPECT_EQ(l[0], "WARN  address: " + addr_ + ": health not read, TLS failed (see tls)");
  EXPECT_EQ(l[1], "      fix: fix the tls step below");
  ExpectLine(l[2], "FAIL  tls: server name 127.0.0.1 not verified against CA file " + ca_ + ": " +
                       addr_ + ": TLS certificate verification failed");
  EXPECT_EQ(l[3],
            "      fix: set --vault-ca-file to the CA that signed Vault's certificate, or "
            "--vault-tls-server-name to a name the certificate holds");
  EXPECT_EQ(l[4], "PASS  files: " + Files());
  EXPECT_EQ(l[7], "SKIP  login: no usable Vault address");
  EXPECT_EQ(l[11], "SKIP  round trip: no usable Vault address");
}

// Item 4: a secret-id others can read is a leaked credential, not a warning.
TEST_F(CheckTest, SecretIdReadableByOthersFails) {
  for (mode_t mode : {0644, 0440}) {
    Captured c = Check(mode);
    EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
    auto l = Lines(c.out);
    ASSERT_EQ(l.size(), 11u) << c.out;
    EXPECT_EQ(l[2], "FAIL  files: " + Files(mode));
    EXPECT_EQ(l[3], "      fix: chmod 0400 " + secret_id_path_);
    EXPECT_EQ(l[6], "SKIP  login: files failed");
  }
}

// Item 4: `check` runs as root, the broker reads as 65532. Before, a root:root 0400 secret-id
// only warned (and the broker then looped on "Permission denied").
TEST_F(CheckTest, SecretIdTheBrokerUserCannotReadFails) {
  REQUIRE_ROOT();
  Captured c = Check(0400, {}, [&] { ASSERT_EQ(chown(secret_id_path_.c_str(), 0, 0), 0); });
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 11u) << c.out;
  EXPECT_EQ(l[2], "FAIL  files: as uid 65532 (--broker-user): role-id file " + role_id_path_ +
                      ": mode 0400, owner uid 65532; secret-id file " + secret_id_path_ +
                      ": the broker cannot read it as uid 65532 (--broker-user): cannot open " +
                      secret_id_path_ + ": Permission denied; CA file " + ca_ +
                      ": mode 0644, owner uid 0");
  EXPECT_EQ(l[3], "      fix: chown 65532:65532 " + secret_id_path_ + " && chmod 0400 " +
                      secret_id_path_);
}

// Item 4: directory traversal as the broker user. Before, a 0700 root directory passed.
TEST_F(CheckTest, DirectoryTheBrokerUserCannotEnterFails) {
  REQUIRE_ROOT();
  Captured c = Check(0400, {}, [&] { chmod(dir_.c_str(), 0700); });
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_GE(l.size(), 4u) << c.out;
  const std::string blocked =
      ": the broker cannot read it as uid 65532 (--broker-user): directory " + dir_ +
      " cannot be entered";
  EXPECT_EQ(l[2], "FAIL  files: as uid 65532 (--broker-user): role-id file " + role_id_path_ +
                      blocked + "; secret-id file " + secret_id_path_ + blocked + "; CA file " +
                      ca_ + blocked);
  const std::string fix = "chmod 0755 " + dir_ + " (the broker user must be able to enter it)";
  EXPECT_EQ(l[3], "      fix: " + fix) << "one fix for one cause";
}

// Item 4: the TLS files are read by the broker user too.
TEST_F(CheckTest, CaFileTheBrokerUserCannotReadFails) {
  REQUIRE_ROOT();
  Captured c = Check(0400, {}, [&] { chmod(ca_.c_str(), 0600); });
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_GE(l.size(), 4u) << c.out;
  EXPECT_NE(l[2].find("; CA file " + ca_ +
                      ": the broker cannot read it as uid 65532 "
                      "(--broker-user): cannot open " +
                      ca_ + ": Permission denied"),
            std::string::npos)
      << l[2];
  EXPECT_EQ(l[3], "      fix: chmod 0644 " + ca_);
}

// Item 5: root never creates the socket in a directory an unprivileged uid can write, and the
// metrics address must be free.
TEST_F(CheckTest, SocketDirectoryMustBeSafe) {
  const std::string run = dir_ + "/run";
  struct Case {
    std::function<void()> prepare;
    std::string detail;  // a part of the FAIL line
    std::string fix;
  };
  std::vector<Case> cases = {
      {[&] { chmod(run.c_str(), 0777); }, run, "chown root:root " + run + " && chmod 0755 " + run},
      {[&] { std::filesystem::remove(run); }, "directory " + run + " does not exist",
       "install -d -o root -g root -m 0755 " + run},
      {[&] {
         std::filesystem::remove(run);
         std::filesystem::create_directory(dir_ + "/elsewhere");
         std::filesystem::create_directory_symlink(dir_ + "/elsewhere", run);
       },
       "socket directory " + run + " is a symbolic link",
       "point --socket into the real directory, or replace the link by one: rm " + run},
      {[&] { std::ofstream(run + "/kms.sock") << "x"; },
       run + "/kms.sock exists and is not a socket",
       "remove " + run + "/kms.sock after checking what it is, or choose another --socket"},
  };
  if (Root()) {
    cases.push_back({[&] { ASSERT_EQ(chown(run.c_str(), kBrokerUid, kBrokerUid), 0); }, run,
                     "chown root:root " + run + " && chmod 0755 " + run});
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    Captured c = Check(0400, {}, cases[i].prepare);
    EXPECT_EQ(WEXITSTATUS(c.status), 1) << i << ": " << c.out;
    auto l = Lines(c.out);
    ASSERT_GE(l.size(), 5u) << c.out;
    EXPECT_EQ(l[3].rfind("FAIL  socket: ", 0), 0u) << i << ": " << l[3];
    EXPECT_NE(l[3].find(cases[i].detail), std::string::npos) << i << ": " << l[3];
    EXPECT_EQ(l[4].rfind("      fix: " + cases[i].fix, 0), 0u) << i << ": " << l[4];
    // Only the socket step fails: Vault is still checked.
    EXPECT_EQ(l.back().rfind("PASS  round trip: ", 0), 0u) << c.out;
    std::filesystem::remove_all(run);
    std::filesystem::remove_all(dir_ + "/elsewhere");
    std::filesystem::create_directory(run);
    chmod(run.c_str(), 0755);
  }
}

TEST_F(CheckTest, MetricsAddressInUseFails) {
  int port = 0;
  int fd = ListeningPort(&port);
  const std::string m = "127.0.0.1:" + std::to_string(port);
  Captured c = Check(0400, {"--metrics-listen=" + m});
  close(fd);
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_GE(l.size(), 6u) << c.out;
  EXPECT_EQ(l[4],
            "FAIL  metrics: --metrics-listen: cannot listen on " + m + ": Address already in use");
  EXPECT_EQ(l[5],
            "      fix: choose a free address for --metrics-listen, or stop what listens "
            "there (ss -ltnp 'sport = :" +
                std::to_string(port) + "')");
}

// `check` next to this node's running plugin: its metrics port is taken by that plugin, which is
// no reason to fail.
TEST_F(CheckTest, MetricsAddressOfARunningPluginWarns) {
  PluginProcess plugin(vault_.DefaultPluginOptions());
  std::string err;
  ASSERT_TRUE(plugin.Start(&err)) << err;
  const std::string m = "127.0.0.1:" + std::to_string(plugin.metrics_port());
  Captured c = Check(0400, {"--metrics-listen=" + m});
  EXPECT_EQ(WEXITSTATUS(c.status), 0) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_GE(l.size(), 6u) << c.out;
  EXPECT_EQ(l[4], "WARN  metrics: --metrics-listen " + m +
                      " is in use by a running vault-kms (its "
                      "/metrics answered); a second plugin could not bind it");
}

TEST_F(CheckTest, WrongSecretIdFailsLogin) {
  secret_id_ = "00000000-1111-2222-3333-444444444444";
  Captured c = Check(0400, {"--log-level=debug"});
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 11u) << c.out;
  EXPECT_EQ(l[5], "FAIL  login: approle login at auth/" + vault_.approle_mount() +
                      ": invalid role or secret ID");
  EXPECT_EQ(l[6],
            "      fix: check that the role-id and secret-id belong to the same role, the "
            "secret-id is neither expired nor used up, and --approle-mount");
  EXPECT_EQ(l[7], "SKIP  token: login failed");
  EXPECT_EQ(l[8], "SKIP  key: login failed");
  EXPECT_EQ(l[9], "SKIP  policy: login failed");
  EXPECT_EQ(l[10], "SKIP  round trip: login failed");
}

// Item 7: what library code logs never lands in the middle of the report (Check() asserts it
// for every test: stderr empty, no line that is not a verdict or a fix); an error still shows.
TEST(CheckLogs, ErrorsAreShownInTheReportAndNothingElseOnStderr) {
  log::Init("check-log-test", "debug");
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  int saved = dup(STDERR_FILENO);
  dup2(pipefd[1], STDERR_FILENO);
  std::vector<std::string> taken;
  {
    broker::ReportLogCapture capture;
    log::Info("vault login succeeded", {{"method", "approle"}});
    log::Warning("vault login failed", {{"error", "x"}});
    log::Error("something broke", {{"error", "disk on fire"}, {"path", "/x"}});
    taken = capture.Take();
    EXPECT_TRUE(capture.Take().empty()) << "each line is taken once";
  }
  log::Error("after the capture");
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(pipefd[1]);
  std::string leaked;
  char buf[4096];
  for (ssize_t n; (n = read(pipefd[0], buf, sizeof buf)) > 0;) leaked.append(buf, n);
  close(pipefd[0]);
  EXPECT_EQ(taken,
            std::vector<std::string>{"error: something broke (error=disk on fire, path=/x)"});
  EXPECT_EQ(leaked.find("vault login"), std::string::npos) << leaked;
  EXPECT_EQ(leaked.find("something broke"), std::string::npos) << leaked;
  EXPECT_NE(leaked.find("after the capture"), std::string::npos) << "stderr is restored";
}

// Item 6: a typo in --transit-key is usually refused by the ACL (403) before Vault looks for the
// key; a missing key is a 404. Both read the same to an operator.
TEST_F(CheckTest, MistypedOrMissingKeyFails) {
  UseRoleWithPolicy(MinimalPolicy());
  const std::string typo = vault_.key() + "s";
  Captured c = Check(0400, {"--transit-key=" + typo});
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 12u) << c.out;
  EXPECT_EQ(l[7], "FAIL  key: key not found or not readable: check --transit-key and the policy (" +
                      Path("keys", typo) + ": HTTP 403: permission denied)");
  EXPECT_EQ(l[8], "      fix: correct --transit-key, or grant read on " + Path("keys", typo) +
                      " in the broker's policy");
  EXPECT_EQ(l[9], "FAIL  policy: " + Path("encrypt", typo) + " [deny], " + Path("decrypt", typo) +
                      " [deny], " + Path("keys", typo) +
                      " [deny], auth/token/renew-self [update]; token may not encrypt " +
                      Path("encrypt", typo) + "; token may not decrypt " + Path("decrypt", typo) +
                      "; token may not read " + Path("keys", typo));
  EXPECT_EQ(l.back(), "SKIP  round trip: key failed");

  // The policy is right for the key the flags name; only the key itself is missing.
  const std::string key = "missing-" + Suffix();
  UseRoleWithPolicy(Grant(Path("encrypt", key), "\"update\"") +
                    Grant(Path("decrypt", key), "\"update\"") +
                    Grant(Path("keys", key), "\"read\""));
  c = Check(0400, {"--transit-key=" + key});
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  l = Lines(c.out);
  ASSERT_EQ(l.size(), 11u) << c.out;
  EXPECT_EQ(l[7], "FAIL  key: key not found or not readable: check --transit-key and the policy (" +
                      Path("keys", key) + ": HTTP 404)");
  EXPECT_EQ(l[8], "      fix: correct --transit-key, or create the key: vault write -f " +
                      Path("keys", key) + " type=aes256-gcm96");
  EXPECT_EQ(l[9], "PASS  policy: " + PolicyCaps("update", "update", key));
  EXPECT_EQ(l[10], "SKIP  round trip: key failed");
}

TEST_F(CheckTest, PolicyWithoutDecryptFails) {
  UseRoleWithPolicy(Grant(Path("encrypt"), "\"update\"") + Grant(Path("keys"), "\"read\""));
  Captured c = Check();
  EXPECT_EQ(WEXITSTATUS(c.status), 1) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 11u) << c.out;
  EXPECT_EQ(l[7], KeyLine());
  EXPECT_EQ(l[8], "FAIL  policy: " + PolicyCaps("update", "deny") + "; token may not decrypt " +
                      Path("decrypt"));
  EXPECT_EQ(l[9], "      fix: add path \"" + Path("decrypt") +
                      "\" { capabilities = [\"update\"] } to the broker's policy");
  EXPECT_EQ(l[10], "SKIP  round trip: policy failed");
}

TEST_F(CheckTest, CreateOnEncryptWarns) {
  UseRoleWithPolicy(Grant(Path("encrypt"), "\"create\", \"update\"") +
                    Grant(Path("decrypt"), "\"update\"") + Grant(Path("keys"), "\"read\""));
  Captured c = Check();
  EXPECT_EQ(WEXITSTATUS(c.status), 0) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 11u) << c.out;
  EXPECT_EQ(l[8], "WARN  policy: " + PolicyCaps("create, update") + "; " + Path("encrypt") +
                      " has create: a mistyped --transit-key would silently create a new key");
  EXPECT_EQ(l[9],
            "      fix: remove \"create\" from " + Path("encrypt") + " in the broker's policy");
  ExpectLine(l[10], "PASS  round trip: ");
}

// A policy older than deploy/vault/kms-policy.hcl, on a role without Vault's default policy
// (as setup.sh creates it): the question cannot be asked; the round trip still answers it.
TEST_F(CheckTest, PolicyWithoutCapabilitiesSelfWarns) {
  UseRoleWithPolicy(MinimalPolicy() + Grant("auth/token/lookup-self", "\"read\"") +
                        Grant("auth/token/renew-self", "\"update\""),
                    /*no_default_policy=*/true);
  Captured c = Check();
  EXPECT_EQ(WEXITSTATUS(c.status), 0) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 11u) << c.out;
  EXPECT_EQ(l[8],
            "WARN  policy: cannot verify the token's capabilities: HTTP 403: permission denied "
            "(the broker then proves encrypt and decrypt by a round trip, as below)");
  EXPECT_EQ(l[9],
            "      fix: add path \"sys/capabilities-self\" { capabilities = [\"update\"] } to the "
            "broker's policy (deploy/vault/kms-policy.hcl has it)");
  ExpectLine(l[10], "PASS  round trip: ");
}

// Item 8: Vault configured by deploy/vault/setup.sh itself (reading the policy file shipped
// next to it), through a stand-in for the vault CLI that speaks Vault's HTTP API, ends `check`
// with every step PASS. Before, the shipped policy lacked sys/capabilities-self and setup.sh's
// role drops Vault's default policy: the policy step always ended in a WARN.
TEST_F(CheckTest, VaultConfiguredBySetupShPassesEveryStep) {
  const std::string bin = dir_ + "/bin";
  std::filesystem::create_directory(bin);
  {
    std::ofstream vault(bin + "/vault");
    vault << "#!/bin/sh\nexec /usr/bin/python3 " << VKMS_VAULT_CLI_SHIM << " \"$@\"\n";
  }
  chmod((bin + "/vault").c_str(), 0755);
  const std::string out = dir_ + "/setup-out";
  std::filesystem::create_directory(out);
  // Against the simulator VaultEnv uses the names setup.sh defaults to, so the policy is the
  // file byte for byte; against a real Vault setup.sh rewrites its paths, as it documents.
  Captured setup = RunCaptured(
      {"/usr/bin/env", "PATH=" + bin + ":/usr/bin:/bin", "VAULT_ADDR=" + addr_,
       "VAULT_CACERT=" + ca_, "VAULT_TOKEN=" + vault_.root_token(),
       "VKMS_TRANSIT_MOUNT=" + vault_.transit_mount(), "VKMS_TRANSIT_KEY=" + vault_.key(),
       "VKMS_APPROLE_MOUNT=" + vault_.approle_mount(), "VKMS_ROLE=vkms-setup-sh",
       "VKMS_POLICY=vkms-setup-sh", "/bin/sh",
       std::string(VKMS_SOURCE_DIR) + "/deploy/vault/setup.sh", out + "/role-id",
       out + "/secret-id"},
      std::chrono::seconds(60));
  ASSERT_TRUE(WIFEXITED(setup.status) && WEXITSTATUS(setup.status) == 0) << setup.out << setup.err;
  if (vault_.is_sim()) {
    EXPECT_EQ(vault_.setup()
                  .Expect("GET", "sys/policies/acl/vkms-setup-sh")
                  .json["data"]["policy"]
                  .asString(),
              ReadFile(std::string(VKMS_SOURCE_DIR) + "/deploy/vault/kms-policy.hcl"));
  }
  auto trim = [](std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
  };
  role_id_ = trim(ReadFile(out + "/role-id"));
  secret_id_ = trim(ReadFile(out + "/secret-id"));
  ASSERT_FALSE(role_id_.empty());
  ASSERT_FALSE(secret_id_.empty());
  policy_ = "vkms-setup-sh";

  Captured c = Check();
  EXPECT_EQ(WEXITSTATUS(c.status), 0) << c.out << c.err;
  auto l = Lines(c.out);
  ASSERT_EQ(l.size(), 10u) << c.out;
  for (const auto& line : l) EXPECT_EQ(line.substr(0, 6), "PASS  ") << c.out;
  ExpectLine(l[5], "PASS  login: approle login at auth/" + vault_.approle_mount() +
                       ": policies [vkms-setup-sh], ttl 1h");
  EXPECT_EQ(l[8], "PASS  policy: " + PolicyCaps());
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
