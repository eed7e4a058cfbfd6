#include "broker/token_manager.h"

#include <algorithm>

#include "broker/auth_answer.h"
#include "broker/capabilities.h"
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

}  // namespace

struct TokenManager::Credential : AuthAnswer {};

TokenManager::TokenManager(const VaultConfig& config, VaultHttp* http, Options options)
    : config_(config), http_(http), options_(options) {}

TokenManager::~TokenManager() {
  Stop();
}

void TokenManager::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  cancel_.store(false);
  if (!token_) ScheduleLocked(Next::kLogin, Clock::duration::zero());
  thread_ = std::thread(&TokenManager::Run, this);
}

void TokenManager::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cancel_.store(true);
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void TokenManager::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (next_ == Next::kNone) {
      cv_.wait(lock);
      continue;
    }
    if (Clock::now() < next_at_) {
      cv_.wait_until(lock, next_at_);
      continue;
    }
    Next step = next_;
    // Placeholder so a step that does not reschedule (joining someone else's login) cannot
    // spin; Login/Renew replace it with the real schedule.
    next_at_ = Clock::now() + options_.backoff_min;
    lock.unlock();
    Deadline deadline = Clock::now() + options_.background_timeout;
    if (step == Next::kLogin) {
      Login(deadline);
    } else {
      Renew(deadline);
    }
    lock.lock();
  }
}

void TokenManager::ScheduleLocked(Next next, Clock::duration in) {
  next_ = next;
  next_at_ = Clock::now() + std::max<Clock::duration>(in, Clock::duration::zero());
  cv_.notify_all();
}

void TokenManager::FailureBackoffLocked() {
  backoff_ =
      backoff_.count() == 0 ? options_.backoff_min : std::min(options_.backoff_max, backoff_ * 2);
  ScheduleLocked(Next::kLogin, Jitter(backoff_));
}

Status TokenManager::AppRoleLogin(Deadline deadline, Credential* out) {
  std::string error;
  SecretString role_id;
  if (!config_.role_id_file.empty()) {
    if (!ReadSecretFile(config_.role_id_file, &role_id, &error)) {
      return Status(Code::kFailedPrecondition, "vault login failed: " + error);
    }
  } else if (!config_.role_id.empty()) {
    role_id = SecretString(std::string(config_.role_id));
  } else {
    return Status(Code::kFailedPrecondition, "vault login failed: no AppRole role-id configured");
  }
  // Read at every login: the file may have been rotated since the last one.
  SecretString secret_id;
  if (!config_.secret_id_file.empty() &&
      !ReadSecretFile(config_.secret_id_file, &secret_id, &error)) {
    return Status(Code::kFailedPrecondition, "vault login failed: " + error);
  }

  // Built by hand into a buffer reserved for the worst case: no reallocation leaves a copy of
  // the secret-id behind, and the one buffer is wiped below.
  std::string body;
  body.reserve(32 + JsonStringReserve(role_id.size()) + JsonStringReserve(secret_id.size()));
  body.append("{\"role_id\":");
  AppendJsonString(&body, role_id.view());
  if (!secret_id.empty()) {
    body.append(",\"secret_id\":");
    AppendJsonString(&body, secret_id.view());
  }
  body.push_back('}');

  VaultRequest req;
  req.method = HttpMethod::kPost;
  req.path = "auth/" + config_.approle_mount + "/login";
  req.body = body;
  req.ns = config_.auth_ns.empty() ? config_.ns : config_.auth_ns;
  req.deadline = deadline;
  req.cancel = &cancel_;
  VaultResponse r = http_->Call(req);
  WipeString(&body);
  RedactSecret(&r.error, role_id.view());
  RedactSecret(&r.error, secret_id.view());
  secret_id.Clear();
  role_id.Clear();

  std::string why;
  bool parsed = ReadAuthAnswer(AuthAnswerKind::kLogin, &r.json, out, &why);
  if (r.transport != Code::kOk) return Status(TransportCode(r), TransportReason(r));
  if (!r.ok()) {
    return Status(r.status == 400 || r.status == 403 ? Code::kPermissionDenied : Code::kUnavailable,
                  "vault login failed: " + HttpReason(r));
  }
  if (!parsed) return Status(Code::kUnavailable, "vault login failed: " + why);
  return Status::Ok();
}

