#include "broker/broker.h"

#include <sys/epoll.h>

#include <algorithm>
#include <chrono>

#include "shared/log.h"
#include "shared/process_metrics.h"
#include "shared/secret.h"
#include "shared/validate.h"

namespace vkms::broker {
namespace {

// Requests read in one wakeup at most (see OnReady).
constexpr int kMaxReadsPerWakeup = 64;

// Refusals are worth a warning (a sound frontend validates first), but a flood of them must
// not flood the log: at most this many lines per second, then one summary.
constexpr int kRefusalLogsPerSecond = 10;

// The apiserver's uid is a UUID; the frontend passes at most a short sanitised form.
constexpr size_t kMaxUid = 128;

void SetError(ipc::Reply* reply, const Status& status) {
  reply->mutable_error()->set_code(static_cast<int32_t>(status.code()));
  reply->mutable_error()->set_message(status.message());
}

Status CheckEncrypt(const ipc::Request& req, std::optional<uint64_t>*) {
  return validate::Plaintext(req.encrypt().plaintext());
}

Status CheckDecrypt(const ipc::Request& req, std::optional<uint64_t>* key_version) {
  uint64_t version = 0;
  Status s = validate::VaultCiphertext(req.decrypt().ciphertext(), &version);
  if (!s.ok()) return s;
  *key_version = version;
  return validate::KeyId(req.decrypt().key_id());
}

Status CheckNothing(const ipc::Request&, std::optional<uint64_t>*) {
  return Status::Ok();
}

const Status kExpired(Code::kDeadlineExceeded,
                      "deadline expired before the broker started the call");

}  // namespace

// The whole IPC surface of the broker. Nothing else can be asked of it. Each row's check runs
// before anything is queued, so a refused request costs no queue memory and no Vault call, and
// the handlers only ever see values within the KMS v2 limits.
const Broker::Entry Broker::kDispatch[kOps] = {
    {ipc::Request::kEncrypt, "Encrypt", &CheckEncrypt, nullptr, &Broker::HandleEncrypt},
    {ipc::Request::kDecrypt, "Decrypt", &CheckDecrypt, nullptr, &Broker::HandleDecrypt},
    {ipc::Request::kStatus, "Status", &CheckNothing, &Broker::HandleStatus, nullptr},
    {ipc::Request::kStats, "Stats", &CheckNothing, &Broker::HandleStats, nullptr},
};

// Queued requests of one operation, sent to Vault as one call.
struct Broker::Batch {
  const Entry* entry = nullptr;
  std::vector<Pending> requests;
  Clock::time_point start;
  bool called_vault = false;
  std::vector<VaultBackend::EncryptItem> encrypts;
  std::vector<VaultBackend::DecryptItem> decrypts;
  std::vector<size_t> item_of;      // item k answers requests[item_of[k]]
  std::vector<ipc::Reply> replies;  // by request

