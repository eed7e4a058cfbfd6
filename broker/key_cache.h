// KeyCache: the broker's cached view of the Transit key (GET <mount>/keys/<key>), refreshed
// in the background every key_refresh_interval and on demand. Status/Health and the pinned
// Encrypt version are answered from it, never from a Vault round trip. Every refresh also
// verifies that the token may do all the broker needs (VerifyTokenCapabilities); until it may,
// the refresh counts as failed and State().last_error names what is missing.
//
// Callers: VaultBackend. Assumes the TokenManager outlives it and that the config's mount,
// key and namespace are already normalised (no leading/trailing '/'), since they go into
// key_id. Thread-safe.
#pragma once

#include <json/value.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "broker/token_manager.h"
#include "broker/vault_config.h"
#include "shared/status.h"

namespace vkms::broker {

struct KeyMetadata {
  std::string type;  // e.g. "aes256-gcm96"
  uint64_t latest_version = 0;
  uint64_t min_decryption_version = 0;
  uint64_t min_encryption_version = 0;
  std::map<uint64_t, int64_t> creation;  // version -> creation time (unix seconds)
  std::string key_id;                    // MakeKeyId of latest_version
};

struct KeyCacheState {
  std::shared_ptr<const KeyMetadata> meta;  // null until a refresh succeeded once
  bool last_refresh_ok = false;
  std::string last_error;             // safe reason of the last failed refresh; "" after a success
  std::chrono::milliseconds age{-1};  // since the last successful refresh; -1 = never
  uint64_t refreshes_ok = 0, refreshes_failed = 0;
};

class KeyCache {
 public:
  struct Options {
    std::chrono::milliseconds retry_min{1000};  // first retry after a failed refresh
    std::chrono::milliseconds background_timeout{10000};
    std::chrono::milliseconds on_demand_min_interval{2000};  // bounds RequestRefresh storms
  };

  KeyCache(const VaultConfig& config, TokenManager* tokens) : KeyCache(config, tokens, Options()) {}
  KeyCache(const VaultConfig& config, TokenManager* tokens, Options options);
  ~KeyCache();
  KeyCache(const KeyCache&) = delete;
  KeyCache& operator=(const KeyCache&) = delete;

  // Starts the background refresh (first one immediately).
  void Start();
  void Stop();

  // Reads the key now and updates the cache. On failure the previous metadata is kept (and
  // still used for Encrypt) while State() reports the failure.
  Status Refresh(Deadline deadline, const std::atomic<bool>* cancel = nullptr);
  // Asks the background thread for an early refresh; never blocks. Rate-limited.
  void RequestRefresh();

  std::shared_ptr<const KeyMetadata> Current() const;
  KeyCacheState State() const;

  // Pure: validates a keys/<name> response's "data" and fills *out (key_id included).
  static Status ParseKeyMetadata(const Json::Value& data, const std::string& ns,
                                 const std::string& mount, const std::string& key,
                                 KeyMetadata* out);

 private:
  void Run();

  const VaultConfig config_;
  TokenManager* const tokens_;
  const Options options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const KeyMetadata> meta_;
  bool last_ok_ = false;
  std::string last_error_;
  Clock::time_point last_success_;
  Clock::time_point last_applied_start_;
  uint64_t refreshes_ok_ = 0, refreshes_failed_ = 0;
  bool capabilities_by_round_trip_ = false;  // sys/capabilities-self refused (logged once)
  bool on_demand_ = false;
  Clock::time_point last_on_demand_;
  bool stop_ = false;
  std::atomic<bool> cancel_{false};  // abandons the background refresh at Stop()
  std::thread thread_;
};

// Parses RFC 3339 ("2024-05-01T10:00:00.123Z", "...+02:00") into unix seconds.
bool ParseRfc3339(const std::string& text, int64_t* unix_seconds);

}  // namespace vkms::broker
