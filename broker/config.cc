#include "broker/config.h"

#include <grp.h>
#include <pwd.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "broker/tls_files.h"
#include "shared/listen_address.h"
#include "shared/log.h"

namespace vkms::broker {
namespace {

// Names and mounts end up in the key_id (<= 1024 bytes) and in URL paths.
constexpr size_t kMaxName = 128;

bool ValidVaultName(const std::string& s, bool allow_slash) {
  if (s.empty() || s.size() > kMaxName || s.front() == '/' || s.back() == '/') return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || (allow_slash && c == '/');
    if (!ok) return false;
  }
  return s.find("..") == std::string::npos && s.find("//") == std::string::npos;
}

// A group given by number or by name.
bool ParseGroup(const std::string& text, gid_t* out) {
  unsigned long long n;
  if (flags::ParseUint(text, 0xfffffffeULL, &n)) {
    *out = static_cast<gid_t>(n);
    return true;
  }
  struct group* gr = getgrnam(text.c_str());
  if (gr == nullptr) return false;
  *out = gr->gr_gid;
  return true;
}

bool ParseUser(const std::string& text, UserSpec* out) {
  std::string user = text, group;
  size_t colon = text.find(':');
  if (colon != std::string::npos) {
    user = text.substr(0, colon);
    group = text.substr(colon + 1);
  }
  unsigned long long n;
  if (flags::ParseUint(user, 0xfffffffeULL, &n)) {
    out->uid = static_cast<uid_t>(n);
    struct passwd* pw = getpwuid(out->uid);
    out->gid = pw != nullptr ? pw->pw_gid : static_cast<gid_t>(n);
  } else {
    struct passwd* pw = getpwnam(user.c_str());
    if (pw == nullptr) return false;
    out->uid = pw->pw_uid;
    out->gid = pw->pw_gid;
  }
  return group.empty() || ParseGroup(group, &out->gid);
}

// Every flag error goes through here. Values typed by the operator are quoted into the
// message, so control characters are escaped: the error stays one line (DESIGN.md: "one clear
// line naming the flag"), and a crafted argument cannot forge log or terminal output.
ParseResult Fail(std::string* message, const std::string& text) {
  message->clear();
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) {
      char esc[8];
      snprintf(esc, sizeof esc, "\\x%02x", c);
      *message += esc;
    } else {
      message->push_back(static_cast<char>(c));
    }
  }
  return ParseResult::kError;
}

// Why VAULT_KMS_APPROLE_ROLE_ID does not exist. The role-id is half of the AppRole credential
// and is treated like a secret (never logged), and a process's environment is the least
// private place for it: it is shown by `systemctl show`, by `kubectl get pod -o yaml` and
// `crictl inspect` to whoever may read the unit or the Pod, and it stays in the broker's
// memory for its whole life. A file can be mode 0400 for the broker alone.
constexpr char kRoleIdNotFromEnv[] =
    "a role-id belongs in a file: set VAULT_KMS_APPROLE_ROLE_ID_FILE to its path";

}  // namespace