Status TokenManager::TokenFileLogin(Deadline deadline, Credential* out) {
  std::string error;
  // Re-read at every re-authentication: an agent may have written a fresh token.
  if (!ReadSecretFile(config_.token_file, &out->token, &error)) {
    return Status(Code::kFailedPrecondition, "vault token unavailable: " + error);
  }
  VaultRequest req;
  req.method = HttpMethod::kGet;
  req.path = "auth/token/lookup-self";
  req.token = out->token.view();
  req.ns = config_.ns;
  req.deadline = deadline;
  req.cancel = &cancel_;
  VaultResponse r = http_->Call(req);
  RedactSecret(&r.error, out->token.view());
  // lookup-self echoes the token as data.id; the reader wipes it.
  SecretString token = std::move(out->token);
  std::string why;
  bool parsed = ReadAuthAnswer(AuthAnswerKind::kLookupSelf, &r.json, out, &why);
  out->token = std::move(token);
  if (r.transport != Code::kOk) {
    out->token.Clear();
    return Status(TransportCode(r), TransportReason(r));
  }
  if (!r.ok()) {
    out->token.Clear();
    return Status(r.status == 403 ? Code::kPermissionDenied : Code::kUnavailable,
                  "vault token from " + config_.token_file + " rejected: " + HttpReason(r));
  }
  if (!parsed) {
    out->token.Clear();
    return Status(Code::kUnavailable, "vault token lookup failed: " + why);
  }
  return Status::Ok();
}

Status TokenManager::DoLogin(Deadline deadline, Credential* out) {
  return config_.auth_method == AuthMethod::kToken ? TokenFileLogin(deadline, out)
                                                   : AppRoleLogin(deadline, out);
}

Status TokenManager::Login(Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  if (login_in_flight_) {
    // Single flight: wait for the login already running and share its outcome.
    uint64_t seen = generation_;
    cv_.wait_until(lock, deadline, [&] { return !login_in_flight_ || stop_; });
    if (generation_ != seen) return Status::Ok();
    if (login_in_flight_ || stop_) {
      return Status(Code::kDeadlineExceeded, "timed out waiting for the vault login in progress");
    }
    return last_login_status_;
  }
  login_in_flight_ = true;
  lock.unlock();

  Credential cred;
  Clock::time_point started = Clock::now();
  Status s = DoLogin(deadline, &cred);

  lock.lock();
  login_in_flight_ = false;
  login_attempted_ = true;
  last_login_status_ = s;
  const char* method = config_.auth_method == AuthMethod::kToken ? "token" : "approle";
  if (s.ok()) {
    token_ = std::make_shared<const SecretString>(std::move(cred.token));
    ++generation_;
    ++logins_ok_;
    backoff_ = std::chrono::milliseconds(0);
    last_error_.clear();
    token_expires_ = cred.lease_s > 0;
    // Measured from when the request was sent: Vault's clock started no later than that.
    token_expiry_ = started + std::chrono::seconds(cred.lease_s);
    requested_lease_s_ = cred.increment_s;
    renewable_ = cred.renewable;
    auto at = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(static_cast<double>(cred.lease_s) * options_.renew_fraction));
    at -= Clock::now() - started;
    if (!token_expires_) {
      ScheduleLocked(Next::kNone, Clock::duration::zero());
    } else {
      ScheduleLocked(renewable_ ? Next::kRenew : Next::kLogin, at);
    }
    log::Info("vault login succeeded",
              {{"method", method}, {"lease_s", cred.lease_s}, {"renewable", renewable_}});
  } else {
    ++logins_failed_;
    last_error_ = s.message();
    last_login_failure_ = Clock::now();
    FailureBackoffLocked();
    log::Warning("vault login failed",
                 {{"method", method}, {"error", s.message()}, {"retry_in_ms", backoff_.count()}});
  }
  cv_.notify_all();
  return s;
}

