#include "broker/vault/token_manager.h"

#include <algorithm>
#include <ctime>

#include "broker/vault/auth_answer.h"
#include "broker/vault/capabilities.h"
#include "broker/vault/client_cert.h"
#include "shared/log.h"

namespace vkms::broker {
namespace {

std::string TransportReason(const VaultResponse& r) {
  if (r.transport == Code::kFailedPrecondition) return "invalid vault configuration: " + r.error;
  return TransportFailureReason(r);
}

Code TransportCode(const VaultResponse& r) {
  return r.transport == Code::kDeadlineExceeded ? Code::kDeadlineExceeded : Code::kUnavailable;
}

std::string HttpReason(const VaultResponse& r) {
  return r.error.empty() ? "HTTP " + std::to_string(r.status) : r.error;
}

// Reads the answer to a login at auth/<mount>/login into *cred, and says what it means: a
// transport failure, Vault's refusal of the credential, or an answer without a usable token.
Status ReadLoginAnswer(VaultResponse* r, AuthAnswer* cred) {
  std::string why;
  const bool parsed = ReadAuthAnswer(AuthAnswerKind::kLogin, &r->json, cred, &why);
  if (r->transport != Code::kOk) return Status(TransportCode(*r), TransportReason(*r));
  if (!r->ok()) {
    return Status(
        r->status == 400 || r->status == 403 ? Code::kPermissionDenied : Code::kUnavailable,
        "vault login failed: " + HttpReason(*r));
  }
  if (!parsed) return Status(Code::kUnavailable, "vault login failed: " + why);
  return Status::Ok();
}

}  // namespace

struct TokenManager::Credential : AuthAnswer {};

// One CallWithToken in progress: the request, the token it was sent with, and its answer.
struct TokenManager::Call {
  CallId id = 0;
  bool finished = false;  // `done` has run (answered, or cancelled)
  VaultHttp::TransferId transfer = 0;
  HttpMethod method;
  std::string path;
  std::string_view body;
  std::string ns;
  Deadline deadline;
  VaultHttp::Done done;
  bool retried = false;
  uint64_t gen = 0;
  std::shared_ptr<const SecretString> token;
  VaultResponse resp;
};

TokenManager::TokenManager(const VaultConfig& config, VaultHttp* http, Options options)
    : config_(config), http_(http), loop_(http->loop()), options_(options) {}

TokenManager::~TokenManager() {
  Stop();
}

void TokenManager::Start() {
  loop_->Call([this] {
    if (started_) return;
    started_ = true;
    stopping_ = false;
    if (!token_) {
      Schedule(Next::kLogin, Clock::duration::zero());
    } else {
      Schedule(next_, next_at_ - Clock::now());
    }
  });
}

void TokenManager::Stop() {
  loop_->Call([this] {
    started_ = false;
    stopping_ = true;
    loop_->CancelTimer(&step_timer_);
    // Their callbacks run now and find stopping_ set: no schedule, no log, no counters.
    if (renew_transfer_ != 0) http_->Cancel(renew_transfer_);
    if (login_transfer_ != 0) http_->Cancel(login_transfer_);
    std::vector<CallId> ids;
    for (const auto& [id, call] : calls_) ids.push_back(id);
    for (CallId id : ids) Cancel(id);
    stopping_ = false;
  });
}

void TokenManager::Schedule(Next next, Clock::duration in) {
  next_ = next;
  next_at_ = Clock::now() + std::max<Clock::duration>(in, Clock::duration::zero());
  loop_->CancelTimer(&step_timer_);
  if (!started_ || next_ == Next::kNone) return;
  step_timer_ = loop_->AddTimer(next_at_, [this] {
    step_timer_ = EventLoop::Timer();
    RunStep();
  });
}

void TokenManager::RunStep() {
  Next step = next_;
  // Placeholder so a step that does not reschedule (joining someone else's login) cannot
  // spin; the login or renewal replaces it with the real schedule.
  Schedule(step, options_.backoff_min);
  Deadline deadline = Clock::now() + options_.background_timeout;
  if (step == Next::kLogin) {
    Login(deadline, [](const Status&) {});
  } else if (step == Next::kRenew) {
    Renew(deadline, [](const Status&) {});
  }
}

void TokenManager::FailureBackoff() {
  backoff_ =
      backoff_.count() == 0 ? options_.backoff_min : std::min(options_.backoff_max, backoff_ * 2);
  Schedule(Next::kLogin, Jitter(backoff_));
}

VaultRequest TokenManager::LoginRequest(const std::string& mount, std::string_view body,
                                        Deadline deadline) const {
  VaultRequest req;
  req.method = HttpMethod::kPost;
  req.path = "auth/" + mount + "/login";
  req.body = body;
  req.ns = config_.auth_ns.empty() ? config_.ns : config_.auth_ns;
  req.deadline = deadline;
  return req;
}

void TokenManager::AppRoleLogin(Deadline deadline, std::function<void(Status, Credential*)> done) {
  auto fail = [this, &done](Status s) {
    loop_->Defer([done = std::move(done), s] { done(s, nullptr); });
  };
  std::string error;
  auto role_id = std::make_shared<SecretString>();
  if (!config_.role_id_file.empty()) {
    if (!ReadSecretFile(config_.role_id_file, role_id.get(), &error)) {
      return fail(Status(Code::kFailedPrecondition, "vault login failed: " + error));
    }
  } else if (!config_.role_id.empty()) {
    *role_id = SecretString(std::string(config_.role_id));
  } else {
    return fail(
        Status(Code::kFailedPrecondition, "vault login failed: no AppRole role-id configured"));
  }
  // Read at every login: the file may have been rotated since the last one.
  auto secret_id = std::make_shared<SecretString>();
  if (!config_.secret_id_file.empty() &&
      !ReadSecretFile(config_.secret_id_file, secret_id.get(), &error)) {
    return fail(Status(Code::kFailedPrecondition, "vault login failed: " + error));
  }

  // Built by hand into a buffer reserved for the worst case: no reallocation leaves a copy of
  // the secret-id behind, and the one buffer is wiped when the answer is in.
  auto body = std::make_shared<std::string>();
  body->reserve(32 + JsonStringReserve(role_id->size()) + JsonStringReserve(secret_id->size()));
  body->append("{\"role_id\":");
  AppendJsonString(body.get(), role_id->view());
  if (!secret_id->empty()) {
    body->append(",\"secret_id\":");
    AppendJsonString(body.get(), secret_id->view());
  }
  body->push_back('}');

  VaultRequest req = LoginRequest(config_.approle_mount, *body, deadline);
  login_transfer_ =
      http_->Start(req, [this, body, role_id, secret_id, done = std::move(done)](VaultResponse* r) {
        login_transfer_ = 0;
        WipeString(body.get());
        RedactSecret(&r->error, role_id->view());
        RedactSecret(&r->error, secret_id->view());
        secret_id->Clear();
        role_id->Clear();
        Credential cred;
        Status s = ReadLoginAnswer(r, &cred);
        done(s, &cred);
      });
}

void TokenManager::TokenFileLogin(Deadline deadline,
                                  std::function<void(Status, Credential*)> done) {
  std::string error;
  auto cred = std::make_shared<Credential>();
  // Re-read at every re-authentication: an agent may have written a fresh token.
  if (!ReadSecretFile(config_.token_file, &cred->token, &error)) {
    Status s(Code::kFailedPrecondition, "vault token unavailable: " + error);
    loop_->Defer([done = std::move(done), s] { done(s, nullptr); });
    return;
  }
  VaultRequest req;
  req.method = HttpMethod::kGet;
  req.path = "auth/token/lookup-self";
  req.token = cred->token.view();
  req.ns = config_.ns;
  req.deadline = deadline;
  login_transfer_ = http_->Start(req, [this, cred, done = std::move(done)](VaultResponse* r) {
    login_transfer_ = 0;
    RedactSecret(&r->error, cred->token.view());
    // lookup-self echoes the token as data.id; the reader wipes it.
    SecretString token = std::move(cred->token);
    std::string why;
    bool parsed = ReadAuthAnswer(AuthAnswerKind::kLookupSelf, &r->json, cred.get(), &why);
    cred->token = std::move(token);
    Status s;
    if (r->transport != Code::kOk) {
      s = Status(TransportCode(*r), TransportReason(*r));
    } else if (!r->ok()) {
      s = Status(r->status == 403 ? Code::kPermissionDenied : Code::kUnavailable,
                 "vault token from " + config_.token_file + " rejected: " + HttpReason(*r));
    } else if (!parsed) {
      s = Status(Code::kUnavailable, "vault token lookup failed: " + why);
    }
    if (!s.ok()) cred->token.Clear();
    done(s, cred.get());
  });
}

void TokenManager::CertLogin(Deadline deadline, std::function<void(Status, Credential*)> done) {
  // No secret in the body: the credential is the certificate of the TLS connection.
  auto body = std::make_shared<std::string>("{}");
  if (!config_.cert_auth_role.empty()) {
    body->assign("{\"name\":");
    AppendJsonString(body.get(), config_.cert_auth_role);
    body->push_back('}');
  }
  VaultRequest req = LoginRequest(config_.cert_auth_mount, *body, deadline);
  req.fresh_connection = true;
  login_transfer_ = http_->Start(req, [this, body, done = std::move(done)](VaultResponse* r) {
    login_transfer_ = 0;
    Credential cred;
    Status s = ReadLoginAnswer(r, &cred);
    if (!s.ok()) {
      // Vault's text names neither the file nor the fix (it refuses an expired certificate
      // with a 500, "failed to verify client's certificate"); the certificate on disk may.
      std::string problem = ClientCertificateProblem(config_.client_cert, std::time(nullptr));
      if (!problem.empty()) s = Status(s.code(), s.message() + " (" + problem + ")");
    }
    done(s, &cred);
  });
}

void TokenManager::DoLogin(Deadline deadline, std::function<void(Status, Credential*)> done) {
  switch (config_.auth_method) {
    case AuthMethod::kToken:
      return TokenFileLogin(deadline, std::move(done));
    case AuthMethod::kCert:
      return CertLogin(deadline, std::move(done));
    case AuthMethod::kAppRole:
      return AppRoleLogin(deadline, std::move(done));
  }
}

void TokenManager::Login(Deadline deadline, StatusDone done) {
  const uint64_t id = ++next_waiter_id_;
  LoginWaiter waiter{id, std::move(done), EventLoop::Timer()};
  if (login_in_flight_) {
    // Single flight: wait for the login already running and share its outcome, but no longer
    // than this caller's own deadline.
    waiter.timeout = loop_->AddTimer(deadline, [this, id] {
      auto it = std::find_if(login_waiters_.begin(), login_waiters_.end(),
                             [id](const LoginWaiter& w) { return w.id == id; });
      if (it == login_waiters_.end()) return;
      StatusDone late = std::move(it->done);
      login_waiters_.erase(it);
      late(Status(Code::kDeadlineExceeded, "timed out waiting for the vault login in progress"));
    });
    login_waiters_.push_back(std::move(waiter));
    return;
  }
  // The login runs until this caller's deadline; its outcome goes to everyone who joined.
  login_waiters_.push_back(std::move(waiter));
  login_in_flight_ = true;
  const Clock::time_point started = Clock::now();
  DoLogin(deadline, [this, started](Status s, Credential* cred) { LoginDone(s, cred, started); });
}

void TokenManager::LoginDone(const Status& s, Credential* cred, Clock::time_point started) {
  login_in_flight_ = false;
  std::vector<LoginWaiter> waiters;
  waiters.swap(login_waiters_);
  for (LoginWaiter& w : waiters) loop_->CancelTimer(&w.timeout);
  if (stopping_) {
    for (LoginWaiter& w : waiters) w.done(Status(Code::kUnavailable, "vault login cancelled"));
    return;
  }
  login_attempted_ = true;
  last_login_status_ = s;
  const char* method = AuthMethodName(config_.auth_method);
  if (s.ok()) {
    token_ = std::make_shared<const SecretString>(std::move(cred->token));
    ++generation_;
    ++logins_ok_;
    backoff_ = std::chrono::milliseconds(0);
    last_error_.clear();
    token_expires_ = cred->lease_s > 0;
    // Measured from when the request was sent: Vault's clock started no later than that.
    token_expiry_ = started + std::chrono::seconds(cred->lease_s);
    requested_lease_s_ = cred->increment_s;
    renewable_ = cred->renewable;
    auto at = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
        static_cast<double>(cred->lease_s) * options_.renew_fraction));
    at -= Clock::now() - started;
    if (!token_expires_) {
      Schedule(Next::kNone, Clock::duration::zero());
    } else {
      Schedule(renewable_ ? Next::kRenew : Next::kLogin, at);
    }
    log::Info("vault login succeeded",
              {{"method", method}, {"lease_s", cred->lease_s}, {"renewable", renewable_}});
  } else {
    ++logins_failed_;
    last_error_ = s.message();
    last_login_failure_ = Clock::now();
    FailureBackoff();
    log::Warning("vault login failed",
                 {{"method", method}, {"error", s.message()}, {"retry_in_ms", backoff_.count()}});
  }
  for (LoginWaiter& w : waiters) w.done(s);
}

