// VaultBackend: the broker's whole view of Vault. The IPC dispatch (broker.cc) calls only
// this; the token and the secret-id never leave it.
//
// It runs on one event loop: Vault calls are asynchronous transfers that run concurrently on
// that loop's thread, with no lock. The broker uses the asynchronous forms from its serving
// loop; tests and tools use the waiting forms from their own threads.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "broker/event_loop.h"
#include "broker/vault/config.h"
#include "broker/vault/decrypt_use.h"
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
  // Decrypts that succeeded, by the key version their ciphertext needed (bounded: the latest
  // versions, then "older"), and those whose stored key_id this plugin never issued.
  std::vector<DecryptUse::VersionUse> decrypt_versions;
  uint64_t foreign_key_id_decrypts = 0;
  int64_t foreign_key_id_last_unix = 0;  // 0 = never
};

class VaultBackend {
 public:
  // On a loop thread of its own: tests and tools, through the blocking forms below.
  explicit VaultBackend(VaultConfig config);
  // On the caller's loop: the broker's serving loop, through the asynchronous forms.
  VaultBackend(VaultConfig config, EventLoop* loop);
  ~VaultBackend();

  // Starts the background login/renewal and key-metadata refresh. Never blocks on Vault:
  // when Vault is down the plugin still starts and reports why in Health(). Any thread.
  void Start();
  // Stops the background work and cancels every call still in flight (their callbacks run
  // with UNAVAILABLE). The broker drains its calls first. Any thread.
  void Stop();

  EventLoop* loop() const;

  // Answered from the cache; never waits on Vault. Any thread (at once on the loop thread).
  BackendHealth Health() const;
  // Also from memory only.
  BackendStats Stats() const;

  // Transit calls, each item with its own result. Several items go to Vault as one call
  // (`batch_input`), one item as the plain form; an item whose input is refused here never
  // reaches Vault. Vault answers items in order; an answer that does not match the request
  // item for item (count, order, references) fails every item rather than risk handing one
  // caller another's result.
  //
  // Encrypt uses the key version Health() currently reports (pinned), returning Vault's
  // "vault:vN:..." ciphertext and the key_id of exactly that version. Decrypt takes the
  // version from the ciphertext's "vault:vN:" prefix, whatever key_id came with it: a
  // ciphertext of the configured key that another plugin stored under its own key_id decrypts
  // (migration), one of another Transit key fails Vault's authentication (INVALID_ARGUMENT).
  struct EncryptItem {
    std::string_view plaintext;  // in
    std::string ciphertext;      // out, when status is ok
    std::string key_id;          // out, when status is ok
    uint64_t version = 0;        // out, when status is ok: the key version of the ciphertext
    Status status;
  };
  struct DecryptItem {
    std::string_view ciphertext;  // in
    // in: the key_id the apiserver stored with the ciphertext. Not needed to decrypt (Vault's
    // prefix names the version); counted, and a foreign one logged once (DecryptUse).
    std::string_view key_id;
    std::string plaintext;  // out, when status is ok
    Status status;
  };
  // Items per Vault call at most.
  static constexpr size_t kMaxBatch = 16;

  // Loop thread only. The items (and the views in them) must stay valid until `done` runs, on
  // the loop thread, never inside the call.
  void EncryptBatch(std::vector<EncryptItem>* items, Deadline deadline, std::function<void()> done);
  void DecryptBatch(std::vector<DecryptItem>* items, Deadline deadline, std::function<void()> done);

  // Waiting forms (tests, tools). Never on the loop thread.
  void EncryptBatch(std::vector<EncryptItem>* items, Deadline deadline);
  void DecryptBatch(std::vector<DecryptItem>* items, Deadline deadline);
  Status Encrypt(std::string_view plaintext, Deadline deadline, std::string* ciphertext,
                 std::string* key_id);
  Status Decrypt(std::string_view ciphertext, Deadline deadline, std::string* plaintext);

 private:
  struct Impl;
  void LogConfiguration() const;
  std::unique_ptr<LoopThread> own_thread_;  // standalone only
  std::unique_ptr<Impl> impl_;
};

// key_id: a pure function of values identical on every control-plane node (never the Vault
// address). See key_cache.cc for the format.
std::string MakeKeyId(std::string_view ns, std::string_view mount, std::string_view key,
                      uint64_t version, int64_t creation_unix);

}  // namespace vkms::broker
