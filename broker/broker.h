// The broker's side of the IPC boundary: decode, re-validate, dispatch through one table,
// reply. Handlers are Broker::Handle<Op>; the frontend's stubs are BrokerClient::<Op>
// (frontend/broker_client.h), so one grep shows both sides of each operation.
//
// Called from the broker's main loop (ReceiveOne) and from worker threads (the handlers).
// Anything malformed is a protocol error: the main loop logs it, closes the channel and
// exits, because only a compromised frontend sends such bytes.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>

#include "broker.pb.h"
#include "broker/vault/backend.h"
#include "broker/worker_pool.h"
#include "shared/ipc.h"

namespace vkms::broker {

class Broker {
 public:
  // Longest deadline a request may carry; the apiserver's default is 3 s.
  static constexpr uint32_t kMaxTimeoutMs = 60000;

  Broker(VaultBackend* backend, WorkerPool* pool, int ipc_fd);

  // Receives one datagram and dispatches it (Vault work goes to the pool).
  ipc::RecvStatus ReceiveOne(std::string* error);

  // Asks the frontend to stop accepting and drain (ipc::Shutdown). Returns false if the
  // channel is already gone.
  bool SendShutdown();

  // Entry point for tests and the fuzz target: dispatch an already-decoded request.
  // Returns false (protocol error) if it is not acceptable at all.
  bool Dispatch(const ipc::Request& request, std::string* error);

  // The message table, for `make audit` and tests: op name, whether it reaches Vault.
  struct TableRow {
    const char* name;
    bool calls_vault;
  };
  static std::vector<TableRow> MessageTable();

 private:
  using Handler = void (Broker::*)(const ipc::Request&, Deadline, ipc::Reply*);
  struct Entry {
    ipc::Request::OpCase op;
    const char* name;
    bool calls_vault;  // true: runs on a worker thread; false: answered inline from cache
    Status (*check)(const ipc::Request&);  // what it validates, before queuing
    Handler handler;                       // nullptr for Decrypt, which RunDecrypts batches
  };
  static const Entry kDispatch[];

  void HandleEncrypt(const ipc::Request& req, Deadline deadline, ipc::Reply* reply);
  void HandleStatus(const ipc::Request& req, Deadline deadline, ipc::Reply* reply);
  void HandleStats(const ipc::Request& req, Deadline deadline, ipc::Reply* reply);

  void Run(const Entry& entry, const ipc::Request& req, Deadline deadline);
  // Queues a checked Decrypt for RunDecrypts; false when the Decrypt queue is full or the pool
  // refused the task (overloaded).
  bool QueueDecrypt(const ipc::Request& req, Deadline deadline);
  // Worker: takes every queued Decrypt (up to VaultBackend::kMaxDecryptBatch) and sends them
  // to Vault as one call. A lone Decrypt goes alone: nothing ever waits to fill a batch.
  void RunDecrypts();
  // Sends the reply, wipes its plaintext and logs the outcome (worker and inline paths).
  void Finish(const Entry& entry, const ipc::Request& req, Clock::time_point start,
              Deadline deadline, ipc::Reply* reply);
  void SendReply(const ipc::Reply& reply, Deadline deadline);
  // Main thread only (called from Dispatch).
  void LogRefusal(const char* op, const ipc::Request& req, const Status& refused);

  VaultBackend* backend_;
  WorkerPool* pool_;
  int ipc_fd_;
  std::atomic<uint64_t> requests_{0};
  // Decrypts waiting for a worker, bounded like the pool's queue (RESOURCE_EXHAUSTED beyond).
  // Invariant: decrypts_.size() <= decrypt_tasks_ * kMaxDecryptBatch, where decrypt_tasks_ counts
  // RunDecrypts tasks submitted and not yet started; so every queued Decrypt has a task coming,
  // and a burst wakes one worker per batch, not one per request.
  static constexpr size_t kMaxQueuedDecrypts = 4096;
  size_t decrypt_tasks_ = 0;
  struct PendingDecrypt {
    ipc::Request req;
    Deadline deadline;
  };
  std::mutex decrypts_mu_;
  std::deque<PendingDecrypt> decrypts_;
  long long refusal_second_ = 0;
  int refusals_logged_ = 0;
  long long refusals_suppressed_ = 0;
};

}  // namespace vkms::broker
