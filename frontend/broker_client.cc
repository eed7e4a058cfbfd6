#include "frontend/broker_client.h"

#include <poll.h>

#include <algorithm>
#include <condition_variable>
#include <vector>

#include "shared/ipc.h"
#include "shared/secret.h"
#include "shared/validate.h"

namespace vkms::frontend {
namespace {

// How late an unanswered call may learn that its deadline passed.
constexpr auto kSweepInterval = std::chrono::milliseconds(10);
// How long the reader sleeps with nothing pending (a new call is swept at most this late).
constexpr int kIdlePollMs = 100;
// Replies read per wake-up before the reader polls (and sweeps deadlines) again.
constexpr int kMaxRepliesPerWakeup = 64;

Status FromReplyError(const ipc::Reply& reply) {
  int code = reply.error().code();
  if (code <= 0 || code > 16) return Status(Code::kInternal, "broker sent an invalid error code");
  return Status(static_cast<Code>(code), reply.error().message()).MarkLogged();
}

}  // namespace

BrokerClient::~BrokerClient() {
  if (reader_.joinable()) reader_.detach();  // the process is exiting; the thread dies with it
}

void BrokerClient::Start(std::function<void(const std::string&)> on_gone,
                         std::function<void()> on_shutdown, std::function<void()> after_wakeup) {
  on_gone_ = std::move(on_gone);
  on_shutdown_ = std::move(on_shutdown);
  after_wakeup_ = std::move(after_wakeup);
  reader_ = std::thread([this] { ReadLoop(); });
}

void BrokerClient::ExpireDue(Clock::time_point now) {
  std::vector<Done> expired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.deadline <= now) {
        expired.push_back(std::move(it->second.done));
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
  }
  const Status late(Code::kDeadlineExceeded, "deadline exceeded waiting for the broker");
  for (auto& done : expired) done(late, nullptr);
}

void BrokerClient::FailAll(const Status& status) {
  std::unordered_map<uint64_t, Pending> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.swap(pending_);
  }
  for (auto& [id, p] : all) p.done(status, nullptr);
}

void BrokerClient::ReadLoop() {
  Clock::time_point next_sweep = Clock::now() + kSweepInterval;
  for (;;) {
    bool idle;
    {
      std::lock_guard<std::mutex> lock(mu_);
      idle = pending_.empty();
    }
    int wait_ms = idle ? kIdlePollMs
                       : static_cast<int>(std::max<long long>(
                             0, std::chrono::duration_cast<std::chrono::milliseconds>(next_sweep -
                                                                                      Clock::now())
                                        .count() +
                                    1));
    if (after_wakeup_) after_wakeup_();  // after what the last wake-up answered, or a timeout
    struct pollfd p = {fd_, POLLIN, 0};
    int n = poll(&p, 1, wait_ms);
    Clock::time_point now = Clock::now();
    if (now >= next_sweep) {
      ExpireDue(now);
      next_sweep = now + kSweepInterval;
    }
    if (n <= 0) continue;  // timeout or EINTR

    // What is waiting is read before the next poll (up to a bound, so that deadlines are still
    // swept): a batch of answers costs one wake-up and one poll, not one each.
    for (int i = 0; i < kMaxRepliesPerWakeup; ++i) {
      ipc::Reply reply;
      std::string error;
      ipc::RecvStatus st = ipc::Recv(fd_, &reply, &error, /*dont_wait=*/i > 0);
      if (st == ipc::RecvStatus::kWouldBlock) break;
      if (st != ipc::RecvStatus::kOk) {
        std::string why = st == ipc::RecvStatus::kClosed ? "broker closed the channel" : error;
        FailAll(Status(Code::kUnavailable, "broker unavailable: " + why));
        on_gone_(why);
        return;
      }
      if (!Deliver(&reply)) return;
    }
  }
}

bool BrokerClient::Deliver(ipc::Reply* reply) {
  if (reply->id() == 0) {
    if (!reply->has_shutdown()) {
      FailAll(Status(Code::kUnavailable, "broker unavailable: protocol error"));
      on_gone_("broker sent an unsolicited message that is not Shutdown");
      return false;
    }
    on_shutdown_();
    return true;
  }
  if (reply->has_shutdown()) {
    FailAll(Status(Code::kUnavailable, "broker unavailable: protocol error"));
    on_gone_("broker sent Shutdown with a request id");
    return false;
  }
  Done done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pending_.find(reply->id());
    if (it == pending_.end()) return true;  // its deadline already passed
    done = std::move(it->second.done);
    pending_.erase(it);
  }
  if (reply->has_error()) {
    done(FromReplyError(*reply), nullptr);
  } else {
    done(Status::Ok(), reply);
  }
  return true;
}