  ~Batch() {
    for (auto& item : decrypts) WipeString(&item.plaintext);
  }
};

std::vector<Broker::TableRow> Broker::MessageTable() {
  std::vector<TableRow> rows;
  for (const auto& e : kDispatch) rows.push_back({e.name, e.send != nullptr});
  return rows;
}

Broker::Broker(VaultBackend* backend, EventLoop* loop, int ipc_fd, Limits limits)
    : backend_(backend), loop_(loop), ipc_fd_(ipc_fd), limits_(limits) {}

Broker::~Broker() {
  if (watch_ != nullptr) loop_->RemoveFd(watch_);
  for (Unsent& u : outbox_) WipeString(&u.frame);
}

bool Broker::Start(EndFn on_end) {
  on_end_ = std::move(on_end);
  reading_ = true;
  UpdateWatch();
  return watch_ != nullptr;
}

void Broker::StopReading() {
  reading_ = false;
  UpdateWatch();
}

void Broker::UpdateWatch() {
  uint32_t events = (reading_ ? EPOLLIN : 0u) | (outbox_.empty() ? 0u : EPOLLOUT);
  if (events == 0) {
    // Not merely no events: a closed peer would still report EPOLLHUP, over and over.
    loop_->RemoveFd(watch_);
    watch_ = nullptr;
  } else if (watch_ == nullptr) {
    watch_ = loop_->AddFd(ipc_fd_, events, [this](uint32_t ev) { OnReady(ev); });
  } else if (events != watch_events_) {
    loop_->ModifyFd(watch_, events);
  }
  watch_events_ = events;
}

void Broker::OnReady(uint32_t events) {
  if (!outbox_.empty() && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))) FlushOutbox();
  if (!reading_ || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
  // Everything that is waiting is read before any of it goes to Vault: requests that arrived
  // together leave together, as one batch call per operation (bounded per wakeup so that
  // replies and Vault answers are not held up behind a flood).
  ipc::RecvStatus st = ipc::RecvStatus::kOk;
  std::string error;
  pumping_ = true;
  for (int i = 0; i < kMaxReadsPerWakeup && st == ipc::RecvStatus::kOk; ++i) {
    ipc::Request req;
    st = ipc::Recv(ipc_fd_, &req, &error, /*dont_wait=*/i > 0);
    if (st == ipc::RecvStatus::kOk && !Dispatch(req, &error)) st = ipc::RecvStatus::kProtocolError;
  }
  pumping_ = false;
  Pump();
  if (st == ipc::RecvStatus::kOk || st == ipc::RecvStatus::kWouldBlock) return;
  StopReading();
  if (on_end_) on_end_(st, error);
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
  size_t row = kOps;
  for (size_t i = 0; i < kOps; ++i) {
    if (kDispatch[i].op == req.op_case()) row = i;
  }
  if (row == kOps) {
    *error = "request with no known operation";
    return false;
  }
  const Entry& entry = kDispatch[row];
  ++requests_;
  const Clock::time_point now = Clock::now();
  const Deadline deadline = now + std::chrono::milliseconds(req.timeout_ms());
  if (entry.answer != nullptr) {
    ipc::Reply reply;
    reply.set_id(req.id());
    (this->*entry.answer)(req, &reply);
    Finish(entry, req, now, deadline, std::nullopt, &reply);
    return true;
  }
  std::optional<uint64_t> key_version;
  Status refused = entry.check(req, &key_version);
  if (refused.ok() && queued_ >= limits_.max_queued) {
    refused = Status(Code::kResourceExhausted, "broker is overloaded; retry later");
  }
  if (!refused.ok()) {
    ipc::Reply reply;
    reply.set_id(req.id());
    SetError(&reply, refused);
    SendReply(reply, deadline);
    LogRefusal(entry.name, req, refused);
    return true;
  }
  queues_[row].push_back({req, deadline, now, key_version});
  ++queued_;
  Pump();
  return true;
}

void Broker::Pump() {
  if (pumping_) return;  // a batch finished inside the loop below: the loop goes on
  pumping_ = true;
  while (calls_ < limits_.max_in_flight && queued_ > 0) {
    // The operation whose oldest request has waited longest goes next.
    size_t row = kOps;
    for (size_t i = 0; i < kOps; ++i) {
      if (queues_[i].empty()) continue;
      if (row == kOps || queues_[i].front().received < queues_[row].front().received) row = i;
    }
    std::deque<Pending>& q = queues_[row];
    // Everything that waits leaves at once, in as few calls as kMaxBatch allows: a lone request
    // goes alone, requests read in the same wakeup (or queued while every slot was taken) go
    // together. One Vault call for a burst costs one TLS record each way, one JSON document
    // and one Vault request instead of one per caller; spreading a burst over free slots would
    // only add calls (Vault answers a batch item in microseconds).
    const size_t take = std::min(VaultBackend::kMaxBatch, q.size());
    auto* batch = new Batch;
    batch->entry = &kDispatch[row];
    batch->start = Clock::now();
    batch->requests.reserve(take);
    for (size_t i = 0; i < take; ++i) {
      batch->requests.push_back(std::move(q.front()));
      q.pop_front();
    }
    queued_ -= take;
    in_vault_ += take;
    (this->*batch->entry->send)(batch);
  }
  pumping_ = false;
}

