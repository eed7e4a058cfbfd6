// The frontend's stubs for the broker's operations: BrokerClient::<Op> pairs with
// Broker::Handle<Op> in broker/broker.cc. Thread-safe. Encrypt, Decrypt and Status are
// asynchronous: the request goes out on the caller's thread and `done` runs exactly once, on
// the reader thread, with the broker's reply, or when the call's deadline passes, or when the
// broker is gone; so no thread waits for the broker while it talks to Vault. Stats and
// GetStatus (the HTTP probes and /metrics) wait for their reply.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "broker.pb.h"
#include "shared/status.h"

namespace vkms::frontend {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

struct BrokerStatus {
  std::string healthz;
  std::string key_id;
  bool ready = false;
  std::string ready_reason;
  uint64_t key_version = 0;
};

class BrokerClient {
 public:
  explicit BrokerClient(int ipc_fd) : fd_(ipc_fd) {}
  ~BrokerClient();

  // Starts the reply reader. on_gone runs (on the reader thread) when the broker closes the
  // channel or sends something malformed; the frontend cannot work without it. on_shutdown
  // runs when the broker asks the frontend to stop (ipc::Shutdown). after_wakeup runs on the
  // reader thread each time it has answered what was waiting, and at least every 100 ms.
  void Start(std::function<void(const std::string& why)> on_gone, std::function<void()> on_shutdown,
             std::function<void()> after_wakeup);

  // `reply` is the broker's answer when the status is OK, else null.
  using Done = std::function<void(const Status& status, ipc::Reply* reply)>;

  void Encrypt(
      std::string_view plaintext, std::string_view uid, Deadline deadline,
      std::function<void(const Status&, std::string* ciphertext, std::string* key_id)> done);
  void Decrypt(std::string_view ciphertext, std::string_view key_id, std::string_view uid,
               Deadline deadline, std::function<void(const Status&, std::string* plaintext)> done);
  void GetStatus(Deadline deadline, std::function<void(const Status&, BrokerStatus*)> done);
  // Waiting forms, for the HTTP probes and /metrics.
  Status GetStatus(Deadline deadline, BrokerStatus* out);
  Status Stats(Deadline deadline, ipc::StatsReply* out);

 private:
  struct Pending {
    Deadline deadline;
    Done done;
  };
  void Call(ipc::Request* request, Deadline deadline, Done done);
  Status CallAndWait(ipc::Request* request, Deadline deadline, ipc::Reply* reply);
  void ReadLoop();
  // Hands one reply to its caller; false when the channel must be given up.
  bool Deliver(ipc::Reply* reply);
  void ExpireDue(Clock::time_point now);
  void FailAll(const Status& status);

  int fd_;
  std::atomic<uint64_t> next_id_{1};
  std::mutex mu_;
  std::unordered_map<uint64_t, Pending> pending_;
  std::function<void(const std::string&)> on_gone_;
  std::function<void()> on_shutdown_;
  std::function<void()> after_wakeup_;
  std::thread reader_;
};

}  // namespace vkms::frontend
