// End-to-end tests of the real vault-kms-broker and vault-kms-frontend over the real socket,
// against the Vault simulator over TLS (or a real Vault, see vault_env.h), calling the plugin
// exactly as kube-apiserver does.
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
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

class PluginTest : public PluginFixture {};

TEST_F(PluginTest, EncryptDecryptRoundTrip) {
  auto plugin = StartPlugin(Options());
  KmsClient kms(plugin->socket_path());
  v2::StatusResponse st;
  ASSERT_TRUE(kms.Status(&st).ok());
  EXPECT_EQ(st.version(), "v2");
  EXPECT_EQ(st.healthz(), "ok");
  ASSERT_FALSE(st.key_id().empty());
  EXPECT_LE(st.key_id().size(), 1024u);

  std::string seed = RandomBytes(32);
  v2::EncryptResponse enc;
  grpc::Status s = kms.Encrypt(seed, RandomUid(), &enc);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(enc.key_id(), st.key_id()) << "Encrypt must be pinned to the Status key_id";
  EXPECT_EQ(enc.ciphertext().rfind("vault:v1:", 0), 0u);
  EXPECT_FALSE(enc.ciphertext().empty());
  EXPECT_LE(enc.ciphertext().size(), 1024u);
  EXPECT_TRUE(enc.annotations().empty());

  v2::DecryptResponse dec;
  s = kms.Decrypt(enc.ciphertext(), enc.key_id(), RandomUid(), &dec);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(dec.plaintext(), seed);

  v2::EncryptResponse again;
  ASSERT_TRUE(kms.Encrypt(seed, RandomUid(), &again).ok());
  EXPECT_NE(again.ciphertext(), enc.ciphertext()) << "a fresh nonce per encryption";
}

TEST_F(PluginTest, BothAuthorityFormsWork) {
  auto plugin = StartPlugin(Options());
  // Kubernetes 1.29-1.31 send the socket path as :authority, 1.32+ send "localhost".
  for (const std::string& authority : {plugin->socket_path(), std::string("localhost")}) {
    KmsClient kms(plugin->socket_path(), authority);
    v2::StatusResponse st;
    grpc::Status s = kms.Status(&st);
    ASSERT_TRUE(s.ok()) << authority << ": " << s.error_message();
    EXPECT_EQ(st.healthz(), "ok");
    v2::EncryptResponse enc;
    s = kms.Encrypt(RandomBytes(32), RandomUid(), &enc);
    EXPECT_TRUE(s.ok()) << authority << ": " << s.error_message();
  }
}

TEST_F(PluginTest, InvalidInputIsRefusedBeforeAnyVaultCall) {
  auto plugin = StartPlugin(Options());
  KmsClient kms(plugin->socket_path());
  int64_t before = vault_.is_sim() ? SimCount(vault_.transit_mount() + "/") : 0;
  struct Case {
    const char* what;
    std::function<grpc::Status()> call;
  };
  std::vector<Case> cases = {
      {"empty plaintext",
       [&] {
         v2::EncryptResponse r;
         return kms.Encrypt("", RandomUid(), &r);
       }},
      {"oversize plaintext",
       [&] {
         v2::EncryptResponse r;
         return kms.Encrypt(std::string(4096, 'p'), RandomUid(), &r);
       }},
      {"not vault ciphertext",
       [&] {
         v2::DecryptResponse r;
         return kms.Decrypt("hello world", "k", RandomUid(), &r);
       }},
      {"empty ciphertext",
       [&] {
         v2::DecryptResponse r;
         return kms.Decrypt("", "k", RandomUid(), &r);
       }},
      {"bad base64",
       [&] {
         v2::DecryptResponse r;
         return kms.Decrypt("vault:v1:" + std::string(80, '*'), "k", RandomUid(), &r);
       }},
      {"oversize key_id",
       [&] {
         v2::DecryptResponse r;
         return kms.Decrypt("vault:v1:" + std::string(80, 'A'), std::string(1025, 'k'), RandomUid(),
                            &r);
       }},
      {"bad annotation key",
       [&] {
         v2::DecryptResponse r;
         return kms.Decrypt("vault:v1:" + std::string(80, 'A'), "k", RandomUid(), &r, seconds(3),
                            {{"Not/A-DNS-name", "v"}});
       }},
  };
  for (auto& c : cases) {
    grpc::Status s = c.call();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.what;
    EXPECT_FALSE(s.error_message().empty()) << c.what;
  }
  if (vault_.is_sim()) {
    EXPECT_EQ(SimCount(vault_.transit_mount() + "/encrypt"), 0) << "no Vault call for bad input";
    EXPECT_EQ(SimCount(vault_.transit_mount() + "/decrypt"), 0) << "no Vault call for bad input";
    EXPECT_EQ(SimCount(vault_.transit_mount() + "/"),
              before + SimCount(vault_.transit_mount() + "/keys") -
                  SimCount(vault_.transit_mount() + "/keys"));
  }
}