void TokenManager::Renew(Deadline deadline, StatusDone done) {
  uint64_t gen = 0;
  std::shared_ptr<const SecretString> token = CurrentToken(&gen);
  const int64_t increment = requested_lease_s_;
  if (!token) {
    // Expired or dropped meanwhile: only a login can help now.
    if (next_ == Next::kRenew) Schedule(Next::kLogin, Clock::duration::zero());
    loop_->Defer([done = std::move(done)] {
      done(Status(Code::kFailedPrecondition, "no vault token to renew"));
    });
    return;
  }
  auto body = std::make_shared<const std::string>(
      increment > 0 ? "{\"increment\":" + std::to_string(increment) + "}" : std::string("{}"));
  VaultRequest req;
  req.method = HttpMethod::kPost;
  req.path = "auth/token/renew-self";
  req.body = *body;
  req.token = token->view();
  req.ns = config_.ns;
  req.deadline = deadline;
  // Vault checks a certificate token's renewal against the connection's client certificate.
  req.fresh_connection = config_.auth_method == AuthMethod::kCert;
  const Clock::time_point started = Clock::now();
  renew_transfer_ = http_->Start(
      req, [this, token, body, gen, increment, started, done = std::move(done)](VaultResponse* r) {
        renew_transfer_ = 0;
        RedactSecret(&r->error, token->view());
        // renew-self echoes the token as auth.client_token; the reader wipes it.
        AuthAnswer answer;
        std::string why;
        bool parsed = ReadAuthAnswer(AuthAnswerKind::kRenewSelf, &r->json, &answer, &why);
        const int64_t lease = answer.lease_s;
        if (stopping_) return done(Status(Code::kUnavailable, "vault token renewal cancelled"));
        if (gen != generation_) return done(Status::Ok());  // a login replaced the token meanwhile
        if (!r->ok() || !parsed) {
          Status s = r->transport != Code::kOk
                         ? Status(TransportCode(*r), TransportReason(*r))
                         : Status(Code::kUnavailable,
                                  "vault token renewal failed: " +
                                      (r->ok() ? why
                                       : r->status == 403
                                           ? DeniedText("update", "auth/token/renew-self", r->error)
                                           : HttpReason(*r)));
          ++renewals_failed_;
          last_error_ = s.message();
          Schedule(Next::kLogin, Clock::duration::zero());
          log::Warning("vault token renewal failed; logging in again", {{"error", s.message()}});
          return done(s);
        }
        ++renewals_ok_;
        last_error_.clear();
        token_expires_ = lease > 0;
        token_expiry_ = started + std::chrono::seconds(lease);
        renewable_ = answer.renewable;
        bool capped = increment > 0 && lease < increment;
        for (const auto& w : r->warnings) {
          if (w.find("max_ttl") != std::string::npos) capped = true;
        }
        auto at = std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(static_cast<double>(lease) * options_.renew_fraction));
        at -= Clock::now() - started;
        if (!token_expires_) {
          Schedule(Next::kNone, Clock::duration::zero());
        } else if (capped || !renewable_) {
          // Renewing again would only shrink the lease further: log in again before it runs out.
          Schedule(Next::kLogin, at);
          log::Info("vault token renewal capped by max_ttl; will log in again before expiry",
                    {{"lease_s", lease}, {"asked_s", increment}});
        } else {
          Schedule(Next::kRenew, at);
          log::Debug("vault token renewed", {{"lease_s", lease}});
        }
        done(Status::Ok());
      });
}