const std::vector<flags::Spec>& BrokerFlagSpecs() {
  static const std::vector<flags::Spec> specs = {
      {"socket", "", "unix:///var/run/kmsplugin/vault-kms.sock",
       "KMS v2 socket: unix:///path, unix:///@abstract, or a bare absolute path"},
      {"socket-mode", "", "0660", "permissions of the socket file (octal)"},
      {"socket-group", "", "", "group (name or gid) owning the socket file"},
      {"allowed-peer-uids", "", "",
       "comma-separated uids allowed to call (SO_PEERCRED); empty = any"},
      {"vault-addr", "VAULT_ADDR", "",
       "Vault address(es), https://host:port; several = failover in order", false, true},
      {"vault-ca-file", "VAULT_CACERT", "", "PEM CA bundle to verify Vault"},
      {"vault-ca-path", "VAULT_CAPATH", "", "directory of hashed CA certificates"},
      {"vault-tls-server-name", "VAULT_TLS_SERVER_NAME", "",
       "TLS server name (SNI) to expect from Vault"},
      {"vault-client-cert", "VAULT_CLIENT_CERT", "", "client certificate (PEM) for TLS to Vault"},
      {"vault-client-key", "VAULT_CLIENT_KEY", "", "client key (PEM) for TLS to Vault"},
      {"vault-namespace", "VAULT_NAMESPACE", "", "Vault Enterprise namespace of the transit mount"},
      {"vault-auth-namespace", "", "", "namespace of the auth mount (default: --vault-namespace)"},
      {"transit-mount", "", "transit", "path of the Transit secrets engine"},
      {"transit-key", "", "kms", "name of the Transit key"},
      {"auth-method", "", "approle", "approle, token or cert"},
      {"approle-mount", "", "approle", "path of the AppRole auth method"},
      {"approle-role-id", "", "", "AppRole role-id (prefer --approle-role-id-file; no variable)",
       false, false, kRoleIdNotFromEnv},
      {"approle-role-id-file", "", "", "file holding the AppRole role-id"},
      {"approle-secret-id-file", "", "",
       "file holding the AppRole secret-id (read at every login)"},
      {"token-file", "", "", "file holding a Vault token (--auth-method=token)"},
      {"cert-auth-mount", "", "cert",
       "path of the TLS certificate auth method (--auth-method=cert)"},
      {"cert-auth-role", "", "",
       "certificate role to log in with (--auth-method=cert; empty: Vault tries every role)"},
      {"key-refresh-interval", "", "30s", "how often key metadata is re-read from Vault"},
      {"vault-concurrency", "", "16",
       "Vault calls in flight at once, 1-256 (each Decrypt call carries up to 16 ciphertexts)"},
      {"metrics-listen", "", "127.0.0.1:8080", "host:port for /metrics, /healthz, /readyz"},
      {"log-level", "", "info", "debug, info, warning or error"},
      {"broker-user", "", "65532", "user[:group] the broker runs as when started as root"},
      {"frontend-user", "", "65533", "user[:group] the frontend runs as when started as root"},
      {"version", "", "", "print the version and exit", true, false, "a command, not a setting"},
      {"help", "", "", "print this help and exit", true, false, "a command, not a setting"},
  };
  return specs;
}

