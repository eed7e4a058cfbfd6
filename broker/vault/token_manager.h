// TokenManager: the only owner of the broker's Vault token. It logs in (AppRole, TLS
// certificate, or a token read from a file), renews the token at ~2/3 of the lease Vault actually
// granted, logs in again when renewal is capped by max_ttl or fails, and injects the token into
// calls so that it never leaves this class.
//
// Everything runs on the VaultHttp's event loop: the renewal schedule is a loop timer, a login
// is a transfer, and a call that needs a token while a login is in flight waits in a list (at
// most one login at a time). Callers: VaultBackend and KeyCache (Start/Stop, CallWithToken),
// on the loop thread; tests and `check` use the blocking forms from other threads. Assumes the
// VaultHttp outlives it.
//
// Credentials: the secret-id (and the role-id / token when they come from files) is read
// from its file at every login, used once and wiped. With certificate auth the client
// certificate and key are the credential: libcurl reads them from their files when it opens a
// connection, and the login (and renewal, which Vault also checks against the certificate)
// goes over a fresh connection, so a certificate renewed on disk is presented at once. The token is
// held in a SecretString behind a shared_ptr so calls in flight keep the token they started with
// while a new one is installed; the old one is wiped when its last user is done.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/event_loop.h"
#include "broker/vault/config.h"
#include "broker/vault/http.h"
#include "shared/secret.h"
#include "shared/status.h"

namespace vkms::broker {

struct TokenState {
  bool has_token = false;          // a token is held and has not expired by our clock
  bool login_attempted = false;    // at least one login finished (either way)
  std::string last_error;          // safe text; "" when the last login/renewal succeeded
  int64_t ttl_seconds = -1;        // remaining lease; -1 = unknown or no expiry
  bool relogin_scheduled = false;  // the next step is a new login, not a renewal
  std::chrono::milliseconds next_step_in{-1};  // until the next renewal/login; -1 = none
  uint64_t logins_ok = 0, logins_failed = 0;
  uint64_t renewals_ok = 0, renewals_failed = 0;
};

class TokenManager {
 public:
  struct Options {
    double renew_fraction = 2.0 / 3.0;  // of the granted lease
    std::chrono::milliseconds backoff_min{250};
    std::chrono::milliseconds backoff_max{30000};
    std::chrono::milliseconds background_timeout{10000};  // per background login/renewal
    // When Vault cannot tell us whether a 403 means a dead token (old Vaults), at most one
    // login per this interval is attempted for such 403s.
    std::chrono::milliseconds denied_relogin_interval{2000};
  };

  TokenManager(const VaultConfig& config, VaultHttp* http)
      : TokenManager(config, http, Options()) {}
  TokenManager(const VaultConfig& config, VaultHttp* http, Options options);
  ~TokenManager();
  TokenManager(const TokenManager&) = delete;
  TokenManager& operator=(const TokenManager&) = delete;

  EventLoop* loop() const { return loop_; }

  // Schedules the first login at once; renewals and re-logins with backoff follow. Any thread.
  void Start();
  // Cancels the schedule, the login or renewal in flight, and every call in flight (their
  // `done` runs with "cancelled"). Any thread.
  void Stop();

  // Sends one request with the current token (logging in first if there is none and no
  // recent login failed). On 403 it logs in again (single-flight) and retries exactly once,
  // unless Vault confirms the token is still valid (a policy denial: a login cannot help).
  // When no token can be had, answers transport kUnauthenticated (or kDeadlineExceeded) with
  // the login failure as a complete reason ("vault login failed: ..."). Loop thread only;
  // `body` must stay valid until `done` runs (on the loop thread, never inside this call).
  using CallId = uint64_t;
  CallId CallWithToken(HttpMethod method, std::string_view path, std::string_view body,
                       const std::string& ns, Deadline deadline, VaultHttp::Done done);
  // Abandons a call: its `done` runs at once with transport kUnavailable, "cancelled". Unknown
  // or finished ids are ignored. Loop thread only.
  void Cancel(CallId id);
  // The same, waiting for the answer (tests, `check`). Never on the loop thread.
  VaultResponse CallWithToken(HttpMethod method, std::string_view path, std::string_view body,
                              const std::string& ns, Deadline deadline);

