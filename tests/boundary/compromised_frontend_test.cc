// The broker facing a compromised frontend (DESIGN.md: "a compromised frontend can still ask
// the broker to encrypt/decrypt ... but can never obtain the credentials"). The real broker
// binary is copied into a temporary directory with evil-frontend beside it as
// vault-kms-frontend, so the unmodified broker fork+execs the attacker. Every scenario runs its
// own broker against its own Vault simulator:
//   - a malformed datagram is a protocol error: the broker logs it, removes the socket and
//     exits 3 within 5 s, by exit code and never by a signal, and answers nothing more;
//   - a well-formed but hostile request gets a typed error or a result and the broker serves on;
//   - whatever happened, every reply carries exactly one result and no reply or log line holds
//     the secret-id, role-id, a Vault token or the Vault address (checked in TearDown).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <json/json.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "broker.pb.h"
#include "shared/ipc.h"
#include "shared/status.h"
#include "tests/boundary/hex.h"
#include "tests/integration/plugin_process.h"
#include "tests/integration/vault_env.h"
#include "tests/kmsclient/kms_client.h"

namespace vkms::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC, as the evil frontend's mono_ns

constexpr char kProtocolErrorLog[] = "protocol error from the frontend";
constexpr int kExitProtocolError = 3;
constexpr int kExitFrontendDied = 1;
constexpr double kPromptExitSeconds = 5.0;
constexpr long kMaxBrokerRssKb = 64 * 1024;
// AddressSanitizer adds shadow memory and keeps freed blocks in quarantine: under it the
// broker's RSS says nothing about the broker's own bound (the test is built with its flags).
#ifdef __SANITIZE_ADDRESS__
constexpr bool kRssIsMeaningful = false;
#else
constexpr bool kRssIsMeaningful = true;
#endif
// Planted in hostile datagrams: the broker's log must describe errors without echoing input.
constexpr char kCanary[] = "CANARY-frontend-bytes-5f2e";
constexpr char kForgedLog[] = "x\n{\"level\":\"error\",\"msg\":\"forged-by-frontend\"}";