TEST_F(PluginTest, TamperedCiphertextIsInvalidArgument) {
  auto plugin = StartPlugin(Options());
  KmsClient kms(plugin->socket_path());
  v2::EncryptResponse enc;
  ASSERT_TRUE(kms.Encrypt(RandomBytes(32), RandomUid(), &enc).ok());
  std::string ct = enc.ciphertext();
  ct[20] = ct[20] == 'A' ? 'B' : 'A';
  v2::DecryptResponse dec;
  grpc::Status s = kms.Decrypt(ct, enc.key_id(), RandomUid(), &dec);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("message authentication failed"), std::string::npos)
      << s.error_message();
}

TEST_F(PluginTest, RotationChangesKeyIdAndEncryptFollowsStatus) {
  auto plugin = StartPlugin(Options());
  KmsClient kms(plugin->socket_path());
  v2::StatusResponse st1;
  ASSERT_TRUE(kms.Status(&st1).ok());
  v2::EncryptResponse old_enc;
  std::string old_seed = RandomBytes(32);
  ASSERT_TRUE(kms.Encrypt(old_seed, RandomUid(), &old_enc).ok());

  vault_.setup().Expect("POST", vault_.transit_mount() + "/keys/" + vault_.key() + "/rotate");
  std::string new_key_id;
  ASSERT_TRUE(plugin->WaitKeyIdChange(st1.key_id(), seconds(5), &new_key_id))
      << "key_id did not change within the 1 s refresh interval (+ margin)";
  EXPECT_NE(new_key_id.find(":v2:"), std::string::npos) << new_key_id;

  v2::EncryptResponse enc;
  ASSERT_TRUE(kms.Encrypt(RandomBytes(32), RandomUid(), &enc).ok());
  EXPECT_EQ(enc.key_id(), new_key_id);
  EXPECT_EQ(enc.ciphertext().rfind("vault:v2:", 0), 0u);

  v2::DecryptResponse dec;
  ASSERT_TRUE(kms.Decrypt(old_enc.ciphertext(), old_enc.key_id(), RandomUid(), &dec).ok());
  EXPECT_EQ(dec.plaintext(), old_seed) << "old ciphertext still decrypts after rotation";
}

TEST_F(PluginTest, KeyIdIsTheSameOnNodesReachingVaultByDifferentAddresses) {
  REQUIRE_SIM();
  auto a = StartPlugin(Options());
  PluginOptions o = Options();
  o.vault_addrs = {"https://localhost:" + std::to_string(vault_.port())};
  auto b = StartPlugin(o);
  v2::StatusResponse sa = a->Status(), sb = b->Status();
  EXPECT_EQ(sa.healthz(), "ok");
  EXPECT_EQ(sb.healthz(), "ok");
  EXPECT_EQ(sa.key_id(), sb.key_id());
  EXPECT_EQ(sa.key_id().find("127.0.0.1"), std::string::npos);
  EXPECT_EQ(sb.key_id().find("localhost"), std::string::npos);
}

TEST_F(PluginTest, RecreatedKeyGetsAKeyIdNeverSeenBefore) {
  auto plugin = StartPlugin(Options());
  std::set<std::string> seen = {plugin->Status().key_id()};
  const std::string key_path = vault_.transit_mount() + "/keys/" + vault_.key();
  vault_.setup().Expect("POST", key_path + "/rotate");
  std::string id;
  ASSERT_TRUE(plugin->WaitKeyIdChange(*seen.begin(), seconds(5), &id));
  seen.insert(id);
  Json::Value cfg;
  cfg["deletion_allowed"] = true;
  vault_.setup().Expect("POST", key_path + "/config", cfg);
  // Vault reports creation times in whole seconds: a key recreated within the same second as
  // the one it replaces is indistinguishable (documented in SECURITY.md).
  std::this_thread::sleep_for(milliseconds(1100));
  vault_.setup().Expect("DELETE", key_path);
  vault_.setup().CreateKey(vault_.transit_mount(), vault_.key());
  ASSERT_TRUE(plugin->WaitKeyIdChange(id, seconds(5), &id));
  EXPECT_EQ(seen.count(id), 0u) << "key_id " << id << " was used before the key was recreated";
  EXPECT_NE(id.find(":v1:"), std::string::npos) << "versions restart at 1: " << id;
  KmsClient kms(plugin->socket_path());
  v2::EncryptResponse enc;
  ASSERT_TRUE(kms.Encrypt(RandomBytes(32), RandomUid(), &enc).ok());
  EXPECT_EQ(enc.key_id(), id);
}

TEST_F(PluginTest, RevokedTokenTriggersOneReloginAndTheCallSucceeds) {
  REQUIRE_SIM();
  auto plugin = StartPlugin(Options());
  KmsClient kms(plugin->socket_path());
  v2::EncryptResponse enc;
  ASSERT_TRUE(kms.Encrypt(RandomBytes(32), RandomUid(), &enc).ok());
  int64_t logins = vault_.sim().Stats()["logins"].asInt64();
  vault_.sim().RevokeTokens();  // a Vault restart that lost its tokens
  grpc::Status s = kms.Encrypt(RandomBytes(32), RandomUid(), &enc);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(vault_.sim().Stats()["logins"].asInt64(), logins + 1) << "exactly one re-login";
}

