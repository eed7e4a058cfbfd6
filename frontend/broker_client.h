// The frontend's stubs for the broker's operations: BrokerClient::<Op> pairs with
// Broker::Handle<Op> in broker/broker.cc. Thread-safe: gRPC handler threads call these
// concurrently; each call gets its own request id and waits for the matching reply until its
// deadline. One reader thread receives replies.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
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
  // runs when the broker asks the frontend to stop (ipc::Shutdown).
  void Start(std::function<void(const std::string& why)> on_gone,
             std::function<void()> on_shutdown);

  Status Encrypt(std::string_view plaintext, std::string_view uid, Deadline deadline,
                 std::string* ciphertext, std::string* key_id);
  Status Decrypt(std::string_view ciphertext, std::string_view key_id, std::string_view uid,
                 Deadline deadline, std::string* plaintext);
  Status GetStatus(Deadline deadline, BrokerStatus* out);
  // The broker's figures for /metrics.
  Status Stats(Deadline deadline, ipc::StatsReply* out);

 private:
  Status Call(ipc::Request* request, Deadline deadline, ipc::Reply* reply);
  void ReadLoop();

  int fd_;
  std::atomic<uint64_t> next_id_{1};
  std::mutex mu_;
  std::unordered_map<uint64_t, std::promise<ipc::Reply>> pending_;
  std::function<void(const std::string&)> on_gone_;
  std::function<void()> on_shutdown_;
  std::thread reader_;
};

}  // namespace vkms::frontend
