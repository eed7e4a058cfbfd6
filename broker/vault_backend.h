// VaultBackend: the broker's whole view of Vault. The IPC dispatch table (broker.cc) calls
// only this; the token and the secret-id never leave it.
//
// Thread-safety: every method may be called from many worker threads at once; Vault calls
// run concurrently (no global lock around HTTP).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "broker/vault_config.h"
#include "shared/status.h"
#include "shared/vault_metrics.h"

namespace vkms::broker {

struct BackendHealth {
  // Token held, key metadata known and recent, last refresh (capability check included) ok.
  bool healthy = false;
  std::string healthz;       // "ok" or a short reason an operator can act on (no secrets)
  bool ready = false;        // == healthy: /readyz turns in the same refresh as Status
  std::string ready_reason;  // == healthz
  std::string key_id;        // current key_id ("" until metadata was read once)
  uint64_t key_version = 0;  // current (pinned) Transit key version
};

// Counters and gauges for the broker's metrics (sent to the frontend over IPC Stats).
struct BackendStats {
  uint64_t logins_ok = 0, logins_failed = 0;
  uint64_t renewals_ok = 0, renewals_failed = 0;
  int64_t token_ttl_seconds = -1;  // -1 = no token or no expiry
  uint64_t key_version = 0;
  uint64_t key_refreshes_ok = 0, key_refreshes_failed = 0;
  int64_t seconds_since_vault_contact = -1;  // -1 = never
  std::map<std::pair<std::string, std::string>, metrics::Histogram> vault_requests;
};

class VaultBackend {
 public:
  explicit VaultBackend(VaultConfig config);
  ~VaultBackend();

  // Starts the background login/renewal and key-metadata refresh. Never blocks on Vault:
  // when Vault is down the plugin still starts and reports why in Health().
  void Start();
  // Stops background threads; in-flight calls finish or fail within their deadlines.
  void Stop();

  // Answered from the cache; never waits on Vault.
  BackendHealth Health() const;
  // Also from memory only.
  BackendStats Stats() const;

  // Encrypts with the key version Health() currently reports (pinned), returning Vault's
  // "vault:vN:..." ciphertext and the key_id of exactly that version.
  Status Encrypt(std::string_view plaintext, Deadline deadline, std::string* ciphertext,
                 std::string* key_id);
  // Decrypts Vault ciphertext; the version comes from its "vault:vN:" prefix.
  Status Decrypt(std::string_view ciphertext, Deadline deadline, std::string* plaintext);

  // Several Decrypts in one Transit call (`batch_input`), each with its own result: one
  // ciphertext Vault refuses fails only its own item. One item is sent as a plain Decrypt.
  // Vault answers items in order; an answer that does not match the request item for item
  // fails every item rather than risk handing one caller another's plaintext.
  struct DecryptItem {
    std::string_view ciphertext;  // in
    std::string plaintext;        // out, when status is ok
    Status status;
  };
  static constexpr size_t kMaxDecryptBatch = 16;
  void DecryptBatch(std::vector<DecryptItem>* items, Deadline deadline);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// key_id: a pure function of values identical on every control-plane node (never the Vault
// address). See key_cache.cc for the format.
std::string MakeKeyId(std::string_view ns, std::string_view mount, std::string_view key,
                      uint64_t version, int64_t creation_unix);

}  // namespace vkms::broker