ParseResult ParseBrokerFlags(const std::vector<std::string>& args, BrokerConfig* c,
                             std::string* message) {
  flags::Parsed p;
  std::vector<std::string> positional;
  std::string err;
  if (!flags::Parse(BrokerFlagSpecs(), args, flags::Environment::Process(kBrokerEnvPrefix), &p,
                    &positional, &err)) {
    return Fail(message, err);
  }
  // Every message names where the value came from: the flag, or the variable that set it.
  auto src = [&p](const char* flag) { return p.Source(flag); };
  if (p.GetBool("help")) {
    // Usage() has no subcommand section; the synopsis carries the one line `check` needs.
    *message =
        flags::Usage("vault-kms-broker",
                     "[check] [flags]\n\n  check: test the configuration against Vault step by "
                     "step (no socket, no frontend) and exit 0 if nothing failed\n\n  Every "
                     "setting can also come from the variable in brackets; the flag wins, and "
                     "VAULT_KMS_* wins over VAULT_*.",
                     BrokerFlagSpecs(), kBrokerEnvPrefix);
    return ParseResult::kHelp;
  }
  if (p.GetBool("version")) {
    *message = std::string("vault-kms ") + VKMS_VERSION;
    return ParseResult::kVersion;
  }
  // The only positional is the `check` subcommand, and only in first place, so a stray word
  // further on is still reported as the mistake it most likely is.
  if (!positional.empty() && positional.front() == "check" && !args.empty() &&
      args.front() == "check") {
    c->check = true;
    positional.erase(positional.begin());
  }
  if (!positional.empty()) {
    return Fail(message, "unexpected argument \"" + positional.front() + "\" (see --help)");
  }

  // --socket
  std::string sock = p.GetOr("socket", "");
  if (sock.rfind("unix://", 0) == 0) sock = sock.substr(7);
  if (sock.rfind("/@", 0) == 0) {
    c->abstract_socket = true;
    sock = std::string(1, '\0') + sock.substr(2);
    if (sock.size() < 2) return Fail(message, src("socket") + ": empty abstract socket name");
  } else if (sock.empty() || sock[0] != '/') {
    return Fail(message, src("socket") +
                             ": must be unix:///absolute/path, unix:///@name or an absolute path");
  }
  if (sock.size() >= sizeof(sockaddr_un::sun_path)) {
    return Fail(message, src("socket") + ": path longer than " +
                             std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
  }
  c->socket_path = sock;

  unsigned long long n;
  std::string mode = p.GetOr("socket-mode", "");
  {
    char* end = nullptr;
    long m = strtol(mode.c_str(), &end, 8);
    if (mode.empty() || *end != '\0' || m < 0 || m > 0777) {
      return Fail(message, src("socket-mode") + ": expected an octal mode such as 0660, got \"" +
                               mode + "\"");
    }
    if (m & 0007) {
      return Fail(message, src("socket-mode") + ": " + mode +
                               " gives access to all local users; drop the \"other\" bits");
    }
    c->socket_mode = static_cast<mode_t>(m);
  }
  if (auto g = p.Get("socket-group")) {
    gid_t gid;
    if (!ParseGroup(*g, &gid)) {
      return Fail(message, src("socket-group") + ": no such group \"" + *g + "\"");
    }
    c->socket_gid = gid;
  }

  if (auto u = p.Get("allowed-peer-uids")) {
    for (const auto& item : flags::SplitList(*u)) {
      if (!flags::ParseUint(item, 0xfffffffeULL, &n)) {
        return Fail(message, src("allowed-peer-uids") + ": \"" + item + "\" is not a numeric uid");
      }
      c->allowed_peer_uids.push_back(static_cast<uid_t>(n));
    }
    c->allowed_peer_uids_text = *u;
  }
  // An abstract socket has no file, so no mode, group or directory protects it: every process
  // in the network namespace (with a static Pod on hostNetwork: every hostNetwork Pod on the
  // node) could connect and decrypt. Only the peer allow-list can narrow it.
  if (c->abstract_socket && c->allowed_peer_uids.empty()) {
    return Fail(message,
                "--socket: an abstract socket (@name) is open to every process in the network "
                "namespace; give --allowed-peer-uids too, or use a socket path");
  }
  if (c->abstract_socket && (p.Given("socket-mode") || p.Given("socket-group"))) {
    return Fail(message,
                "--socket-mode/--socket-group: an abstract socket (@name) has no file mode or "
                "group; restrict it with --allowed-peer-uids");
  }

  // Vault connection.
  VaultConfig& v = c->vault;
  v.addrs = p.GetAll("vault-addr");
  if (v.addrs.empty()) {
    return Fail(message, "--vault-addr: required (or set VAULT_KMS_VAULT_ADDR or VAULT_ADDR)");
  }
  for (auto& a : v.addrs) {
    while (!a.empty() && a.back() == '/') a.pop_back();
    if (a.rfind("https://", 0) != 0 || a.size() <= 8) {
      return Fail(message, src("vault-addr") + ": \"" + a +
                               "\" must be an https:// URL (Vault traffic is never sent in clear)");
    }
    if (a.find_first_of(" \t\r\n?#@") != std::string::npos) {
      return Fail(message,
                  src("vault-addr") + ": \"" + a +
                      "\" must be scheme://host[:port] with no credentials, query or fragment");
    }
  }
  v.ca_file = p.GetOr("vault-ca-file", "");
  v.ca_path = p.GetOr("vault-ca-path", "");
  v.tls_server_name = p.GetOr("vault-tls-server-name", "");
  v.client_cert = p.GetOr("vault-client-cert", "");
  v.client_key = p.GetOr("vault-client-key", "");
  if (v.client_cert.empty() != v.client_key.empty()) {
    return Fail(message, src("vault-client-cert") + " and " + src("vault-client-key") +
                             " must be given together");
  }
  for (const char* f : {"vault-ca-file", "vault-client-cert", "vault-client-key"}) {
    auto path = p.Get(f);
    if (path && access(path->c_str(), R_OK) != 0) {
      return Fail(message, src(f) + ": cannot read " + *path);
    }
  }
  // Read now, as root, before lockdown: a file that is not PEM would otherwise only show up
  // as a TLS error at every call, retried forever.
  if (std::string bad = CheckTlsFiles(v); !bad.empty()) return Fail(message, bad);
  v.ns = p.GetOr("vault-namespace", "");
  v.auth_ns = p.GetOr("vault-auth-namespace", v.ns);
  for (const char* f : {"vault-namespace", "vault-auth-namespace"}) {
    auto val = p.Get(f);
    if (val && !val->empty() && !ValidVaultName(*val, true)) {
      return Fail(message, src(f) + ": \"" + *val + "\" is not a valid namespace path");
    }
  }
  v.transit_mount = p.GetOr("transit-mount", "");
  if (!ValidVaultName(v.transit_mount, true)) {
    return Fail(message,
                src("transit-mount") + ": \"" + v.transit_mount + "\" is not a valid mount path");
  }
  v.transit_key = p.GetOr("transit-key", "");
  if (!ValidVaultName(v.transit_key, false)) {
    return Fail(message,
                src("transit-key") + ": \"" + v.transit_key + "\" is not a valid key name");
  }

  // Authentication: paths to credentials only, never the secrets themselves.
  std::string method = p.GetOr("auth-method", "");
  if (method == "approle") {
    v.auth_method = AuthMethod::kAppRole;
    v.approle_mount = p.GetOr("approle-mount", "");
    if (!ValidVaultName(v.approle_mount, true)) {
      return Fail(message,
                  src("approle-mount") + ": \"" + v.approle_mount + "\" is not a valid mount path");
    }
    v.role_id = p.GetOr("approle-role-id", "");
    v.role_id_file = p.GetOr("approle-role-id-file", "");
    if (v.role_id.empty() == v.role_id_file.empty()) {
      return Fail(message, src("approle-role-id") + " or " + src("approle-role-id-file") +
                               ": give exactly one");
    }
    v.secret_id_file = p.GetOr("approle-secret-id-file", "");
    if (v.secret_id_file.empty()) {
      return Fail(message, src("approle-secret-id-file") + ": required with " + src("auth-method") +
                               "=approle");
    }
    for (const char* f : {"approle-secret-id-file", "approle-role-id-file"}) {
      auto path = p.Get(f);
      if (path && !path->empty() && (*path)[0] != '/') {
        return Fail(message, src(f) + ": must be an absolute path");
      }
    }
  } else if (method == "token") {
    v.auth_method = AuthMethod::kToken;
    v.token_file = p.GetOr("token-file", "");
    if (v.token_file.empty() || v.token_file[0] != '/') {
      return Fail(message,
                  src("token-file") + ": an absolute path is required with --auth-method=token");
    }
  } else if (method == "cert") {
    v.auth_method = AuthMethod::kCert;
    // The certificate and key are read again at every login (a renewed certificate is used
    // without a restart), so relative paths would depend on the working directory.
    if (v.client_cert.empty()) {
      return Fail(message,
                  "--vault-client-cert and --vault-client-key: required with --auth-method=cert "
                  "(the certificate is the credential)");
    }
    if (v.client_cert[0] != '/' || v.client_key[0] != '/') {
      return Fail(message, src(v.client_cert[0] != '/' ? "vault-client-cert" : "vault-client-key") +
                               ": must be an absolute path with --auth-method=cert");
    }
    v.cert_auth_mount = p.GetOr("cert-auth-mount", "");
    if (!ValidVaultName(v.cert_auth_mount, true)) {
      return Fail(message, src("cert-auth-mount") + ": \"" + v.cert_auth_mount +
                               "\" is not a valid mount path");
    }
    v.cert_auth_role = p.GetOr("cert-auth-role", "");
    if (!v.cert_auth_role.empty() && !ValidVaultName(v.cert_auth_role, false)) {
      return Fail(message, src("cert-auth-role") + ": \"" + v.cert_auth_role +
                               "\" is not a valid role name");
    }
  } else {
    return Fail(message,
                src("auth-method") + ": expected approle, token or cert, got \"" + method + "\"");
  }
  // A flag of another method is a mistake worth stopping for (the operator meant something).
  static const struct {
    const char* flag;
    AuthMethod method;
  } kMethodFlags[] = {
      {"approle-secret-id-file", AuthMethod::kAppRole}, {"approle-role-id", AuthMethod::kAppRole},
      {"approle-role-id-file", AuthMethod::kAppRole},   {"token-file", AuthMethod::kToken},
      {"cert-auth-mount", AuthMethod::kCert},           {"cert-auth-role", AuthMethod::kCert},
  };
  for (const auto& own : kMethodFlags) {
    if (own.method != v.auth_method && p.Given(own.flag)) {
      return Fail(message,
                  src(own.flag) + ": only with --auth-method=" + AuthMethodName(own.method));
    }
  }

  std::chrono::milliseconds refresh;
  std::string refresh_text = p.GetOr("key-refresh-interval", "");
  if (!flags::ParseDuration(refresh_text, &refresh) || refresh < std::chrono::seconds(1) ||
      refresh > std::chrono::hours(24)) {
    return Fail(message, src("key-refresh-interval") +
                             ": expected a duration between 1s and 24h such as 30s, got \"" +
                             refresh_text + "\"");
  }
  v.key_refresh_interval = refresh;

  unsigned long long concurrency = 0;
  std::string concurrency_text = p.GetOr("vault-concurrency", "");
  if (!flags::ParseUint(concurrency_text, kMaxVaultConcurrency, &concurrency) || concurrency == 0) {
    return Fail(message, src("vault-concurrency") + ": expected a number from 1 to " +
                             std::to_string(kMaxVaultConcurrency) + ", got \"" + concurrency_text +
                             "\"");
  }
  v.workers = static_cast<int>(concurrency);

  c->metrics_listen = p.GetOr("metrics-listen", "");
  {
    ListenAddress listen;
    std::string why;
    if (!ParseListenAddress(c->metrics_listen, &listen, &why)) {
      return Fail(message, src("metrics-listen") +
                               ": expected host:port such as 127.0.0.1:8080 or [::1]:8080, "
                               "got \"" +
                               c->metrics_listen + "\": " + why);
    }
  }
  c->log_level = p.GetOr("log-level", "");
  if (!log::ValidLevel(c->log_level)) {
    return Fail(message, src("log-level") + ": expected debug, info, warning or error, got \"" +
                             c->log_level + "\"");
  }
  if (!ParseUser(p.GetOr("broker-user", ""), &c->broker_user)) {
    return Fail(message, src("broker-user") + ": unknown user or group \"" +
                             p.GetOr("broker-user", "") + "\"");
  }
  if (!ParseUser(p.GetOr("frontend-user", ""), &c->frontend_user)) {
    return Fail(message, src("frontend-user") + ": unknown user or group \"" +
                             p.GetOr("frontend-user", "") + "\"");
  }
  if (geteuid() == 0 && (c->broker_user.uid == 0 || c->frontend_user.uid == 0)) {
    return Fail(message, src("broker-user") + "/" + src("frontend-user") +
                             ": refusing to run either process as root");
  }
  if (geteuid() == 0 && c->broker_user.uid == c->frontend_user.uid) {
    return Fail(message, src("frontend-user") + ": must differ from " + src("broker-user") +
                             ", or the frontend could read the broker's files");
  }
  return ParseResult::kOk;
}

}  // namespace vkms::broker
