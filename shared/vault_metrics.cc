#include "shared/vault_metrics.h"

namespace vkms::metrics {

std::string OperationOf(std::string_view path) {
  auto has = [&](std::string_view part) { return path.find(part) != std::string_view::npos; };
  if (has("/encrypt/")) return "encrypt";
  if (has("/decrypt/")) return "decrypt";
  if (has("/keys/")) return "key_read";
  if (path.size() >= 6 && path.substr(path.size() - 6) == "/login") return "login";
  if (has("auth/token/renew-self")) return "token_renew";
  if (has("auth/token/lookup-self")) return "token_lookup";
  return "other";
}

void VaultRequestMetrics::Record(std::string_view vault_path, long status, double seconds) {
  std::string code = status > 0 ? std::to_string(status) : "error";
  std::lock_guard<std::mutex> lock(mu_);
  Histogram& h = by_label_[{OperationOf(vault_path), code}];
  size_t i = 0;
  while (i < kLatencyBuckets.size() && seconds > kLatencyBuckets[i]) ++i;
  if (i < kLatencyBuckets.size()) ++h.buckets[i];
  ++h.count;
  h.sum_seconds += seconds;
  if (status >= 200 && status < 400) {  // an answer that worked, not a 503 from a sealed Vault
    contacted_ = true;
    last_contact_ = std::chrono::steady_clock::now();
  }
}

std::map<std::pair<std::string, std::string>, Histogram> VaultRequestMetrics::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return by_label_;
}

int64_t VaultRequestMetrics::SecondsSinceLastContact() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!contacted_) return -1;
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                          last_contact_)
      .count();
}

}  // namespace vkms::metrics
