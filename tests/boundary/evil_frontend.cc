// evil-frontend: a stand-in for a compromised vault-kms-frontend. The boundary test copies the
// broker into a temporary directory and installs this program beside it as vault-kms-frontend,
// so the unmodified broker fork+execs it with the IPC channel at fd 3 and the listening socket
// at fd 4, exactly as it would the real one.
//
// The broker gives it an empty environment and fixed flags, so its instructions come from
// files next to its own executable: `scenario` (first line: a scenario name; further lines:
// its arguments, binary ones hex-encoded) and its observations go to `result` (created by the
// test, writable by the frontend user), one JSON object per line:
//   {"ev":"ready","pid":N}              the broker answered Status with healthz "ok"
//   {"ev":"go"}                         the test connected to the KMS socket: attack now
//   {"ev":"sent","what":...,"mono_ns":} the hostile datagram left (CLOCK_MONOTONIC)
//   {"ev":"recv","len":N,"hex":...}     every datagram the broker ever sent, raw
//   {"ev":"stalled","sent":N}           a flood could not send any more for 300 ms
//   {"ev":"done"}                       the well-formed scenario finished
//   {"ev":"shutdown"} / {"ev":"eof"}    how the channel ended
//   {"ev":"fail","why":...}             this program could not play its part
// It judges nothing itself: the test decodes the raw replies and asserts on them.
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "broker.pb.h"
#include "shared/ipc.h"
#include "tests/boundary/hex.h"

