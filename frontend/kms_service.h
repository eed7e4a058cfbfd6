// The KMS v2 gRPC service kube-apiserver calls. Validates every request before anything
// crosses to the broker (the broker validates again), and maps results to gRPC codes.
// gRPC's asynchronous API on one completion-queue thread of our own: that thread reads each
// request, validates it and sends it to the broker; the BrokerClient's reader thread writes
// the answer (Finish) the moment the broker's reply comes, and frees the calls it finished
// (their completions go to a queue no thread waits on, so finishing wakes nobody). No thread
// is held, created or destroyed per call, however many calls wait on Vault, and a call
// crosses no other thread. gRPC's callback API ran each call through two pollers that kicked
// each other and a third thread for its completion (perf sched: 6.6 wake-ups of the frontend
// per Status call against 3.0 here, one of them the client's own BDP ping).
#pragma once

#include <grpcpp/grpcpp.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "frontend/broker_client.h"
#include "kms_v2.grpc.pb.h"

namespace vkms::frontend {

class KmsService final {
 public:
  KmsService(BrokerClient* broker, prometheus::Registry* registry);

  // Before BuildAndStart: registers the service and adds its completion queue.
  void Register(grpc::ServerBuilder* builder);
  // After BuildAndStart: starts the completion-queue thread. It runs until the process exits:
  // the queue is never shut down, because a broker reply that comes after grpc::Server::Shutdown
  // gave up on its call still calls Finish, which a shut-down queue does not allow.
  void Start();
  // Frees every call whose answer gRPC has finished sending, without waiting. Called by
  // whichever thread just answered calls: the completion-queue thread after each event, the
  // broker reader after each wake-up.
  void Reap();

 private:
  enum Method { kStatus, kEncrypt, kDecrypt, kMethods };
  // gRPC status codes run from 0 (OK) to 16 (UNAUTHENTICATED).
  static constexpr size_t kCodes = 17;
  struct Call;
  template <typename Req, typename Resp>
  struct CallOf;
  struct StatusCall;
  struct EncryptCall;
  struct DecryptCall;

  void Run();
  // Asks gRPC for the next call of `method` (one always waits per method).
  void Request(Method method);

  grpc::Status Finish(Method method, const std::string& uid, Clock::time_point start,
                      const vkms::Status& status);
  // The histogram of one (method, code) pair: looked up in the family once, then read from a
  // table, so a call costs no label map and no family lock.
  prometheus::Histogram& Duration(Method method, Code code);

  BrokerClient* broker_;
  prometheus::Family<prometheus::Histogram>* duration_;
  std::array<std::array<std::atomic<prometheus::Histogram*>, kCodes>, kMethods> durations_{};
  v2::KeyManagementService::AsyncService async_;
  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  // Where each call's Finish completes: a queue without a pollset that no thread waits on, so
  // finishing a call from the broker reader wakes no other thread (on cq_ every Finish woke the
  // completion-queue thread only to free the call). Reap() empties it.
  std::unique_ptr<grpc::CompletionQueue> finished_;
  // Calls given to Finish and not yet freed by Reap().
  std::atomic<int64_t> unreaped_{0};
};

// The caller's deadline as a steady-clock time point, capped so that a call without a
// deadline cannot hold a thread forever.
Deadline DeadlineOf(const grpc::ServerContextBase* ctx, std::chrono::milliseconds cap);

}  // namespace vkms::frontend