TEST_F(PluginTest, SecretIdReplacedOnDiskIsUsedAtTheNextLogin) {
  REQUIRE_SIM();
  // Secret-ids of this role work once: after the first login the old one is spent, so only
  // the replaced file can succeed.
  Json::Value role(Json::objectValue);
  role["token_policies"].append("vault-kms");
  role["secret_id_num_uses"] = 1;
  vault_.setup().CreateRole(vault_.approle_mount(), vault_.role(), role);
  auto plugin = StartPlugin(Options());
  KmsClient kms(plugin->socket_path());
  v2::EncryptResponse enc;
  ASSERT_TRUE(kms.Encrypt(RandomBytes(32), RandomUid(), &enc).ok());

  plugin->WriteSecretId(vault_.NewSecretId());
  vault_.sim().RevokeTokens();
  grpc::Status s = kms.Encrypt(RandomBytes(32), RandomUid(), &enc);
  EXPECT_TRUE(s.ok()) << s.error_message() << "\n" << plugin->Logs();
}

TEST_F(PluginTest, TokenAuthFromAFile) {
  Json::Value params(Json::objectValue);
  params["policies"].append("vault-kms");
  params["ttl"] = "1h";
  PluginOptions o = Options();
  o.token = vault_.setup().CreateToken(params);
  auto plugin = StartPlugin(o);
  KmsClient kms(plugin->socket_path());
  v2::EncryptResponse enc;
  grpc::Status s = kms.Encrypt(RandomBytes(32), RandomUid(), &enc);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(PluginTest, PeerOutsideAllowedUidsIsRefused) {
  PluginOptions o = Options();
  const uid_t outsider = getuid() + 4242;
  o.extra_flags.push_back("--allowed-peer-uids=" + std::to_string(outsider));
  auto plugin = StartPlugin(o, /*wait_healthy=*/false);  // Start() itself cannot call in
  // Root connects with the allowed number as its group id (SO_PEERCRED reports both): only the
  // uid may decide.
  const bool root = geteuid() == 0;
  if (root) {
    ASSERT_EQ(setegid(static_cast<gid_t>(outsider)), 0);
  }
  KmsClient kms(plugin->socket_path());
  v2::StatusResponse st;
  grpc::Status s = kms.Status(&st, seconds(2));
  if (root) {
    EXPECT_EQ(setegid(getgid()), 0);
  }
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(plugin->WaitForLog("refused a connection from a uid outside --allowed-peer-uids",
                                 seconds(10)))
      << plugin->Logs();
}

TEST_F(PluginTest, AllowedPeerUidIsServed) {
  PluginOptions o = Options();
  o.extra_flags.push_back("--allowed-peer-uids=4242," + std::to_string(getuid()));
  auto plugin = StartPlugin(o);
  EXPECT_EQ(plugin->Status().healthz(), "ok");
}

TEST_F(PluginTest, WrongCaIsRefusedWithAClearError) {
  REQUIRE_SIM();
  SimProcess other;  // a second simulator: its CA did not sign our Vault's certificate
  std::string err;
  ASSERT_TRUE(other.Start({}, &err)) << err;
  PluginOptions o = Options();
  o.ca_file = other.ca_file();
  auto plugin = StartPlugin(o, /*wait_healthy=*/false);
  std::string last;
  EXPECT_FALSE(plugin->WaitHealthy(seconds(2), &last));
  EXPECT_NE(last.find("certificate"), std::string::npos) << last;
  KmsClient kms(plugin->socket_path());
  v2::EncryptResponse enc;
  grpc::Status s = kms.Encrypt(RandomBytes(32), RandomUid(), &enc);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(SimCount(vault_.transit_mount() + "/encrypt"), 0);
  EXPECT_EQ(vault_.sim().Stats()["logins"].asInt64(), 0)
      << "no credential sent to an unverified server";
}

TEST_F(PluginTest, FrontendHoldsNoCredentialAndNoPrivilege) {
  PluginOptions o = Options();
  // The broker's own environment is not empty, so an empty one in the frontend is its doing.
  o.env = {"VKMS_TEST_BROKER_ONLY=environment-canary"};
  std::string role_id = o.role_id, secret_id = o.secret_id;
  auto plugin = StartPlugin(o);
  pid_t fe = plugin->FrontendPid();
  ASSERT_GT(fe, 0);
  std::string fe_proc = "/proc/" + std::to_string(fe);

  EXPECT_EQ(ProcStatusField(fe, "CapEff"), "0000000000000000");
  EXPECT_EQ(ProcStatusField(fe, "CapPrm"), "0000000000000000");
  EXPECT_EQ(ProcStatusField(fe, "NoNewPrivs"), "1");
  EXPECT_EQ(ProcStatusField(plugin->pid(), "CapEff"), "0000000000000000");
  EXPECT_EQ(ProcStatusField(plugin->pid(), "NoNewPrivs"), "1");
  if (geteuid() == 0) {
    EXPECT_EQ(ProcStatusField(fe, "Uid").substr(0, 5), std::to_string(kFrontendUid));
    EXPECT_EQ(ProcStatusField(plugin->pid(), "Uid").substr(0, 5), std::to_string(kBrokerUid));
    EXPECT_EQ(ProcStatusField(fe, "CapBnd"), "0000000000000000");
    EXPECT_EQ(ProcStatusField(fe, "Groups"), "");
  }
  // Nothing that could carry a credential: environment, argv, open files.
  std::string environ = ReadFile(fe_proc + "/environ");
  EXPECT_TRUE(environ.empty()) << "frontend environment must be empty";
  std::string cmdline = ReadFile(fe_proc + "/cmdline");
  for (const std::string& secret : {role_id, secret_id, vault_.root_token(), vault_.addr()}) {
    EXPECT_EQ(cmdline.find(secret), std::string::npos);
  }
  DIR* d = opendir((fe_proc + "/fd").c_str());
  ASSERT_NE(d, nullptr);
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char target[512];
    ssize_t n = readlink((fe_proc + "/fd/" + e->d_name).c_str(), target, sizeof target - 1);
    ASSERT_GT(n, 0);
    std::string t(target, static_cast<size_t>(n));
    // Not the broker's stdout/stderr (the operator's log, here plugin.log): the frontend writes
    // to a pipe the broker relays (broker/log_relay.h). Its own /proc/PID/stat and /proc/PID/fd
    // stay open for the process_* metrics.
    bool harmless = t.rfind("socket:", 0) == 0 || t.rfind("anon_inode:", 0) == 0 ||
                    t.rfind("pipe:", 0) == 0 || t == "/dev/null" || t == fe_proc + "/stat" ||
                    t == fe_proc + "/fd";
    EXPECT_TRUE(harmless) << "frontend fd " << e->d_name << " -> " << t;
    EXPECT_EQ(t.find("creds"), std::string::npos) << t;
  }
  closedir(d);
}

