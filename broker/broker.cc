#include "broker/broker.h"

#include <algorithm>
#include <chrono>

#include "shared/log.h"
#include "shared/process_metrics.h"
#include "shared/secret.h"
#include "shared/validate.h"

namespace vkms::broker {
namespace {

// Replies answered on the main thread never wait for room in the socket: the main loop must
// keep reading and seeing signals even if the frontend stops reading. A frontend that does not
// read its replies loses them (its own callers time out).
constexpr auto kInlineSendBudget = std::chrono::milliseconds(0);

// Refusals are worth a warning (a sound frontend validates first), but a flood of them must
// not flood the log: at most this many lines per second, then one summary.
constexpr int kRefusalLogsPerSecond = 10;

// The apiserver's uid is a UUID; the frontend passes at most a short sanitised form.
constexpr size_t kMaxUid = 128;

void SetError(ipc::Reply* reply, const Status& status) {
  reply->mutable_error()->set_code(static_cast<int32_t>(status.code()));
  reply->mutable_error()->set_message(status.message());
}

Status CheckEncrypt(const ipc::Request& req) {
  return validate::Plaintext(req.encrypt().plaintext());
}

Status CheckDecrypt(const ipc::Request& req) {
  uint64_t version = 0;
  Status s = validate::VaultCiphertext(req.decrypt().ciphertext(), &version);
  return s.ok() ? validate::KeyId(req.decrypt().key_id()) : s;
}

Status CheckNothing(const ipc::Request&) {
  return Status::Ok();
}

}  // namespace

// The whole IPC surface of the broker. Nothing else can be asked of it. Each row's check runs
// on the main thread before anything is queued, so a refused request costs no worker and no
// queue memory, and the handlers only ever see values within the KMS v2 limits.
const Broker::Entry Broker::kDispatch[] = {
    {ipc::Request::kEncrypt, "Encrypt", true, &CheckEncrypt, &Broker::HandleEncrypt},
    // No handler: Decrypts are queued together and sent as batches (RunDecrypts).
    {ipc::Request::kDecrypt, "Decrypt", true, &CheckDecrypt, nullptr},
    {ipc::Request::kStatus, "Status", false, &CheckNothing, &Broker::HandleStatus},
    {ipc::Request::kStats, "Stats", false, &CheckNothing, &Broker::HandleStats},
};

std::vector<Broker::TableRow> Broker::MessageTable() {
  std::vector<TableRow> rows;
  for (const auto& e : kDispatch) rows.push_back({e.name, e.calls_vault});
  return rows;
}

Broker::Broker(VaultBackend* backend, WorkerPool* pool, int ipc_fd)
    : backend_(backend), pool_(pool), ipc_fd_(ipc_fd) {}

ipc::RecvStatus Broker::ReceiveOne(std::string* error) {
  ipc::Request req;
  ipc::RecvStatus st = ipc::Recv(ipc_fd_, &req, error);
  if (st != ipc::RecvStatus::kOk) return st;
  return Dispatch(req, error) ? ipc::RecvStatus::kOk : ipc::RecvStatus::kProtocolError;
}

bool Broker::Dispatch(const ipc::Request& req, std::string* error) {
  if (req.id() == 0) {
    *error = "request id 0";
    return false;
  }
  if (req.timeout_ms() == 0 || req.timeout_ms() > kMaxTimeoutMs) {
    *error = "request timeout out of range";
    return false;
  }
  if (req.uid().size() > kMaxUid) {
    *error = "request uid longer than " + std::to_string(kMaxUid) + " bytes";
    return false;
  }
  const Entry* entry = nullptr;
  for (const auto& e : kDispatch) {
    if (e.op == req.op_case()) entry = &e;
  }
  if (entry == nullptr) {
    *error = "request with no known operation";
    return false;
  }
  ++requests_;
  Deadline deadline = Clock::now() + std::chrono::milliseconds(req.timeout_ms());
  if (!entry->calls_vault) {
    Run(*entry, req, deadline);
    return true;
  }
  Status refused = entry->check(req);
  if (refused.ok()) {
    bool queued = entry->op == ipc::Request::kDecrypt
                      ? QueueDecrypt(req, deadline)
                      : pool_->Submit([this, entry, req, deadline] { Run(*entry, req, deadline); });
    if (!queued) refused = Status(Code::kResourceExhausted, "broker is overloaded; retry later");
  }
  if (!refused.ok()) {
    ipc::Reply reply;
    reply.set_id(req.id());
    SetError(&reply, refused);
    SendReply(reply, std::min(deadline, Clock::now() + kInlineSendBudget));
    LogRefusal(entry->name, req, refused);
  }
  return true;
}

void Broker::Run(const Entry& entry, const ipc::Request& req, Deadline deadline) {
  auto start = Clock::now();
  ipc::Reply reply;
  reply.set_id(req.id());
  if (start >= deadline) {
    SetError(&reply, Status(Code::kDeadlineExceeded,
                            "deadline expired before the broker started the call"));
  } else {
    (this->*entry.handler)(req, deadline, &reply);
  }
  Finish(entry, req, start, deadline, &reply);
}

bool Broker::QueueDecrypt(const ipc::Request& req, Deadline deadline) {
  bool submit = false;
  {
    std::lock_guard<std::mutex> lock(decrypts_mu_);
    if (decrypts_.size() >= kMaxQueuedDecrypts) return false;
    decrypts_.push_back({req, deadline});
    // A task not yet started takes up to a full batch when it starts: wake another worker only
    // when the queue holds more than the tasks already on their way can take.
    if (decrypts_.size() > decrypt_tasks_ * VaultBackend::kMaxDecryptBatch) {
      ++decrypt_tasks_;
      submit = true;
    }
  }
  if (!submit || pool_->Submit([this] { RunDecrypts(); })) return true;
  // The pool is full: take the request back. The tasks already submitted cover the requests
  // queued before it and cannot reach it (it lies past what they may take), so it is still
  // last; the check is only a guard.
  std::lock_guard<std::mutex> lock(decrypts_mu_);
  --decrypt_tasks_;
  if (decrypts_.empty() || decrypts_.back().req.id() != req.id()) return true;
  decrypts_.pop_back();
  return false;
}

void Broker::RunDecrypts() {
  static const Entry& kEntry =
      *std::find_if(std::begin(kDispatch), std::end(kDispatch),
                    [](const Entry& e) { return e.op == ipc::Request::kDecrypt; });
  std::vector<PendingDecrypt> batch;
  {
    std::lock_guard<std::mutex> lock(decrypts_mu_);
    --decrypt_tasks_;
    while (!decrypts_.empty() && batch.size() < VaultBackend::kMaxDecryptBatch) {
      batch.push_back(std::move(decrypts_.front()));
      decrypts_.pop_front();
    }
  }
  if (batch.empty()) return;
  auto start = Clock::now();
  std::vector<ipc::Reply> replies(batch.size());
  std::vector<VaultBackend::DecryptItem> items;
  std::vector<size_t> item_of;  // items[k] answers batch[item_of[k]]
  Deadline latest = start;
  for (size_t i = 0; i < batch.size(); ++i) {
    replies[i].set_id(batch[i].req.id());
    if (start >= batch[i].deadline) {
      SetError(&replies[i], Status(Code::kDeadlineExceeded,
                                   "deadline expired before the broker started the call"));
      continue;
    }
    items.push_back({batch[i].req.decrypt().ciphertext(), {}, Status::Ok()});
    item_of.push_back(i);
    latest = std::max(latest, batch[i].deadline);
  }
  // The call may run until the latest deadline: a caller whose own deadline passes first has
  // stopped waiting (the frontend answers it), and the others still get their plaintext.
  if (!items.empty()) backend_->DecryptBatch(&items, latest);
  for (size_t k = 0; k < items.size(); ++k) {
    ipc::Reply& reply = replies[item_of[k]];
    if (items[k].status.ok()) {
      reply.mutable_decrypt()->set_plaintext(std::move(items[k].plaintext));
    } else {
      SetError(&reply, items[k].status);
    }
    WipeString(&items[k].plaintext);
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    Finish(kEntry, batch[i].req, start, batch[i].deadline, &replies[i]);
  }
}

void Broker::Finish(const Entry& entry, const ipc::Request& req, Clock::time_point start,
                    Deadline deadline, ipc::Reply* reply) {
  // A worker may wait for room in the socket until the caller's deadline; an inline answer
  // only briefly (see kInlineSendBudget).
  SendReply(*reply, entry.calls_vault ? deadline : std::min(deadline, start + kInlineSendBudget));
  // Plaintext was needed only for the send; don't leave it in freed heap memory.
  if (reply->has_decrypt()) WipeString(reply->mutable_decrypt()->mutable_plaintext());
  if (entry.op == ipc::Request::kStatus || entry.op == ipc::Request::kStats) return;
  // The one line per Encrypt and Decrypt (the apiserver caches its DEK seeds, so they are
  // rare), written here because the broker knows how each ended at Vault: the frontend logs
  // only what fails before or outside the broker (proto/broker.proto, Error).
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  Code code = reply->has_error() ? static_cast<Code>(reply->error().code()) : Code::kOk;
  auto fields = [&] {
    log::Fields f = {{"op", entry.name}, {"uid", validate::LoggableUid(req.uid())}};
    // The version in Vault's "vault:vN:" prefix: of the ciphertext made, or the one decrypted.
    const std::string& ct = entry.op == ipc::Request::kEncrypt ? reply->encrypt().ciphertext()
                                                               : req.decrypt().ciphertext();
    uint64_t version = 0;
    if (validate::VaultCiphertext(ct, &version).ok()) f.emplace_back("key_version", version);
    f.emplace_back("code", CodeName(code));
    f.emplace_back("duration_us", us);
    if (code != Code::kOk) f.emplace_back("error", reply->error().message());
    return f;
  };
  if (code == Code::kOk) {
    log::Info("request done", fields);
  } else {
    log::Warning("request failed", fields);
  }
}

void Broker::LogRefusal(const char* op, const ipc::Request& req, const Status& refused) {
  auto second = std::chrono::duration_cast<std::chrono::seconds>(Clock::now().time_since_epoch());
  if (second.count() != refusal_second_) {
    if (refusals_suppressed_ > 0) {
      log::Warning("more requests refused", {{"suppressed", refusals_suppressed_}});
    }
    refusal_second_ = second.count();
    refusals_logged_ = 0;
    refusals_suppressed_ = 0;
  }
  if (refusals_logged_ >= kRefusalLogsPerSecond) {
    ++refusals_suppressed_;
    return;
  }
  ++refusals_logged_;
  log::Warning("request refused", {{"op", op},
                                   {"uid", validate::LoggableUid(req.uid())},
                                   {"code", CodeName(refused.code())},
                                   {"error", refused.message()}});
}

void Broker::HandleEncrypt(const ipc::Request& req, Deadline deadline, ipc::Reply* reply) {
  std::string ciphertext, key_id;
  Status s = backend_->Encrypt(req.encrypt().plaintext(), deadline, &ciphertext, &key_id);
  if (!s.ok()) return SetError(reply, s);
  reply->mutable_encrypt()->set_ciphertext(std::move(ciphertext));
  reply->mutable_encrypt()->set_key_id(std::move(key_id));
}

void Broker::HandleStatus(const ipc::Request&, Deadline, ipc::Reply* reply) {
  BackendHealth h = backend_->Health();
  auto* st = reply->mutable_status();
  st->set_healthz(h.healthz);
  st->set_key_id(h.key_id);
  st->set_ready(h.ready);
  st->set_ready_reason(h.ready_reason);
  st->set_key_version(h.key_version);
}

void Broker::HandleStats(const ipc::Request&, Deadline, ipc::Reply* reply) {
  BackendStats b = backend_->Stats();
  auto* st = reply->mutable_stats();
  st->set_requests_total(requests_.load());
  st->set_logins_ok(b.logins_ok);
  st->set_logins_failed(b.logins_failed);
  st->set_renewals_ok(b.renewals_ok);
  st->set_renewals_failed(b.renewals_failed);
  st->set_token_ttl_seconds(b.token_ttl_seconds);
  st->set_key_version(b.key_version);
  st->set_seconds_since_vault_contact(b.seconds_since_vault_contact);
  st->set_key_refreshes_ok(b.key_refreshes_ok);
  st->set_key_refreshes_failed(b.key_refreshes_failed);
  for (const auto& [labels, h] : b.vault_requests) {
    auto* v = st->add_vault_requests();
    v->set_operation(labels.first);
    v->set_code(labels.second);
    for (uint64_t c : h.buckets) v->add_buckets(c);
    v->set_count(h.count);
    v->set_sum_seconds(h.sum_seconds);
  }
  process_metrics::Sample p;
  if (process_metrics::Read(&p)) {
    auto* out = st->mutable_process();
    out->set_cpu_seconds(p.cpu_seconds);
    out->set_resident_bytes(p.resident_bytes);
    out->set_virtual_bytes(p.virtual_bytes);
    out->set_open_fds(p.open_fds);
    out->set_max_fds(p.max_fds);
    out->set_start_time_seconds(p.start_time_seconds);
  }
}

bool Broker::SendShutdown() {
  ipc::Reply reply;
  reply.set_id(0);
  reply.mutable_shutdown();
  std::string err;
  return ipc::Send(ipc_fd_, reply, Clock::now() + kInlineSendBudget, &err);
}

void Broker::SendReply(const ipc::Reply& reply, Deadline deadline) {
  std::string err;
  if (!ipc::Send(ipc_fd_, reply, deadline, &err)) {
    // The frontend is gone or going; the main loop notices the closed channel and exits.
    log::Debug("cannot send reply", {{"error", err}});
  }
}

}  // namespace vkms::broker