Deadline Broker::StillWanted(Batch* b) {
  Deadline latest = b->start;
  for (size_t i = 0; i < b->requests.size(); ++i) {
    if (b->start >= b->requests[i].deadline) continue;  // answered kExpired in BatchDone
    b->item_of.push_back(i);
    latest = std::max(latest, b->requests[i].deadline);
  }
  b->replies.resize(b->requests.size());
  if (!b->item_of.empty()) {
    b->called_vault = true;
    ++calls_;
  }
  // The call may run until the latest deadline: a caller whose own deadline passes first has
  // stopped waiting (the frontend answers it), and the others still get their answer.
  return latest;
}

void Broker::HandleEncrypt(Batch* b) {
  const Deadline latest = StillWanted(b);
  for (size_t i : b->item_of) {
    b->encrypts.emplace_back();
    b->encrypts.back().plaintext = b->requests[i].req.encrypt().plaintext();
  }
  auto done = [this, b] {
    for (size_t k = 0; k < b->encrypts.size(); ++k) {
      VaultBackend::EncryptItem& item = b->encrypts[k];
      ipc::Reply& reply = b->replies[b->item_of[k]];
      if (!item.status.ok()) {
        SetError(&reply, item.status);
        continue;
      }
      reply.mutable_encrypt()->set_ciphertext(std::move(item.ciphertext));
      reply.mutable_encrypt()->set_key_id(std::move(item.key_id));
      b->requests[b->item_of[k]].key_version = item.version;
    }
    BatchDone(b);
  };
  if (!b->called_vault) return done();
  backend_->EncryptBatch(&b->encrypts, latest, done);
}

void Broker::HandleDecrypt(Batch* b) {
  const Deadline latest = StillWanted(b);
  for (size_t i : b->item_of) {
    b->decrypts.emplace_back();
    b->decrypts.back().ciphertext = b->requests[i].req.decrypt().ciphertext();
    b->decrypts.back().key_id = b->requests[i].req.decrypt().key_id();
  }
  auto done = [this, b] {
    for (size_t k = 0; k < b->decrypts.size(); ++k) {
      VaultBackend::DecryptItem& item = b->decrypts[k];
      ipc::Reply& reply = b->replies[b->item_of[k]];
      if (!item.status.ok()) {
        SetError(&reply, item.status);
        continue;
      }
      reply.mutable_decrypt()->set_plaintext(std::move(item.plaintext));
      WipeString(&item.plaintext);
    }
    BatchDone(b);
  };
  if (!b->called_vault) return done();
  backend_->DecryptBatch(&b->decrypts, latest, done);
}

void Broker::BatchDone(Batch* b) {
  log::Coalesce one_write;  // the batch's request lines leave in one write()
  std::vector<bool> answered(b->requests.size(), false);
  for (size_t k : b->item_of) answered[k] = true;
  for (size_t i = 0; i < b->requests.size(); ++i) {
    ipc::Reply& reply = b->replies[i];
    reply.set_id(b->requests[i].req.id());
    if (!answered[i]) SetError(&reply, kExpired);
    Finish(*b->entry, b->requests[i].req, b->start, b->requests[i].deadline,
           b->requests[i].key_version, &reply);
  }
  if (b->called_vault) --calls_;
  in_vault_ -= b->requests.size();
  delete b;
  Pump();
}