namespace {

using vkms::ipc::kMaxFrame;
using vkms::ipc::Reply;
using vkms::ipc::Request;
using vkms::testing::Hex;
using vkms::testing::Unhex;

constexpr int kIpc = vkms::ipc::kFrontendIpcFd;
constexpr int kListen = vkms::ipc::kFrontendListenFd;
constexpr uint32_t kTimeoutMs = 10000;

int g_result = -1;
uint64_t g_next_id = 1;

int64_t MonoNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// One write per line: the file is opened O_APPEND, so a line is never torn.
void Emit(const std::string& json) {
  std::string line = json + "\n";
  if (g_result >= 0) (void)!write(g_result, line.data(), line.size());
}

[[noreturn]] void Fail(const std::string& why) {
  Emit(R"({"ev":"fail","why":")" + why + R"("})");
  _exit(1);
}

void EmitSent(const std::string& what, size_t bytes) {
  Emit(R"({"ev":"sent","what":")" + what + R"(","bytes":)" + std::to_string(bytes) +
       R"(,"mono_ns":)" + std::to_string(MonoNs()) + "}");
}

std::string SelfDir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

// --- sending -------------------------------------------------------------------------------

// Sends raw bytes as one datagram, with no size check: the point is to break the rules.
bool SendRaw(const std::string& bytes, int flags = 0) {
  for (;;) {
    ssize_t n = send(kIpc, bytes.data(), bytes.size(), flags | MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(bytes.size())) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

Request NewRequest() {
  Request req;
  req.set_id(g_next_id++);
  req.set_timeout_ms(kTimeoutMs);
  return req;
}

void SendRequest(const Request& req) {
  if (!SendRaw(req.SerializeAsString())) Fail(std::string("send: ") + strerror(errno));
}

// --- receiving -----------------------------------------------------------------------------

enum class Got { kReply, kUndecodable, kEof, kTimeout };

// Waits up to timeout_ms (-1: forever) for one datagram and records it raw before anything
// else, so the test sees exactly what crossed the boundary.
Got Receive(int timeout_ms, Reply* reply) {
  struct pollfd p = {kIpc, POLLIN, 0};
  int r;
  do {
    r = poll(&p, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return Got::kTimeout;
  static std::vector<char> buf(kMaxFrame + 1);
  ssize_t n;
  do {
    n = recv(kIpc, buf.data(), buf.size(), MSG_TRUNC);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno != ECONNRESET) Fail(std::string("recv: ") + strerror(errno));
  if (n <= 0) {
    Emit(R"({"ev":"eof","mono_ns":)" + std::to_string(MonoNs()) + "}");
    return Got::kEof;
  }
  size_t kept = std::min(static_cast<size_t>(n), buf.size());
  std::string bytes(buf.data(), kept);
  Emit(R"({"ev":"recv","len":)" + std::to_string(n) + R"(,"hex":")" + Hex(bytes) + R"("})");
  std::string error;
  if (vkms::ipc::Decode(bytes.data(), bytes.size(), reply, &error) != vkms::ipc::RecvStatus::kOk) {
    return Got::kUndecodable;
  }
  return Got::kReply;
}

// Reads until every id in `want` has been answered as often as asked; other replies are only
// recorded. Returns the replies by id, in arrival order.
std::multimap<uint64_t, Reply> Collect(std::map<uint64_t, int> want, int timeout_ms = 15000) {
  std::multimap<uint64_t, Reply> got;
  int64_t until = MonoNs() + static_cast<int64_t>(timeout_ms) * 1000000;
  while (!want.empty()) {
    int left = static_cast<int>((until - MonoNs()) / 1000000);
    if (left <= 0) Fail("timed out waiting for replies");
    Reply reply;
    switch (Receive(left, &reply)) {
      case Got::kReply:
        break;
      case Got::kUndecodable:
        continue;
      case Got::kEof:
        Fail("the broker closed the channel during a well-formed scenario");
      case Got::kTimeout:
        continue;
    }
    auto it = want.find(reply.id());
    if (it == want.end()) continue;
    got.emplace(reply.id(), reply);
    if (--it->second == 0) want.erase(it);
  }
  return got;
}

Reply Call(const Request& req) {
  SendRequest(req);
  return Collect({{req.id(), 1}}).begin()->second;
}

// --- phases every scenario shares ----------------------------------------------------------

// Like the real frontend, act only once the broker has logged in and read the key metadata.
void WaitUntilBrokerReady() {
  int64_t until = MonoNs() + 20LL * 1000000000;
  while (MonoNs() < until) {
    Request req = NewRequest();
    req.mutable_status();
    Reply reply = Call(req);
    if (reply.has_status() && reply.status().healthz() == "ok") {
      Emit(R"({"ev":"ready","pid":)" + std::to_string(getpid()) + "}");
      return;
    }
    usleep(50 * 1000);
  }
  Fail("the broker never became healthy");
}

// PluginProcess::Start() waits for this log line; the test then connects to the KMS socket,
// which is the signal to attack (so the broker cannot die before the harness sees it start).
void AnnounceAndWaitForGo() {
  static const char kLine[] =
      "{\"level\":\"info\",\"proc\":\"evil-frontend\",\"msg\":\"frontend serving\"}\n";
  (void)!write(STDERR_FILENO, kLine, sizeof kLine - 1);
  struct pollfd p = {kListen, POLLIN, 0};
  while (poll(&p, 1, -1) < 0 && errno == EINTR) {
  }
  int conn = accept4(kListen, nullptr, nullptr, SOCK_CLOEXEC);
  if (conn >= 0) close(conn);
  Emit(R"({"ev":"go"})");
}

// After the scenario: keep recording whatever the broker sends until it ends the channel.
[[noreturn]] void RecordUntilTheEnd() {
  for (;;) {
    Reply reply;
    switch (Receive(-1, &reply)) {
      case Got::kEof:
        _exit(0);
      case Got::kReply:
        if (reply.id() == 0 && reply.has_shutdown()) {
          Emit(R"({"ev":"shutdown"})");
          _exit(0);
        }
        break;
      default:
        break;
    }
  }
}

// Stays connected but never reads again: what a frontend that wants to wedge the broker does.
[[noreturn]] void NeverReadAgain() {
  for (;;) pause();
}

// --- hostile datagrams ---------------------------------------------------------------------

// A Request whose only fault is its size: an Encrypt padded to exactly `frame` bytes.
std::string RequestOfSize(size_t frame) {
  Request req = NewRequest();
  auto len = static_cast<long long>(frame);
  // Length prefixes are varints that change width with the payload: converge, don't compute.
  for (int i = 0; i < 8; ++i) {
    req.mutable_encrypt()->set_plaintext(std::string(static_cast<size_t>(len), 'p'));
    auto size = static_cast<long long>(req.ByteSizeLong());
    if (size == static_cast<long long>(frame)) return req.SerializeAsString();
    len += static_cast<long long>(frame) - size;
  }
  Fail("cannot build a frame of " + std::to_string(frame) + " bytes");
}

std::string StatusRequestBytes() {
  Request req = NewRequest();
  req.mutable_status();
  return req.SerializeAsString();
}

void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// Appends a length-delimited field, by hand: with a number the schema lacks, if need be.
std::string WithField(std::string bytes, int field, const std::string& payload) {
  AppendVarint(&bytes, (static_cast<uint64_t>(field) << 3) | 2);
  AppendVarint(&bytes, payload.size());
  return bytes + payload;
}

void SendWithFds(const std::string& bytes, int count) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) Fail("pipe");
  std::vector<int> fds(static_cast<size_t>(count), pipefd[1]);
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  struct iovec iov = {const_cast<char*>(bytes.data()), bytes.size()};
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control.data();
  mh.msg_controllen = control.size();
  struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  if (sendmsg(kIpc, &mh, MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size())) {
    Fail(std::string("sendmsg SCM_RIGHTS: ") + strerror(errno));
  }
  EmitSent("scm_rights", bytes.size());
}

void SendWithCredentials(const std::string& bytes) {
  struct ucred cred = {getpid(), getuid(), getgid()};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof cred)] = {};
  struct iovec iov = {const_cast<char*>(bytes.data()), bytes.size()};
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_CREDENTIALS;
  c->cmsg_len = CMSG_LEN(sizeof cred);
  memcpy(CMSG_DATA(c), &cred, sizeof cred);
  if (sendmsg(kIpc, &mh, MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size())) {
    Fail(std::string("sendmsg SCM_CREDENTIALS: ") + strerror(errno));
  }
  EmitSent("scm_credentials", bytes.size());
}

void SendHostile(const std::string& what, const std::string& bytes) {
  if (!SendRaw(bytes)) Fail("send " + what + ": " + strerror(errno));
  EmitSent(what, bytes.size());
}

// --- floods --------------------------------------------------------------------------------

struct FloodResult {
  int sent = 0;
  std::set<uint64_t> ids;
};

// Sends up to `total` Encrypt requests with `plaintext_size`-byte plaintexts without reading a
// single reply, until done or the channel stays full for 300 ms (the broker stopped reading).
FloodResult FloodWithoutReading(int total, size_t plaintext_size) {
  FloodResult out;
  Request req = NewRequest();
  req.set_timeout_ms(60000);  // no deadline may expire while requests wait in the queue
  req.mutable_encrypt()->set_plaintext(std::string(plaintext_size, 'f'));
  while (out.sent < total) {
    req.set_id(g_next_id++);
    std::string bytes = req.SerializeAsString();
    for (;;) {
      ssize_t n = send(kIpc, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n == static_cast<ssize_t>(bytes.size())) break;
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        struct pollfd p = {kIpc, POLLOUT, 0};
        if (poll(&p, 1, 300) == 0) {
          Emit(R"({"ev":"stalled","sent":)" + std::to_string(out.sent) + "}");
          --g_next_id;
          return out;
        }
        continue;
      }
      Fail(std::string("flood send: ") + strerror(errno));
    }
    out.ids.insert(req.id());
    ++out.sent;
  }
  return out;
}

