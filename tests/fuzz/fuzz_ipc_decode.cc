// The IPC boundary from both sides. As the broker: bytes -> ipc::Decode into ipc::Request ->
// Broker::Dispatch, with a VaultBackend that was never started (its address unroutable) and no
// room for Vault calls (no call slot, no queue), so every accepted Vault operation is answered
// at once with RESOURCE_EXHAUSTED and every refused one with its validation error; the replies are
// read back from the other end of the socketpair and checked. As the frontend: the same bytes
// decoded into ipc::Reply. For both, a frame that decodes has no unknown fields and
// re-serialises to a frame that decodes to the same message.
#include <google/protobuf/stubs/logging.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "broker.pb.h"
#include "broker/broker.h"
#include "broker/event_loop.h"
#include "broker/vault/backend.h"
#include "shared/ipc.h"
#include "shared/log.h"
#include "shared/status.h"
#include "shared/validate.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace ipc = vkms::ipc;
namespace validate = vkms::validate;
using vkms::Code;
using vkms::broker::Broker;

struct Harness {
  int broker_fd = -1;
  int frontend_fd = -1;
  vkms::broker::VaultBackend* backend = nullptr;
  vkms::broker::EventLoop* loop = nullptr;
  Broker* broker = nullptr;
};

// Process-lifetime objects, built once: deliberately never destroyed.
Harness* g_harness = nullptr;

// What Broker::Dispatch must do with a decoded request, derived from the schema and
// shared/validate.h rather than from broker.cc.
struct Expected {
  bool accepted = false;  // false: protocol error, no reply
  Code code = Code::kOk;  // the reply's error code; kOk: a Status or Stats answer
};

Expected Model(const ipc::Request& req) {
  Expected e;
  if (req.id() == 0 || req.timeout_ms() == 0 || req.timeout_ms() > Broker::kMaxTimeoutMs ||
      req.uid().size() > 128 || req.op_case() == ipc::Request::OP_NOT_SET) {
    return e;
  }
  e.accepted = true;
  vkms::Status check;
  if (req.has_encrypt()) {
    check = validate::Plaintext(req.encrypt().plaintext());
  } else if (req.has_decrypt()) {
    uint64_t version = 0;
    check = validate::VaultCiphertext(req.decrypt().ciphertext(), &version);
    if (check.ok()) check = validate::KeyId(req.decrypt().key_id());
  } else {
    return e;
  }
  // There is no room for Vault work: a request that passes its checks is refused as overload.
  e.code = check.ok() ? Code::kResourceExhausted : check.code();
  return e;
}

std::vector<std::string> DrainReplies(int fd) {
  std::vector<std::string> frames;
  std::vector<char> buf(ipc::kMaxFrame + 1);
  for (;;) {
    ssize_t n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n <= 0) break;
    frames.emplace_back(buf.data(), static_cast<size_t>(n));
  }
  return frames;
}

// Decode OK => no unknown fields => serialise => decode => the same message.
template <typename Message>
bool CheckRoundTrip(const uint8_t* data, size_t size, Message* msg) {
  std::string error;
  ipc::RecvStatus st = ipc::Decode(data, size, msg, &error);
  FUZZ_CHECK(st == ipc::RecvStatus::kOk || st == ipc::RecvStatus::kProtocolError);
  if (st != ipc::RecvStatus::kOk) {
    FUZZ_CHECK(!error.empty());
    // The error names the problem, never echoes the bytes.
    FUZZ_CHECK(error.size() < 100);
    return false;
  }
  FUZZ_CHECK(size > 0 && size <= ipc::kMaxFrame);
  FUZZ_CHECK(!ipc::HasUnknownFields(*msg));
  std::string again;
  FUZZ_CHECK(msg->SerializeToString(&again));
  Message second;
  if (again.empty()) {
    // A frame of default values only (e.g. all fields zero) serialises to nothing, which the
    // channel does not carry; Send refuses it.
    FUZZ_CHECK(msg->ByteSizeLong() == 0);
    return true;
  }
  FUZZ_CHECK(ipc::Decode(again.data(), again.size(), &second, &error) == ipc::RecvStatus::kOk);
  std::string third;
  FUZZ_CHECK(second.SerializeToString(&third));
  FUZZ_CHECK(third == again);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  vkms::log::Init("broker", "error");
  // libprotobuf logs every string field with invalid UTF-8 it refuses; that is expected here.
  google::protobuf::SetLogHandler(nullptr);
  int fds[2];
  FUZZ_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0);
  vkms::broker::VaultConfig config;
  config.addrs = {"https://127.0.0.1:1"};
  config.auth_method = vkms::broker::AuthMethod::kToken;
  config.token_file = "/nonexistent/vault-kms-fuzz-token";
  g_harness = new Harness;
  g_harness->broker_fd = fds[0];
  g_harness->frontend_fd = fds[1];
  g_harness->backend = new vkms::broker::VaultBackend(config);  // never Start()ed
  g_harness->loop = new vkms::broker::EventLoop();  // never run: nothing is ever sent to Vault
  Broker::Limits none;
  none.max_in_flight = 0;
  none.max_queued = 0;
  g_harness->broker = new Broker(g_harness->backend, g_harness->loop, g_harness->broker_fd, none);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ipc::Reply reply;
  CheckRoundTrip(data, size, &reply);

  ipc::Request req;
  if (!CheckRoundTrip(data, size, &req)) return 0;

  Expected want = Model(req);
  std::string error;
  bool accepted = g_harness->broker->Dispatch(req, &error);
  std::vector<std::string> frames = DrainReplies(g_harness->frontend_fd);
  FUZZ_CHECK(accepted == want.accepted);
  if (!accepted) {
    FUZZ_CHECK(!error.empty());
    FUZZ_CHECK(frames.empty());
    return 0;
  }
  // Exactly one reply, for this request, that the frontend can decode.
  FUZZ_CHECK(frames.size() == 1);
  ipc::Reply got;
  FUZZ_CHECK(ipc::Decode(frames[0].data(), frames[0].size(), &got, &error) == ipc::RecvStatus::kOk);
  FUZZ_CHECK(got.id() == req.id());
  if (want.code != Code::kOk) {
    FUZZ_CHECK(got.has_error());
    FUZZ_CHECK(got.error().code() == static_cast<int32_t>(want.code));
    FUZZ_CHECK(!got.error().message().empty());
  } else if (req.has_status()) {
    // Never started: no key metadata, so not healthy and no key_id.
    FUZZ_CHECK(got.has_status());
    FUZZ_CHECK(got.status().healthz() != "ok" && !got.status().healthz().empty());
    FUZZ_CHECK(got.status().key_id().empty() && !got.status().ready());
  } else {
    FUZZ_CHECK(req.has_stats());
    FUZZ_CHECK(got.has_stats() && got.stats().requests_total() >= 1);
  }
  return 0;
}
