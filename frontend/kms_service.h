// The KMS v2 gRPC service kube-apiserver calls. Validates every request before anything
// crosses to the broker (the broker validates again), and maps results to gRPC codes.
// gRPC's callback API: a handler validates, sends the request to the broker and returns; the
// BrokerClient's reader finishes the call when the reply (or the deadline) comes. No thread is
// held, created or destroyed per call, however many calls wait on Vault.
#pragma once

#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "frontend/broker_client.h"
#include "kms_v2.grpc.pb.h"

namespace vkms::frontend {

class KmsService final : public v2::KeyManagementService::CallbackService {
 public:
  KmsService(BrokerClient* broker, prometheus::Registry* registry);

  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* ctx, const v2::StatusRequest* req,
                                   v2::StatusResponse* resp) override;
  grpc::ServerUnaryReactor* Encrypt(grpc::CallbackServerContext* ctx, const v2::EncryptRequest* req,
                                    v2::EncryptResponse* resp) override;
  grpc::ServerUnaryReactor* Decrypt(grpc::CallbackServerContext* ctx, const v2::DecryptRequest* req,
                                    v2::DecryptResponse* resp) override;

 private:
  enum Method { kStatus, kEncrypt, kDecrypt, kMethods };
  // gRPC status codes run from 0 (OK) to 16 (UNAUTHENTICATED).
  static constexpr size_t kCodes = 17;

  grpc::Status Finish(Method method, const std::string& uid, Clock::time_point start,
                      const vkms::Status& status);
  // The histogram of one (method, code) pair: looked up in the family once, then read from a
  // table, so a call costs no label map and no family lock.
  prometheus::Histogram& Duration(Method method, Code code);

  BrokerClient* broker_;
  prometheus::Family<prometheus::Histogram>* duration_;
  std::array<std::array<std::atomic<prometheus::Histogram*>, kCodes>, kMethods> durations_{};
};

// The caller's deadline as a steady-clock time point, capped so that a call without a
// deadline cannot hold a thread forever.
Deadline DeadlineOf(const grpc::ServerContextBase* ctx, std::chrono::milliseconds cap);

}  // namespace vkms::frontend
