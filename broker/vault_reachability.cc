#include "broker/vault_reachability.h"

namespace vkms::broker {

std::optional<VaultReachability::Return> VaultReachability::Observe(bool answered,
                                                                    const std::string& error,
                                                                    Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!answered) {
    if (!away_) {
      away_ = true;
      since_ = now;
    }
    last_error_ = error;
    return std::nullopt;
  }
  if (!away_) return std::nullopt;
  away_ = false;
  Return r{std::chrono::duration_cast<std::chrono::milliseconds>(now - since_),
           std::move(last_error_)};
  last_error_.clear();
  return r;
}

}  // namespace vkms::broker
