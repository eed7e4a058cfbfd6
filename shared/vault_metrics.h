// Vault request latency, kept by the broker and rendered by the frontend's /metrics. Both use
// the same fixed bucket bounds from here, so the histogram crosses the IPC as plain counts.
//
// Labels are bounded by construction: the operation comes from a fixed set derived from the
// request path, and the code is the HTTP status (or "error" when no answer arrived).
// Thread-safe: Record() is called from every broker thread that talks to Vault.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vkms::metrics {

// Sub-millisecond (a local Vault) through seconds (a Vault near the apiserver's 3 s deadline).
constexpr std::array<double, 16> kLatencyBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                    0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                    1,      2.5,     5,      10};

// "encrypt", "decrypt", "key_read", "login", "token_renew", "token_lookup" or "other".
std::string OperationOf(std::string_view vault_path);

struct Histogram {
  std::array<uint64_t, kLatencyBuckets.size()> buckets{};  // per bucket, not cumulative
  uint64_t count = 0;
  double sum_seconds = 0;
};

class VaultRequestMetrics {
 public:
  // status: the HTTP status, or 0 when no answer arrived.
  void Record(std::string_view vault_path, long status, double seconds);
  // (operation, code) -> histogram.
  std::map<std::pair<std::string, std::string>, Histogram> Snapshot() const;
  // Seconds since Vault last answered a request successfully (2xx/3xx); -1 if never.
  int64_t SecondsSinceLastContact() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, Histogram> by_label_;
  bool contacted_ = false;
  std::chrono::steady_clock::time_point last_contact_;
};

}  // namespace vkms::metrics