std::shared_ptr<const SecretString> TokenManager::CurrentToken(uint64_t* generation) const {
  *generation = generation_;
  if (!token_) return nullptr;
  if (token_expires_ && Clock::now() >= token_expiry_) return nullptr;
  return token_;
}

TokenManager::CallId TokenManager::CallWithToken(HttpMethod method, std::string_view path,
                                                 std::string_view body, const std::string& ns,
                                                 Deadline deadline, VaultHttp::Done done) {
  auto call = std::make_shared<Call>();
  call->id = ++next_call_id_;
  calls_.emplace(call->id, call);
  call->method = method;
  call->path = std::string(path);
  call->body = body;
  call->ns = ns;
  call->deadline = deadline;
  call->done = std::move(done);
  if (stopping_) {
    // Started by a callback of a call being cancelled: it is cancelled as well.
    call->resp.transport = Code::kUnavailable;
    call->resp.error = "cancelled";
    loop_->Defer([this, call] { CallFinish(call); });
    return call->id;
  }
  CallBegin(call, /*inside_call=*/true);
  return call->id;
}

void TokenManager::Cancel(CallId id) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  std::shared_ptr<Call> call = it->second;
  call->resp = VaultResponse();
  call->resp.transport = Code::kUnavailable;
  call->resp.error = "cancelled";
  CallFinish(call);
  // Its own callback then finds the call finished and does nothing more.
  if (call->transfer != 0) http_->Cancel(call->transfer);
}

