// Health tells the truth (issue 14 items 1-3, 9): a token that may not do everything is not
// healthy and Status, /readyz and every refused call say what is missing; /readyz and /healthz
// turn in the same refresh as Status; Vault's return is logged; start-up errors stop the broker
// with exit 2 and one line; a TLS failure is never called "unreachable". The real binaries,
// against the simulator (or a real Vault where no fault is injected).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <json/json.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/integration/plugin_fixture.h"
#include "tests/integration/plugin_process.h"
#include "tests/integration/vault_env.h"
#include "tests/kmsclient/kms_client.h"

namespace vkms::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class HealthTest : public PluginFixture {
 protected:
  std::string Path(const std::string& op) const {
    return vault_.transit_mount() + "/" + op + "/" + vault_.key();
  }
  static std::string Grant(const std::string& path, const std::string& cap) {
    return "path \"" + path + "\" { capabilities = [\"" + cap + "\"] }\n";
  }
  // The minimal policy without capabilities-self (as deploy/ shipped it before), optionally
  // without decrypt.
  std::string OldPolicy(bool decrypt) const {
    std::string hcl = Grant(Path("encrypt"), "update") + Grant(Path("keys"), "read") +
                      Grant("auth/token/lookup-self", "read") +
                      Grant("auth/token/renew-self", "update");
    return decrypt ? hcl + Grant(Path("decrypt"), "update") : hcl;
  }
  PluginOptions OptionsWithPolicy(const std::string& name, const std::string& hcl,
                                  bool no_default_policy) {
    PluginOptions o = Options();
    vault_.CreateRoleWithPolicy(name, hcl, no_default_policy, &o.role_id, &o.secret_id);
    return o;
  }
  // Polls Status until `pred` holds; returns the last healthz.
  template <typename Pred>
  std::string WaitStatus(PluginProcess* p, Pred pred, milliseconds timeout = seconds(10)) {
    auto until = std::chrono::steady_clock::now() + timeout;
    std::string h;
    do {
      h = p->Status().healthz();
      if (pred(h)) break;
      std::this_thread::sleep_for(milliseconds(50));
    } while (std::chrono::steady_clock::now() < until);
    return h;
  }
};

// Item 1: encrypt allowed, decrypt not. Before, Status said "ok" and /readyz 200 while every
// Decrypt failed: the apiserver would have written Secrets it could not read back.
TEST_F(HealthTest, TokenThatMayNotDecryptIsNotHealthyAndSaysWhy) {
  const std::string name = "vkms-nodecrypt";
  auto plugin = StartPlugin(OptionsWithPolicy(name, OldPolicy(false), false), false);
  const std::string missing = "token may not decrypt " + Path("decrypt");
  std::string h = WaitStatus(plugin.get(), [&](const std::string& x) { return x == missing; });
  ASSERT_EQ(h, missing) << plugin->Logs();
  auto ready = HttpGet(plugin->metrics_port(), "/readyz");
  EXPECT_EQ(ready, std::make_pair(503, "not ready: " + missing + "\n"));
  EXPECT_EQ(HttpGet(plugin->metrics_port(), "/healthz"), std::make_pair(200, missing + "\n"));

  // Encrypt still works (the token may); Decrypt is refused and names the path Vault denied.
  KmsClient kms(plugin->socket_path());
  v2::EncryptResponse enc;
  ASSERT_TRUE(kms.Encrypt(RandomBytes(32), RandomUid(), &enc).ok());
  v2::DecryptResponse dec;
  grpc::Status s = kms.Decrypt(enc.ciphertext(), enc.key_id(), RandomUid(), &dec);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(), "vault denied update on " + Path("decrypt") + ": permission denied");

  // The operator fixes the policy: healthy again at the next refresh, without a restart.
  vault_.setup().WritePolicy(name, OldPolicy(true));
  h = WaitStatus(plugin.get(), [](const std::string& x) { return x == "ok"; });
  EXPECT_EQ(h, "ok") << plugin->Logs();
  EXPECT_EQ(HttpGet(plugin->metrics_port(), "/readyz"), std::make_pair(200, std::string("ok\n")));
  ASSERT_TRUE(kms.Decrypt(enc.ciphertext(), enc.key_id(), RandomUid(), &dec).ok());
}

