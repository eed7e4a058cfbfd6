// Everything the broker needs to reach Vault, parsed and validated from flags/env by the
// broker's flag parser. Holds file paths, never secret values.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace vkms::broker {

constexpr unsigned kMaxVaultConcurrency = 256;

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

enum class AuthMethod { kAppRole, kToken, kCert };

// As --auth-method spells it (logs, `check`).
inline const char* AuthMethodName(AuthMethod method) {
  switch (method) {
    case AuthMethod::kToken:
      return "token";
    case AuthMethod::kCert:
      return "cert";
    case AuthMethod::kAppRole:
      break;
  }
  return "approle";
}

struct VaultConfig {
  std::vector<std::string> addrs;  // "https://host:port", tried in order (failover)
  std::string ca_file;             // PEM bundle; empty = system default
  std::string ca_path;             // hashed CA directory
  std::string tls_server_name;     // SNI + certificate name override
  std::string client_cert, client_key;
  std::string ns;       // X-Vault-Namespace for transit and token calls ("" = root)
  std::string auth_ns;  // namespace of the auth mount for login ("" = same as ns)
  std::string transit_mount = "transit";
  std::string transit_key = "kms";
  AuthMethod auth_method = AuthMethod::kAppRole;
  std::string approle_mount = "approle";
  std::string role_id;       // --approle-role-id (an identifier, still never logged)
  std::string role_id_file;  // --approle-role-id-file (read at every login)
  std::string secret_id_file;
  std::string token_file;
  // --auth-method=cert: the client certificate and key above are the credential; the login
  // goes to auth/<cert_auth_mount>/login, naming cert_auth_role when set.
  std::string cert_auth_mount = "cert";
  std::string cert_auth_role;
  std::chrono::milliseconds key_refresh_interval{30000};
  int max_retries = 2;    // retries of 429/5xx within the caller's deadline
  int max_redirects = 2;  // 307 hops to the active node
  // Vault calls the broker runs at once (--vault-concurrency), and about the idle keep-alive
  // connections it keeps. 16 calls carry up to 256 Encrypts or Decrypts (batches of 16).
  // (The name is from when each call had a worker thread; config.cc owns the flag.)
  int workers = 16;
};

}  // namespace vkms::broker