void TokenManager::CallBegin(const std::shared_ptr<Call>& call, bool inside_call) {
  // Uses the token held now, or waits for (or runs) a login.
  call->token = CurrentToken(&call->gen);
  if (call->token) return CallSend(call);
  auto no_token = [call](const std::string& why) {
    call->resp = VaultResponse();
    call->resp.transport =
        Clock::now() >= call->deadline ? Code::kDeadlineExceeded : Code::kUnauthenticated;
    call->resp.error = why.empty() ? "no vault token" : why;
  };
  // Requests must not turn a failing login into a login storm: within the backoff window
  // after a failure they get that failure instead of another attempt.
  if (!login_in_flight_ && login_attempted_ && !last_login_status_.ok() &&
      Clock::now() - last_login_failure_ < backoff_) {
    no_token(last_error_);
    // Answers decided before any I/O reach the caller from the loop, not from inside its call.
    if (inside_call) {
      loop_->Defer([this, call] { CallFinish(call); });  // a no-op if cancelled meanwhile
    } else {
      CallFinish(call);
    }
    return;
  }
  Login(call->deadline, [this, call, no_token](const Status& s) {
    if (call->finished) return;
    call->token = CurrentToken(&call->gen);
    if (!call->token) {
      no_token(s.ok() ? std::string() : s.message());
      return CallFinish(call);
    }
    CallSend(call);
  });
}