// A policy older than deploy/vault/kms-policy.hcl on a role without Vault's default policy
// cannot ask sys/capabilities-self: the broker proves encrypt and decrypt by a round trip
// instead (and says so once), so an upgrade does not take a working plugin out of service.
TEST_F(HealthTest, WithoutCapabilitiesSelfARoundTripDecides) {
  auto plugin = StartPlugin(OptionsWithPolicy("vkms-old-policy", OldPolicy(true), true));
  std::this_thread::sleep_for(milliseconds(2500));  // a few refreshes (every 1 s)
  EXPECT_EQ(plugin->Status().healthz(), "ok");
  const std::string warning =
      "cannot verify the token's capabilities: allow update on "
      "sys/capabilities-self";
  const std::string logs = plugin->Logs();
  size_t first = logs.find(warning);
  EXPECT_NE(first, std::string::npos) << logs;
  EXPECT_EQ(logs.find(warning, first + 1), std::string::npos) << "logged once, not per refresh";
  plugin->Stop();

  auto denied = StartPlugin(OptionsWithPolicy("vkms-old-nodecrypt", OldPolicy(false), true), false);
  const std::string missing = "token may not decrypt " + Path("decrypt");
  EXPECT_EQ(WaitStatus(denied.get(), [&](const std::string& x) { return x == missing; }), missing)
      << denied->Logs();
}

// Item 2: /readyz used to wait for the key metadata to go stale (3 refreshes) after Status had
// already turned; now both read the same verdict.
TEST_F(HealthTest, ReadyzAndHealthzTurnWithStatus) {
  REQUIRE_SIM();
  auto plugin = StartPlugin(Options());
  const int port = plugin->metrics_port();
  vault_.sim().Fail(vault_.transit_mount() + "/keys/", 500, -1);
  std::string h = WaitStatus(plugin.get(), [](const std::string& x) { return x != "ok"; });
  ASSERT_NE(h, "ok");
  // Read at once: the refresh runs every second, so a lag of even one refresh shows.
  EXPECT_EQ(HttpGet(port, "/readyz"), std::make_pair(503, "not ready: " + h + "\n"));
  EXPECT_EQ(HttpGet(port, "/healthz"), std::make_pair(200, h + "\n"));
  EXPECT_EQ(plugin->Status().healthz(), h);

  vault_.sim().Reset();
  h = WaitStatus(plugin.get(), [](const std::string& x) { return x == "ok"; });
  ASSERT_EQ(h, "ok");
  EXPECT_EQ(HttpGet(port, "/readyz"), std::make_pair(200, std::string("ok\n")));
  EXPECT_EQ(HttpGet(port, "/healthz"), std::make_pair(200, std::string("ok\n")));
}

std::vector<Json::Value> JsonLines(const std::string& logs, const std::string& msg) {
  std::vector<Json::Value> out;
  std::istringstream in(logs);
  Json::CharReaderBuilder rb;
  std::unique_ptr<Json::CharReader> reader(rb.newCharReader());
  for (std::string line; std::getline(in, line);) {
    Json::Value j;
    std::string errs;
    if (reader->parse(line.data(), line.data() + line.size(), &j, &errs) && j.isObject() &&
        j["msg"].asString() == msg) {
      out.push_back(j);
    }
  }
  return out;
}

// Item 3: one line at start with the version and the effective configuration (no secret, no
// role-id), and one when Vault is back, with how long it was away as a number.
TEST_F(HealthTest, LogsTheConfigurationAndVaultsReturn) {
  REQUIRE_SIM();
  PluginOptions o = Options();
  auto plugin = StartPlugin(o);
  vault_.sim().Seal();
  WaitStatus(plugin.get(), [](const std::string& x) { return x != "ok"; });
  std::this_thread::sleep_for(milliseconds(1500));
  vault_.sim().Unseal();
  ASSERT_EQ(WaitStatus(plugin.get(), [](const std::string& x) { return x == "ok"; }), "ok");
  plugin->Stop();
  const std::string logs = plugin->Logs();

  auto start = JsonLines(logs, "broker starting");
  ASSERT_EQ(start.size(), 1u) << logs;
  EXPECT_EQ(start[0]["version"].asString(), VKMS_TEST_VERSION);
  EXPECT_EQ(start[0]["transit-key"].asString(), vault_.key());
  EXPECT_EQ(start[0]["approle-secret-id-file"].asString(), plugin->secret_id_path());
  EXPECT_EQ(start[0]["metrics-listen"].asString(), "127.0.0.1:0");
  for (const std::string& secret : {o.role_id, o.secret_id}) {
    EXPECT_EQ(logs.find(secret), std::string::npos) << "a credential appears in the logs";
  }

  auto back = JsonLines(logs, "vault reachable again");
  ASSERT_EQ(back.size(), 1u) << logs;
  // A JSON number, at least the 1.5 s the test kept Vault sealed.
  const Json::Value& away = back[0]["away_seconds"];
  ASSERT_TRUE(away.isDouble() || away.isIntegral()) << away.toStyledString();
  EXPECT_GE(away.asDouble(), 1.5) << away.asDouble();
  EXPECT_LT(away.asDouble(), 30) << away.asDouble();
  EXPECT_NE(back[0]["last_error"].asString().find("sealed"), std::string::npos) << logs;
}