  // Any thread (through the loop).
  TokenState State() const;

  using StatusDone = std::function<void(const Status&)>;
  // One login now; joins a login already in flight instead of starting a second one. Loop
  // thread only; `done` runs on the loop thread, never inside this call.
  void Login(Deadline deadline, StatusDone done);
  // One renew-self now; on success schedules the next renewal, or a re-login before expiry
  // when Vault granted less than asked (max_ttl). Fails if no token is held. Loop thread only.
  void Renew(Deadline deadline, StatusDone done);
  // Waiting forms of the two (tests). Never on the loop thread.
  Status Login(Deadline deadline);
  Status Renew(Deadline deadline);

 private:
  enum class Next { kNone, kLogin, kRenew };
  struct Credential;
  struct LoginWaiter {
    uint64_t id;
    StatusDone done;
    EventLoop::Timer timeout;  // the waiter's own deadline
  };
  struct Call;

  // Obtains a fresh token from Vault without touching the token state.
  void DoLogin(Deadline deadline, std::function<void(Status, Credential*)> done);
  void AppRoleLogin(Deadline deadline, std::function<void(Status, Credential*)> done);
  void TokenFileLogin(Deadline deadline, std::function<void(Status, Credential*)> done);
  void CertLogin(Deadline deadline, std::function<void(Status, Credential*)> done);
  // POST auth/<mount>/login in the auth namespace; `body` must outlive the transfer.
  VaultRequest LoginRequest(const std::string& mount, std::string_view body,
                            Deadline deadline) const;
  void LoginDone(const Status& s, Credential* cred, Clock::time_point started);
  // The token held now, if it has not expired; and its generation.
  std::shared_ptr<const SecretString> CurrentToken(uint64_t* generation) const;
  // The steps of one CallWithToken.
  void CallBegin(const std::shared_ptr<Call>& call, bool inside_call);
  void CallSend(const std::shared_ptr<Call>& call);
  void CallDenied(const std::shared_ptr<Call>& call);
  void CallRelogin(const std::shared_ptr<Call>& call, bool unsure);
  void CallFinish(const std::shared_ptr<Call>& call);

  void Schedule(Next next, Clock::duration in);
  void FailureBackoff();
  void RunStep();

  const VaultConfig config_;
  VaultHttp* const http_;
  EventLoop* const loop_;
  const Options options_;

  std::shared_ptr<const SecretString> token_;
  uint64_t generation_ = 0;  // bumped by every successful login
  bool token_expires_ = false;
  Clock::time_point token_expiry_;
  int64_t requested_lease_s_ = 0;  // increment asked for at renewal: the login's lease
  bool renewable_ = false;
  bool login_in_flight_ = false;
  VaultHttp::TransferId login_transfer_ = 0;
  std::vector<LoginWaiter> login_waiters_;
  uint64_t next_waiter_id_ = 0;
  Status last_login_status_;
  bool login_attempted_ = false;
  Clock::time_point last_login_failure_;
  Clock::time_point last_denied_relogin_;
  std::string last_error_;
  std::chrono::milliseconds backoff_{0};
  Next next_ = Next::kLogin;
  Clock::time_point next_at_;
  EventLoop::Timer step_timer_;
  VaultHttp::TransferId renew_transfer_ = 0;
  std::unordered_map<CallId, std::shared_ptr<Call>> calls_;
  CallId next_call_id_ = 0;
  uint64_t logins_ok_ = 0, logins_failed_ = 0, renewals_ok_ = 0, renewals_failed_ = 0;
  bool started_ = false;
  bool stopping_ = false;  // inside Stop(): cancelled transfers finish quietly
};

}  // namespace vkms::broker