void Broker::Finish(const Entry& entry, const ipc::Request& req, Clock::time_point start,
                    Deadline deadline, std::optional<uint64_t> key_version, ipc::Reply* reply) {
  SendReply(*reply, deadline);
  // Plaintext was needed only for the send; don't leave it in freed heap memory.
  if (reply->has_decrypt()) WipeString(reply->mutable_decrypt()->mutable_plaintext());
  if (entry.send == nullptr) return;  // Status and Stats: polled, not worth a line each
  // The one line per Encrypt and Decrypt (the apiserver caches its DEK seeds, so they are
  // rare), written here because the broker knows how each ended at Vault: the frontend logs
  // only what fails before or outside the broker (proto/broker.proto, Error).
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  Code code = reply->has_error() ? static_cast<Code>(reply->error().code()) : Code::kOk;
  auto fields = [&] {
    log::Fields f = {{"op", entry.name}, {"uid", validate::LoggableUid(req.uid())}};
    if (key_version) f.emplace_back("key_version", *key_version);
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

void Broker::HandleStatus(const ipc::Request&, ipc::Reply* reply) {
  BackendHealth h = backend_->Health();
  auto* st = reply->mutable_status();
  st->set_healthz(h.healthz);
  st->set_key_id(h.key_id);
  st->set_ready(h.ready);
  st->set_ready_reason(h.ready_reason);
  st->set_key_version(h.key_version);
}

void Broker::HandleStats(const ipc::Request&, ipc::Reply* reply) {
  BackendStats b = backend_->Stats();
  auto* st = reply->mutable_stats();
  st->set_requests_total(requests_);
  st->set_logins_ok(b.logins_ok);
  st->set_logins_failed(b.logins_failed);
  st->set_renewals_ok(b.renewals_ok);
  st->set_renewals_failed(b.renewals_failed);
  st->set_token_ttl_seconds(b.token_ttl_seconds);
  st->set_key_version(b.key_version);
  st->set_seconds_since_vault_contact(b.seconds_since_vault_contact);
  st->set_key_refreshes_ok(b.key_refreshes_ok);
  st->set_key_refreshes_failed(b.key_refreshes_failed);
  for (const auto& use : b.decrypt_versions) {
    auto* v = st->add_decrypt_key_versions();
    v->set_version(use.version);
    v->set_decrypts(use.decrypts);
    v->set_last_unix(use.last_unix);
  }
  st->set_decrypts_foreign_key_id(b.foreign_key_id_decrypts);
  st->set_foreign_key_id_last_unix(b.foreign_key_id_last_unix);
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
  return ipc::Send(ipc_fd_, reply, Clock::now(), &err);
}

void Broker::SendReply(const ipc::Reply& reply, Deadline deadline) {
  std::string frame, err;
  if (!ipc::Encode(reply, &frame, &err)) {
    log::Error("cannot encode a reply", {{"error", err}});
    return;
  }
  if (outbox_.empty()) {
    ipc::SendStatus st = ipc::TrySend(ipc_fd_, frame, &err);
    if (st != ipc::SendStatus::kFull) {
      WipeString(&frame);
      // The frontend is gone or going; main sees the closed channel and exits.
      if (st == ipc::SendStatus::kFailed) log::Debug("cannot send reply", {{"error", err}});
      return;
    }
  }
  // No room now: the reply waits for some, until its caller's deadline, behind the others
  // (order kept). A frontend that does not read loses what the bounded outbox cannot hold.
  if (outbox_.size() >= limits_.max_unsent) {
    WipeString(&frame);
    log::Debug("reply dropped: the frontend is not reading");
    return;
  }
  outbox_.push_back({std::move(frame), deadline});
  UpdateWatch();
}

void Broker::FlushOutbox() {
  const Clock::time_point now = Clock::now();
  while (!outbox_.empty()) {
    Unsent& u = outbox_.front();
    if (u.deadline > now) {
      std::string err;
      ipc::SendStatus st = ipc::TrySend(ipc_fd_, u.frame, &err);
      if (st == ipc::SendStatus::kFull) break;
      if (st == ipc::SendStatus::kFailed) log::Debug("cannot send reply", {{"error", err}});
    }
    WipeString(&u.frame);
    outbox_.pop_front();
  }
  UpdateWatch();
}

}  // namespace vkms::broker