std::string Base64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string DescribeWait(int status) {
  if (status == -1) return "still running";
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

bool Alive(pid_t pid) {
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

// One line of the evil frontend's result file.
struct Event {
  std::string ev;
  Json::Value json;
};

class CompromisedFrontendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    ASSERT_TRUE(vault_.Start(&err)) << err;
    secret_id_ = vault_.NewSecretId();

    // The broker runs whatever vault-kms-frontend sits next to its own binary.
    char tmpl[] = "/tmp/vkms-evil-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    bin_dir_ = tmpl;
    chmod(bin_dir_.c_str(), 0755);  // the frontend user must reach its executable
    namespace fs = std::filesystem;
    fs::copy_file(BuildDir() + "/vault-kms-broker", bin_dir_ + "/vault-kms-broker");
    fs::copy_file(BuildDir() + "/evil-frontend", bin_dir_ + "/vault-kms-frontend");
    chmod((bin_dir_ + "/vault-kms-broker").c_str(), 0755);
    chmod((bin_dir_ + "/vault-kms-frontend").c_str(), 0755);
    std::ofstream(result_path()).close();
    chmod(result_path().c_str(), 0600);
    if (geteuid() == 0) {
      ASSERT_EQ(chown(result_path().c_str(), kFrontendUid, kFrontendUid), 0);
    }
  }

  void TearDown() override {
    if (plugin_) {
      if (plugin_->WaitExit(milliseconds(0)) == -1) StopOrKill();
      KillEvilFrontend();
      ScanEverythingThatCrossed();
      plugin_.reset();  // removes its directory (credentials, socket dir, log)
    }
    if (!bin_dir_.empty()) std::filesystem::remove_all(bin_dir_);
  }

  // The broker's parent-death signal cannot be relied on to end the frontend (see
  // FrontendLeftBehindHoldsNothing), and PluginProcess finds the frontend only while the
  // broker lives: end it here by the pid it reported, if that pid is still our program.
  void KillEvilFrontend() {
    if (evil_pid_ <= 0) return;
    std::string cmdline = ReadFile("/proc/" + std::to_string(evil_pid_) + "/cmdline");
    if (cmdline.rfind(bin_dir_ + "/vault-kms-frontend", 0) != 0) return;
    kill(evil_pid_, SIGKILL);
    for (int i = 0; i < 200 && Alive(evil_pid_); ++i) std::this_thread::sleep_for(milliseconds(10));
  }

  std::string LogTail() const {
    std::string logs = plugin_->Logs();
    return logs.size() > 4000 ? "..." + logs.substr(logs.size() - 4000) : logs;
  }

  std::string result_path() const { return bin_dir_ + "/result"; }
  std::string stdin_path_;  // the broker's stdin for the next Run(); empty: /dev/null

  // Starts the broker with the evil frontend playing `scenario`, then gives the signal to go.
  void Run(const std::string& scenario, const std::vector<std::string>& args = {}) {
    std::ofstream out(bin_dir_ + "/scenario");
    out << scenario << "\n";
    for (const auto& a : args) out << a << "\n";
    out.close();
    chmod((bin_dir_ + "/scenario").c_str(), 0644);

    PluginOptions o;
    o.vault_addrs = {vault_.addr()};
    o.ca_file = vault_.ca_file();
    o.role_id = vault_.role_id();
    o.secret_id = secret_id_;
    o.extra_flags = vault_.PluginFlags();
    o.broker_path = bin_dir_ + "/vault-kms-broker";
    o.stdin_path = stdin_path_;
    plugin_ = std::make_unique<PluginProcess>(o);
    std::string err;
    // Start() returns once the evil frontend has seen the broker healthy and said so.
    ASSERT_TRUE(plugin_->Start(&err)) << err << "\n" << ReadFile(result_path());
    const std::vector<Event> events = Events();
    const Event* ready = Find(events, "ready");
    ASSERT_NE(ready, nullptr);
    evil_pid_ = static_cast<pid_t>(ready->json["pid"].asInt());
    // Connecting to the KMS socket is the go signal (the evil frontend accepts on fd 4).
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", plugin_->socket_path().c_str());
    ASSERT_EQ(connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr), 0);
    close(fd);
  }

  std::vector<Event> Events() const {
    std::vector<Event> events;
    // The evil frontend may be appending as we read: a last line without its newline is not
    // whole yet, and is left for the next read.
    std::string text = ReadFile(result_path());
    const size_t end = text.rfind('\n');
    text.resize(end == std::string::npos ? 0 : end + 1);
    std::istringstream in(text);
    std::string line;
    Json::CharReaderBuilder builder;
    while (std::getline(in, line)) {
      Json::Value v;
      std::string errs;
      std::istringstream one(line);
      if (!Json::parseFromStream(builder, one, &v, &errs)) {
        ADD_FAILURE() << "unparsable result line: " << line;
        continue;
      }
      events.push_back({v["ev"].asString(), v});
    }
    return events;
  }

  bool Saw(const std::string& ev) const {
    const std::vector<Event> events = Events();
    return Find(events, ev) != nullptr;
  }

  // Points into `events`: keep the vector alive while the pointer is used.
  const Event* Find(const std::vector<Event>& events, const std::string& ev) const {
    for (const auto& e : events) {
      if (e.ev == ev) return &e;
    }
    return nullptr;
  }

  // Waits for the evil frontend to report `ev` (or give up with "fail").
  bool WaitForEvent(const std::string& ev, seconds timeout) {
    auto until = Clock::now() + timeout;
    while (Clock::now() < until) {
      auto events = Events();
      if (Find(events, ev) != nullptr) return true;
      if (const Event* f = Find(events, "fail")) {
        ADD_FAILURE() << "evil frontend failed: " << f->json["why"].asString();
        return false;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    ADD_FAILURE() << "no \"" << ev << "\" event within " << timeout.count() << " s\n" << LogTail();
    return false;
  }

  // Every reply the broker sent after the go signal, decoded (the scan checks them all).
  std::vector<ipc::Reply> RepliesAfterGo() const {
    std::vector<ipc::Reply> replies;
    bool after = false;
    for (const auto& e : Events()) {
      if (e.ev == "go") after = true;
      if (!after || e.ev != "recv") continue;
      std::string bytes = Unhex(e.json["hex"].asString());
      ipc::Reply reply;
      std::string err;
      if (ipc::Decode(bytes.data(), bytes.size(), &reply, &err) == ipc::RecvStatus::kOk) {
        replies.push_back(reply);
      }
    }
    return replies;
  }

  // The broker's exit: waited for up to `limit`, timed from the evil frontend's last "sent"
  // (or from now). A broker still running after `limit` is killed, so the suite goes on.
  struct Exit {
    int status = -1;
    double seconds = 0;
  };
  Exit WaitBrokerExit(seconds limit) {
    auto start = Clock::now();
    for (const auto& e : Events()) {
      if (e.ev == "sent") {
        start = Clock::time_point(std::chrono::nanoseconds(e.json["mono_ns"].asInt64()));
      }
    }
    Exit out;
    out.status = plugin_->WaitExit(std::chrono::duration_cast<milliseconds>(limit));
    out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    RecordProperty("broker_exit", DescribeWait(out.status));
    RecordProperty("seconds_to_exit", std::to_string(out.seconds));
    std::cout << "[ observed ] broker " << DescribeWait(out.status) << " after " << out.seconds
              << " s\n";
    if (out.status == -1) StopOrKill();
    return out;
  }

  // Ends a broker that did not exit by itself: SIGKILL at once (SIGTERM is tested on purpose
  // elsewhere, and Stop()'s 20 s SIGTERM grace would only slow a failing suite down).
  void StopOrKill() {
    if (evil_pid_ <= 0) evil_pid_ = plugin_->FrontendPid();  // only findable while it lives
    kill(plugin_->pid(), SIGKILL);
    plugin_->Stop();
  }

  void ExpectProtocolErrorExit() {
    Exit exit = WaitBrokerExit(seconds(7));
    const std::string logs = plugin_->Logs();
    ASSERT_NE(exit.status, -1) << "broker still running 7 s after the malformed datagram\n"
                               << LogTail();
    EXPECT_TRUE(WIFEXITED(exit.status)) << DescribeWait(exit.status) << "\n" << LogTail();
    EXPECT_EQ(WEXITSTATUS(exit.status), kExitProtocolError) << LogTail();
    EXPECT_LT(exit.seconds, kPromptExitSeconds);
    EXPECT_NE(logs.find(kProtocolErrorLog), std::string::npos) << LogTail();
    EXPECT_TRUE(SocketReleased(plugin_->socket_path())) << "socket left behind";
    EXPECT_EQ(logs.find(kCanary), std::string::npos) << "the log echoes the frontend's bytes";
    // Nothing was in flight at the go signal, and a malformed request earns no answer.
    EXPECT_TRUE(RepliesAfterGo().empty()) << "the broker answered a malformed datagram";
  }

  // SIGTERM after a well-formed scenario: the broker still serves, so it stops the frontend
  // (Shutdown), removes the socket and exits 0.
  void ExpectCleanStopAfterServing() {
    int status = plugin_->Stop();
    EXPECT_TRUE(WIFEXITED(status)) << DescribeWait(status);
    EXPECT_EQ(WEXITSTATUS(status), 0) << LogTail();
    EXPECT_TRUE(SocketReleased(plugin_->socket_path()));
    EXPECT_TRUE(Saw("shutdown")) << "the frontend was never sent Shutdown";
    EXPECT_EQ(plugin_->Logs().find(kProtocolErrorLog), std::string::npos);
  }

  int64_t SimCount(const std::string& op) {
    return SimControl::CountWithPrefix(vault_.sim().Stats(), vault_.transit_mount() + "/" + op);
  }

  // The invariants of every scenario: what reached the frontend is a typed reply and nothing
  // else, and no credential appears in a reply or in the broker's log.
  void ScanEverythingThatCrossed() {
    const std::vector<std::string> secrets = {
        secret_id_, vault_.role_id(), vault_.root_token(),
        "hvs.",  // every token the simulator issues, the broker's own included
        vault_.addr().substr(vault_.addr().find("://") + 3)};
    int shutdowns = 0;
    for (const auto& e : Events()) {
      if (e.ev == "fail") ADD_FAILURE() << "evil frontend failed: " << e.json["why"].asString();
      if (e.ev != "recv") continue;
      std::string bytes = Unhex(e.json["hex"].asString());
      ASSERT_EQ(bytes.size(), e.json["len"].asUInt64()) << "the broker sent an oversize frame";
      for (const auto& s : secrets) {
        ASSERT_EQ(bytes.find(s), std::string::npos) << "a reply carries a credential: " << s;
      }
      ipc::Reply reply;
      std::string err;
      ASSERT_EQ(ipc::Decode(bytes.data(), bytes.size(), &reply, &err), ipc::RecvStatus::kOk) << err;
      if (reply.id() == 0) {
        EXPECT_EQ(reply.result_case(), ipc::Reply::kShutdown) << "id 0 is only for Shutdown";
        ++shutdowns;
        continue;
      }
      switch (reply.result_case()) {
        case ipc::Reply::kError:
          EXPECT_GE(reply.error().code(), 1);
          EXPECT_LE(reply.error().code(), 16);
          EXPECT_FALSE(reply.error().message().empty());
          break;
        case ipc::Reply::kEncrypt:
        case ipc::Reply::kDecrypt:
        case ipc::Reply::kStatus:
        case ipc::Reply::kStats:
          break;
        default:
          ADD_FAILURE() << "reply " << reply.id() << " has result case " << reply.result_case();
      }
    }
    EXPECT_LE(shutdowns, 1);
    const std::string logs = plugin_->Logs();
    for (const auto& s : {secret_id_, vault_.role_id(), vault_.root_token(), std::string("hvs.")}) {
      EXPECT_EQ(logs.find(s), std::string::npos) << "the log holds a credential: " << s;
    }
    EXPECT_EQ(logs.find("forged-by-frontend"), std::string::npos)
        << "a frontend uid forged a log line";
  }

  VaultEnv vault_;
  std::string secret_id_;
  std::string bin_dir_;
  std::unique_ptr<PluginProcess> plugin_;
  pid_t evil_pid_ = -1;
};

// --- malformed datagrams: log, close, exit 3 -------------------------------------------------

struct Malformed {
  const char* scenario;
  std::vector<std::string> args;
};

void PrintTo(const Malformed& m, std::ostream* os) {
  *os << m.scenario;
}

class ProtocolErrorTest : public CompromisedFrontendTest,
                          public ::testing::WithParamInterface<Malformed> {};

TEST_P(ProtocolErrorTest, BrokerLogsReleasesTheSocketAndExitsThree) {
  Run(GetParam().scenario, GetParam().args);
  ASSERT_TRUE(WaitForEvent("sent", seconds(10)));
  ExpectProtocolErrorExit();
}

INSTANTIATE_TEST_SUITE_P(
    Datagram, ProtocolErrorTest,
    ::testing::Values(Malformed{"oversize", {}},                     // 100 KiB, valid encoding
                      Malformed{"max_plus_one", {}},                 // 64 KiB + 1, valid encoding
                      Malformed{"truncated", {kCanary}},             // cut inside a field
                      Malformed{"garbage", {}},                      // 4 KiB of random bytes
                      Malformed{"unknown_field", {kCanary}},         // Request field 99
                      Malformed{"unknown_nested_field", {kCanary}},  // EncryptRequest field 7
                      Malformed{"no_op", {}},                        // no oneof member set
                      Malformed{"id_zero", {}},                      // id 0 is for Shutdown
                      Malformed{"timeout_zero", {}},                 // timeout_ms 0
                      Malformed{"timeout_over_max", {}},             // timeout_ms 60001
                      Malformed{"scm_rights", {}},                   // one fd attached
                      Malformed{"scm_rights_many", {}},              // 16 fds: MSG_CTRUNC
                      Malformed{"reply_sent_to_broker", {}}),        // a Reply{shutdown}
    [](const ::testing::TestParamInfo<Malformed>& info) { return info.param.scenario; });

// A zero-byte SOCK_SEQPACKET datagram reads as 0 bytes, like end-of-file: ipc::Recv reports
// "closed", so the broker stops reading, waits the 5 s it gives a departing frontend, and
// exits 1. Not the exit 3 of a protocol error, but safe: it answers nothing and leaves nothing.
// SOCK_SEQPACKET reports an empty datagram like EOF; the broker tells them apart (the peer has
// not hung up) and treats the empty one as the protocol error it is.
TEST_F(CompromisedFrontendTest, EmptyDatagramIsAProtocolError) {
  Run("empty_datagram");
  ASSERT_TRUE(WaitForEvent("sent", seconds(10)));
  Exit exit = WaitBrokerExit(seconds(10));
  const std::string logs = plugin_->Logs();
  ASSERT_NE(exit.status, -1) << LogTail();
  EXPECT_TRUE(WIFEXITED(exit.status)) << DescribeWait(exit.status);
  EXPECT_EQ(WEXITSTATUS(exit.status), kExitProtocolError) << LogTail();
  EXPECT_LT(exit.seconds, kPromptExitSeconds);
  EXPECT_TRUE(SocketReleased(plugin_->socket_path()));
  EXPECT_NE(logs.find(kProtocolErrorLog), std::string::npos) << LogTail();
  EXPECT_NE(logs.find("empty frame"), std::string::npos) << LogTail();
  EXPECT_TRUE(RepliesAfterGo().empty());
}

// Fill the replies towards the frontend (it stops reading), so that worker threads block in
// send(), then send garbage: the broker must still exit 3 promptly, not wait on a frontend
// that has every reason never to read again.
TEST_F(CompromisedFrontendTest, ProtocolErrorWhileRepliesAreBackedUp) {
  Run("wedge_then_garbage", {"2000"});
  ASSERT_TRUE(WaitForEvent("sent", seconds(20)));
  Exit exit = WaitBrokerExit(seconds(7));
  const std::string logs = plugin_->Logs();
  ASSERT_NE(exit.status, -1) << "broker hung after the protocol error (frontend not reading)\n"
                             << LogTail();
  EXPECT_TRUE(WIFEXITED(exit.status)) << DescribeWait(exit.status);
  EXPECT_EQ(WEXITSTATUS(exit.status), kExitProtocolError);
  EXPECT_LT(exit.seconds, kPromptExitSeconds);
  EXPECT_NE(logs.find(kProtocolErrorLog), std::string::npos);
  EXPECT_TRUE(SocketReleased(plugin_->socket_path()));
}

// A frontend that ignores the closed channel can outlive the broker: with different uids (and
// Landlock's signal scope) the broker cannot kill it, and the kernel does not deliver the
// parent-death signal across them either (SECURITY.md, known limits). What matters is what it
// is left with: the socket refuses every connection (the broker shut down the listening socket
// the frontend shares) and the broker's end of the channel is closed for good, so there is
// nothing left to ask and no credential it ever held.
TEST_F(CompromisedFrontendTest, FrontendLeftBehindHoldsNothing) {
  Run("garbage_then_stay");
  ASSERT_TRUE(WaitForEvent("sent", seconds(10)));
  Exit exit = WaitBrokerExit(seconds(7));
  ASSERT_NE(exit.status, -1) << LogTail();
  EXPECT_TRUE(WIFEXITED(exit.status));
  EXPECT_EQ(WEXITSTATUS(exit.status), kExitProtocolError);
  EXPECT_TRUE(SocketReleased(plugin_->socket_path()));
  ASSERT_TRUE(WaitForEvent("after_broker", seconds(15))) << ReadFile(result_path());
  const std::vector<Event> events = Events();
  const Event* after = Find(events, "after_broker");
  ASSERT_NE(after, nullptr);
  EXPECT_FALSE(after->json["send_ok"].asBool()) << "the broker's end must be closed";
  EXPECT_EQ(after->json["errno"].asString(), "EPIPE");
}

// SIGTERM while the frontend neither reads nor stops: the broker must still be gone within its
// 10 s grace period (DESIGN.md: SIGTERM → stop, drain within deadlines, remove the socket).
TEST_F(CompromisedFrontendTest, SigtermWhileTheFrontendStopsReading) {
  Run("wedge_then_wait", {"2000"});
  ASSERT_TRUE(WaitForEvent("done", seconds(20)));
  ASSERT_EQ(kill(plugin_->pid(), SIGTERM), 0);
  Exit exit = WaitBrokerExit(seconds(13));
  const std::string logs = plugin_->Logs();
  ASSERT_NE(exit.status, -1) << "broker ignored SIGTERM for 13 s (frontend not reading)\n"
                             << LogTail();
  EXPECT_TRUE(WIFEXITED(exit.status)) << DescribeWait(exit.status);
  EXPECT_EQ(WEXITSTATUS(exit.status), kExitFrontendDied);
  EXPECT_TRUE(SocketReleased(plugin_->socket_path()));
}

// --- what the frontend is started with, and what it can say ------------------------------

// A compromised frontend's stdout and stderr are a pipe the broker reads: nothing it writes
// reaches the operator's terminal or journal raw, claims to come from the broker, or grows
// without bound.
TEST_F(CompromisedFrontendTest, ItsLogLinesAreReattributedEscapedAndBounded) {
  Run("forge_logs");
  ASSERT_TRUE(WaitForEvent("done", seconds(10)));
  // The relay reads on after the flood (one more second for it to catch up).
  std::this_thread::sleep_for(milliseconds(1500));
  const std::string logs = plugin_->Logs();
  EXPECT_EQ(logs.find('\x1b'), std::string::npos) << "a raw escape reached the operator's log";
  EXPECT_EQ(logs.find('\x07'), std::string::npos) << "a raw BEL reached the operator's log";
  EXPECT_EQ(logs.find("TAIL-OF-A-LONG-LINE"), std::string::npos) << "an unbounded line passed";
  EXPECT_EQ(logs.find("TAIL-OF-A-LONG-JSON-LINE"), std::string::npos)
      << "a JSON line over 4 KiB was relayed whole";
  EXPECT_NE(logs.find("dropping the rest of this second"), std::string::npos)
      << "a flood of lines was relayed without limit";
  bool forged_seen = false, raw_seen = false;
  int flood_lines = 0, cut_lines = 0;
  // Flood lines relayed per second of the relay's own timestamp ("2026-01-01T00:00:00").
  std::map<std::string, int> flood_per_second;
  std::istringstream in(logs);
  std::string line;
  Json::CharReaderBuilder builder;
  while (std::getline(in, line)) {
    EXPECT_LE(line.size(), 6000u) << line.substr(0, 200);
    Json::Value v;
    std::string errs;
    std::istringstream one(line);
    ASSERT_TRUE(Json::parseFromStream(builder, one, &v, &errs)) << "not JSON: " << line;
    const std::string msg = v["msg"].asString();
    if (msg.find("FORGED-BY-FRONTEND") != std::string::npos) {
      forged_seen = true;
      EXPECT_EQ(v["proc"].asString(), "vault-kms-frontend") << "a forged broker line: " << line;
    }
    if (v["text"].asString().find("FORGED-RAW-ESCAPES") != std::string::npos) {
      raw_seen = true;
      EXPECT_EQ(v["proc"].asString(), "vault-kms-frontend");
    }
    if (msg.rfind("flood ", 0) == 0) {
      ++flood_lines;
      ++flood_per_second[v["ts"].asString().substr(0, 19)];
    }
    // The documented cut (SECURITY.md: 4 KiB), for both long lines, JSON or not.
    if (msg == "a line from the frontend, cut at 4096 bytes") ++cut_lines;
    if (v["proc"].asString() == "vault-kms-broker") {
      EXPECT_EQ(line.find("FORGED"), std::string::npos) << line;
    }
  }
  EXPECT_TRUE(forged_seen) << "the forged line was not relayed at all";
  EXPECT_TRUE(raw_seen) << "the raw line was not relayed as text";
  EXPECT_GT(flood_lines, 0);
  EXPECT_LT(flood_lines, 3000) << "every flood line was relayed";
  EXPECT_EQ(cut_lines, 2) << "each line over 4 KiB is relayed cut, as one line";
  // A line counted in the last instant of a second may be stamped in the next: hence the one.
  for (const auto& [second, count] : flood_per_second) {
    EXPECT_LE(count, 1000 + 1) << "more than 1,000 frontend lines relayed within " << second;
  }
}

// What crosses exec: /dev/null as stdin (not the broker's stdin), the log pipe the broker reads,
// the IPC channel, the KMS listener and the metrics listener -- and nothing else, even when
// whoever started the broker leaked descriptors to it (the broker closes them first thing).
TEST_F(CompromisedFrontendTest, StartsWithExactlyTheDescriptorsTheBrokerHandsOver) {
  const std::string canary = bin_dir_ + "/leaked-file";
  std::ofstream(canary) << "a file the test leaves open across exec\n";
  int leaked = open(canary.c_str(), O_RDONLY);  // not close-on-exec: inherited by the broker
  ASSERT_GE(leaked, 0);
  ASSERT_EQ(dup2(leaked, 57), 57);
  stdin_path_ = canary;  // the broker's own stdin: the frontend must not get it
  Run("idle");
  close(leaked);
  close(57);
  ASSERT_TRUE(WaitForEvent("done", seconds(10)));
  const std::vector<Event> events = Events();
  const Event* fds = Find(events, "fds");
  ASSERT_NE(fds, nullptr);
  std::map<int, Json::Value> by_fd;
  for (const auto& f : fds->json["fds"]) by_fd[f["fd"].asInt()] = f;
  std::set<int> numbers;
  for (const auto& [fd, f] : by_fd) numbers.insert(fd);
  EXPECT_EQ(numbers, (std::set<int>{0, 1, 2, 3, 4, 5})) << fds->json.toStyledString();
  EXPECT_EQ(by_fd[0]["what"].asString(), "/dev/null");
  const std::string pipe = by_fd[1]["what"].asString();
  EXPECT_EQ(pipe.rfind("pipe:[", 0), 0u) << pipe;
  EXPECT_EQ(by_fd[2]["what"].asString(), pipe) << "stdout and stderr: the same pipe";
  EXPECT_EQ(by_fd[3]["type"].asInt(), SOCK_SEQPACKET);
  EXPECT_EQ(by_fd[3]["family"].asInt(), AF_UNIX);
  EXPECT_EQ(by_fd[4]["type"].asInt(), SOCK_STREAM);
  EXPECT_EQ(by_fd[4]["family"].asInt(), AF_UNIX);
  EXPECT_TRUE(by_fd[4]["listening"].asBool());
  EXPECT_EQ(by_fd[5]["type"].asInt(), SOCK_STREAM);
  EXPECT_EQ(by_fd[5]["family"].asInt(), AF_INET);
  EXPECT_TRUE(by_fd[5]["listening"].asBool());

  // The broker holds the other end of that pipe, and nothing leaked to it but its own stdin.
  bool reads_the_pipe = false;
  const std::string proc_fd = "/proc/" + std::to_string(plugin_->pid()) + "/fd";
  for (const auto& entry : std::filesystem::directory_iterator(proc_fd)) {
    std::error_code ec;
    std::string target = std::filesystem::read_symlink(entry.path(), ec).string();
    int fd = std::atoi(entry.path().filename().c_str());
    if (target == pipe) reads_the_pipe = true;
    if (target == canary) {
      EXPECT_EQ(fd, 0) << "the broker kept a leaked descriptor: fd " << fd;
    }
  }
  EXPECT_TRUE(reads_the_pipe) << "the broker does not hold the frontend's log pipe";
}

// --- well-formed but hostile: typed answers, and the broker serves on ------------------------

// The kernel delivers SCM_CREDENTIALS only to a receiver with SO_PASSCRED, which the broker
// does not set: the request arrives without them and is answered like any other.
TEST_F(CompromisedFrontendTest, CredentialsAttachedToARequestAreDroppedByTheKernel) {
  Run("scm_credentials");
  ASSERT_TRUE(WaitForEvent("done", seconds(15)));
  auto replies = RepliesAfterGo();
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_TRUE(replies[0].has_status());
  ExpectCleanStopAfterServing();
}

TEST_F(CompromisedFrontendTest, DuplicateRequestIdsInFlightAreEachAnswered) {
  Run("duplicate_ids");
  ASSERT_TRUE(WaitForEvent("done", seconds(15)));
  std::multiset<int> kinds;
  for (const auto& r : RepliesAfterGo()) {
    EXPECT_EQ(r.id(), 424242u);
    kinds.insert(r.result_case());
    if (r.has_error()) {
      EXPECT_EQ(r.error().code(), static_cast<int>(Code::kInvalidArgument));
    }
  }
  EXPECT_EQ(kinds, (std::multiset<int>{ipc::Reply::kEncrypt, ipc::Reply::kEncrypt,
                                       ipc::Reply::kError, ipc::Reply::kStatus}));
  ExpectCleanStopAfterServing();
}

// Every reply that came back is a single typed refusal; replies the broker could not deliver
// to a frontend that was not reading were dropped, never queued without bound.
void ExpectBoundedFlood(const std::vector<ipc::Reply>& replies, int total) {
  std::set<uint64_t> ids;
  std::map<int, int> codes;
  for (const auto& r : replies) {
    EXPECT_TRUE(ids.insert(r.id()).second) << "id " << r.id() << " answered twice";
    ASSERT_TRUE(r.has_error()) << "an invalid plaintext was encrypted";
    ++codes[r.error().code()];
  }
  EXPECT_LE(static_cast<int>(ids.size()), total);
  EXPECT_GT(ids.size(), 0u) << "the broker stopped answering altogether";
  const int invalid = codes[static_cast<int>(Code::kInvalidArgument)];
  const int exhausted = codes[static_cast<int>(Code::kResourceExhausted)];
  EXPECT_EQ(invalid + exhausted, static_cast<int>(ids.size()))
      << "only INVALID_ARGUMENT or RESOURCE_EXHAUSTED";
  std::cout << "[ observed ] " << ids.size() << " of " << total << " answered: " << invalid
            << " INVALID_ARGUMENT, " << exhausted << " RESOURCE_EXHAUSTED\n";
}

// 10,000 Encrypt requests without reading a reply: invalid ones are refused on the main thread
// and never queued, undeliverable replies are dropped rather than blocking the broker, and its
// memory stays small.
TEST_F(CompromisedFrontendTest, FloodWithoutReadingStaysBounded) {
  const auto start = Clock::now();
  Run("flood", {"10000", "0"});
  ASSERT_TRUE(WaitForEvent("done", seconds(40)));
  // The broker never blocks on a frontend that does not read, so it keeps reading and the
  // flood is not expected to stall it (it used to, wedging the main loop).
  long hwm = ProcStatusKb(plugin_->pid(), "VmHWM");
  std::cout << "[ observed ] broker peak RSS " << hwm << " kB\n";
  EXPECT_GT(hwm, 0);
  if (kRssIsMeaningful) {
    EXPECT_LT(hwm, kMaxBrokerRssKb);
  }
  ExpectBoundedFlood(RepliesAfterGo(), 10000);
  ExpectCleanStopAfterServing();
  // Every refusal is logged, but at most 10 a second (SECURITY.md): the flood cannot flood the
  // operator's log. An interval of s seconds touches at most ceil(s) + 1 of the broker's
  // one-second windows.
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const int windows = static_cast<int>(std::ceil(elapsed)) + 1;
  const std::string logs = plugin_->Logs();
  int refusals_logged = 0;
  for (size_t at = logs.find("\"msg\":\"request refused\""); at != std::string::npos;
       at = logs.find("\"msg\":\"request refused\"", at + 1)) {
    ++refusals_logged;
  }
  std::cout << "[ observed ] " << refusals_logged << " refusals logged in " << elapsed << " s\n";
  EXPECT_GT(refusals_logged, 0) << "no refusal was logged at all";
  EXPECT_LE(refusals_logged, 10 * windows) << "refusal logs are not rate-limited";
}

// The queue bound itself, with requests it must accept: while Vault is slow, valid Encrypts
// arrive faster than they can be sent, the broker queues what its bound allows and answers
// every other one at once with RESOURCE_EXHAUSTED, and its memory stays small. (A refusal the
// frontend's full socket cannot take at that instant is dropped, never waited for: the broker
// does not block on its peer; so not every request need see its reply here.)
TEST_F(CompromisedFrontendTest, ValidFloodBeyondTheQueueIsRefusedResourceExhausted) {
  if (!vault_.is_sim()) GTEST_SKIP() << "slows Vault with the simulator's latency fault";
  vault_.sim().Latency(vault_.transit_mount() + "/encrypt/", 1500);
  Run("valid_flood", {"12000", "2500"});
  ASSERT_TRUE(WaitForEvent("done", seconds(70)));
  vault_.sim().Latency(vault_.transit_mount() + "/encrypt/", 0);
  const std::vector<Event> events = Events();
  const Event* flood = Find(events, "valid_flood");
  ASSERT_NE(flood, nullptr);
  const Json::Value& codes = flood->json["codes"];
  std::cout << "[ observed ] " << flood->json.toStyledString();
  EXPECT_EQ(flood->json["sent"].asInt(), 12000);
  EXPECT_LE(flood->json["answered"].asInt(), 12000) << "a request answered twice";
  EXPECT_GT(flood->json["answered"].asInt(), 6000) << "the broker stopped answering";
  const int exhausted = codes[std::to_string(static_cast<int>(Code::kResourceExhausted))].asInt();
  EXPECT_GT(exhausted, 0) << "the queue was never full: no RESOURCE_EXHAUSTED";
  for (const auto& name : codes.getMemberNames()) {
    int code = std::stoi(name);
    EXPECT_TRUE(code == 0 || code == static_cast<int>(Code::kResourceExhausted) ||
                code == static_cast<int>(Code::kDeadlineExceeded))
        << "unexpected code " << name;
  }
  long hwm = ProcStatusKb(plugin_->pid(), "VmHWM");
  std::cout << "[ observed ] broker peak RSS " << hwm << " kB\n";
  if (kRssIsMeaningful) {
    EXPECT_LT(hwm, kMaxBrokerRssKb);
  }
  ExpectCleanStopAfterServing();
}

// The same with every request as large as a frame may be: the bound must hold in bytes too.
TEST_F(CompromisedFrontendTest, FloodOfMaximalFramesStaysBounded) {
  Run("flood", {"10000", "65000"});
  ASSERT_TRUE(WaitForEvent("done", seconds(40)));
  long hwm = ProcStatusKb(plugin_->pid(), "VmHWM");
  std::cout << "[ observed ] broker peak RSS " << hwm << " kB\n";
  EXPECT_GT(hwm, 0);
  if (kRssIsMeaningful) {
    EXPECT_LT(hwm, kMaxBrokerRssKb) << "queued requests are bounded by count, not by bytes";
  }
  ExpectBoundedFlood(RepliesAfterGo(), 10000);
  ExpectCleanStopAfterServing();
}

TEST_F(CompromisedFrontendTest, PlaintextOutsideTheLimitsIsInvalidArgument) {
  Run("plaintext_sizes");  // 0 bytes, 513 bytes, and a frame of exactly 64 KiB
  ASSERT_TRUE(WaitForEvent("done", seconds(15)));
  auto replies = RepliesAfterGo();
  ASSERT_EQ(replies.size(), 3u);
  for (const auto& r : replies) {
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().code(), static_cast<int>(Code::kInvalidArgument)) << r.error().message();
  }
  if (vault_.is_sim()) {
    EXPECT_EQ(SimCount("encrypt"), 0) << "refused before any Vault call";
  }
  ExpectCleanStopAfterServing();
}