TEST_F(PluginTest, RoleIdGivenAsAFlagIsScrubbedFromTheCommandLine) {
  PluginOptions o = Options();
  o.role_id_as_flag = true;
  std::string role_id = o.role_id;
  auto plugin = StartPlugin(o);
  EXPECT_EQ(plugin->Status().healthz(), "ok") << "the flag value was used to log in";
  std::string cmdline = ReadFile("/proc/" + std::to_string(plugin->pid()) + "/cmdline");
  EXPECT_NE(cmdline.find("--approle-role-id="), std::string::npos);
  EXPECT_EQ(cmdline.find(role_id), std::string::npos) << "role-id visible in /proc/PID/cmdline";
}

// Type=notify (deploy/vault-kms.service): the test plays systemd's side of $NOTIFY_SOCKET. The
// broker connects to it before its lockdown (it can create no socket afterwards), says READY=1
// once the socket serves and STOPPING=1 when SIGTERM starts the drain.
TEST_F(PluginTest, TellsSystemdWhenReadyAndWhenStopping) {
  char tmpl[] = "/tmp/vkms-notify-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, path = dir + "/notify";
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr), 0);
  chmod(dir.c_str(), 0755);
  chmod(path.c_str(), 0777);  // systemd's own socket is world-writable too
  auto receive = [&](int timeout_ms) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return std::string();
    char buf[1024];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  };

  PluginOptions o = Options();
  o.env = {"NOTIFY_SOCKET=" + path};
  auto plugin = StartPlugin(o);
  std::string ready = receive(5000);
  EXPECT_NE(ready.find("READY=1\n"), std::string::npos) << ready;
  EXPECT_NE(ready.find("MAINPID=" + std::to_string(plugin->pid())), std::string::npos) << ready;
  KmsClient kms(plugin->socket_path());
  v2::StatusResponse st;
  EXPECT_TRUE(kms.Status(&st).ok()) << "READY=1 before the socket serves";
  EXPECT_EQ(receive(0), "") << "more than one message before shutdown";

  ASSERT_EQ(kill(plugin->pid(), SIGTERM), 0);
  std::string stopping = receive(5000);
  EXPECT_NE(stopping.find("STOPPING=1"), std::string::npos) << stopping;
  int status = plugin->Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << plugin->Logs();
  close(fd);
  std::filesystem::remove_all(dir);
}

TEST_F(PluginTest, SigtermDrainsReleasesTheSocketAndExitsZero) {
  auto plugin = StartPlugin(Options());
  std::string sock = plugin->socket_path();
  int status = plugin->Stop();
  EXPECT_TRUE(WIFEXITED(status)) << status << "\n" << plugin->Logs();
  EXPECT_EQ(WEXITSTATUS(status), 0) << plugin->Logs();
  EXPECT_TRUE(SocketReleased(sock)) << "socket still serving or left behind";
}