// The rest of the flood, now reading. Replies the broker could not deliver while this frontend
// was not reading are gone (the broker never blocks on a peer that does not read; a real
// caller would see DEADLINE_EXCEEDED), so read until every request is sent and the channel
// has been quiet for 2 s, and report how many came back.
void FinishFlood(FloodResult flood, int total, size_t plaintext_size) {
  Request req = NewRequest();
  req.set_timeout_ms(60000);
  req.mutable_encrypt()->set_plaintext(std::string(plaintext_size, 'f'));
  --g_next_id;
  int64_t until = MonoNs() + 30LL * 1000000000;
  int64_t quiet_since = MonoNs();
  size_t answered = 0;
  while (flood.sent < total || MonoNs() - quiet_since < 2LL * 1000000000) {
    if (MonoNs() > until) Fail("flood did not finish within 30 s");
    short events = POLLIN;
    if (flood.sent < total) events |= POLLOUT;
    struct pollfd p = {kIpc, events, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    if (p.revents & POLLIN) {
      Reply reply;
      Got got = Receive(0, &reply);
      if (got == Got::kEof) Fail("the broker closed the channel during the flood");
      if (got == Got::kReply) {
        ++answered;
        quiet_since = MonoNs();
      }
    }
    if ((p.revents & POLLOUT) && flood.sent < total) {
      req.set_id(g_next_id++);
      if (SendRaw(req.SerializeAsString(), MSG_DONTWAIT)) {
        ++flood.sent;
        quiet_since = MonoNs();
      } else {
        --g_next_id;
      }
    }
  }
  Emit(R"({"ev":"flood","sent":)" + std::to_string(flood.sent) + R"(,"answered":)" +
       std::to_string(answered) + "}");
}

// Valid Encrypts as fast as the channel takes them, reading every reply as it comes, so that
// none is lost to a full socket: what the broker cannot queue it must refuse, one typed reply
// per request. Each request carries timeout_ms, so the queue drains once Vault is slow.
void FloodReading(int total, uint32_t timeout_ms) {
  Request req = NewRequest();
  req.set_timeout_ms(timeout_ms);
  req.mutable_encrypt()->set_plaintext(std::string(32, 'v'));
  --g_next_id;
  int sent = 0;
  size_t answered = 0;
  std::map<int, int> codes;
  int64_t until = MonoNs() + 60LL * 1000000000;
  int64_t quiet_since = MonoNs();
  while (sent < total || MonoNs() - quiet_since < 3LL * 1000000000) {
    if (MonoNs() > until) Fail("valid flood did not finish within 60 s");
    short events = POLLIN;
    if (sent < total) events |= POLLOUT;
    struct pollfd p = {kIpc, events, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    if (p.revents & POLLIN) {
      static std::vector<char> buf(kMaxFrame + 1);
      ssize_t n = recv(kIpc, buf.data(), buf.size(), 0);
      if (n <= 0) Fail("the broker closed the channel during the flood");
      Reply reply;
      std::string error;
      if (vkms::ipc::Decode(buf.data(), static_cast<size_t>(n), &reply, &error) ==
          vkms::ipc::RecvStatus::kOk) {
        ++answered;
        ++codes[reply.has_error() ? reply.error().code() : 0];
        quiet_since = MonoNs();
      }
    }
    if ((p.revents & POLLOUT) && sent < total) {
      req.set_id(g_next_id++);
      if (SendRaw(req.SerializeAsString(), MSG_DONTWAIT)) {
        ++sent;
        quiet_since = MonoNs();
      } else {
        --g_next_id;
      }
    }
  }
  std::string by_code;
  for (const auto& [code, n] : codes) {
    by_code += (by_code.empty() ? "" : ",") + std::string("\"") + std::to_string(code) +
               "\":" + std::to_string(n);
  }
  Emit(R"({"ev":"valid_flood","sent":)" + std::to_string(sent) + R"(,"answered":)" +
       std::to_string(answered) + R"(,"codes":{)" + by_code + "}}");
}

// --- the scenarios -------------------------------------------------------------------------

using Args = std::vector<std::string>;

// Each malformed scenario sends one datagram; the broker must log, close and exit.
const std::map<std::string, std::function<void(const Args&)>>& ProtocolErrors() {
  static const std::map<std::string, std::function<void(const Args&)>> table = {
      {"oversize", [](const Args&) { SendHostile("oversize", RequestOfSize(100 * 1024)); }},
      {"max_plus_one",
       [](const Args&) { SendHostile("max_plus_one", RequestOfSize(kMaxFrame + 1)); }},
      {"truncated",
       [](const Args& a) {
         Request req = NewRequest();
         req.mutable_decrypt()->set_ciphertext("vault:v1:" + a.at(0) + std::string(200, 'A'));
         std::string bytes = req.SerializeAsString();
         SendHostile("truncated", bytes.substr(0, bytes.size() / 2));
       }},
      {"garbage",
       [](const Args&) {
         std::mt19937 rng(20240601);  // fixed: a failure reproduces byte for byte
         std::string bytes(4096, '\0');
         for (char& c : bytes) c = static_cast<char>(rng());
         SendHostile("garbage", bytes);
       }},
      {"unknown_field",
       [](const Args& a) {
         SendHostile("unknown_field", WithField(StatusRequestBytes(), 99, a.at(0)));
       }},
      {"unknown_nested_field",
       [](const Args& a) {
         // Request.encrypt (10) holding plaintext "x" and an unknown field 7.
         std::string inner = WithField(WithField("", 1, "x"), 7, a.at(0));
         SendHostile("unknown_nested_field",
                     WithField(NewRequest().SerializeAsString(), 10, inner));
       }},
      {"no_op", [](const Args&) { SendHostile("no_op", NewRequest().SerializeAsString()); }},
      {"id_zero",
       [](const Args&) {
         Request req = NewRequest();
         req.set_id(0);
         req.mutable_status();
         SendHostile("id_zero", req.SerializeAsString());
       }},
      {"timeout_zero",
       [](const Args&) {
         Request req = NewRequest();
         req.set_timeout_ms(0);
         req.mutable_status();
         SendHostile("timeout_zero", req.SerializeAsString());
       }},
      {"timeout_over_max",
       [](const Args&) {
         Request req = NewRequest();
         req.set_timeout_ms(60001);
         req.mutable_status();
         SendHostile("timeout_over_max", req.SerializeAsString());
       }},
      {"scm_rights", [](const Args&) { SendWithFds(StatusRequestBytes(), 1); }},
      // More descriptors than the broker's control buffer holds: the kernel truncates.
      {"scm_rights_many", [](const Args&) { SendWithFds(StatusRequestBytes(), 16); }},
      {"reply_sent_to_broker",
       [](const Args&) {
         Reply reply;
         reply.set_id(0);
         reply.mutable_shutdown();
         SendHostile("reply_sent_to_broker", reply.SerializeAsString());
       }},
      {"empty_datagram", [](const Args&) { SendHostile("empty_datagram", std::string()); }},
  };
  return table;
}

// Well-formed but hostile: the broker must keep serving and answer each with a typed result.
const std::map<std::string, std::function<void(const Args&)>>& WrongState() {
  static const std::map<std::string, std::function<void(const Args&)>> table = {
      {"scm_credentials",
       [](const Args&) {
         Request req = NewRequest();
         req.mutable_status();
         SendWithCredentials(req.SerializeAsString());
         Collect({{req.id(), 1}});
       }},
      {"duplicate_ids",
       [](const Args&) {
         constexpr uint64_t kId = 424242;
         std::vector<Request> reqs(4, NewRequest());
         reqs[0].mutable_encrypt()->set_plaintext(std::string(32, 'a'));
         reqs[1].mutable_encrypt()->set_plaintext(std::string(32, 'b'));
         reqs[2].mutable_decrypt()->set_ciphertext("not vault ciphertext");
         reqs[3].mutable_status();
         for (auto& r : reqs) {
           r.set_id(kId);
           SendRequest(r);  // all four in flight before reading any reply
         }
         Collect({{kId, 4}});
       }},
      {"valid_flood",
       [](const Args& a) {
         FloodReading(std::stoi(a.at(0)), static_cast<uint32_t>(std::stoul(a.at(1))));
       }},
      {"flood",
       [](const Args& a) {
         int total = std::stoi(a.at(0));
         size_t size = std::stoul(a.at(1));
         FinishFlood(FloodWithoutReading(total, size), total, size);
       }},
      {"plaintext_sizes",
       [](const Args&) {
         std::vector<Request> reqs;
         for (size_t size : {size_t{0}, size_t{513}}) {
           Request r = NewRequest();
           r.mutable_encrypt()->set_plaintext(std::string(size, 'x'));
           reqs.push_back(r);
         }
         std::map<uint64_t, int> want;
         for (const auto& r : reqs) {
           SendRequest(r);
           want[r.id()] = 1;
         }
         // The largest frame the broker accepts: it must parse and then refuse the plaintext.
         Request whole;
         std::string bytes = RequestOfSize(kMaxFrame);
         whole.ParseFromString(bytes);
         SendHostile("max_frame", bytes);
         want[whole.id()] = 1;
         Collect(want);
       }},
      {"bad_ciphertext",
       [](const Args& a) {
         const std::string key_id = Unhex(a.at(0));
         const std::string valid_shape = "vault:v1:" + std::string(60, 'A');
         std::vector<std::pair<std::string, std::string>> cases = {
             {"hello world", key_id},
             {"", key_id},
             {"vault:v1:" + std::string(60, '*'), key_id},  // not base64
             {"vault:v1:AAAAAAAA", key_id},                 // too short for GCM
             {"vault:v99999999999999999999999:" + std::string(60, 'A'), key_id},
             {"vault:v1:" + std::string(60000, 'A'), key_id},      // oversize
             {valid_shape, std::string(1025, 'k')},                // oversize key_id
             {"vault:v1:" + std::string(59, 'A') + "\n", key_id},  // trailing junk
         };
         std::map<uint64_t, int> want;
         for (const auto& [ct, kid] : cases) {
           Request r = NewRequest();
           r.mutable_decrypt()->set_ciphertext(ct);
           r.mutable_decrypt()->set_key_id(kid);
           SendRequest(r);
           want[r.id()] = 1;
         }
         Collect(want);
       }},
      {"decrypt_valid",
       [](const Args& a) {
         const std::string ciphertext = Unhex(a.at(0));
         const std::string round_trip = Unhex(a.at(1));
         Request st = NewRequest();
         st.mutable_status();
         std::string key_id = Call(st).status().key_id();
         Request d = NewRequest();
         d.set_id(1001);
         d.mutable_decrypt()->set_ciphertext(ciphertext);
         d.mutable_decrypt()->set_key_id(key_id);
         Call(d);
         Request e = NewRequest();
         e.set_id(1002);
         e.mutable_encrypt()->set_plaintext(round_trip);
         Reply enc = Call(e);
         Request d2 = NewRequest();
         d2.set_id(1003);
         d2.mutable_decrypt()->set_ciphertext(enc.encrypt().ciphertext());
         d2.mutable_decrypt()->set_key_id(enc.encrypt().key_id());
         Call(d2);
       }},
      {"every_operation",
       [](const Args& a) {
         std::vector<Request> reqs;
         Request r = NewRequest();
         r.mutable_status();
         r.set_timeout_ms(60000);  // the largest accepted deadline
         reqs.push_back(r);
         r = NewRequest();
         r.set_timeout_ms(1);  // the smallest: it may expire, and must say so
         r.mutable_encrypt()->set_plaintext(std::string(32, 's'));
         reqs.push_back(r);
         r = NewRequest();
         r.mutable_stats();
         reqs.push_back(r);
         r = NewRequest();
         r.mutable_encrypt()->set_plaintext(std::string(32, 'e'));
         // A uid that tries to forge a log line: the broker must log a placeholder instead.
         r.set_uid(Unhex(a.at(0)));
         reqs.push_back(r);
         r = NewRequest();
         r.mutable_encrypt();
         reqs.push_back(r);
         std::map<uint64_t, int> want;
         for (const auto& q : reqs) {
           SendRequest(q);
           want[q.id()] = 1;
         }
         auto got = Collect(want);
         const Reply& enc = got.find(reqs[3].id())->second;
         Request d = NewRequest();
         d.mutable_decrypt()->set_ciphertext(enc.encrypt().ciphertext());
         d.mutable_decrypt()->set_key_id(enc.encrypt().key_id());
         d.set_uid(Unhex(a.at(0)));
         Call(d);
       }},
  };
  return table;
}

// Every descriptor this process was started with, as the broker left them at exec: what it is
// (readlink of /proc/self/fd/N) and, for sockets, type, family and whether it listens.
std::string DescribeInheritedFds() {
  std::string out = R"({"ev":"fds","fds":[)";
  bool first = true;
  for (int fd = 0; fd < 1024; ++fd) {
    if (fcntl(fd, F_GETFD) < 0) continue;
    char buf[PATH_MAX];
    ssize_t n = readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), buf, sizeof buf - 1);
    std::string what = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
    int type = 0, listening = 0;
    socklen_t len = sizeof type;
    struct sockaddr_storage ss = {};
    socklen_t sslen = sizeof ss;
    bool sock = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
    len = sizeof listening;
    if (sock) {
      getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
      getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &sslen);
    }
    out += std::string(first ? "" : ",") + R"({"fd":)" + std::to_string(fd) + R"(,"what":")" +
           what + R"(","type":)" + std::to_string(sock ? type : -1) + R"(,"family":)" +
           std::to_string(sock ? ss.ss_family : -1) + R"(,"listening":)" +
           (listening ? "true" : "false") + "}";
    first = false;
  }
  return out + "]}";
}

