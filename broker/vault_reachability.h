// Notices when Vault answers again after a time it did not, so the broker can log one line
// with how long it was away (an operator reads it next to the failures logged meanwhile).
//
// Callers: VaultHttp::Call, after every logical request. Thread-safe.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <string>

namespace vkms::broker {

class VaultReachability {
 public:
  using Clock = std::chrono::steady_clock;

  struct Return {
    std::chrono::milliseconds away;  // from the first failure of the outage to this answer
    std::string last_error;          // the outage's last reason (safe text)
  };

  // One request's outcome: `answered` when Vault gave a usable HTTP answer, else `error` is why
  // not. Returns a Return when this answer ends an outage. Outcomes that say nothing about
  // Vault (the caller's own deadline or cancellation) are not fed in.
  std::optional<Return> Observe(bool answered, const std::string& error, Clock::time_point now);

 private:
  std::mutex mu_;
  bool away_ = false;
  Clock::time_point since_;
  std::string last_error_;
};

}  // namespace vkms::broker
