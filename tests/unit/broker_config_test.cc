// Every invalid flag is refused with one line that names it.
#include "broker/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "broker/effective_config.h"
#include "test_pki.h"

namespace vkms::broker {
namespace {

std::vector<std::string> Base() {
  return {"--socket=unix:///tmp/vkms-test.sock", "--vault-addr=https://127.0.0.1:8200",
          "--approle-role-id-file=/etc/vkms/role-id",
          "--approle-secret-id-file=/etc/vkms/secret-id"};
}

// Every variable a flag may be read from: the standard VAULT_* ones and VAULT_KMS_<FLAG>.
std::vector<std::string> AllVariables() {
  std::vector<std::string> vars;
  for (const auto& spec : BrokerFlagSpecs()) {
    if (!spec.env.empty()) vars.push_back(spec.env);
    vars.push_back(flags::EnvName(kBrokerEnvPrefix, spec.name));
  }
  return vars;
}

class BrokerConfigTest : public ::testing::Test {
 protected:
  void SetUp() override { Clear(); }
  void TearDown() override { Clear(); }
  static void Clear() {
    for (const auto& v : AllVariables()) unsetenv(v.c_str());
    unsetenv("VAULT_KMS_TRANSITKEY");
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

// A whole configuration from VAULT_KMS_* alone, as a systemd EnvironmentFile would give it.
TEST_F(BrokerConfigTest, EveryFlagFromItsVaultKmsVariable) {
  const std::map<std::string, std::string> vars = {
      {"VAULT_KMS_SOCKET", "unix:///tmp/env.sock"},
      {"VAULT_KMS_SOCKET_MODE", "0600"},
      {"VAULT_KMS_ALLOWED_PEER_UIDS", "0,1000"},
      {"VAULT_KMS_VAULT_ADDR", "https://a.example:8200,https://b.example:8200"},
      {"VAULT_KMS_VAULT_CA_FILE", "/etc/ssl/certs/ca-certificates.crt"},
      {"VAULT_KMS_VAULT_CA_PATH", "/etc/ssl/certs"},
      {"VAULT_KMS_VAULT_TLS_SERVER_NAME", "vault.example"},
      {"VAULT_KMS_VAULT_NAMESPACE", "team-a"},
      {"VAULT_KMS_VAULT_AUTH_NAMESPACE", "admin"},
      {"VAULT_KMS_TRANSIT_MOUNT", "kms-transit"},
      {"VAULT_KMS_TRANSIT_KEY", "cluster-a"},
      {"VAULT_KMS_AUTH_METHOD", "approle"},
      {"VAULT_KMS_APPROLE_MOUNT", "approle-kms"},
      {"VAULT_KMS_APPROLE_ROLE_ID_FILE", "/etc/vkms/role-id"},
      {"VAULT_KMS_APPROLE_SECRET_ID_FILE", "/etc/vkms/secret-id"},
      {"VAULT_KMS_KEY_REFRESH_INTERVAL", "1m"},
      {"VAULT_KMS_VAULT_CONCURRENCY", "8"},
      {"VAULT_KMS_METRICS_LISTEN", "127.0.0.1:9100"},
      {"VAULT_KMS_LOG_LEVEL", "warning"},
      {"VAULT_KMS_BROKER_USER", "65530"},
      {"VAULT_KMS_FRONTEND_USER", "65531"},
  };
  for (const auto& [k, v] : vars) setenv(k.c_str(), v.c_str(), 1);
  BrokerConfig c;
  std::string msg;
  ASSERT_EQ(ParseBrokerFlags({}, &c, &msg), ParseResult::kOk) << msg;
  EXPECT_EQ(c.socket_path, "/tmp/env.sock");
  EXPECT_EQ(c.socket_mode, 0600u);
  EXPECT_EQ(c.allowed_peer_uids, (std::vector<uid_t>{0, 1000}));
  EXPECT_EQ(c.vault.addrs,
            (std::vector<std::string>{"https://a.example:8200", "https://b.example:8200"}));
  EXPECT_EQ(c.vault.ca_file, "/etc/ssl/certs/ca-certificates.crt");
  EXPECT_EQ(c.vault.ca_path, "/etc/ssl/certs");
  EXPECT_EQ(c.vault.tls_server_name, "vault.example");
  EXPECT_EQ(c.vault.ns, "team-a");
  EXPECT_EQ(c.vault.auth_ns, "admin");
  EXPECT_EQ(c.vault.transit_mount, "kms-transit");
  EXPECT_EQ(c.vault.transit_key, "cluster-a");
  EXPECT_EQ(c.vault.approle_mount, "approle-kms");
  EXPECT_EQ(c.vault.role_id_file, "/etc/vkms/role-id");
  EXPECT_EQ(c.vault.secret_id_file, "/etc/vkms/secret-id");
  EXPECT_EQ(c.vault.key_refresh_interval, std::chrono::minutes(1));
  EXPECT_EQ(c.vault.workers, 8);
  EXPECT_EQ(c.metrics_listen, "127.0.0.1:9100");
  EXPECT_EQ(c.log_level, "warning");
  EXPECT_EQ(c.broker_user.uid, 65530u);
  EXPECT_EQ(c.frontend_user.uid, 65531u);

  // Every flag that may come from the environment was set above (socket-group, the client
  // certificate pair and token-file need files or a group the test cannot count on; they go
  // through the same table). The cert method's flags: CertConfigTest.FlagsFromTheirVariables.
  std::set<std::string> untested = {"VAULT_KMS_SOCKET_GROUP",     "VAULT_KMS_VAULT_CLIENT_CERT",
                                    "VAULT_KMS_VAULT_CLIENT_KEY", "VAULT_KMS_TOKEN_FILE",
                                    "VAULT_KMS_CERT_AUTH_MOUNT",  "VAULT_KMS_CERT_AUTH_ROLE"};
  for (const auto& spec : BrokerFlagSpecs()) {
    std::string var = flags::EnvName(kBrokerEnvPrefix, spec.name);
    if (!spec.no_env.empty() || untested.count(var) > 0) continue;
    EXPECT_EQ(vars.count(var), 1u) << var << " is not covered by this test";
  }
}

TEST_F(BrokerConfigTest, TheSpecificVariableBeatsTheStandardOneAndTheFlagBeatsBoth) {
  setenv("VAULT_ADDR", "https://cli.example:8200", 1);
  setenv("VAULT_KMS_VAULT_ADDR", "https://kms.example:8200", 1);
  BrokerConfig c;
  std::string msg;
  std::vector<std::string> args = {"--approle-role-id-file=/r", "--approle-secret-id-file=/s"};
  ASSERT_EQ(ParseBrokerFlags(args, &c, &msg), ParseResult::kOk) << msg;
  EXPECT_EQ(c.vault.addrs, std::vector<std::string>{"https://kms.example:8200"});
  args.push_back("--vault-addr=https://flag.example:8200");
  BrokerConfig d;
  ASSERT_EQ(ParseBrokerFlags(args, &d, &msg), ParseResult::kOk) << msg;
  EXPECT_EQ(d.vault.addrs, std::vector<std::string>{"https://flag.example:8200"});
}

// A bad value gets the same one-line error as the flag would, naming the variable it came from.
TEST_F(BrokerConfigTest, InvalidVariablesNameTheVariable) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"VAULT_KMS_SOCKET", "relative.sock"},
      {"VAULT_KMS_SOCKET_MODE", "0666"},
      {"VAULT_KMS_SOCKET_GROUP", "no-such-group-xyz"},
      {"VAULT_KMS_ALLOWED_PEER_UIDS", "root"},
      {"VAULT_KMS_VAULT_ADDR", "http://127.0.0.1:8200"},
      {"VAULT_ADDR", "http://127.0.0.1:8200"},
      {"VAULT_CACERT", "/nonexistent/ca.pem"},
      {"VAULT_KMS_VAULT_CA_FILE", "/nonexistent/ca.pem"},
      {"VAULT_KMS_VAULT_NAMESPACE", "../x"},
      {"VAULT_KMS_TRANSIT_MOUNT", "../sys"},
      {"VAULT_KMS_TRANSIT_KEY", "a/b"},
      {"VAULT_KMS_AUTH_METHOD", "ldap"},
      {"VAULT_KMS_APPROLE_MOUNT", "/x"},
      {"VAULT_KMS_APPROLE_SECRET_ID_FILE", "relative"},
      {"VAULT_KMS_TOKEN_FILE", "/t"},
      {"VAULT_KMS_KEY_REFRESH_INTERVAL", "10x"},
      {"VAULT_KMS_VAULT_CONCURRENCY", "0"},
      {"VAULT_KMS_METRICS_LISTEN", "8080"},
      {"VAULT_KMS_LOG_LEVEL", "loud"},
      {"VAULT_KMS_BROKER_USER", "no-such-user-xyz"},
      {"VAULT_KMS_TRANSITKEY", "kms"},
  };
  for (const auto& [var, value] : cases) {
    Clear();
    setenv(var.c_str(), value.c_str(), 1);
    std::vector<std::string> args = {"--approle-role-id-file=/r"};
    // The variables that replace a Base() flag must not be overridden by it.
    if (var != "VAULT_KMS_SOCKET") args.push_back("--socket=/tmp/vkms-test.sock");
    if (var.find("VAULT_ADDR") == std::string::npos) {
      args.push_back("--vault-addr=https://127.0.0.1:8200");
    }
    if (var != "VAULT_KMS_APPROLE_SECRET_ID_FILE") args.push_back("--approle-secret-id-file=/s");
    BrokerConfig c;
    std::string msg;
    EXPECT_EQ(ParseBrokerFlags(args, &c, &msg), ParseResult::kError) << var << "=" << value;
    EXPECT_EQ(msg.rfind(var + ":", 0), 0u) << "message \"" << msg << "\" for " << var;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST_F(BrokerConfigTest, NoRoleIdFromTheEnvironment) {
  setenv("VAULT_KMS_APPROLE_ROLE_ID", "role-id-in-env-7f3a", 1);
  std::vector<std::string> args = Base();
  BrokerConfig c;
  std::string msg;
  ASSERT_EQ(ParseBrokerFlags(args, &c, &msg), ParseResult::kError);
  EXPECT_EQ(msg.rfind("VAULT_KMS_APPROLE_ROLE_ID: ", 0), 0u) << msg;
  EXPECT_NE(msg.find("VAULT_KMS_APPROLE_ROLE_ID_FILE"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("role-id-in-env-7f3a"), std::string::npos) << "the value is not echoed";
  // Empty is unset, as for every variable.
  setenv("VAULT_KMS_APPROLE_ROLE_ID", "", 1);
  ASSERT_EQ(ParseBrokerFlags(args, &c, &msg), ParseResult::kOk) << msg;
}

TEST_F(BrokerConfigTest, ControlCharactersInAVariableStayOnOneLine) {
  setenv("VAULT_KMS_TRANSIT_KEY", "a\nb", 1);
  BrokerConfig c;
  std::string msg;
  ASSERT_EQ(ParseBrokerFlags(Base(), &c, &msg), ParseResult::kError);
  EXPECT_EQ(msg.find_first_of("\r\n"), std::string::npos) << msg;
  EXPECT_NE(msg.find("VAULT_KMS_TRANSIT_KEY"), std::string::npos) << msg;
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
  std::map<std::string, log::Value> logged(fields.begin(), fields.end());
  EXPECT_EQ(logged.at("auth-method").str(), "cert");
  EXPECT_EQ(logged.at("cert-auth-mount").str(), "team/cert");
  EXPECT_EQ(logged.at("cert-auth-role").str(), "vault-kms");
  EXPECT_EQ(logged.at("vault-client-key").str(), key_) << "the key's path, never its content";
}

// A systemd EnvironmentFile can select the method and name everything it needs.
TEST_F(CertConfigTest, FlagsFromTheirVariables) {
  setenv("VAULT_KMS_VAULT_ADDR", "https://127.0.0.1:8200", 1);
  setenv("VAULT_KMS_AUTH_METHOD", "cert", 1);
  setenv("VAULT_KMS_VAULT_CLIENT_CERT", cert_.c_str(), 1);
  setenv("VAULT_KMS_VAULT_CLIENT_KEY", key_.c_str(), 1);
  setenv("VAULT_KMS_CERT_AUTH_MOUNT", "nodes/cert", 1);
  setenv("VAULT_KMS_CERT_AUTH_ROLE", "vault-kms", 1);
  BrokerConfig c;
  std::string msg;
  ASSERT_EQ(ParseBrokerFlags({}, &c, &msg), ParseResult::kOk) << msg;
  EXPECT_EQ(c.vault.auth_method, AuthMethod::kCert);
  EXPECT_EQ(c.vault.client_cert, cert_);
  EXPECT_EQ(c.vault.client_key, key_);
  EXPECT_EQ(c.vault.cert_auth_mount, "nodes/cert");
  EXPECT_EQ(c.vault.cert_auth_role, "vault-kms");
  // A bad value names the variable it came from.
  setenv("VAULT_KMS_CERT_AUTH_ROLE", "a/b", 1);
  EXPECT_EQ(ParseBrokerFlags({}, &c, &msg), ParseResult::kError);
  EXPECT_NE(msg.find("VAULT_KMS_CERT_AUTH_ROLE"), std::string::npos) << msg;
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

TEST_F(BrokerConfigTest, HelpListsEveryFlagAndItsVariables) {
  BrokerConfig c;
  std::string msg;
  ASSERT_EQ(ParseBrokerFlags({"--help"}, &c, &msg), ParseResult::kHelp);
  for (const auto& spec : BrokerFlagSpecs()) {
    EXPECT_NE(msg.find("--" + spec.name), std::string::npos) << spec.name;
    std::string var = flags::EnvName(kBrokerEnvPrefix, spec.name);
    if (spec.no_env.empty()) {
      EXPECT_NE(msg.find("$" + var), std::string::npos) << var;
    } else {
      EXPECT_EQ(msg.find(var + "]"), std::string::npos) << var;
    }
    if (!spec.env.empty()) {
      EXPECT_NE(msg.find("$" + spec.env), std::string::npos) << spec.env;
    }
  }
}

// The README's flag table is the operator's reference: every flag, its variables and default,
// exactly as the parser has them.
TEST(BrokerFlagsReadme, TableListsEveryFlagWithItsVariables) {
  std::ifstream in(VKMS_README);
  ASSERT_TRUE(in.is_open()) << VKMS_README;
  auto split = [](const std::string& text, const std::string& sep) {
    std::vector<std::string> out;
    size_t start = 0, at;
    while ((at = text.find(sep, start)) != std::string::npos) {
      out.push_back(text.substr(start, at - start));
      start = at + sep.size();
    }
    out.push_back(text.substr(start));
    return out;
  };
  auto quoted = [](const std::string& cell) {
    std::vector<std::string> out;
    for (size_t at = cell.find('`'); at != std::string::npos; at = cell.find('`', at + 1)) {
      size_t end = cell.find('`', at + 1);
      out.push_back(cell.substr(at + 1, end - at - 1));
      at = end;
    }
    return out;
  };
  std::map<std::string, std::set<std::string>> vars;  // flag -> variables in the table
  std::map<std::string, std::string> defaults;        // flag -> its default cell
  bool in_flags = false;  // the table of the "### Flags" section, not the troubleshooting one
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("#", 0) == 0) in_flags = line == "### Flags";
    if (!in_flags || line.rfind("| `--", 0) != 0) continue;
    std::vector<std::string> cells = split(line.substr(1, line.size() - 2), "|");
    for (auto& c : cells) {
      c.erase(0, c.find_first_not_of(' '));
      c.erase(c.find_last_not_of(' ') + 1);
    }
    ASSERT_GE(cells.size(), 4u) << line;
    std::vector<std::string> names = quoted(cells[0]);
    std::vector<std::string> env_parts = split(cells[1], " / ");
    for (size_t i = 0; i < names.size(); ++i) {
      std::string flag = names[i].substr(2);
      const std::string& env = env_parts.size() == names.size() ? env_parts[i] : cells[1];
      std::vector<std::string> listed = quoted(env);
      vars[flag] = std::set<std::string>(listed.begin(), listed.end());
      defaults[flag] = cells[2];
    }
  }
  for (const auto& spec : BrokerFlagSpecs()) {
    SCOPED_TRACE(spec.name);
    ASSERT_EQ(vars.count(spec.name), 1u) << "not in the README's flag table";
    std::set<std::string> expected;
    if (spec.no_env.empty()) expected.insert(flags::EnvName(kBrokerEnvPrefix, spec.name));
    if (!spec.env.empty()) expected.insert(spec.env);
    EXPECT_EQ(vars[spec.name], expected);
    if (!spec.default_value.empty()) {
      EXPECT_NE(defaults[spec.name].find("`" + spec.default_value + "`"), std::string::npos)
          << defaults[spec.name];
    }
  }
  EXPECT_EQ(vars.size(), BrokerFlagSpecs().size()) << "the table lists a flag that does not exist";
}

}  // namespace
}  // namespace vkms::broker