void TokenManager::CallSend(const std::shared_ptr<Call>& call) {
  VaultRequest req;
  req.method = call->method;
  req.path = call->path;
  req.body = call->body;
  req.token = call->token->view();
  req.ns = call->ns;
  req.deadline = call->deadline;
  call->transfer = http_->Start(req, [this, call](VaultResponse* r) {
    call->transfer = 0;
    if (call->finished) return;
    RedactSecret(&r->error, call->token->view());
    if (r->transport != Code::kOk || r->status != 403 || call->retried) {
      call->resp = std::move(*r);
      return CallFinish(call);
    }
    call->resp = std::move(*r);
    CallDenied(call);
  });
}

void TokenManager::CallDenied(const std::shared_ptr<Call>& call) {
  if (generation_ != call->gen) {  // someone already logged in again
    call->retried = true;
    return CallBegin(call, false);
  }
  // A new login only helps if the token itself is bad. Recent Vaults say so ("invalid
  // token"); otherwise ask Vault. Logging in for a policy denial would only mint tokens.
  if (call->resp.error.find("invalid token") != std::string::npos) {
    return CallRelogin(call, /*unsure=*/false);
  }
  VaultRequest req;
  req.method = HttpMethod::kGet;
  req.path = "auth/token/lookup-self";
  req.token = call->token->view();
  req.ns = call->ns;
  req.deadline = call->deadline;
  call->transfer = http_->Start(req, [this, call](VaultResponse* look) {
    call->transfer = 0;
    WipeTokenFields(&look->json);
    if (call->finished) return;
    // A valid token (a policy denial), or Vault gone: the 403 stands.
    if (look->ok() || look->transport != Code::kOk) return CallFinish(call);
    bool invalid = look->status == 403 && look->error.find("invalid token") != std::string::npos;
    CallRelogin(call, /*unsure=*/!invalid);
  });
}

