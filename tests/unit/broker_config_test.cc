// Every invalid flag is refused with one line that names it.
#include "broker/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "broker/effective_config.h"
#include "test_pki.h"

namespace vkms::broker {
namespace {

std::vector<std::string> Base() {
  return {"--socket=unix:///tmp/vkms-test.sock", "--vault-addr=https://127.0.0.1:8200",
          "--approle-role-id-file=/etc/vkms/role-id",
          "--approle-secret-id-file=/etc/vkms/secret-id"};
}

class BrokerConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : {"VAULT_ADDR", "VAULT_CACERT", "VAULT_CAPATH", "VAULT_CLIENT_CERT",
                          "VAULT_CLIENT_KEY", "VAULT_NAMESPACE", "VAULT_TLS_SERVER_NAME"}) {
      unsetenv(v);
    }
  }
};

TEST_F(BrokerConfigTest, ValidMinimalConfig) {
  BrokerConfig c;
  std::string msg;
  ASSERT_EQ(ParseBrokerFlags(Base(), &c, &msg), ParseResult::kOk) << msg;
  EXPECT_EQ(c.socket_path, "/tmp/vkms-test.sock");
  EXPECT_EQ(c.socket_mode, 0660u);
  EXPECT_EQ(c.vault.addrs, std::vector<std::string>{"https://127.0.0.1:8200"});
  EXPECT_EQ(c.vault.transit_mount, "transit");
  EXPECT_EQ(c.vault.transit_key, "kms");
  EXPECT_EQ(c.vault.key_refresh_interval, std::chrono::seconds(30));
  EXPECT_EQ(c.vault.workers, 16);
  EXPECT_EQ(c.metrics_listen, "127.0.0.1:8080");
  EXPECT_EQ(c.broker_user.uid, 65532u);
  EXPECT_EQ(c.frontend_user.uid, 65533u);
}

TEST_F(BrokerConfigTest, EnvironmentFallbackAndFlagWins) {
  setenv("VAULT_ADDR", "https://env.example:8200", 1);
  setenv("VAULT_NAMESPACE", "team-a", 1);
  std::vector<std::string> args = {"--socket=/tmp/x.sock", "--approle-role-id=r",
                                   "--approle-secret-id-file=/s"};
  BrokerConfig c;
  std::string msg;
  ASSERT_EQ(ParseBrokerFlags(args, &c, &msg), ParseResult::kOk) << msg;
  EXPECT_EQ(c.vault.addrs, std::vector<std::string>{"https://env.example:8200"});
  EXPECT_EQ(c.vault.ns, "team-a");
  EXPECT_EQ(c.vault.auth_ns, "team-a");
  args.push_back("--vault-addr=https://flag.example:8200,https://b.example:8200");
  BrokerConfig d;
  ASSERT_EQ(ParseBrokerFlags(args, &d, &msg), ParseResult::kOk) << msg;
  EXPECT_EQ(d.vault.addrs,
            (std::vector<std::string>{"https://flag.example:8200", "https://b.example:8200"}));
  unsetenv("VAULT_ADDR");
  unsetenv("VAULT_NAMESPACE");
}

TEST_F(BrokerConfigTest, VaultConcurrencySetsTheWorkerCount) {
  for (int n : {1, 64, 256}) {
    std::vector<std::string> args = Base();
    args.push_back("--vault-concurrency=" + std::to_string(n));
    BrokerConfig c;
    std::string msg;
    ASSERT_EQ(ParseBrokerFlags(args, &c, &msg), ParseResult::kOk) << msg;
    EXPECT_EQ(c.vault.workers, n);
  }
}

TEST_F(BrokerConfigTest, AbstractSocket) {
  auto args = Base();
  args[0] = "--socket=unix:///@vault-kms";
  args.push_back("--allowed-peer-uids=0");
  BrokerConfig c;
  std::string msg;
  ASSERT_EQ(ParseBrokerFlags(args, &c, &msg), ParseResult::kOk) << msg;
  EXPECT_TRUE(c.abstract_socket);
  EXPECT_EQ(c.socket_path, std::string("\0vault-kms", 10));
}