// Lines a compromised frontend might write to the operator's log to mislead: a forged broker
// line, raw terminal escapes, an endless line, and a flood.
void ForgeLogLines() {
  auto put = [](const std::string& line) { (void)!write(STDERR_FILENO, line.data(), line.size()); };
  put(R"({"ts":"2026-01-01T00:00:00.000Z","level":"info","proc":"vault-kms-broker",)"
      R"("msg":"broker serving FORGED-BY-FRONTEND"})"
      "\n");
  put("\x1b[2J\x1b[31mFORGED-RAW-ESCAPES\x07\n");
  put(std::string(10000, 'A') + "TAIL-OF-A-LONG-LINE\n");
  // As long, but one of the frontend's own JSON lines: only the cut keeps it short.
  put("{\"level\":\"info\",\"msg\":\"" + std::string(10000, 'B') + "TAIL-OF-A-LONG-JSON-LINE\"}\n");
  std::string flood;
  for (int i = 0; i < 3000; ++i)
    flood += "{\"level\":\"info\",\"msg\":\"flood " + std::to_string(i) + "\"}\n";
  put(flood);
  // A last line: the broker must still relay it, so it reads on after the flood.
  put("{\"level\":\"info\",\"msg\":\"after the flood\"}\n");
}

}  // namespace