void TokenManager::CallRelogin(const std::shared_ptr<Call>& call, bool unsure) {
  if (generation_ != call->gen) {
    call->retried = true;
    return CallBegin(call, false);
  }
  if (unsure && !login_in_flight_) {
    // Old Vaults do not tell a dead token from a policy that also denies lookup-self: allow
    // such a login now and then, never a storm of them.
    Clock::time_point now = Clock::now();
    if (last_denied_relogin_ != Clock::time_point() &&
        now - last_denied_relogin_ < options_.denied_relogin_interval) {
      return CallFinish(call);
    }
    last_denied_relogin_ = now;
  }
  log::Info("vault refused the token; logging in again");
  Login(call->deadline, [this, call](const Status& s) {
    if (call->finished) return;
    if (generation_ != call->gen) {
      call->retried = true;
      return CallBegin(call, false);
    }
    if (!s.ok()) {
      call->resp.error += " (new login failed: " + s.message() + ")";
      // The old token was refused and nothing replaced it: stop presenting it as valid.
      token_.reset();
    }
    CallFinish(call);
  });
}

void TokenManager::CallFinish(const std::shared_ptr<Call>& call) {
  if (call->finished) return;
  call->finished = true;
  calls_.erase(call->id);
  VaultHttp::Done done = std::move(call->done);
  done(&call->resp);
}

VaultResponse TokenManager::CallWithToken(HttpMethod method, std::string_view path,
                                          std::string_view body, const std::string& ns,
                                          Deadline deadline) {
  return loop_->Await<VaultResponse>([&](std::function<void(VaultResponse)> done) {
    CallWithToken(method, path, body, ns, deadline,
                  [done = std::move(done)](VaultResponse* r) { done(std::move(*r)); });
  });
}

Status TokenManager::Login(Deadline deadline) {
  return loop_->Await<Status>([&](std::function<void(Status)> done) {
    Login(deadline, [done = std::move(done)](const Status& s) { done(s); });
  });
}

Status TokenManager::Renew(Deadline deadline) {
  return loop_->Await<Status>([&](std::function<void(Status)> done) {
    Renew(deadline, [done = std::move(done)](const Status& s) { done(s); });
  });
}

TokenState TokenManager::State() const {
  return loop_->Call([this] {
    Clock::time_point now = Clock::now();
    TokenState s;
    s.has_token = token_ != nullptr && (!token_expires_ || now < token_expiry_);
    s.login_attempted = login_attempted_;
    s.last_error = last_error_;
    if (token_ != nullptr && token_expires_) {
      s.ttl_seconds = std::max<int64_t>(
          0, std::chrono::duration_cast<std::chrono::seconds>(token_expiry_ - now).count());
    }
    s.relogin_scheduled = next_ == Next::kLogin;
    if (next_ != Next::kNone) {
      s.next_step_in =
          std::max(std::chrono::milliseconds(0),
                   std::chrono::duration_cast<std::chrono::milliseconds>(next_at_ - now));
    }
    s.logins_ok = logins_ok_;
    s.logins_failed = logins_failed_;
    s.renewals_ok = renewals_ok_;
    s.renewals_failed = renewals_failed_;
    return s;
  });
}

}  // namespace vkms::broker