void BrokerClient::Call(ipc::Request* req, Deadline deadline, Done done) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) {
    done(Status(Code::kDeadlineExceeded, "deadline exceeded before the call"), nullptr);
    return;
  }
  req->set_timeout_ms(static_cast<uint32_t>(std::min<long long>(left.count(), 60000)));
  uint64_t id = next_id_.fetch_add(1);
  req->set_id(id);
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.emplace(id, Pending{deadline, std::move(done)});
  }
  std::string error;
  if (!ipc::Send(fd_, *req, deadline, &error)) {
    Done failed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pending_.find(id);
      if (it == pending_.end()) return;  // the reader already finished it
      failed = std::move(it->second.done);
      pending_.erase(it);
    }
    failed(Status(Code::kUnavailable, "broker unavailable: " + error), nullptr);
  }
}

Status BrokerClient::CallAndWait(ipc::Request* req, Deadline deadline, ipc::Reply* reply) {
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    bool finished = false;
    Status status;
    ipc::Reply reply;
  };
  auto w = std::make_shared<Waiter>();
  Call(req, deadline, [w](const Status& s, ipc::Reply* r) {
    std::lock_guard<std::mutex> lock(w->mu);
    w->status = s;
    if (r != nullptr) w->reply = std::move(*r);
    w->finished = true;
    w->cv.notify_one();
  });
  std::unique_lock<std::mutex> lock(w->mu);
  // The reader finishes every call by its deadline; the margin covers a reader that has not
  // started yet (an HTTP probe during start-up), after which the entry is simply dropped.
  if (!w->cv.wait_until(lock, deadline + std::chrono::seconds(1), [&] { return w->finished; })) {
    return Status(Code::kDeadlineExceeded, "deadline exceeded waiting for the broker");
  }
  if (w->status.ok()) *reply = std::move(w->reply);
  return w->status;
}

void BrokerClient::Encrypt(
    std::string_view plaintext, std::string_view uid, Deadline deadline,
    std::function<void(const Status&, std::string* ciphertext, std::string* key_id)> done) {
  ipc::Request req;
  req.set_uid(validate::LoggableUid(uid));
  req.mutable_encrypt()->set_plaintext(std::string(plaintext));
  Call(&req, deadline, [done = std::move(done)](const Status& s, ipc::Reply* reply) {
    if (!s.ok()) return done(s, nullptr, nullptr);
    if (!reply->has_encrypt())
      return done(Status(Code::kInternal, "broker answered Encrypt with another type"), nullptr,
                  nullptr);
    done(s, reply->mutable_encrypt()->mutable_ciphertext(),
         reply->mutable_encrypt()->mutable_key_id());
  });
  WipeString(req.mutable_encrypt()->mutable_plaintext());
}

void BrokerClient::Decrypt(std::string_view ciphertext, std::string_view key_id,
                           std::string_view uid, Deadline deadline,
                           std::function<void(const Status&, std::string* plaintext)> done) {
  ipc::Request req;
  req.set_uid(validate::LoggableUid(uid));
  req.mutable_decrypt()->set_ciphertext(std::string(ciphertext));
  req.mutable_decrypt()->set_key_id(std::string(key_id));
  Call(&req, deadline, [done = std::move(done)](const Status& s, ipc::Reply* reply) {
    if (!s.ok()) return done(s, nullptr);
    if (!reply->has_decrypt())
      return done(Status(Code::kInternal, "broker answered Decrypt with another type"), nullptr);
    std::string* plaintext = reply->mutable_decrypt()->mutable_plaintext();
    done(s, plaintext);
    WipeString(plaintext);  // whatever the callback did not move out
  });
}

namespace {

Status ReadStatus(const ipc::Reply& reply, BrokerStatus* out) {
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

}  // namespace

void BrokerClient::GetStatus(Deadline deadline,
                             std::function<void(const Status&, BrokerStatus*)> done) {
  ipc::Request req;
  req.mutable_status();
  Call(&req, deadline, [done = std::move(done)](const Status& s, ipc::Reply* reply) {
    BrokerStatus out;
    Status read = s.ok() ? ReadStatus(*reply, &out) : s;
    done(read, read.ok() ? &out : nullptr);
  });
}

Status BrokerClient::GetStatus(Deadline deadline, BrokerStatus* out) {
  ipc::Request req;
  req.mutable_status();
  ipc::Reply reply;
  Status s = CallAndWait(&req, deadline, &reply);
  return s.ok() ? ReadStatus(reply, out) : s;
}

Status BrokerClient::Stats(Deadline deadline, ipc::StatsReply* out) {
  ipc::Request req;
  req.mutable_stats();
  ipc::Reply reply;
  Status s = CallAndWait(&req, deadline, &reply);
  if (!s.ok()) return s;
  if (!reply.has_stats()) return Status(Code::kInternal, "broker answered Stats with another type");
  *out = std::move(*reply.mutable_stats());
  return Status::Ok();
}

}  // namespace vkms::frontend
