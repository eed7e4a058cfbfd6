// DecryptUse: what the Decrypts that succeeded needed, for the operator who wants to know when
// an old key version, or the DEKs another KMS plugin wrote, are no longer read: per Transit key
// version (bounded: the latest kVersionsKept versions by number, every older one folded into
// "older") a count and the time of the last one, and the same for key_ids this plugin never
// issued ("foreign": written by vault-kubernetes-kms, HashiCorp's vault-kube-kms, or another
// configuration).
//
// Pure bookkeeping, no I/O and no lock: VaultBackend owns one on its event loop thread.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace vkms::broker {

class DecryptUse {
 public:
  static constexpr uint64_t kVersionsKept = 10;
  // Distinct foreign key_ids announced in the log at most (a compromised frontend could send
  // any number of them).
  static constexpr size_t kForeignIdsLogged = 16;

  struct VersionUse {
    std::string version;  // "7", or "older"
    uint64_t decrypts = 0;
    int64_t last_unix = 0;
  };

  // One Decrypt that succeeded: its ciphertext's key version, whether the key_id stored with
  // it is foreign, and `latest`, the key's latest version as known now (0: not known yet).
  // Returns true when that foreign key_id has not been seen before (the caller logs it once).
  bool Record(uint64_t version, uint64_t latest, bool foreign, std::string_view key_id,
              int64_t now_unix);

  // The latest kVersionsKept versions with a Decrypt, newest first, then "older" if any.
  std::vector<VersionUse> Versions(uint64_t latest) const;
  uint64_t foreign_decrypts() const { return foreign_.decrypts; }
  int64_t foreign_last_unix() const { return foreign_.last_unix; }

 private:
  struct Use {
    uint64_t decrypts = 0;
    int64_t last_unix = 0;
    void Add(const Use& other);
  };
  uint64_t Top(uint64_t latest) const;

  std::map<uint64_t, Use> by_version_;  // never more than kVersionsKept entries
  Use older_;
  uint64_t newest_seen_ = 0;
  Use foreign_;
  std::set<std::string, std::less<>> foreign_seen_;
};

}  // namespace vkms::broker