// No file mode, group or directory protects an abstract socket: without a peer allow-list any
// process in the network namespace could decrypt.
TEST_F(BrokerConfigTest, AbstractSocketNeedsAPeerAllowList) {
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{}, std::vector<std::string>{"--allowed-peer-uids="}}) {
    auto args = Base();
    args[0] = "--socket=unix:///@vault-kms";
    for (const auto& e : extra) args.push_back(e);
    BrokerConfig c;
    std::string msg;
    EXPECT_EQ(ParseBrokerFlags(args, &c, &msg), ParseResult::kError);
    EXPECT_NE(msg.find("--socket"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--allowed-peer-uids"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  auto args = Base();
  args[0] = "--socket=unix:///@vault-kms";
  args.push_back("--allowed-peer-uids=0");
  args.push_back("--socket-mode=0600");
  BrokerConfig c;
  std::string msg;
  EXPECT_EQ(ParseBrokerFlags(args, &c, &msg), ParseResult::kError) << "a mode silently ignored";
  EXPECT_NE(msg.find("--socket-mode"), std::string::npos) << msg;
}

struct BadFlag {
  std::vector<std::string> change;
  std::string names;  // must appear in the error line
};

TEST_F(BrokerConfigTest, InvalidFlagsNameTheFlag) {
  const std::vector<BadFlag> cases = {
      {{"--bogus=1"}, "--bogus"},
      {{"--socket=relative.sock"}, "--socket"},
      {{"--socket=/" + std::string(200, 'a')}, "--socket"},
      {{"--socket-mode=999"}, "--socket-mode"},
      {{"--socket-mode=0666"}, "--socket-mode"},
      {{"--socket-group=no-such-group-xyz"}, "--socket-group"},
      {{"--allowed-peer-uids=root"}, "--allowed-peer-uids"},
      {{"--vault-addr=http://127.0.0.1:8200"}, "--vault-addr"},
      {{"--vault-addr=https://user:pw@host:8200"}, "--vault-addr"},
      {{"--vault-ca-file=/nonexistent/ca.pem"}, "--vault-ca-file"},
      {{"--vault-client-cert=/etc/hostname"}, "--vault-client-key"},
      {{"--transit-mount=../sys"}, "--transit-mount"},
      {{"--transit-key=a/b"}, "--transit-key"},
      {{"--auth-method=ldap"}, "--auth-method"},
      {{"--approle-role-id=abc"}, "--approle-role-id"},
      {{"--token-file=/t"}, "--token-file"},
      {{"--key-refresh-interval=10x"}, "--key-refresh-interval"},
      {{"--key-refresh-interval=100ms"}, "--key-refresh-interval"},
      {{"--vault-concurrency=0"}, "--vault-concurrency"},
      {{"--vault-concurrency=257"}, "--vault-concurrency"},
      {{"--vault-concurrency=-1"}, "--vault-concurrency"},
      {{"--vault-concurrency=many"}, "--vault-concurrency"},
      {{"--metrics-listen=8080"}, "--metrics-listen"},
      {{"--log-level=loud"}, "--log-level"},
      {{"--broker-user=no-such-user-xyz"}, "--broker-user"},
      {{"--frontend-user=65532"}, "--frontend-user"},
      {{"extra"}, "extra"},
  };
  for (const auto& bad : cases) {
    auto args = Base();
    for (const auto& a : bad.change) args.push_back(a);
    BrokerConfig c;
    std::string msg;
    if (bad.names == "--frontend-user" && geteuid() != 0) continue;  // only checked as root
    EXPECT_EQ(ParseBrokerFlags(args, &c, &msg), ParseResult::kError) << bad.change[0];
    EXPECT_NE(msg.find(bad.names), std::string::npos)
        << "message \"" << msg << "\" for " << bad.change[0];
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "error must be one line: " << msg;
  }
}

TEST_F(BrokerConfigTest, ControlCharactersCannotBreakTheOneLineError) {
  // Found by fuzz_flags: values are quoted into the message.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"\r"},
        {"--bogus\nflag"},
        {"--socket-mode=06\n"},
        {"--vault-addr=ftp://x\ny", "--approle-role-id=r", "--approle-secret-id-file=/s"}}) {
    BrokerConfig c;
    std::string msg;
    ASSERT_EQ(ParseBrokerFlags(args, &c, &msg), ParseResult::kError);
    EXPECT_EQ(msg.find_first_of("\r\n"), std::string::npos) << msg;
    EXPECT_NE(msg.find("\\x0"), std::string::npos) << msg;
  }
}

TEST_F(BrokerConfigTest, MissingRequiredValues) {
  BrokerConfig c;
  std::string msg;
  EXPECT_EQ(ParseBrokerFlags({"--socket=/tmp/a.sock"}, &c, &msg), ParseResult::kError);
  EXPECT_NE(msg.find("--vault-addr"), std::string::npos) << msg;
  EXPECT_EQ(ParseBrokerFlags({"--vault-addr=https://a:1", "--approle-role-id=r"}, &c, &msg),
            ParseResult::kError);
  EXPECT_NE(msg.find("--approle-secret-id-file"), std::string::npos) << msg;
  EXPECT_EQ(ParseBrokerFlags({"--vault-addr=https://a:1", "--auth-method=token"}, &c, &msg),
            ParseResult::kError);
  EXPECT_NE(msg.find("--token-file"), std::string::npos) << msg;
}