TEST_F(CompromisedFrontendTest, NonVaultCiphertextIsRefusedBeforeAnyVaultCall) {
  if (!vault_.is_sim()) GTEST_SKIP() << "counts Vault calls with the simulator's stats";
  // Any syntactically valid key_id will do: the ciphertext is what is wrong.
  Run("bad_ciphertext", {Hex("vault-kms-boundary-test-key-id")});
  ASSERT_TRUE(WaitForEvent("done", seconds(15)));
  auto replies = RepliesAfterGo();
  ASSERT_EQ(replies.size(), 8u);
  for (const auto& r : replies) {
    ASSERT_TRUE(r.has_error()) << "reply " << r.id();
    EXPECT_EQ(r.error().code(), static_cast<int>(Code::kInvalidArgument)) << r.error().message();
  }
  EXPECT_EQ(SimCount("decrypt"), 0) << "a non-Vault ciphertext reached Vault";
  ExpectCleanStopAfterServing();
}

// It IS a KMS: a compromised frontend can decrypt what Vault encrypted, and nothing more.
TEST_F(CompromisedFrontendTest, ValidCiphertextDecrypts) {
  const std::string plaintext = RandomBytes(32), round_trip = RandomBytes(32);
  Json::Value body;
  body["plaintext"] = Base64(plaintext);
  HttpResult r = vault_.http().Call("POST", vault_.transit_mount() + "/encrypt/" + vault_.key(),
                                    body, vault_.root_token());
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string ciphertext = r.json["data"]["ciphertext"].asString();
  Run("decrypt_valid", {Hex(ciphertext), Hex(round_trip)});
  ASSERT_TRUE(WaitForEvent("done", seconds(15)));
  std::map<uint64_t, ipc::Reply> by_id;
  for (const auto& reply : RepliesAfterGo()) by_id[reply.id()] = reply;
  ASSERT_EQ(by_id.count(1001), 1u);
  ASSERT_TRUE(by_id[1001].has_decrypt()) << by_id[1001].DebugString();
  EXPECT_EQ(by_id[1001].decrypt().plaintext(), plaintext);
  ASSERT_TRUE(by_id[1002].has_encrypt()) << by_id[1002].DebugString();
  EXPECT_EQ(by_id[1002].encrypt().ciphertext().rfind("vault:v1:", 0), 0u);
  ASSERT_TRUE(by_id[1003].has_decrypt()) << by_id[1003].DebugString();
  EXPECT_EQ(by_id[1003].decrypt().plaintext(), round_trip);
  if (vault_.is_sim()) {
    EXPECT_EQ(SimCount("decrypt"), 2) << "one Vault call per Decrypt";
  }
  ExpectCleanStopAfterServing();
}

// Every operation of the table once, including the deadline extremes and a uid that tries to
// forge a log line: each reply is one typed result (TearDown scans them for credentials).
TEST_F(CompromisedFrontendTest, EveryOperationGetsOneTypedResult) {
  Run("every_operation", {Hex(kForgedLog)});
  ASSERT_TRUE(WaitForEvent("done", seconds(15)));
  std::set<int> kinds;
  for (const auto& r : RepliesAfterGo()) kinds.insert(r.result_case());
  EXPECT_EQ(kinds, (std::set<int>{ipc::Reply::kError, ipc::Reply::kEncrypt, ipc::Reply::kDecrypt,
                                  ipc::Reply::kStatus, ipc::Reply::kStats}));
  ExpectCleanStopAfterServing();
}

}  // namespace
}  // namespace vkms::testing
