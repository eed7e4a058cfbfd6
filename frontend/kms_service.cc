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

// One call of one method, from the moment it is asked of gRPC until its answer has been sent:
// the completion queue hands back its tag (`this`) twice, once when a client's call matched
// it, once when Finish is done.
struct KmsService::Call {
  virtual ~Call() = default;
  virtual void Proceed(bool ok) = 0;
};

template <typename Req, typename Resp>
struct KmsService::CallOf : KmsService::Call {
  CallOf(KmsService* s, Method m) : service(s), method(m) {}

  void Proceed(bool ok) override {
    // Finished, or (not ok) never matched because the server is shutting down.
    if (finishing || !ok) {
      delete this;
      return;
    }
    service->Request(method);  // the next call of this method waits while this one runs
    start = Clock::now();
    // The last use of this object here: once its request is with the broker, the reader may
    // answer and free it (Reap) before Handle() has even returned.
    Handle();
  }
  // From whichever thread has the answer: this one for a refused request, the broker
  // client's reader for the broker's reply.
  void Reply(const vkms::Status& s) {
    finishing = true;
    service->unreaped_.fetch_add(1, std::memory_order_relaxed);
    writer.Finish(resp, service->Finish(method, Uid(), start, s), this);
  }
  virtual void Handle() = 0;
  virtual std::string Uid() const = 0;

  KmsService* const service;
  const Method method;
  grpc::ServerContext ctx;
  Req req;
  Resp resp;
  grpc::ServerAsyncResponseWriter<Resp> writer{&ctx};
  Clock::time_point start;
  bool finishing = false;
};

struct KmsService::StatusCall final : CallOf<v2::StatusRequest, v2::StatusResponse> {
  using CallOf::CallOf;
  std::string Uid() const override { return ""; }
  void Handle() override {
    service->broker_->GetStatus(DeadlineOf(&ctx, std::chrono::seconds(2)),
                                [this](const vkms::Status& s, BrokerStatus* st) {
                                  resp.set_version("v2");
                                  if (!s.ok()) {
                                    // Status itself succeeds: the apiserver reads healthz.
                                    resp.set_healthz("broker not answering: " + s.message());
                                  } else {
                                    resp.set_healthz(std::move(st->healthz));
                                    resp.set_key_id(std::move(st->key_id));
                                  }
                                  Reply(vkms::Status::Ok());
                                });
  }
};

struct KmsService::EncryptCall final : CallOf<v2::EncryptRequest, v2::EncryptResponse> {
  using CallOf::CallOf;
  std::string Uid() const override { return req.uid(); }
  void Handle() override {
    vkms::Status s = validate::Plaintext(req.plaintext());
    if (!s.ok()) return Reply(s);
    service->broker_->Encrypt(
        req.plaintext(), req.uid(), DeadlineOf(&ctx, kMaxDeadline),
        [this](const vkms::Status& result, std::string* ciphertext, std::string* key_id) {
          vkms::Status s = result;
          if (s.ok() && (ciphertext->empty() || ciphertext->size() > validate::kMaxCiphertext ||
                         key_id->empty() || key_id->size() > validate::kMaxKeyId)) {
            s = vkms::Status(Code::kInternal,
                             "broker returned a ciphertext or key_id outside KMS v2 limits");
          }
          if (s.ok()) {
            resp.set_ciphertext(std::move(*ciphertext));
            resp.set_key_id(std::move(*key_id));
          }
          Reply(s);
        });
  }
};

struct KmsService::DecryptCall final : CallOf<v2::DecryptRequest, v2::DecryptResponse> {
  using CallOf::CallOf;
  std::string Uid() const override { return req.uid(); }
  void Handle() override {
    uint64_t version = 0;
    vkms::Status s = validate::VaultCiphertext(req.ciphertext(), &version);
    if (s.ok()) s = validate::KeyId(req.key_id());
    if (s.ok()) {
      std::map<std::string, std::string> annotations(req.annotations().begin(),
                                                     req.annotations().end());
      s = validate::Annotations(annotations);
    }
    if (!s.ok()) return Reply(s);
    service->broker_->Decrypt(req.ciphertext(), req.key_id(), req.uid(),
                              DeadlineOf(&ctx, kMaxDeadline),
                              [this](const vkms::Status& s, std::string* plaintext) {
                                // Moved, not copied: the only other copy is wiped by
                                // BrokerClient.
                                if (s.ok()) resp.set_plaintext(std::move(*plaintext));
                                Reply(s);
                              });
  }
};

void KmsService::Register(grpc::ServerBuilder* builder) {
  builder->RegisterService(&async_);
  cq_ = builder->AddCompletionQueue();
  // GRPC_CQ_NON_POLLING: the calls' I/O progresses through cq_'s thread, not through waiting
  // on this queue, which is only emptied (gRPC's contract for a queue without a pollset).
  grpc_completion_queue_attributes attr = {GRPC_CQ_CURRENT_VERSION, GRPC_CQ_NEXT,
                                           GRPC_CQ_NON_POLLING, nullptr};
  finished_ = std::make_unique<grpc::CompletionQueue>(
      grpc_completion_queue_create(grpc_completion_queue_factory_lookup(&attr), &attr, nullptr));
}

void KmsService::Request(Method method) {
  grpc::ServerCompletionQueue* cq = cq_.get();
  grpc::CompletionQueue* done = finished_.get();
  switch (method) {
    case kStatus: {
      auto* c = new StatusCall(this, kStatus);
      async_.RequestStatus(&c->ctx, &c->req, &c->writer, done, cq, c);
      break;
    }
    case kEncrypt: {
      auto* c = new EncryptCall(this, kEncrypt);
      async_.RequestEncrypt(&c->ctx, &c->req, &c->writer, done, cq, c);
      break;
    }
    case kDecrypt: {
      auto* c = new DecryptCall(this, kDecrypt);
      async_.RequestDecrypt(&c->ctx, &c->req, &c->writer, done, cq, c);
      break;
    }
    case kMethods:
      break;
  }
}

void KmsService::Start() {
  for (int m = 0; m < kMethods; ++m) Request(static_cast<Method>(m));
  std::thread([this] { Run(); }).detach();  // lives as long as the process
}

void KmsService::Run() {
  void* tag = nullptr;
  bool ok = false;
  while (cq_->Next(&tag, &ok)) {
    static_cast<Call*>(tag)->Proceed(ok);
    Reap();  // a call refused here, or whose answer came while this thread was awake
  }
}

void KmsService::Reap() {
  void* tag = nullptr;
  bool ok = false;
  const gpr_timespec no_wait = gpr_inf_past(GPR_CLOCK_MONOTONIC);
  // Only while a Finish is unaccounted for: on an empty queue AsyncNext still arms a futex
  // timeout that has already passed, a timer interrupt and a self wake-up (perf sched: one per
  // call), where a counter costs nothing.
  while (unreaped_.load(std::memory_order_relaxed) > 0 &&
         finished_->AsyncNext(&tag, &ok, no_wait) == grpc::CompletionQueue::GOT_EVENT) {
    unreaped_.fetch_sub(1, std::memory_order_relaxed);
    static_cast<Call*>(tag)->Proceed(ok);  // finishing: frees the call
  }
}

}  // namespace vkms::frontend