// SIGTERM while a call is at Vault: the call still gets its answer (the frontend drains what
// is in flight within its deadline, the broker keeps its Vault call), then the plugin exits 0.
TEST_F(PluginTest, SigtermLetsTheCallInFlightFinish) {
  REQUIRE_SIM();
  auto plugin = StartPlugin(Options());
  const std::string encrypt_path = vault_.transit_mount() + "/encrypt/" + vault_.key();
  vault_.sim().Latency(encrypt_path, 1500);
  vault_.sim().ResetStats();
  grpc::Status result;
  v2::EncryptResponse enc;
  std::thread call([&] {
    KmsClient kms(plugin->socket_path());
    result = kms.Encrypt(RandomBytes(32), RandomUid(), &enc, seconds(10));
  });
  bool at_vault = false;
  for (auto until = std::chrono::steady_clock::now() + seconds(10);
       std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(milliseconds(5))) {
    if (vault_.sim().Stats()["peak_in_flight_by_path"][encrypt_path].asInt64() >= 1) {
      at_vault = true;
      break;
    }
  }
  ASSERT_TRUE(at_vault) << plugin->Logs();
  const auto sigterm_at = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(plugin->pid(), SIGTERM), 0);
  call.join();
  EXPECT_TRUE(result.ok()) << result.error_code() << ": " << result.error_message() << "\n"
                           << plugin->Logs();
  EXPECT_FALSE(enc.ciphertext().empty());
  EXPECT_GE(std::chrono::steady_clock::now() - sigterm_at, milliseconds(500))
      << "the answer came before Vault's: not the call that was in flight";
  int status = plugin->Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << plugin->Logs();
}

TEST_F(PluginTest, FrontendDeathStopsTheBrokerAndReleasesTheSocket) {
  auto plugin = StartPlugin(Options());
  pid_t fe = plugin->FrontendPid();
  ASSERT_GT(fe, 0);
  ASSERT_EQ(kill(fe, SIGKILL), 0);
  int status = plugin->WaitExit(seconds(10));
  ASSERT_NE(status, -1) << "broker kept running without its frontend";
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_TRUE(SocketReleased(plugin->socket_path()));
  EXPECT_NE(plugin->Logs().find("frontend killed by signal 9"), std::string::npos)
      << plugin->Logs();
}

// Every answered call is freed. gRPC completes each call's Finish on a queue no thread waits
// on (kms_service.h), emptied by whichever thread answers; a call left there would keep its
// call object and arena, kilobytes each, and the frontend would grow with every call served.
// Four callers at once also race the broker reader freeing calls against the completion-queue
// thread still handling them: under AddressSanitizer (where RSS says nothing, freed blocks
// stay in quarantine) that race is what the test is for.
TEST_F(PluginTest, FrontendMemoryStaysFlatOverManyCalls) {
#ifdef __SANITIZE_ADDRESS__
  constexpr bool kRssIsMeaningful = false;
#else
  constexpr bool kRssIsMeaningful = true;
#endif
  auto plugin = StartPlugin(Options());
  const pid_t fe = plugin->FrontendPid();
  ASSERT_GT(fe, 0);
  auto anon_kb = [&] { return ProcStatusKb(fe, "RssAnon"); };
  auto serve = [&](int calls_per_thread) {
    std::vector<std::thread> callers;
    std::atomic<int> failed{0};
    for (int t = 0; t < 4; ++t) {
      callers.emplace_back([&] {
        KmsClient kms(plugin->socket_path());
        v2::StatusResponse st;
        for (int i = 0; i < calls_per_thread; ++i) {
          if (!kms.Status(&st).ok()) ++failed;
        }
      });
    }
    for (std::thread& c : callers) c.join();
    return failed.load();
  };
  ASSERT_EQ(serve(500), 0) << plugin->Logs();  // gRPC's and malloc's own pools settle first
  const long before = anon_kb();
  ASSERT_GT(before, 0);
  ASSERT_EQ(serve(5000), 0) << plugin->Logs();
  const long after = anon_kb();
  std::cout << "[ observed ] frontend RssAnon " << before << " kB -> " << after
            << " kB over 20000 calls\n";
  if (kRssIsMeaningful) {
    EXPECT_LT(after - before, 4096) << "the frontend grows with the calls it has answered";
  }
  int status = plugin->Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << plugin->Logs();
}

