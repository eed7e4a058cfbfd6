#include "frontend/kms_service.h"

#include <map>

#include "shared/log.h"
#include "shared/secret.h"
#include "shared/validate.h"

namespace vkms::frontend {
namespace {

constexpr auto kMaxDeadline = std::chrono::seconds(30);

// Sub-millisecond (cache answers) through seconds (a Vault call near the 3 s deadline).
const prometheus::Histogram::BucketBoundaries kBuckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};

// The labels HashiCorp documents for vault-kube-kms's rpc_server_duration_milliseconds (the
// README maps one onto the other): the service as kube-apiserver calls it, the method, and the
// numeric gRPC status code.
constexpr const char* kService = "v2.KeyManagementService";
constexpr const char* kMethodNames[] = {"Status", "Encrypt", "Decrypt"};

}  // namespace

Deadline DeadlineOf(const grpc::ServerContextBase* ctx, std::chrono::milliseconds cap) {
  auto now_sys = std::chrono::system_clock::now();
  auto left = ctx->deadline() - now_sys;
  auto now = Clock::now();
  if (left > cap) return now + cap;
  return now + std::chrono::duration_cast<Clock::duration>(left);
}

KmsService::KmsService(BrokerClient* broker, prometheus::Registry* registry)
    : broker_(broker),
      duration_(&prometheus::BuildHistogram()
                     .Name("rpc_server_call_duration_seconds")
                     .Help("Duration of KMS v2 gRPC calls served by the frontend")
                     .Register(*registry)) {
  // Every method's OK series exists from the start, so rate() and alerts see a 0, not nothing.
  for (int m = 0; m < kMethods; ++m) Duration(static_cast<Method>(m), Code::kOk);
}

prometheus::Histogram& KmsService::Duration(Method method, Code code) {
  size_t c = static_cast<size_t>(code);
  if (c >= kCodes) c = static_cast<size_t>(Code::kUnknown);
  std::atomic<prometheus::Histogram*>& slot = durations_[method][c];
  prometheus::Histogram* h = slot.load(std::memory_order_acquire);
  if (h == nullptr) {
    // Two threads may both get here: Family::Add returns the same histogram for the same labels.
    h = &duration_->Add({{"rpc_service", kService},
                         {"rpc_method", kMethodNames[method]},
                         {"rpc_grpc_status_code", std::to_string(c)}},
                        kBuckets);
    slot.store(h, std::memory_order_release);
  }
  return *h;
}

grpc::Status KmsService::Finish(Method method, const std::string& uid, Clock::time_point start,
                                const vkms::Status& status) {
  auto elapsed = Clock::now() - start;
  Duration(method, status.code()).Observe(std::chrono::duration<double>(elapsed).count());
  auto fields = [&] {
    log::Fields f = {
        {"rpc", kMethodNames[method]},
        {"uid", validate::LoggableUid(uid)},
        {"code", CodeName(status.code())},
        {"duration_us", std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count()}};
    if (!status.ok()) f.emplace_back("error", status.message());
    return f;
  };
  // The broker writes the line for every Encrypt and Decrypt it answers, with its cause when it
  // failed; here only what failed before or outside it (an invalid request, the broker
  // unreachable, the caller's deadline) is worth a warning. Status is debug: the apiserver
  // polls it.
  if (status.ok()) {
    log::Debug("rpc done", fields);
    return grpc::Status::OK;
  }
  if (status.logged()) {
    log::Debug("rpc failed", fields);
  } else {
    log::Warning("rpc failed", fields);
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), status.message());
}

grpc::ServerUnaryReactor* KmsService::Status(grpc::CallbackServerContext* ctx,
                                             const v2::StatusRequest*, v2::StatusResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto start = Clock::now();
  broker_->GetStatus(DeadlineOf(ctx, std::chrono::seconds(2)),
                     [this, reactor, resp, start](const vkms::Status& s, BrokerStatus* st) {
                       resp->set_version("v2");
                       if (!s.ok()) {
                         // Status itself succeeds: the apiserver reads healthz for the reason.
                         resp->set_healthz("broker not answering: " + s.message());
                       } else {
                         resp->set_healthz(std::move(st->healthz));
                         resp->set_key_id(std::move(st->key_id));
                       }
                       reactor->Finish(Finish(kStatus, "", start, vkms::Status::Ok()));
                     });
  return reactor;
}

grpc::ServerUnaryReactor* KmsService::Encrypt(grpc::CallbackServerContext* ctx,
                                              const v2::EncryptRequest* req,
                                              v2::EncryptResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto start = Clock::now();
  vkms::Status s = validate::Plaintext(req->plaintext());
  if (!s.ok()) {
    reactor->Finish(Finish(kEncrypt, req->uid(), start, s));
    return reactor;
  }
  broker_->Encrypt(
      req->plaintext(), req->uid(), DeadlineOf(ctx, kMaxDeadline),
      [this, reactor, req, resp, start](const vkms::Status& result, std::string* ciphertext,
                                        std::string* key_id) {
        vkms::Status s = result;
        if (s.ok() && (ciphertext->empty() || ciphertext->size() > validate::kMaxCiphertext ||
                       key_id->empty() || key_id->size() > validate::kMaxKeyId)) {
          s = vkms::Status(Code::kInternal,
                           "broker returned a ciphertext or key_id outside KMS v2 limits");
        }
        if (s.ok()) {
          resp->set_ciphertext(std::move(*ciphertext));
          resp->set_key_id(std::move(*key_id));
        }
        reactor->Finish(Finish(kEncrypt, req->uid(), start, s));
      });
  return reactor;
}

grpc::ServerUnaryReactor* KmsService::Decrypt(grpc::CallbackServerContext* ctx,
                                              const v2::DecryptRequest* req,
                                              v2::DecryptResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto start = Clock::now();
  uint64_t version = 0;
  vkms::Status s = validate::VaultCiphertext(req->ciphertext(), &version);
  if (s.ok()) s = validate::KeyId(req->key_id());
  if (s.ok()) {
    std::map<std::string, std::string> annotations(req->annotations().begin(),
                                                   req->annotations().end());
    s = validate::Annotations(annotations);
  }
  if (!s.ok()) {
    reactor->Finish(Finish(kDecrypt, req->uid(), start, s));
    return reactor;
  }
  broker_->Decrypt(
      req->ciphertext(), req->key_id(), req->uid(), DeadlineOf(ctx, kMaxDeadline),
      [this, reactor, req, resp, start](const vkms::Status& s, std::string* plaintext) {
        // Moved, not copied: the only other copy is wiped by BrokerClient.
        if (s.ok()) resp->set_plaintext(std::move(*plaintext));
        reactor->Finish(Finish(kDecrypt, req->uid(), start, s));
      });
  return reactor;
}

}  // namespace vkms::frontend
