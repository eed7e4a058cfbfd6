// TokenManager: the only owner of the broker's Vault token. It logs in (AppRole, or a token
// read from a file), renews the token at ~2/3 of the lease Vault actually granted, logs in
// again when renewal is capped by max_ttl or fails, and injects the token into calls so that
// it never leaves this class.
//
// Callers: VaultBackend (Start/Stop/State) and KeyCache/VaultBackend (CallWithToken); tests
// drive Login/Renew directly. Assumes the VaultHttp outlives it. Thread-safe.
//
// Credentials: the secret-id (and the role-id / token when they come from files) is read
// from its file at every login, used once and wiped. The token is held in a SecretString
// behind a shared_ptr so calls in flight keep the token they started with while a new one is
// installed; the old one is wiped when its last user is done.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

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

  // Starts the background thread: first login, renewals, re-logins with backoff.
  void Start();
  void Stop();

  // Sends one request with the current token (logging in first if there is none and no
  // recent login failed). On 403 it logs in again (single-flight) and retries exactly once,
  // unless Vault confirms the token is still valid (a policy denial: a login cannot help).
  // When no token can be had, returns transport kUnauthenticated (or kDeadlineExceeded) with
  // the login failure as a complete reason ("vault login failed: ...").
  // `cancel` (optional) abandons the call when it turns true, for background loops' Stop().
  VaultResponse CallWithToken(HttpMethod method, std::string_view path, std::string_view body,
                              const std::string& ns, Deadline deadline,
                              const std::atomic<bool>* cancel = nullptr);

  TokenState State() const;

  // One login now; joins a login already in flight instead of starting a second one.
  Status Login(Deadline deadline);
  // One renew-self now; on success schedules the next renewal, or a re-login before expiry
  // when Vault granted less than asked (max_ttl). Fails if no token is held.
  Status Renew(Deadline deadline);

 private:
  enum class Next { kNone, kLogin, kRenew };
  struct Credential;

  // Obtains a fresh token from Vault without touching shared state.
  Status DoLogin(Deadline deadline, Credential* out);
  Status AppRoleLogin(Deadline deadline, Credential* out);
  Status TokenFileLogin(Deadline deadline, Credential* out);
  // Uses the token held now (or waits for / runs a login); returns its generation.
  std::shared_ptr<const SecretString> CurrentToken(uint64_t* generation);
  bool EnsureToken(Deadline deadline, std::string* why);
  // After a 403: true when a newer token is in place and the call should be retried.
  bool ReloginAfterDenied(uint64_t seen_generation, const SecretString& token,
                          const VaultResponse& denied, const std::string& ns, Deadline deadline,
                          std::string* why);
  void ScheduleLocked(Next next, Clock::duration in);
  void FailureBackoffLocked();
  void Run();

  const VaultConfig config_;
  VaultHttp* const http_;
  const Options options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;  // login completion, schedule changes, stop
  std::shared_ptr<const SecretString> token_;
  uint64_t generation_ = 0;  // bumped by every successful login
  bool token_expires_ = false;
  Clock::time_point token_expiry_;
  int64_t requested_lease_s_ = 0;  // increment asked for at renewal: the login's lease
  bool renewable_ = false;
  bool login_in_flight_ = false;
  Status last_login_status_;
  bool login_attempted_ = false;
  Clock::time_point last_login_failure_;
  Clock::time_point last_denied_relogin_;
  std::string last_error_;
  std::chrono::milliseconds backoff_{0};
  Next next_ = Next::kLogin;
  Clock::time_point next_at_;
  uint64_t logins_ok_ = 0, logins_failed_ = 0, renewals_ok_ = 0, renewals_failed_ = 0;
  bool stop_ = false;
  std::atomic<bool> cancel_{false};  // abandons background HTTP calls at Stop()
  std::thread thread_;
};

}  // namespace vkms::broker
