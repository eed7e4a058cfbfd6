// The broker's command line: flag table, environment fallbacks, and validation. Called once,
// first thing in main(), before anything else happens (DESIGN.md start-up step 1).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "broker/vault/config.h"
#include "shared/flags.h"

namespace vkms::broker {

struct UserSpec {
  uid_t uid = 0;
  gid_t gid = 0;
};

struct BrokerConfig {
  std::string socket_path;  // filesystem path, or abstract name with a leading '\0'
  bool abstract_socket = false;
  mode_t socket_mode = 0660;
  std::optional<gid_t> socket_gid;
  std::vector<uid_t> allowed_peer_uids;  // empty = any peer that can reach the socket
  std::string allowed_peer_uids_text;    // as given, handed to the frontend
  std::string metrics_listen = "127.0.0.1:8080";
  std::string log_level = "info";
  UserSpec broker_user{65532, 65532};
  UserSpec frontend_user{65533, 65533};
  VaultConfig vault;
  // `vault-kms-broker check [flags]`: run the preflight (broker/check.h) instead of serving.
  bool check = false;
};

// Every flag --some-name can also be set as VAULT_KMS_SOME_NAME (shared/flags.h), which wins
// over the standard VAULT_* variable of the same setting.
constexpr char kBrokerEnvPrefix[] = "VAULT_KMS_";

enum class ParseResult { kOk, kHelp, kVersion, kError };

// Reads the process environment. On kError, *message is one line naming the offending flag or
// environment variable. On kHelp/kVersion, *message is the text to print on stdout.
ParseResult ParseBrokerFlags(const std::vector<std::string>& args, BrokerConfig* config,
                             std::string* message);

const std::vector<flags::Spec>& BrokerFlagSpecs();

}  // namespace vkms::broker
