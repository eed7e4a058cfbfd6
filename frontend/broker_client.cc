#include "frontend/broker_client.h"

#include "shared/ipc.h"
#include "shared/secret.h"
#include "shared/validate.h"

namespace vkms::frontend {
namespace {

Status FromReplyError(const ipc::Reply& reply) {
  int code = reply.error().code();
  if (code <= 0 || code > 16) return Status(Code::kInternal, "broker sent an invalid error code");
  return Status(static_cast<Code>(code), reply.error().message());
}

}  // namespace

BrokerClient::~BrokerClient() {
  if (reader_.joinable()) reader_.detach();  // the process is exiting; the thread dies with it
}

void BrokerClient::Start(std::function<void(const std::string&)> on_gone,
                         std::function<void()> on_shutdown) {
  on_gone_ = std::move(on_gone);
  on_shutdown_ = std::move(on_shutdown);
  reader_ = std::thread([this] { ReadLoop(); });
}

void BrokerClient::ReadLoop() {
  for (;;) {
    ipc::Reply reply;
    std::string error;
    ipc::RecvStatus st = ipc::Recv(fd_, &reply, &error);
    if (st != ipc::RecvStatus::kOk) {
      on_gone_(st == ipc::RecvStatus::kClosed ? "broker closed the channel" : error);
      return;
    }
    if (reply.id() == 0) {
      if (!reply.has_shutdown()) {
        on_gone_("broker sent an unsolicited message that is not Shutdown");
        return;
      }
      on_shutdown_();
      continue;
    }
    if (reply.has_shutdown()) {
      on_gone_("broker sent Shutdown with a request id");
      return;
    }
    std::promise<ipc::Reply> waiter;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pending_.find(reply.id());
      if (it == pending_.end()) continue;  // its caller already gave up (deadline)
      waiter = std::move(it->second);
      pending_.erase(it);
    }
    waiter.set_value(std::move(reply));
  }
}

Status BrokerClient::Call(ipc::Request* req, Deadline deadline, ipc::Reply* reply) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0)
    return Status(Code::kDeadlineExceeded, "deadline exceeded before the call");
  req->set_timeout_ms(static_cast<uint32_t>(std::min<long long>(left.count(), 60000)));
  uint64_t id = next_id_.fetch_add(1);
  req->set_id(id);
  std::future<ipc::Reply> result;
  {
    std::lock_guard<std::mutex> lock(mu_);
    result = pending_[id].get_future();
  }
  std::string error;
  if (!ipc::Send(fd_, *req, deadline, &error)) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.erase(id);
    return Status(Code::kUnavailable, "broker unavailable: " + error);
  }
  if (result.wait_until(deadline) != std::future_status::ready) {
    std::lock_guard<std::mutex> lock(mu_);
    if (pending_.erase(id) == 1) {
      return Status(Code::kDeadlineExceeded, "deadline exceeded waiting for the broker");
    }
    // The reply arrived between the timeout and the lock: take it.
  }
  *reply = result.get();
  if (reply->has_error()) return FromReplyError(*reply);
  return Status::Ok();
}

Status BrokerClient::Encrypt(std::string_view plaintext, std::string_view uid, Deadline deadline,
                             std::string* ciphertext, std::string* key_id) {
  ipc::Request req;
  req.set_uid(validate::LoggableUid(uid));
  req.mutable_encrypt()->set_plaintext(std::string(plaintext));
  ipc::Reply reply;
  Status s = Call(&req, deadline, &reply);
  WipeString(req.mutable_encrypt()->mutable_plaintext());
  if (!s.ok()) return s;
  if (!reply.has_encrypt())
    return Status(Code::kInternal, "broker answered Encrypt with another type");
  *ciphertext = std::move(*reply.mutable_encrypt()->mutable_ciphertext());
  *key_id = std::move(*reply.mutable_encrypt()->mutable_key_id());
  return Status::Ok();
}

Status BrokerClient::Decrypt(std::string_view ciphertext, std::string_view key_id,
                             std::string_view uid, Deadline deadline, std::string* plaintext) {
  ipc::Request req;
  req.set_uid(validate::LoggableUid(uid));
  req.mutable_decrypt()->set_ciphertext(std::string(ciphertext));
  req.mutable_decrypt()->set_key_id(std::string(key_id));
  ipc::Reply reply;
  Status s = Call(&req, deadline, &reply);
  if (!s.ok()) return s;
  if (!reply.has_decrypt())
    return Status(Code::kInternal, "broker answered Decrypt with another type");
  *plaintext = std::move(*reply.mutable_decrypt()->mutable_plaintext());
  return Status::Ok();
}

Status BrokerClient::Stats(Deadline deadline, ipc::StatsReply* out) {
  ipc::Request req;
  req.mutable_stats();
  ipc::Reply reply;
  Status s = Call(&req, deadline, &reply);
  if (!s.ok()) return s;
  if (!reply.has_stats()) return Status(Code::kInternal, "broker answered Stats with another type");
  *out = std::move(*reply.mutable_stats());
  return Status::Ok();
}

Status BrokerClient::GetStatus(Deadline deadline, BrokerStatus* out) {
  ipc::Request req;
  req.mutable_status();
  ipc::Reply reply;
  Status s = Call(&req, deadline, &reply);
  if (!s.ok()) return s;
  if (!reply.has_status())
    return Status(Code::kInternal, "broker answered Status with another type");
  const auto& st = reply.status();
  out->healthz = st.healthz();
  out->key_id = st.key_id();
  out->ready = st.ready();
  out->ready_reason = st.ready_reason();
  out->key_version = st.key_version();
  return Status::Ok();
}

}  // namespace vkms::frontend
