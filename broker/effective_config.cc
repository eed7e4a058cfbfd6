#include "broker/effective_config.h"

#include <cstdio>
#include <string>

namespace vkms::broker {
namespace {

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ",") + i;
  return out;
}

std::string User(const UserSpec& u) {
  return std::to_string(u.uid) + ":" + std::to_string(u.gid);
}

std::string Interval(std::chrono::milliseconds d) {
  return d.count() % 1000 == 0 ? std::to_string(d.count() / 1000) + "s"
                               : std::to_string(d.count()) + "ms";
}

}  // namespace

log::Fields EffectiveConfigFields(const BrokerConfig& c) {
  const VaultConfig& v = c.vault;
  char mode[8];
  snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(c.socket_mode));
  const bool approle = v.auth_method == AuthMethod::kAppRole;
  return {
      {"version", VKMS_VERSION},
      {"socket",
       c.abstract_socket ? "unix:///@" + c.socket_path.substr(1) : "unix://" + c.socket_path},
      {"socket-mode", mode},
      {"socket-group", c.socket_gid ? std::to_string(*c.socket_gid) : ""},
      {"allowed-peer-uids", c.allowed_peer_uids_text.empty() ? "any" : c.allowed_peer_uids_text},
      {"vault-addr", Join(v.addrs)},
      {"vault-ca-file", v.ca_file},
      {"vault-ca-path", v.ca_path},
      {"vault-tls-server-name", v.tls_server_name},
      {"vault-client-cert", v.client_cert},
      {"vault-client-key", v.client_key},
      {"vault-namespace", v.ns},
      {"vault-auth-namespace", v.auth_ns},
      {"transit-mount", v.transit_mount},
      {"transit-key", v.transit_key},
      {"auth-method", AuthMethodName(v.auth_method)},
      {"approle-mount", approle ? v.approle_mount : ""},
      // The role-id itself is an identifier that must never be logged: only where it came from.
      {"approle-role-id", !v.role_id.empty() ? "(given as a flag, not shown)" : ""},
      {"approle-role-id-file", v.role_id_file},
      {"approle-secret-id-file", v.secret_id_file},
      {"token-file", v.token_file},
      {"cert-auth-mount", v.auth_method == AuthMethod::kCert ? v.cert_auth_mount : ""},
      {"cert-auth-role", v.cert_auth_role},
      {"key-refresh-interval", Interval(v.key_refresh_interval)},
      {"vault-concurrency", v.workers},
      {"metrics-listen", c.metrics_listen},
      {"log-level", c.log_level},
      {"broker-user", User(c.broker_user)},
      {"frontend-user", User(c.frontend_user)},
  };
}

}  // namespace vkms::broker