TEST_F(PluginTest, NothingSecretAppearsInAnyOutput) {
  PluginOptions o = Options();
  o.log_level = "debug";
  std::string role_id = o.role_id, secret_id = o.secret_id;
  auto plugin = StartPlugin(o);
  KmsClient kms(plugin->socket_path());
  std::string seed = RandomBytes(32);
  v2::EncryptResponse enc;
  // A uid that is not UUID-like is logged as "invalid" by both processes, never as sent.
  const std::string odd_uid = "not a uuid: UID-MARKER-7f3a";
  ASSERT_TRUE(kms.Encrypt(seed, odd_uid, &enc).ok());
  v2::DecryptResponse dec;
  ASSERT_TRUE(kms.Decrypt(enc.ciphertext(), enc.key_id(), RandomUid(), &dec).ok());
  // A failing call too: errors are where secrets tend to leak.
  std::string bad = enc.ciphertext();
  bad[15] = bad[15] == 'A' ? 'B' : 'A';
  (void)kms.Decrypt(bad, enc.key_id(), RandomUid(), &dec);
  if (vault_.is_sim()) {
    vault_.sim().RevokeTokens();  // forces a re-login, logged at debug level
    ASSERT_TRUE(kms.Encrypt(seed, RandomUid(), &enc).ok());
  }
  plugin->Stop();
  std::string logs = plugin->Logs();
  ASSERT_NE(logs.find("\"level\":\"debug\""), std::string::npos) << "debug logging was not on";
  std::string payload = enc.ciphertext().substr(enc.ciphertext().find(':', 7) + 1);
  for (const std::string& secret :
       {role_id, secret_id, vault_.root_token(), seed, enc.ciphertext(), payload.substr(0, 24)}) {
    EXPECT_EQ(logs.find(secret), std::string::npos) << "a secret value appears in the logs";
  }
  EXPECT_EQ(logs.find("UID-MARKER-7f3a"), std::string::npos) << "a non-UUID uid was logged";
  for (const char* proc : {"vault-kms-frontend", "vault-kms-broker"}) {
    bool logged_invalid = false;
    std::istringstream lines(logs);
    for (std::string line; std::getline(lines, line);) {
      logged_invalid = logged_invalid ||
                       (line.find(std::string("\"proc\":\"") + proc + "\"") != std::string::npos &&
                        line.find("\"uid\":\"invalid\"") != std::string::npos);
    }
    EXPECT_TRUE(logged_invalid) << proc << " logged no call with uid \"invalid\"";
  }
}

TEST_F(PluginTest, TokenNeverAppearsInAnyOutput) {
  Json::Value params(Json::objectValue);
  params["policies"].append("vault-kms");
  params["ttl"] = "1h";
  PluginOptions o = Options();
  o.log_level = "debug";
  o.token = vault_.setup().CreateToken(params);
  std::string token = o.token;
  auto plugin = StartPlugin(o);
  KmsClient kms(plugin->socket_path());
  v2::EncryptResponse enc;
  ASSERT_TRUE(kms.Encrypt(RandomBytes(32), RandomUid(), &enc).ok());
  plugin->Stop();
  EXPECT_EQ(plugin->Logs().find(token), std::string::npos);
  EXPECT_EQ(plugin->Logs().find(token.substr(4, 16)), std::string::npos);
}

TEST_F(PluginTest, HealthAndReadinessSayWhy) {
  REQUIRE_SIM();
  auto plugin = StartPlugin(Options());
  int port = plugin->metrics_port();
  ASSERT_GT(port, 0) << plugin->Logs();
  EXPECT_EQ(HttpGet(port, "/healthz"), std::make_pair(200, std::string("ok\n")));
  EXPECT_EQ(HttpGet(port, "/readyz"), std::make_pair(200, std::string("ok\n")));
  auto metrics = HttpGet(port, "/metrics");
  EXPECT_EQ(metrics.first, 200);
  EXPECT_NE(metrics.second.find("rpc_server_call_duration_seconds"), std::string::npos);

  vault_.sim_process()->Stop();  // Vault goes away: the next refresh fails
  auto until = std::chrono::steady_clock::now() + seconds(10);
  std::pair<int, std::string> ready;
  do {
    ready = HttpGet(port, "/readyz");
    if (ready.first == 503) break;
    std::this_thread::sleep_for(milliseconds(200));
  } while (std::chrono::steady_clock::now() < until);
  EXPECT_EQ(ready.first, 503);
  EXPECT_NE(ready.second.find("not ready: "), std::string::npos) << ready.second;
  EXPECT_EQ(HttpGet(port, "/healthz").first, 200) << "alive: the frontend runs, the broker answers";
  v2::StatusResponse st = plugin->Status();
  EXPECT_NE(st.healthz(), "ok");
  EXPECT_FALSE(st.key_id().empty()) << "the last known key_id stays while Vault is away";
}