Status TokenManager::Renew(Deadline deadline) {
  uint64_t gen = 0;
  std::shared_ptr<const SecretString> token = CurrentToken(&gen);
  int64_t increment = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    increment = requested_lease_s_;
  }
  if (!token) {
    // Expired or dropped while we waited: only a login can help now.
    std::lock_guard<std::mutex> lock(mu_);
    if (next_ == Next::kRenew) ScheduleLocked(Next::kLogin, Clock::duration::zero());
    return Status(Code::kFailedPrecondition, "no vault token to renew");
  }

  std::string body =
      increment > 0 ? "{\"increment\":" + std::to_string(increment) + "}" : std::string("{}");
  VaultRequest req;
  req.method = HttpMethod::kPost;
  req.path = "auth/token/renew-self";
  req.body = body;
  req.token = token->view();
  req.ns = config_.ns;
  req.deadline = deadline;
  req.cancel = &cancel_;
  Clock::time_point started = Clock::now();
  VaultResponse r = http_->Call(req);
  RedactSecret(&r.error, token->view());
  // renew-self echoes the token as auth.client_token; the reader wipes it.
  AuthAnswer answer;
  std::string why;
  bool parsed = ReadAuthAnswer(AuthAnswerKind::kRenewSelf, &r.json, &answer, &why);
  const int64_t lease = answer.lease_s;
  const bool renewable = answer.renewable;

  std::lock_guard<std::mutex> lock(mu_);
  if (gen != generation_) return Status::Ok();  // a login replaced the token meanwhile
  if (!r.ok() || !parsed) {
    Status s = r.transport != Code::kOk
                   ? Status(TransportCode(r), TransportReason(r))
                   : Status(Code::kUnavailable,
                            "vault token renewal failed: " +
                                (r.ok()            ? why
                                 : r.status == 403 ? DeniedText("update", req.path, r.error)
                                                   : HttpReason(r)));
    ++renewals_failed_;
    last_error_ = s.message();
    ScheduleLocked(Next::kLogin, Clock::duration::zero());
    log::Warning("vault token renewal failed; logging in again", {{"error", s.message()}});
    return s;
  }
  ++renewals_ok_;
  last_error_.clear();
  token_expires_ = lease > 0;
  token_expiry_ = started + std::chrono::seconds(lease);
  renewable_ = renewable;
  bool capped = increment > 0 && lease < increment;
  for (const auto& w : r.warnings) {
    if (w.find("max_ttl") != std::string::npos) capped = true;
  }
  auto at = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(static_cast<double>(lease) * options_.renew_fraction));
  at -= Clock::now() - started;
  if (!token_expires_) {
    ScheduleLocked(Next::kNone, Clock::duration::zero());
  } else if (capped || !renewable) {
    // Renewing again would only shrink the lease further: log in again before it runs out.
    ScheduleLocked(Next::kLogin, at);
    log::Info("vault token renewal capped by max_ttl; will log in again before expiry",
              {{"lease_s", lease}, {"asked_s", increment}});
  } else {
    ScheduleLocked(Next::kRenew, at);
    log::Debug("vault token renewed", {{"lease_s", lease}});
  }
  return Status::Ok();
}

std::shared_ptr<const SecretString> TokenManager::CurrentToken(uint64_t* generation) {
  std::lock_guard<std::mutex> lock(mu_);
  *generation = generation_;
  if (!token_) return nullptr;
  if (token_expires_ && Clock::now() >= token_expiry_) return nullptr;
  return token_;
}

