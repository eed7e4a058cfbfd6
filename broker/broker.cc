#include "broker/broker.h"

#include <chrono>

#include "shared/log.h"
#include "shared/secret.h"
#include "shared/validate.h"

namespace vkms::broker {
namespace {

void SetError(ipc::Reply* reply, const Status& status) {
  reply->mutable_error()->set_code(static_cast<int32_t>(status.code()));
  reply->mutable_error()->set_message(status.message());
}

}  // namespace

// The whole IPC surface of the broker. Nothing else can be asked of it.
const Broker::Entry Broker::kDispatch[] = {
    {ipc::Request::kEncrypt, "Encrypt", true, &Broker::HandleEncrypt},
    {ipc::Request::kDecrypt, "Decrypt", true, &Broker::HandleDecrypt},
    {ipc::Request::kStatus, "Status", false, &Broker::HandleStatus},
    {ipc::Request::kStats, "Stats", false, &Broker::HandleStats},
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
  if (!pool_->Submit([this, entry, req, deadline] { Run(*entry, req, deadline); })) {
    ipc::Reply reply;
    reply.set_id(req.id());
    SetError(&reply, Status(Code::kResourceExhausted, "broker is overloaded; retry later"));
    SendReply(reply);
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
  SendReply(reply);
  // Plaintext was needed only for the send; don't leave it in freed heap memory.
  if (reply.has_decrypt()) WipeString(reply.mutable_decrypt()->mutable_plaintext());
  if (entry.op == ipc::Request::kStatus || entry.op == ipc::Request::kStats) return;
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  Code code = reply.has_error() ? static_cast<Code>(reply.error().code()) : Code::kOk;
  log::Fields fields = {{"op", entry.name},
                        {"uid", validate::LoggableUid(req.uid())},
                        {"code", CodeName(code)},
                        {"duration_us", std::to_string(us)}};
  if (code == Code::kOk) {
    log::Debug("request done", fields);
  } else {
    fields.emplace_back("error", reply.error().message());
    log::Warning("request failed", fields);
  }
}

void Broker::HandleEncrypt(const ipc::Request& req, Deadline deadline, ipc::Reply* reply) {
  const std::string& plaintext = req.encrypt().plaintext();
  if (Status s = validate::Plaintext(plaintext); !s.ok()) return SetError(reply, s);
  std::string ciphertext, key_id;
  Status s = backend_->Encrypt(plaintext, deadline, &ciphertext, &key_id);
  if (!s.ok()) return SetError(reply, s);
  reply->mutable_encrypt()->set_ciphertext(std::move(ciphertext));
  reply->mutable_encrypt()->set_key_id(std::move(key_id));
}

void Broker::HandleDecrypt(const ipc::Request& req, Deadline deadline, ipc::Reply* reply) {
  const auto& d = req.decrypt();
  uint64_t version = 0;
  if (Status s = validate::VaultCiphertext(d.ciphertext(), &version); !s.ok()) {
    return SetError(reply, s);
  }
  if (Status s = validate::KeyId(d.key_id()); !s.ok()) return SetError(reply, s);
  std::string plaintext;
  Status s = backend_->Decrypt(d.ciphertext(), deadline, &plaintext);
  if (!s.ok()) return SetError(reply, s);
  reply->mutable_decrypt()->set_plaintext(std::move(plaintext));
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
  reply->mutable_stats()->set_requests_total(requests_.load());
}

bool Broker::SendShutdown() {
  ipc::Reply reply;
  reply.set_id(0);
  reply.mutable_shutdown();
  std::string err;
  return ipc::Send(ipc_fd_, reply, &err);
}

void Broker::SendReply(const ipc::Reply& reply) {
  std::string err;
  if (!ipc::Send(ipc_fd_, reply, &err)) {
    // The frontend is gone or going; the main loop notices the closed channel and exits.
    log::Debug("cannot send reply", {{"error", err}});
  }
}

}  // namespace vkms::broker