// --auth-method=cert: the client certificate is the credential, read again at every login. A
// real certificate and key: the broker parses both at start (broker/tls_files.h).
class CertConfigTest : public BrokerConfigTest {
 protected:
  void SetUp() override {
    BrokerConfigTest::SetUp();
    char tmpl[] = "/tmp/vkms-cert-config-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    testing::CertSpec spec;
    spec.common_name = "kms-node";
    const testing::Pem pem = testing::IssueOrThrow(spec);
    cert_ = dir_ + "/tls.crt";
    key_ = dir_ + "/tls.key";
    std::ofstream(cert_) << pem.cert;
    std::ofstream(key_) << pem.key;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<std::string> CertBase() const {
    return {"--socket=unix:///tmp/vkms-test.sock", "--vault-addr=https://127.0.0.1:8200",
            "--auth-method=cert", "--vault-client-cert=" + cert_, "--vault-client-key=" + key_};
  }

  std::string dir_, cert_, key_;
};

TEST_F(CertConfigTest, CertAuthMethod) {
  BrokerConfig c;
  std::string msg;
  ASSERT_EQ(ParseBrokerFlags(CertBase(), &c, &msg), ParseResult::kOk) << msg;
  EXPECT_EQ(c.vault.auth_method, AuthMethod::kCert);
  EXPECT_EQ(c.vault.cert_auth_mount, "cert");
  EXPECT_EQ(c.vault.cert_auth_role, "");
  auto args = CertBase();
  args.push_back("--cert-auth-mount=team/cert");
  args.push_back("--cert-auth-role=vault-kms");
  BrokerConfig d;
  ASSERT_EQ(ParseBrokerFlags(args, &d, &msg), ParseResult::kOk) << msg;
  EXPECT_EQ(d.vault.cert_auth_mount, "team/cert");
  EXPECT_EQ(d.vault.cert_auth_role, "vault-kms");
  EXPECT_STREQ(AuthMethodName(d.vault.auth_method), "cert");
  // Logged at start like every flag.
  log::Fields fields = EffectiveConfigFields(d);
  std::map<std::string, std::string> logged(fields.begin(), fields.end());
  EXPECT_EQ(logged["auth-method"], "cert");
  EXPECT_EQ(logged["cert-auth-mount"], "team/cert");
  EXPECT_EQ(logged["cert-auth-role"], "vault-kms");
  EXPECT_EQ(logged["vault-client-key"], key_) << "the key's path, never its content";
}

TEST_F(CertConfigTest, CertAuthFlagsAreCheckedAtStart) {
  const std::vector<BadFlag> cases = {
      // No certificate: nothing to log in with.
      {{"--socket=/tmp/a.sock", "--vault-addr=https://a:1", "--auth-method=cert"},
       "--vault-client-cert"},
      {{"--socket=/tmp/a.sock", "--vault-addr=https://a:1", "--auth-method=cert",
        "--vault-client-cert=" + cert_},
       "--vault-client-key"},
      {{"--socket=/tmp/a.sock", "--vault-addr=https://a:1", "--auth-method=cert",
        "--vault-client-cert=/nonexistent/tls.crt", "--vault-client-key=" + key_},
       "--vault-client-cert"},
      {{"--cert-auth-mount=../sys"}, "--cert-auth-mount"},
      {{"--cert-auth-role=a/b"}, "--cert-auth-role"},
      {{"--approle-secret-id-file=/s"}, "--approle-"},
      {{"--token-file=/t"}, "--token-file"},
  };
  for (const auto& bad : cases) {
    std::vector<std::string> args = bad.change.size() > 1 ? bad.change : CertBase();
    if (bad.change.size() == 1) args.push_back(bad.change[0]);
    BrokerConfig c;
    std::string msg;
    EXPECT_EQ(ParseBrokerFlags(args, &c, &msg), ParseResult::kError) << bad.change.back();
    EXPECT_NE(msg.find(bad.names), std::string::npos)
        << "message \"" << msg << "\" for " << bad.change.back();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  // The cert flags mean nothing to the other methods: refused, not ignored.
  for (const char* flag : {"--cert-auth-mount=cert", "--cert-auth-role=r"}) {
    auto args = Base();
    args.push_back(flag);
    BrokerConfig c;
    std::string msg;
    EXPECT_EQ(ParseBrokerFlags(args, &c, &msg), ParseResult::kError) << flag;
    EXPECT_NE(msg.find("only with --auth-method=cert"), std::string::npos) << msg;
  }
}

TEST_F(BrokerConfigTest, HelpListsEveryFlag) {
  BrokerConfig c;
  std::string msg;
  ASSERT_EQ(ParseBrokerFlags({"--help"}, &c, &msg), ParseResult::kHelp);
  for (const auto& spec : BrokerFlagSpecs()) {
    EXPECT_NE(msg.find("--" + spec.name), std::string::npos) << spec.name;
  }
}

}  // namespace
}  // namespace vkms::broker