TEST_F(PluginTest, MetricsCarryTheBrokersFiguresWithBoundedLabels) {
  auto plugin = StartPlugin(Options());
  KmsClient kms(plugin->socket_path());
  v2::EncryptResponse enc;
  ASSERT_TRUE(kms.Encrypt(RandomBytes(32), RandomUid(), &enc).ok());
  v2::DecryptResponse dec;
  ASSERT_TRUE(kms.Decrypt(enc.ciphertext(), enc.key_id(), RandomUid(), &dec).ok());
  std::string tampered = enc.ciphertext();
  tampered[20] = tampered[20] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(kms.Decrypt(tampered, enc.key_id(), RandomUid(), &dec).ok());

  auto [status, body] = HttpGet(plugin->metrics_port(), "/metrics");
  ASSERT_EQ(status, 200);
  for (const char* line : {
           "vault_kms_broker_up 1\n",
           "vault_kms_build_info{version=\"" VKMS_TEST_VERSION "\"} 1\n",
           "vault_kms_vault_logins_total{result=\"success\"} 1\n",
           "vault_kms_kek_version 1\n",
           "vault_kms_vault_request_duration_seconds_count{operation=\"encrypt\",code=\"200\"} 1\n",
           "vault_kms_vault_request_duration_seconds_count{operation=\"decrypt\",code=\"200\"} 1\n",
           "vault_kms_vault_request_duration_seconds_count{operation=\"decrypt\",code=\"400\"} 1\n",
           "rpc_server_call_duration_seconds_count{rpc_grpc_status_code=\"0\",rpc_method="
           "\"Encrypt\",rpc_service=\"v2.KeyManagementService\"} 1\n",
           "rpc_server_call_duration_seconds_count{rpc_grpc_status_code=\"3\",rpc_method="
           "\"Decrypt\",rpc_service=\"v2.KeyManagementService\"} 1\n",
       }) {
    EXPECT_NE(body.find(line), std::string::npos) << "missing: " << line << body;
  }
  auto gauge = [&](const std::string& name) {
    size_t at = body.find("\n" + name + " ");
    return at == std::string::npos ? -2.0 : atof(body.c_str() + at + name.size() + 2);
  };
  EXPECT_GT(gauge("vault_kms_vault_token_ttl_seconds"), 3000);  // the role's token_ttl is 1h
  EXPECT_GE(gauge("vault_kms_seconds_since_last_vault_contact"), 0);
  EXPECT_LE(gauge("vault_kms_seconds_since_last_vault_contact"), 5);
  // Bounded labels only: no key_id, no error text, no ciphertext; operations from a fixed set.
  EXPECT_EQ(body.find("transit/kms:v"), std::string::npos);
  EXPECT_EQ(body.find("authentication"), std::string::npos);
  EXPECT_EQ(body.find("vault:v"), std::string::npos);
  const std::set<std::string> operations = {"encrypt",     "decrypt",      "key_read", "login",
                                            "token_renew", "token_lookup", "other"};
  for (size_t at = body.find("operation=\""); at != std::string::npos;
       at = body.find("operation=\"", at + 1)) {
    size_t start = at + 11;
    EXPECT_EQ(operations.count(body.substr(start, body.find('"', start) - start)), 1u);
  }
}

