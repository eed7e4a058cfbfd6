// The broker's side of the IPC boundary: decode, re-validate, dispatch through one table,
// reply. Handlers are Broker::Handle<Op>; the frontend's stubs are BrokerClient::<Op>
// (frontend/broker_client.h), so one grep shows both sides of each operation.
//
// Runs on the broker's event loop (broker/event_loop.h), on one thread: a request read from
// the socketpair is validated and, if it needs Vault, sent there from the same thread, as an
// asynchronous transfer. Requests that arrive together (read in the same wakeup) leave
// together, as one Transit batch call per operation; at most `max_in_flight` Vault calls run
// at once, and requests beyond that wait in a bounded queue (RESOURCE_EXHAUSTED when it is
// full) and leave together when a call ends. Nothing ever waits to fill a batch. Replies the
// frontend has no room for wait in a bounded outbox until their deadline.
//
// Anything malformed is a protocol error: the broker stops reading, reports it, and main
// closes the channel and exits, because only a compromised frontend sends such bytes.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "broker.pb.h"
#include "broker/event_loop.h"
#include "broker/vault/backend.h"
#include "shared/ipc.h"

namespace vkms::broker {

class Broker {
 public:
  // Longest deadline a request may carry; the apiserver's default is 3 s.
  static constexpr uint32_t kMaxTimeoutMs = 60000;

  struct Limits {
    size_t max_in_flight = 16;  // Vault calls at once (--vault-concurrency)
    size_t max_queued = 4096;   // requests waiting for one of them
    size_t max_unsent = 1024;   // replies waiting for room in the socket
  };

  Broker(VaultBackend* backend, EventLoop* loop, int ipc_fd, Limits limits);
  ~Broker();

  // Watches the IPC socket on the loop. `on_end` runs (on the loop) when the frontend closes
  // the channel or sends something malformed; the broker has stopped reading by then.
  using EndFn = std::function<void(ipc::RecvStatus status, const std::string& error)>;
  bool Start(EndFn on_end);
  // Stops reading requests (what is in flight still gets its reply).
  void StopReading();

  // Asks the frontend to stop accepting and drain (ipc::Shutdown). Returns false if the
  // channel is already gone.
  bool SendShutdown();

  // Entry point for tests and the fuzz target: dispatch an already-decoded request.
  // Returns false (protocol error) if it is not acceptable at all.
  bool Dispatch(const ipc::Request& request, std::string* error);

  // Requests accepted and not answered yet (queued, or at Vault).
  size_t pending() const { return queued_ + in_vault_; }

  // The message table, for `make audit` and tests: op name, whether it reaches Vault.
  struct TableRow {
    const char* name;
    bool calls_vault;
  };
  static std::vector<TableRow> MessageTable();

 private:
  struct Pending {
    ipc::Request req;
    Deadline deadline;
    Clock::time_point received;
    // The Transit key version of the request's ciphertext (Decrypt: named by its prefix, read
    // by the check) or of the one made for it (Encrypt, once Vault answered): for the log line.
    std::optional<uint64_t> key_version;
  };
  struct Batch;
  using AnswerFn = void (Broker::*)(const ipc::Request&, ipc::Reply*);
  using SendFn = void (Broker::*)(Batch*);
  struct Entry {
    ipc::Request::OpCase op;
    const char* name;
    // What it validates, before queuing; sets *key_version when the request names one.
    Status (*check)(const ipc::Request&, std::optional<uint64_t>* key_version);
    AnswerFn answer;  // answered at once, from memory; or
    SendFn send;      // sent to Vault, in batches of queued requests
  };
  static constexpr size_t kOps = 4;
  static const Entry kDispatch[kOps];

  // Answered at once.
  void HandleStatus(const ipc::Request& req, ipc::Reply* reply);
  void HandleStats(const ipc::Request& req, ipc::Reply* reply);
  // Send a batch of queued requests to Vault as one call.
  void HandleEncrypt(Batch* batch);
  void HandleDecrypt(Batch* batch);

  void OnReady(uint32_t events);
  // Watches the socket for what is wanted now: requests while reading, room while replies wait.
  void UpdateWatch();
  // Starts Vault calls for queued requests while fewer than max_in_flight run.
  void Pump();
  // The requests of a batch whose deadline has not passed (Batch::item_of), and the latest of
  // their deadlines; counts the Vault call when there is one to make.
  Deadline StillWanted(Batch* batch);
  // A batch's Vault call is done: replies, logs, and the next calls.
  void BatchDone(Batch* batch);
  void Finish(const Entry& entry, const ipc::Request& req, Clock::time_point start,
              Deadline deadline, std::optional<uint64_t> key_version, ipc::Reply* reply);
  void SendReply(const ipc::Reply& reply, Deadline deadline);
  void FlushOutbox();
  void LogRefusal(const char* op, const ipc::Request& req, const Status& refused);

  VaultBackend* backend_;
  EventLoop* loop_;
  int ipc_fd_;
  const Limits limits_;
  EventLoop::FdWatch* watch_ = nullptr;
  bool reading_ = false;
  uint32_t watch_events_ = 0;
  EndFn on_end_;
  uint64_t requests_ = 0;
  // Requests that passed their checks and wait for a Vault call slot, one queue per Vault
  // operation (a batch carries one operation).
  std::deque<Pending> queues_[kOps];  // by kDispatch row
  size_t queued_ = 0;
  size_t in_vault_ = 0;  // requests inside Vault calls
  size_t calls_ = 0;     // Vault calls running (batches)
  bool pumping_ = false;
  struct Unsent {
    std::string frame;  // wiped once sent or dropped: a Decrypt reply holds plaintext
    Deadline deadline;
  };
  std::deque<Unsent> outbox_;
  long long refusal_second_ = 0;
  int refusals_logged_ = 0;
  long long refusals_suppressed_ = 0;
};

}  // namespace vkms::broker
