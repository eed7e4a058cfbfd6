#include "broker/vault/decrypt_use.h"

#include <algorithm>

namespace vkms::broker {

void DecryptUse::Use::Add(const Use& other) {
  decrypts += other.decrypts;
  last_unix = std::max(last_unix, other.last_unix);
}

uint64_t DecryptUse::Top(uint64_t latest) const {
  return std::max(latest, newest_seen_);
}

bool DecryptUse::Record(uint64_t version, uint64_t latest, bool foreign, std::string_view key_id,
                        int64_t now_unix) {
  newest_seen_ = std::max(newest_seen_, version);
  const uint64_t top = Top(latest);
  const Use one{1, now_unix};
  if (version + kVersionsKept <= top) {
    older_.Add(one);
  } else {
    by_version_[version].Add(one);
  }
  // Versions the window has left behind (the key rotated) join "older" now, so the map stays
  // bounded whatever the versions are.
  while (!by_version_.empty() && by_version_.begin()->first + kVersionsKept <= top) {
    older_.Add(by_version_.begin()->second);
    by_version_.erase(by_version_.begin());
  }
  if (!foreign) return false;
  foreign_.Add(one);
  if (foreign_seen_.size() >= kForeignIdsLogged || foreign_seen_.count(key_id) > 0) return false;
  foreign_seen_.emplace(key_id);
  return true;
}

std::vector<DecryptUse::VersionUse> DecryptUse::Versions(uint64_t latest) const {
  const uint64_t top = Top(latest);
  std::vector<VersionUse> out;
  Use older = older_;
  for (auto it = by_version_.rbegin(); it != by_version_.rend(); ++it) {
    if (it->first + kVersionsKept <= top) {
      older.Add(it->second);
    } else {
      out.push_back({std::to_string(it->first), it->second.decrypts, it->second.last_unix});
    }
  }
  if (older.decrypts > 0) out.push_back({"older", older.decrypts, older.last_unix});
  return out;
}

}  // namespace vkms::broker