int main() {
  const std::string fds = DescribeInheritedFds();  // before this process opens anything
  const std::string dir = SelfDir();
  g_result = open((dir + "/result").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  std::ifstream in(dir + "/scenario");
  std::string name, line;
  std::getline(in, name);
  Args args;
  while (std::getline(in, line)) args.push_back(line);
  if (g_result < 0) Fail("cannot open the result file");
  Emit(fds);

  WaitUntilBrokerReady();
  AnnounceAndWaitForGo();

  if (auto it = ProtocolErrors().find(name); it != ProtocolErrors().end()) {
    it->second(args);
    RecordUntilTheEnd();
  }
  if (auto it = WrongState().find(name); it != WrongState().end()) {
    it->second(args);
    Emit(R"({"ev":"done"})");
    RecordUntilTheEnd();
  }
  // Wedges: fill the broker's replies towards us, then never read again.
  if (name == "wedge_then_garbage") {
    FloodWithoutReading(std::stoi(args.at(0)), 0);
    SendHostile("garbage", std::string("\xff\xff\xff\xff", 4));
    NeverReadAgain();
  }
  // The broker exits on the protocol error; this frontend would happily stay behind.
  if (name == "garbage_then_stay") {
    SendHostile("garbage", std::string("\xff\xff\xff\xff", 4));
    // Ignore the closed channel and stay, as a compromised frontend could; then see what is
    // left to it: the broker's end must be gone for good.
    Reply ignored;
    while (Receive(10000, &ignored) == Got::kReply) {
    }
    Request req = NewRequest();
    req.mutable_status();
    bool sent = SendRaw(req.SerializeAsString());
    Emit(R"({"ev":"after_broker","send_ok":)" + std::string(sent ? "true" : "false") +
         R"(,"errno":")" + std::string(sent ? "" : strerrorname_np(errno)) + R"("})");
    NeverReadAgain();
  }
  if (name == "idle") {
    Emit(R"({"ev":"done"})");
    NeverReadAgain();
  }
  if (name == "forge_logs") {
    ForgeLogLines();
    Emit(R"({"ev":"done"})");
    NeverReadAgain();
  }
  if (name == "wedge_then_wait") {
    FloodWithoutReading(std::stoi(args.at(0)), 0);
    Emit(R"({"ev":"done"})");
    NeverReadAgain();
  }
  Fail("unknown scenario " + name);
}
