// Injected failures (seal, latency, error statuses, dropped connections, standby), the health
// endpoints whose answers depend on them, the /_sim/ admin API that sets them, and request
// statistics. Guarded by its own mutex so a slow or failing request never holds the state lock.
#pragma once

#include <json/json.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "state.h"
#include "vault_types.h"

namespace vaultsim {

class Faults {
 public:
  Faults();

  struct Decision {
    int latency_ms = 0;
    bool drop = false;
    std::optional<VaultResponse> response;  // answer without running Vault logic
  };

  // Applies (and consumes) the faults matching a /v1/ request. `path` is relative to /v1/,
  // `target` is the path and query as the client sent them (for standby redirects).
  Decision Before(const std::string& path, const std::string& target, const std::string& ns);
  // status 0 means the connection was dropped.
  void Record(const std::string& stats_key, int status, bool successful_login);
  // A request on `stats_key` starts / ends: stats keep the most ever in progress at once per
  // path (how many calls a client really has at Vault at the same time).
  void Enter(const std::string& stats_key);
  void Leave(const std::string& stats_key);

  VaultResponse Health(const std::map<std::string, std::string>& query, int64_t now);
  VaultResponse SealStatus();

  // Serves /_sim/<name>; the caller has already checked the root token.
  VaultResponse Admin(const std::string& method, const std::string& name, const Json::Value& body,
                      State& st);

 private:
  struct Rule {
    std::string prefix;
    int status = 0;
    int64_t remaining = 1;  // < 0: until reset
    int retry_after = 0;
    std::string message;
  };

  static bool Take(std::vector<Rule>& rules, const std::string& path, Rule* hit);
  Json::Value Stats() const;

  mutable std::mutex mu_;
  bool sealed_ = false;
  std::map<std::string, int> latency_ms_;  // path prefix -> milliseconds
  std::vector<Rule> fails_;
  std::vector<Rule> drops_;
  std::string standby_redirect_;
  bool no_leader_ = false;
  const std::string cluster_id_;

  int64_t total_ = 0;
  int64_t logins_ = 0;
  std::map<std::string, int64_t> by_path_;
  std::map<std::string, int64_t> by_status_;
  std::map<std::string, int64_t> in_flight_;
  std::map<std::string, int64_t> peak_in_flight_;
};

}  // namespace vaultsim