bool TokenManager::EnsureToken(Deadline deadline, std::string* why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (token_ && (!token_expires_ || Clock::now() < token_expiry_)) return true;
    // Requests must not turn a failing login into a login storm: within the backoff window
    // after a failure they get that failure instead of another attempt.
    if (!login_in_flight_ && login_attempted_ && !last_login_status_.ok() &&
        Clock::now() - last_login_failure_ < backoff_) {
      *why = last_error_;
      return false;
    }
  }
  Status s = Login(deadline);
  if (!s.ok()) {
    *why = s.message();
    return false;
  }
  return true;
}

bool TokenManager::ReloginAfterDenied(uint64_t seen_generation, const SecretString& token,
                                      const VaultResponse& denied, const std::string& ns,
                                      Deadline deadline, std::string* why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (generation_ != seen_generation) return true;  // someone already logged in again
  }
  // A new login only helps if the token itself is bad. Recent Vaults say so ("invalid
  // token"); otherwise ask Vault. Logging in for a policy denial would only mint tokens.
  bool token_invalid = denied.error.find("invalid token") != std::string::npos;
  bool unsure = false;
  if (!token_invalid) {
    VaultRequest req;
    req.method = HttpMethod::kGet;
    req.path = "auth/token/lookup-self";
    req.token = token.view();
    req.ns = ns;
    req.deadline = deadline;
    VaultResponse look = http_->Call(req);
    WipeTokenFields(&look.json);
    if (look.ok() || look.transport != Code::kOk) return false;  // valid token, or Vault gone
    token_invalid = look.status == 403 && look.error.find("invalid token") != std::string::npos;
    unsure = !token_invalid;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (generation_ != seen_generation) return true;
    if (unsure && !login_in_flight_) {
      // Old Vaults do not tell a dead token from a policy that also denies lookup-self: allow
      // such a login now and then, never a storm of them.
      Clock::time_point now = Clock::now();
      if (last_denied_relogin_ != Clock::time_point() &&
          now - last_denied_relogin_ < options_.denied_relogin_interval) {
        return false;
      }
      last_denied_relogin_ = now;
    }
  }
  log::Info("vault refused the token; logging in again");
  Status s = Login(deadline);
  std::lock_guard<std::mutex> lock(mu_);
  if (generation_ != seen_generation) return true;
  if (!s.ok()) {
    *why = s.message();
    // The old token was refused and nothing replaced it: stop presenting it as valid.
    token_.reset();
  }
  return false;
}

VaultResponse TokenManager::CallWithToken(HttpMethod method, std::string_view path,
                                          std::string_view body, const std::string& ns,
                                          Deadline deadline, const std::atomic<bool>* cancel) {
  VaultResponse resp;
  bool retried = false;
  for (;;) {
    uint64_t gen = 0;
    std::shared_ptr<const SecretString> token = CurrentToken(&gen);
    if (!token) {
      std::string why;
      if (EnsureToken(deadline, &why)) token = CurrentToken(&gen);
      if (!token) {
        resp = VaultResponse();
        resp.transport =
            Clock::now() >= deadline ? Code::kDeadlineExceeded : Code::kUnauthenticated;
        resp.error = why.empty() ? "no vault token" : why;
        return resp;
      }
    }
    VaultRequest req;
    req.method = method;
    req.path = std::string(path);
    req.body = body;
    req.token = token->view();
    req.ns = ns;
    req.deadline = deadline;
    req.cancel = cancel;
    resp = http_->Call(req);
    RedactSecret(&resp.error, token->view());
    if (resp.transport != Code::kOk || resp.status != 403 || retried) return resp;
    std::string why;
    if (!ReloginAfterDenied(gen, *token, resp, ns, deadline, &why)) {
      if (!why.empty()) resp.error += " (new login failed: " + why + ")";
      return resp;
    }
    retried = true;
  }
}

TokenState TokenManager::State() const {
  std::lock_guard<std::mutex> lock(mu_);
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
}

}  // namespace vkms::broker