// Sends `calls` Encrypts at once, one client thread each. Returns how many succeeded and sets
// how long the whole burst took.
int ConcurrentEncrypts(const std::string& socket, int calls,
                       std::chrono::steady_clock::duration* elapsed) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) {
    threads.emplace_back([&] {
      KmsClient kms(socket);
      v2::EncryptResponse enc;
      if (kms.Encrypt(RandomBytes(32), RandomUid(), &enc, seconds(10)).ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  *elapsed = std::chrono::steady_clock::now() - start;
  return ok.load();
}

TEST_F(PluginTest, VaultCallsRunInParallel) {
  REQUIRE_SIM();
  auto plugin = StartPlugin(Options());
  vault_.sim().Latency(vault_.transit_mount() + "/encrypt/", 300);
  constexpr int kCalls = 16;
  std::chrono::steady_clock::duration elapsed;
  EXPECT_EQ(ConcurrentEncrypts(plugin->socket_path(), kCalls, &elapsed), kCalls);
  // Serialised, 16 calls of 300 ms would take 4.8 s.
  EXPECT_LT(elapsed, milliseconds(1500)) << "Vault calls were serialised";
}

// --vault-concurrency bounds the Vault calls in flight: with 2, six slow Encrypts never have
// more than 2 calls at Vault at once. The first two are sent one at a time, each once the one
// before it is at Vault (requests that arrive together would leave as one batch and hide the
// bound); the four sent while both calls are taken wait and leave together, as one batch call,
// when a slot frees: two rounds, three calls. (Unbounded, the third would have gone at once.)
// The steps follow what the simulator saw, not a clock, so a loaded machine cannot reorder them;
// a Vault call of 2 s leaves the last four ample time to reach the broker before a slot frees.
TEST_F(PluginTest, VaultConcurrencyBoundsTheCallsInFlight) {
  REQUIRE_SIM();
  PluginOptions o = Options();
  o.extra_flags.push_back("--vault-concurrency=2");
  auto plugin = StartPlugin(o);
  const std::string encrypt_path = vault_.transit_mount() + "/encrypt/" + vault_.key();
  constexpr int kLatencyMs = 2000;
  vault_.sim().Latency(encrypt_path, kLatencyMs);
  vault_.sim().ResetStats();
  constexpr int kCalls = 6;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  auto send = [&] {
    threads.emplace_back([&] {
      KmsClient kms(plugin->socket_path());
      v2::EncryptResponse enc;
      if (kms.Encrypt(RandomBytes(32), RandomUid(), &enc, seconds(20)).ok()) ++ok;
    });
  };
  auto peak = [&] {
    return vault_.sim().Stats()["peak_in_flight_by_path"][encrypt_path].asInt64();
  };
  auto reaches = [&](int64_t n) {
    for (auto until = std::chrono::steady_clock::now() + seconds(10);
         std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(milliseconds(5))) {
      if (peak() >= n) return true;
    }
    return false;
  };
  const auto start = std::chrono::steady_clock::now();
  send();
  const bool first_at_vault = reaches(1);
  send();
  const bool second_at_vault = reaches(2);
  for (int i = 2; i < kCalls; ++i) send();
  for (auto& t : threads) t.join();
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(first_at_vault);
  EXPECT_TRUE(second_at_vault) << "the 2 calls did not run in parallel";
  EXPECT_EQ(ok.load(), kCalls);
  Json::Value stats = vault_.sim().Stats();
  EXPECT_EQ(stats["peak_in_flight_by_path"][encrypt_path].asInt64(), 2)
      << "more than 2 Vault calls ran at once";
  EXPECT_LE(SimControl::CountWithPrefix(stats, encrypt_path), 3)
      << "the Encrypts that waited for a slot did not leave as one batch call";
  EXPECT_GE(elapsed, milliseconds(2 * kLatencyMs))
      << "a third call went to Vault without waiting for a slot";
}

// More Decrypts than workers: the ones that queue go to Vault together, as batches, and each
// caller still gets its own plaintext, or its own error when only its ciphertext is bad.
TEST_F(PluginTest, QueuedDecryptsShareVaultCallsAndEachGetsItsOwnAnswer) {
  REQUIRE_SIM();
  auto plugin = StartPlugin(Options());
  constexpr int kCalls = 64;  // the broker runs 16 workers (--vault-concurrency)
  std::vector<std::string> seeds, ciphertexts;
  std::string key_id;
  {
    KmsClient kms(plugin->socket_path());
    for (int i = 0; i < kCalls; ++i) {
      v2::EncryptResponse enc;
      seeds.push_back(RandomBytes(32));
      ASSERT_TRUE(kms.Encrypt(seeds.back(), RandomUid(), &enc).ok());
      std::string ct = enc.ciphertext();
      if (i % 8 == 5) ct[20] = ct[20] == 'A' ? 'B' : 'A';  // only Vault can tell
      ciphertexts.push_back(ct);
      key_id = enc.key_id();
    }
  }
  const std::string decrypt_path = vault_.transit_mount() + "/decrypt/";
  int64_t before = SimControl::CountWithPrefix(vault_.sim().Stats(), decrypt_path);
  vault_.sim().Latency(decrypt_path, 300);
  std::vector<grpc::Status> results(kCalls);
  std::vector<std::string> plaintexts(kCalls);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] {
      KmsClient kms(plugin->socket_path());
      v2::DecryptResponse dec;
      results[i] = kms.Decrypt(ciphertexts[i], key_id, RandomUid(), &dec, seconds(10));
      plaintexts[i] = dec.plaintext();
    });
  }
  for (auto& t : threads) t.join();
  int64_t calls = SimControl::CountWithPrefix(vault_.sim().Stats(), decrypt_path) - before;
  for (int i = 0; i < kCalls; ++i) {
    if (i % 8 == 5) {
      EXPECT_EQ(results[i].error_code(), grpc::StatusCode::INVALID_ARGUMENT) << i;
      EXPECT_NE(results[i].error_message().find("message authentication failed"), std::string::npos)
          << results[i].error_message();
      EXPECT_TRUE(plaintexts[i].empty());
    } else {
      ASSERT_TRUE(results[i].ok()) << i << ": " << results[i].error_message();
      EXPECT_EQ(plaintexts[i], seeds[i]) << "caller " << i << " got another's plaintext";
    }
  }
  EXPECT_LT(calls, kCalls) << "no Decrypt shared a Vault call";
  EXPECT_GE(calls, kCalls / 16) << "a batch holds at most 16 Decrypts";
  std::cout << kCalls << " Decrypts, " << calls << " Vault calls\n";
}

// Flags are checked before anything happens: exit 2 with one line naming the flag.
TEST(PluginFlagsTest, InvalidFlagsExitTwoWithOneLine) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--nope"}, "--nope"},
      {{"--vault-addr=https://127.0.0.1:1", "--socket=relative"}, "--socket"},
      {{"--vault-addr=http://127.0.0.1:1", "--approle-role-id=r", "--approle-secret-id-file=/s"},
       "--vault-addr"},
      {{"--vault-addr=https://127.0.0.1:1", "--approle-role-id=r"}, "--approle-secret-id-file"},
      {{"--vault-addr=https://127.0.0.1:1", "--approle-role-id=r", "--approle-secret-id-file=/s",
        "--key-refresh-interval=soon"},
       "--key-refresh-interval"},
  };
  for (const auto& [args, flag] : cases) {
    std::string out;
    EXPECT_EQ(RunBrokerExpectingExit(args, &out), 2) << flag;
    EXPECT_NE(out.find(flag), std::string::npos) << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one line: " << out;
  }
}

TEST(PluginFlagsTest, HelpAndVersion) {
  std::string out;
  EXPECT_EQ(RunBrokerExpectingExit({"--help"}, &out), 0);
  EXPECT_NE(out.find("--approle-secret-id-file"), std::string::npos);
  EXPECT_EQ(RunBrokerExpectingExit({"--version"}, &out), 0);
  EXPECT_NE(out.find("vault-kms "), std::string::npos);
}

}  // namespace
}  // namespace vkms::testing
