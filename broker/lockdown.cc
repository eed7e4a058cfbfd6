#include "broker/lockdown.h"

#include <netdb.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>

#include "broker/vault/http.h"
#include "seccomp/broker_policy.h"
#include "shared/hardening.h"
#include "shared/log.h"

namespace vkms::broker {
namespace {

std::string Dir(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// host and port of "https://host[:port]" ("[v6]" literals too); port 443 when absent.
void HostPort(const std::string& addr, std::string* host, uint16_t* port) {
  std::string rest = addr.substr(addr.find("://") + 3);
  rest = rest.substr(0, rest.find('/'));
  size_t colon = rest.rfind(':');
  size_t bracket = rest.rfind(']');
  *port = 443;
  if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
    *port = static_cast<uint16_t>(atoi(rest.c_str() + colon + 1));
    rest = rest.substr(0, colon);
  }
  if (!rest.empty() && rest.front() == '[') rest = rest.substr(1, rest.size() - 2);
  *host = rest;
}

// Everything that would otherwise load code or read configuration on first use is done now,
// while it is still allowed: libcurl and OpenSSL initialisation, and one name lookup per
// Vault host (glibc loads its NSS modules then; after lockdown mapping code is impossible).
void WarmUp(const BrokerConfig& config) {
  EnsureCurlGlobalInit();
  for (const auto& addr : config.vault.addrs) {
    std::string host;
    uint16_t port;
    HostPort(addr, &host, &port);
    struct addrinfo hints = {};
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo* res = nullptr;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &res) == 0) freeaddrinfo(res);
  }
}

void SetLimit(int resource, rlim_t value) {
  struct rlimit lim = {value, value};
  setrlimit(resource, &lim);
}

}  // namespace

landlock::Rules BrokerLandlockRules(const BrokerConfig& config) {
  const VaultConfig& v = config.vault;
  std::set<std::string> dirs;
  for (const std::string* f : {&v.secret_id_file, &v.role_id_file, &v.token_file, &v.ca_file,
                               &v.client_cert, &v.client_key}) {
    if (!f->empty()) dirs.insert(Dir(*f));
  }
  if (!v.ca_path.empty()) dirs.insert(v.ca_path);
  if (v.ca_file.empty() && v.ca_path.empty()) dirs.insert("/etc/ssl/certs");  // system CAs
  landlock::Rules rules;
  rules.read_dirs.assign(dirs.begin(), dirs.end());
  rules.read_files = {"/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/gai.conf",
                      "/etc/host.conf"};
  // Only a broker started as non-root owns the socket's directory and may delete its socket
  // there; as root the directory is root's alone and no rule could help (listen_socket.h).
  if (!config.abstract_socket && geteuid() != 0) {
    rules.remove_in_dirs.push_back(Dir(config.socket_path));
  }
  std::set<uint16_t> ports;
  if (VaultAddrsNeedDns(v)) ports.insert(53);  // DNS falls back to TCP for large answers
  for (const auto& addr : v.addrs) {
    std::string host;
    uint16_t port;
    HostPort(addr, &host, &port);
    ports.insert(port);
  }
  rules.connect_ports.assign(ports.begin(), ports.end());
  return rules;
}

seccomp::BrokerPolicyOptions BrokerPolicyOptions(const BrokerConfig& config, bool started_as_root) {
  seccomp::BrokerPolicyOptions o;
  o.self = getpid();
  o.dns = VaultAddrsNeedDns(config.vault);
  o.remove_socket = !started_as_root && !config.abstract_socket;
  return o;
}

bool LockDownBroker(const BrokerConfig& config, bool started_as_root, std::string* error) {
  // 0. Timestamps in UTC without reading /etc/localtime on every log line; load what would
  //    otherwise be loaded lazily.
  setenv("TZ", "UTC", 1);
  WarmUp(config);

  // 1. Identity: the broker user, no supplementary groups, no capabilities, empty bounding set.
  uid_t uid = started_as_root ? config.broker_user.uid : getuid();
  gid_t gid = started_as_root ? config.broker_user.gid : getgid();
  if (!hardening::SwitchUserAndClearCapabilities(uid, gid, error)) return false;
  if (!started_as_root) {
    log::Warning(
        "started as non-root: broker and frontend share one uid; non-dumpable processes, "
        "Landlock and seccomp still separate them (see SECURITY.md)",
        {{"uid", uid}});
  }

  // 2. No way back up (no setuid binaries, no file capabilities), no ptrace attach by peers of
  //    the same uid, no core file that could hold the token.
  if (!hardening::NoNewPrivsNoDumpNoCore(error)) return false;

  // 3. Resource limits: no files written (logs go to a pipe; a regular-file stderr keeps its
  //    size limit), and with a dedicated uid, a bounded number of threads.
  struct stat st;
  if (fstat(STDERR_FILENO, &st) == 0 && !S_ISREG(st.st_mode)) SetLimit(RLIMIT_FSIZE, 0);
  if (started_as_root) SetLimit(RLIMIT_NPROC, 256);

  // 4. Landlock: only the credential/CA directories, the resolver's files, the socket's
  //    directory and Vault's TCP ports remain reachable.
  landlock::Result ll;
  if (!landlock::Restrict(BrokerLandlockRules(config), &ll, error)) return false;
  for (const auto& m : ll.missing) log::Warning("landlock: not enforced on this kernel: " + m);
  log::Info("landlock applied", {{"abi", ll.abi}});

  // 5. seccomp: the allow-list of seccomp/broker_policy.cc; anything else kills.
  if (!seccomp::Install(seccomp::BrokerPolicy(BrokerPolicyOptions(config, started_as_root)),
                        error)) {
    return false;
  }
  return true;
}

}  // namespace vkms::broker