// Item 9: a wrong CA is a TLS failure everywhere it shows (Status, calls), never "unreachable".
TEST_F(HealthTest, TlsVerificationFailureIsNeverCalledUnreachable) {
  SimProcess other;
  std::string err;
  ASSERT_TRUE(other.Start({}, &err)) << err;
  PluginOptions o = Options();
  o.ca_file = other.ca_file();
  auto plugin = StartPlugin(o, false);
  std::string h = WaitStatus(
      plugin.get(), [](const std::string& x) { return x.find("TLS") != std::string::npos; });
  EXPECT_EQ(h.rfind("vault TLS error: TLS certificate verification failed", 0), 0u) << h;
  EXPECT_EQ(h.find("unreachable"), std::string::npos) << h;
  KmsClient kms(plugin->socket_path());
  v2::EncryptResponse enc;
  grpc::Status s = kms.Encrypt(RandomBytes(32), RandomUid(), &enc);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(s.error_message().find("unreachable"), std::string::npos) << s.error_message();
  EXPECT_EQ(HttpGet(plugin->metrics_port(), "/readyz").second, "not ready: " + h + "\n");
  plugin->Stop();
  EXPECT_EQ(plugin->Logs().find("vault unreachable: TLS"), std::string::npos) << plugin->Logs();
}

// Item 9: an IPv6 --metrics-listen, written as in URLs, is bound and served.
TEST_F(HealthTest, Ipv6MetricsListenServes) {
  PluginOptions o = Options();
  o.metrics_listen = "[::1]:0";
  auto plugin = StartPlugin(o);
  const int port = plugin->metrics_port();
  ASSERT_GT(port, 0) << plugin->Logs();
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_port = htons(static_cast<uint16_t>(port));
  sa.sin6_addr = in6addr_loopback;
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << strerror(errno);
  const std::string req = "GET /readyz HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  std::string resp;
  char buf[1024];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  EXPECT_EQ(resp.rfind("HTTP/1.1 200", 0), 0u) << resp;
  EXPECT_EQ(resp.substr(resp.size() - 3), "ok\n") << resp;
}

class StartupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vkms-startup-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& content) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << content;
    return path;
  }
  // The broker with these flags (and valid others); no Vault is needed to fail at start.
  std::pair<int, std::string> Run(const std::vector<std::string>& flags) {
    std::vector<std::string> args = {"--socket=unix://" + dir_ + "/kms.sock",
                                     "--vault-addr=https://127.0.0.1:1",
                                     "--approle-role-id-file=" + Write("role-id", "r"),
                                     "--approle-secret-id-file=" + Write("secret-id", "s")};
    // Never the default port: should a case start the broker after all, it binds nothing shared.
    if (std::none_of(flags.begin(), flags.end(),
                     [](const std::string& f) { return f.rfind("--metrics-listen=", 0) == 0; })) {
      args.push_back("--metrics-listen=127.0.0.1:0");
    }
    for (const auto& f : flags) args.push_back(f);
    std::string out;
    int code = RunBrokerExpectingExit(args, &out);
    return {code, out};
  }
  std::string dir_;
};

// Item 9: configuration errors stop the broker at once, exit 2, one line naming the flag.
// Before, a CA file that is not PEM was accepted and retried forever as "vault unreachable",
// and an unbracketed IPv6 --metrics-listen passed validation and failed in the frontend.
TEST_F(StartupTest, ConfigurationErrorsExitTwoWithOneLineNamingTheFlag) {
  const std::string not_pem = Write("ca.pem", "not a certificate\n");
  std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--vault-ca-file=" + not_pem},
       "vault-kms-broker: --vault-ca-file: " + not_pem + " holds no PEM certificate\n"},
      {{"--metrics-listen=::1:8080"},
       "vault-kms-broker: --metrics-listen: expected host:port such as 127.0.0.1:8080 or "
       "[::1]:8080, got \"::1:8080\": an IPv6 address must be in brackets, e.g. [::1]:8080\n"},
  };
  for (const auto& [flags, line] : cases) {
    auto [code, out] = Run(flags);
    EXPECT_EQ(code, 2) << out;
    EXPECT_EQ(out, line);
  }
}

}  // namespace
}  // namespace vkms::testing
