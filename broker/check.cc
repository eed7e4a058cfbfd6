#include "broker/check.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <set>
#include <string>
#include <vector>

#include "broker/vault/base64.h"
#include "broker/vault/client_cert.h"
#include "broker/vault/http.h"
#include "broker/vault/key_cache.h"
#include "broker/vault/token_manager.h"
#include "shared/secret.h"

namespace vkms::broker {
namespace {

// Generous for one request, short enough that an unreachable Vault does not hang the operator.
constexpr auto kStepTimeout = std::chrono::seconds(10);
constexpr int64_t kMinTtlSeconds = 300;

enum class Verdict { kPass, kWarn, kFail, kSkip };

class Report {
 public:
  explicit Report(std::ostream& out) : out_(out) {}

  void Line(Verdict v, const std::string& step, const std::string& detail,
            const std::string& fix = "") {
    static const char* const kWords[] = {"PASS", "WARN", "FAIL", "SKIP"};
    out_ << kWords[static_cast<int>(v)] << "  " << step << ": " << detail << "\n";
    if ((v == Verdict::kWarn || v == Verdict::kFail) && !fix.empty()) {
      out_ << "      fix: " << fix << "\n";
    }
    if (v == Verdict::kFail) failed_ = true;
    out_.flush();
  }
  bool failed() const { return failed_; }

 private:
  std::ostream& out_;
  bool failed_ = false;
};

// Several findings of one step become one line: the worst verdict, details and fixes joined.
struct Findings {
  Verdict verdict = Verdict::kPass;
  std::vector<std::string> details, fixes;

  void Add(Verdict v, const std::string& detail, const std::string& fix = "") {
    if (static_cast<int>(v) > static_cast<int>(verdict)) verdict = v;
    details.push_back(detail);
    if (!fix.empty()) fixes.push_back(fix);
  }
  void Print(Report* r, const std::string& step) const {
    r->Line(verdict, step, Join(details), Join(fixes));
  }
  static std::string Join(const std::vector<std::string>& parts) {
    std::string s;
    for (const auto& p : parts) s += (s.empty() ? "" : "; ") + p;
    return s;
  }
};

Deadline StepDeadline() {
  return Clock::now() + kStepTimeout;
}

std::string Duration(int64_t s) {
  if (s <= 0) return "0s";
  std::string out;
  if (s >= 3600) out += std::to_string(s / 3600) + "h";
  if (s % 3600 >= 60) out += std::to_string(s % 3600 / 60) + "m";
  if (s % 60 != 0) out += std::to_string(s % 60) + "s";
  return out;
}

std::string HttpReason(const VaultResponse& r) {
  if (r.transport != Code::kOk) return r.error;
  std::string s = "HTTP " + std::to_string(r.status);
  return r.error.empty() ? s : s + ": " + r.error;
}

// VaultHttp's transport reasons for certificate/handshake problems (broker/vault/http.cc
// CurlReason).
bool IsTlsError(const VaultResponse& r) {
  if (r.transport == Code::kOk) return false;
  for (const char* w : {"TLS", "certificate", "CA certificates"}) {
    if (r.error.find(w) != std::string::npos) return true;
  }
  return false;
}

std::string HostOf(const std::string& addr) {
  std::string h = addr.substr(addr.find("://") == std::string::npos ? 0 : addr.find("://") + 3);
  if (!h.empty() && h[0] == '[') return h.substr(0, h.find(']') + 1);
  return h.substr(0, h.find(':'));
}

std::string NsFlag(const VaultConfig& v) {
  return v.ns.empty() ? "" : " -namespace=" + v.ns;
}

// --- 1. address, 2. tls -----------------------------------------------------------------------

struct AddressResult {
  bool usable = false;  // at least one address can serve requests
  bool any_tls_handshake = false;
  std::vector<std::string> tls_errors;  // "<addr>: <reason>"
};

AddressResult CheckAddresses(const BrokerConfig& config, Report* report) {
  AddressResult res;
  Findings f;
  for (const auto& addr : config.vault.addrs) {
    // One client per address without retries or failover: each address gets its own verdict.
    VaultConfig one = WithoutRoleId(config.vault);
    one.addrs = {addr};
    one.max_retries = 0;
    one.max_redirects = 0;
    VaultHttp http(one);
    VaultRequest req;
    req.path = "sys/health";
    req.deadline = StepDeadline();
    VaultResponse r = http.Call(req);
    if (r.transport != Code::kOk) {
      if (IsTlsError(r)) {
        res.tls_errors.push_back(addr + ": " + r.error);
        f.Add(Verdict::kWarn, addr + ": health not read, TLS verification failed (see tls)",
              "fix the tls step below");
      } else {
        f.Add(Verdict::kFail, addr + ": " + r.error,
              "check --vault-addr (https, host, port) and that no firewall blocks the broker");
      }
      continue;
    }
    res.any_tls_handshake = true;
    const Json::Value& j = r.json;
    const bool initialized = j.isObject() && j["initialized"].isBool() && j["initialized"].asBool();
    const bool sealed = j.isObject() && j["sealed"].isBool() && j["sealed"].asBool();
    const bool standby = j.isObject() && j["standby"].isBool() && j["standby"].asBool();
    std::string version = j.isObject() && j["version"].isString() ? j["version"].asString() : "";
    if (version.size() > 40) version.resize(40);
    std::string state = std::string(initialized ? "initialized" : "not initialized") + ", " +
                        (sealed ? "sealed" : "unsealed") + ", " + (standby ? "standby" : "active") +
                        (version.empty() ? "" : ", version " + version);
    switch (r.status) {
      case 200:
      case 429:
      case 472:
      case 473:
        res.usable = true;
        f.Add(Verdict::kPass, addr + ": " + state);
        break;
      case 501:
        f.Add(Verdict::kFail, addr + ": " + state, "initialize Vault (vault operator init)");
        break;
      case 503:
        f.Add(Verdict::kFail, addr + ": " + state, "unseal Vault (vault operator unseal)");
        break;
      default:
        f.Add(Verdict::kFail, addr + ": unexpected " + HttpReason(r) + " from sys/health",
              "check that --vault-addr points at Vault itself, not a proxy or another service");
    }
  }
  f.Print(report, "address");

  const VaultConfig& v = config.vault;
  std::string ca = !v.ca_file.empty()   ? "CA file " + v.ca_file
                   : !v.ca_path.empty() ? "CA directory " + v.ca_path
                                        : "the system CA store";
  std::string names;
  if (!v.tls_server_name.empty()) {
    names = v.tls_server_name + " (--vault-tls-server-name)";
  } else {
    std::set<std::string> seen;
    for (const auto& a : v.addrs) {
      if (seen.insert(HostOf(a)).second) names += (names.empty() ? "" : ", ") + HostOf(a);
    }
  }
  if (!res.tls_errors.empty()) {
    report->Line(Verdict::kFail, "tls",
                 "server name " + names + " not verified against " + ca + ": " +
                     Findings::Join(res.tls_errors),
                 "set --vault-ca-file to the CA that signed Vault's certificate, or "
                 "--vault-tls-server-name to a name the certificate holds");
  } else if (!res.any_tls_handshake) {
    report->Line(Verdict::kSkip, "tls", "no address completed a TLS handshake");
  } else {
    std::string client = v.client_cert.empty() ? "" : ", client certificate " + v.client_cert;
    report->Line(Verdict::kPass, "tls",
                 "server name " + names + " verified against " + ca + client);
  }
  return res;
}

// --- 3. credentials ---------------------------------------------------------------------------

// A credential's owner and mode as a deployment should have them: the broker user's, no
// group/other bits.
void OwnerAndMode(const BrokerConfig& config, const std::string& name, const std::string& path,
                  const struct stat& st, Findings* f) {
  char mode[8];
  snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  std::string detail = name + ": mode " + mode + ", owner uid " + std::to_string(st.st_uid);
  bool warned = false;
  // As root the broker drops to --broker-user before it reads the file, so root's own access
  // proves nothing; as non-root the open() before is the real test.
  if (geteuid() == 0 && st.st_uid != config.broker_user.uid) {
    f->Add(Verdict::kWarn,
           detail + ", not the broker user " + std::to_string(config.broker_user.uid),
           "chown " + std::to_string(config.broker_user.uid) + " " + path);
    warned = true;
  }
  if (st.st_mode & 077) {
    f->Add(Verdict::kWarn,
           warned ? name + ": group/other can read it" : detail + ", group/other can read it",
           "chmod 0400 " + path);
    warned = true;
  }
  if (!warned) f->Add(Verdict::kPass, detail);
}

// 0 when the broker could open `path` for reading, else the errno it would get. As root that
// means as --broker-user without supplementary groups (what the broker becomes before its first
// login), links and every directory above included: asked of the kernel by a child that drops
// to that user, since mode bits alone miss ACLs and directories.
int OpenErrorAsBroker(const BrokerConfig& config, const std::string& path) {
  if (geteuid() != 0) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return errno;
    close(fd);
    return 0;
  }
  const uid_t uid = config.broker_user.uid;
  const gid_t gid = config.broker_user.gid;
  pid_t pid = fork();
  if (pid < 0) return errno;
  if (pid == 0) {
    // Raw system calls: glibc's wrappers would try to change every thread's ids, and the child
    // of a process that may have threads has only this one.
    if (syscall(SYS_setgroups, 0, nullptr) != 0 || syscall(SYS_setgid, gid) != 0 ||
        syscall(SYS_setuid, uid) != 0) {
      _exit(255);
    }
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    _exit(fd < 0 ? (errno > 0 && errno < 255 ? errno : EIO) : 0);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return errno;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) == 255) return EPERM;
  return WEXITSTATUS(status);
}

// --auth-method=cert: the certificate and key are the credential. Readable by the broker user,
// a certificate valid now, and the key that belongs to it; the key kept like a secret-id.
void CheckClientCertificate(const BrokerConfig& config, Findings* f) {
  const VaultConfig& v = config.vault;
  const std::string uid = std::to_string(config.broker_user.uid);
  const std::string who = geteuid() == 0 ? "the broker user " + uid : "this user";
  for (const auto& [what, path] :
       {std::pair<const char*, const std::string&>{"client certificate", v.client_cert},
        {"client key", v.client_key}}) {
    if (int e = OpenErrorAsBroker(config, path); e != 0) {
      f->Add(Verdict::kFail,
             std::string(what) + " " + path + ": cannot be read by " + who + ": " + strerror(e),
             geteuid() == 0 ? "chown " + uid + " " + path +
                                  " (and let that user search every directory above it)"
                            : "make it readable by the user the broker runs as");
      return;
    }
  }
  std::string problem = ClientCertificateProblem(v.client_cert, std::time(nullptr));
  if (!problem.empty()) {
    f->Add(Verdict::kFail, problem,
           "install a valid certificate at " + v.client_cert +
               " (the broker reads it again at every login)");
    return;
  }
  problem = ClientKeyProblem(v.client_cert, v.client_key);
  if (!problem.empty()) {
    f->Add(Verdict::kFail, problem,
           "install the unencrypted key of that certificate at " + v.client_key);
    return;
  }
  f->Add(Verdict::kPass,
         "client certificate " + v.client_cert + ": " + ClientCertificateSummary(v.client_cert));
  struct stat st;
  if (stat(v.client_key.c_str(), &st) == 0) {
    OwnerAndMode(config, "client key " + v.client_key, v.client_key, st, f);
  }
}

void CheckCredentialFile(const BrokerConfig& config, const std::string& what,
                         const std::string& path, Findings* f) {
  const std::string name = what + " file " + path;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    f->Add(Verdict::kFail, name + ": " + strerror(errno),
           "create it (or fix the path given to the broker)");
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    f->Add(Verdict::kFail, name + ": not a regular file", "point the flag at the file itself");
    return;
  }
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    f->Add(Verdict::kFail, name + ": cannot be read: " + strerror(errno),
           "make it readable by the user the broker runs as");
    return;
  }
  close(fd);
  SecretString value;
  std::string error;
  bool read_ok = ReadSecretFile(path, &value, &error);
  bool empty = read_ok && value.empty();
  value.Clear();
  if (!read_ok) {
    f->Add(Verdict::kFail, error, "write the credential alone into the file");
    return;
  }
  if (empty) {
    f->Add(Verdict::kFail, name + ": empty", "write the " + what + " into " + path);
    return;
  }
  OwnerAndMode(config, name, path, st, f);
}

bool CheckCredentials(const BrokerConfig& config, Report* report) {
  Findings f;
  const VaultConfig& v = config.vault;
  if (v.auth_method == AuthMethod::kToken) {
    CheckCredentialFile(config, "token", v.token_file, &f);
  } else if (v.auth_method == AuthMethod::kCert) {
    CheckClientCertificate(config, &f);
  } else {
    if (!v.role_id_file.empty()) {
      CheckCredentialFile(config, "role-id", v.role_id_file, &f);
    } else {
      f.Add(Verdict::kWarn, "role-id given as a flag (visible in the process list until start-up)",
            "use --approle-role-id-file");
    }
    CheckCredentialFile(config, "secret-id", v.secret_id_file, &f);
  }
  f.Print(report, "credentials");
  return f.verdict != Verdict::kFail;
}

// --- 4. login, 5. token ---------------------------------------------------------------------

bool CheckLogin(const BrokerConfig& config, TokenManager* tokens, Report* report) {
  const VaultConfig& v = config.vault;
  std::string how, login_fix, renewable_fix, ttl_fix;
  switch (v.auth_method) {
    case AuthMethod::kAppRole:
      how = "approle login at auth/" + v.approle_mount;
      login_fix =
          "check that the role-id and secret-id belong to the same role, the secret-id is "
          "neither expired nor used up, and --approle-mount";
      renewable_fix = "let the AppRole role issue renewable tokens";
      ttl_fix = "raise token_ttl on the AppRole role to 5m or more";
      break;
    case AuthMethod::kCert: {
      how = "cert login at auth/" + v.cert_auth_mount +
            (v.cert_auth_role.empty() ? "" : " as role " + v.cert_auth_role);
      const std::string role = v.cert_auth_role.empty() ? "ROLE" : v.cert_auth_role;
      login_fix = "vault read auth/" + v.cert_auth_mount + "/certs/" + role +
                  ": its certificate must be the CA that issued " + v.client_cert +
                  " (or that certificate itself), and allowed_common_names must admit it";
      renewable_fix = "let the cert role issue renewable tokens";
      ttl_fix = "raise token_ttl on the cert role to 5m or more";
      break;
    }
    case AuthMethod::kToken:
      how = "token from " + v.token_file;
      login_fix = "write a valid, unexpired Vault token into " + v.token_file;
      renewable_fix = "use a renewable (or periodic) token";
      ttl_fix = "issue the token with a ttl of 5m or more";
      break;
  }
  Status s = tokens->Login(StepDeadline());
  if (!s.ok()) {
    std::string msg = s.message();
    for (const char* prefix : {"vault login failed: ", "vault token unavailable: "}) {
      if (msg.rfind(prefix, 0) == 0) msg = msg.substr(strlen(prefix));
    }
    report->Line(Verdict::kFail, "login", how + ": " + msg, login_fix);
    return false;
  }

  VaultResponse r =
      tokens->CallWithToken(HttpMethod::kGet, "auth/token/lookup-self", "", v.ns, StepDeadline());
  WipeTokenFields(&r.json);
  if (!r.ok()) {
    report->Line(Verdict::kPass, "login", how + ": token issued (lookup-self failed)");
    report->Line(Verdict::kWarn, "token", "lookup-self: " + HttpReason(r),
                 "allow read on auth/token/lookup-self (Vault's default policy does)");
    return true;
  }
  const Json::Value& d = r.json["data"];
  std::string policies;
  if (d.isObject() && d["policies"].isArray()) {
    for (const auto& p : d["policies"]) {
      if (p.isString()) policies += (policies.empty() ? "" : ", ") + p.asString();
    }
  }
  const int64_t ttl = JsonInt(d, "ttl");
  const std::string ttl_text = ttl > 0 ? "ttl " + Duration(ttl) : "no expiry";
  report->Line(Verdict::kPass, "login", how + ": policies [" + policies + "], " + ttl_text);

  const bool renewable = d.isObject() && d["renewable"].isBool() && d["renewable"].asBool();
  const int64_t creation_ttl = JsonInt(d, "creation_ttl");
  const int64_t explicit_max = JsonInt(d, "explicit_max_ttl");
  const int64_t period = JsonInt(d, "period");
  std::string detail = std::string(renewable ? "renewable" : "not renewable") + ", " + ttl_text;
  if (creation_ttl > 0) detail += " (issued for " + Duration(creation_ttl) + ")";
  detail += ", explicit max ttl " + (explicit_max > 0 ? Duration(explicit_max) : "none");
  if (period > 0) detail += ", period " + Duration(period);
  Findings f;
  f.Add(Verdict::kPass, detail);
  if (ttl > 0 && !renewable) {
    f.Add(Verdict::kWarn, "the broker must log in again before every expiry", renewable_fix);
  }
  if (ttl > 0 && ttl < kMinTtlSeconds) {
    f.Add(Verdict::kWarn, "ttl below " + Duration(kMinTtlSeconds), ttl_fix);
  }
  f.Print(report, "token");
  return true;
}

// --- 6. key -----------------------------------------------------------------------------------

bool CheckKey(const BrokerConfig& config, TokenManager* tokens, KeyMetadata* meta, Report* report) {
  const VaultConfig& v = config.vault;
  const std::string path = v.transit_mount + "/keys/" + v.transit_key;
  VaultResponse r = tokens->CallWithToken(HttpMethod::kGet, path, "", v.ns, StepDeadline());
  if (r.transport == Code::kOk && r.status == 404) {
    report->Line(Verdict::kFail, "key", path + ": not found (HTTP 404)",
                 "vault write" + NsFlag(v) + " -f " + path + " type=aes256-gcm96");
    return false;
  }
  if (r.transport == Code::kOk && r.status == 403) {
    report->Line(Verdict::kFail, "key", path + ": " + HttpReason(r),
                 "grant read on " + path + " in the broker's policy");
    return false;
  }
  if (!r.ok()) {
    report->Line(Verdict::kFail, "key", path + ": " + HttpReason(r),
                 "check --transit-mount, --transit-key and --vault-namespace");
    return false;
  }
  const Json::Value& d = r.json["data"];
  Status s = KeyCache::ParseKeyMetadata(d, v.ns, v.transit_mount, v.transit_key, meta);
  if (!s.ok()) {
    report->Line(Verdict::kFail, "key", s.message(),
                 "create an aes256-gcm96 key and point --transit-key at it");
    return false;
  }
  std::string detail = path + ": type " + meta->type + ", latest version " +
                       std::to_string(meta->latest_version) + ", min decryption version " +
                       std::to_string(meta->min_decryption_version) + ", supports encryption";
  if (meta->type != "aes256-gcm96") {
    report->Line(Verdict::kWarn, "key", detail + "; type is not aes256-gcm96",
                 "create an aes256-gcm96 key and point --transit-key at it");
  } else {
    report->Line(Verdict::kPass, "key", detail);
  }
  return true;
}

// --- 7. policy --------------------------------------------------------------------------------

bool CheckPolicy(const BrokerConfig& config, TokenManager* tokens, Report* report) {
  const VaultConfig& v = config.vault;
  const std::string prefix = v.transit_mount + "/";
  const std::string enc = prefix + "encrypt/" + v.transit_key;
  const std::string dec = prefix + "decrypt/" + v.transit_key;
  const std::string keys = prefix + "keys/" + v.transit_key;
  std::string body = "{\"paths\":[";
  AppendJsonString(&body, enc);
  body += ",";
  AppendJsonString(&body, dec);
  body += ",";
  AppendJsonString(&body, keys);
  body += "]}";
  VaultResponse r =
      tokens->CallWithToken(HttpMethod::kPost, "sys/capabilities-self", body, v.ns, StepDeadline());
  if (!r.ok() || !r.json["data"].isObject()) {
    report->Line(Verdict::kWarn, "policy",
                 "cannot read the token's capabilities: " + HttpReason(r) +
                     " (the round trip below still tests encrypt and decrypt)",
                 "allow update on sys/capabilities-self (Vault's default policy does)");
    return true;
  }
  const Json::Value& d = r.json["data"];
  Findings f;
  std::vector<std::string> summary;
  struct Need {
    const std::string& path;
    const char* cap;
  };
  for (const Need& n : {Need{enc, "update"}, Need{dec, "update"}, Need{keys, "read"}}) {
    std::set<std::string> caps;
    if (d[n.path].isArray()) {
      for (const auto& c : d[n.path]) {
        if (c.isString()) caps.insert(c.asString());
      }
    }
    std::string list;
    for (const auto& c : caps) list += (list.empty() ? "" : ", ") + c;
    summary.push_back(n.path + " [" + list + "]");
    const bool root = caps.count("root") > 0;
    if (!root && (caps.count(n.cap) == 0 || caps.count("deny") > 0)) {
      f.Add(Verdict::kFail, n.path + " lacks " + n.cap,
            "add path \"" + n.path + "\" { capabilities = [\"" + n.cap +
                "\"] } to the broker's policy");
    }
    if (&n.path == &enc && caps.count("create") > 0) {
      f.Add(Verdict::kWarn,
            enc + " has create: a mistyped --transit-key would silently create a new key",
            "remove \"create\" from " + enc + " in the broker's policy");
    }
    for (const char* broad : {"root", "sudo", "delete"}) {
      if (caps.count(broad) > 0) {
        f.Add(Verdict::kWarn, n.path + " has " + broad + ", more than the broker needs",
              "give the broker only the minimal policy (README)");
      }
    }
  }
  // The capability list leads the line; findings follow it.
  std::string caps;
  for (const auto& s : summary) caps += (caps.empty() ? "" : ", ") + s;
  f.details.insert(f.details.begin(), caps);
  f.Print(report, "policy");
  return f.verdict != Verdict::kFail;
}

// --- 8. round trip ----------------------------------------------------------------------------

void CheckRoundTrip(const BrokerConfig& config, TokenManager* tokens, const KeyMetadata& meta,
                    Report* report) {
  const VaultConfig& v = config.vault;
  const std::string enc_path = v.transit_mount + "/encrypt/" + v.transit_key;
  const std::string dec_path = v.transit_mount + "/decrypt/" + v.transit_key;
  std::string plain(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&plain[0]), 32) != 1) {
    report->Line(Verdict::kFail, "round trip", "no random bytes from OpenSSL",
                 "check the system's entropy source");
    return;
  }
  std::string b64 = Base64Encode(plain);
  std::string body;
  body.reserve(64 + JsonStringReserve(b64.size()));
  body += "{\"plaintext\":";
  AppendJsonString(&body, b64);
  body += ",\"key_version\":" + std::to_string(meta.latest_version) + "}";
  VaultResponse r = tokens->CallWithToken(HttpMethod::kPost, enc_path, body, v.ns, StepDeadline());
  WipeString(&body);
  RedactSecret(&r.error, b64);
  std::string ct;
  if (r.ok() && r.json["data"]["ciphertext"].isString()) {
    ct = r.json["data"]["ciphertext"].asString();
    WipeJsonString(&r.json["data"]["ciphertext"]);
  }
  if (ct.empty()) {
    WipeString(&plain);
    WipeString(&b64);
    report->Line(Verdict::kFail, "round trip",
                 "encrypt with key version " + std::to_string(meta.latest_version) + ": " +
                     (r.ok() ? "no ciphertext in the answer" : HttpReason(r)),
                 "grant update on " + enc_path + " and check min_encryption_version");
    return;
  }
  body.clear();
  body.reserve(32 + JsonStringReserve(ct.size()));
  body += "{\"ciphertext\":";
  AppendJsonString(&body, ct);
  body += "}";
  r = tokens->CallWithToken(HttpMethod::kPost, dec_path, body, v.ns, StepDeadline());
  WipeString(&body);
  RedactSecret(&r.error, ct);
  std::string back_b64, back;
  if (r.ok() && r.json["data"]["plaintext"].isString()) {
    back_b64 = r.json["data"]["plaintext"].asString();
    WipeJsonString(&r.json["data"]["plaintext"]);
  }
  const bool decoded = Base64Decode(back_b64, &back);
  const bool same =
      decoded && back.size() == plain.size() && CRYPTO_memcmp(back.data(), plain.data(), 32) == 0;
  const size_t ct_len = ct.size();
  for (std::string* s : {&plain, &b64, &ct, &back_b64, &back}) WipeString(s);
  if (!r.ok()) {
    report->Line(Verdict::kFail, "round trip", "decrypt: " + HttpReason(r),
                 "grant update on " + dec_path + " in the broker's policy");
  } else if (!same) {
    report->Line(Verdict::kFail, "round trip", "decrypt returned a different value",
                 "check that every --vault-addr is a node of the same Vault cluster");
  } else {
    report->Line(Verdict::kPass, "round trip",
                 "32 random bytes encrypted with key version " +
                     std::to_string(meta.latest_version) + " (ciphertext " +
                     std::to_string(ct_len) + " bytes) and decrypted back identical");
  }
}

}  // namespace

int RunCheck(const BrokerConfig& config, std::ostream& out) {
  EnsureCurlGlobalInit();
  Report report(out);

  AddressResult addr = CheckAddresses(config, &report);
  const bool creds_ok = CheckCredentials(config, &report);

  auto skip = [&](std::initializer_list<const char*> steps, const std::string& why) {
    for (const char* s : steps) report.Line(Verdict::kSkip, s, why);
  };
  if (!addr.usable) {
    skip({"login", "token", "key", "policy", "round trip"}, "no usable Vault address");
    return 1;
  }
  if (!creds_ok) {
    skip({"login", "token", "key", "policy", "round trip"}, "credentials failed");
    return 1;
  }

  // The same client and token code the broker runs, so a PASS here means the broker's own
  // login and calls work (failover across every address included).
  VaultHttp http(config.vault);
  TokenManager tokens(config.vault, &http);
  if (!CheckLogin(config, &tokens, &report)) {
    skip({"token", "key", "policy", "round trip"}, "login failed");
    return 1;
  }
  KeyMetadata meta;
  const bool key_ok = CheckKey(config, &tokens, &meta, &report);
  const bool policy_ok = CheckPolicy(config, &tokens, &report);
  if (!key_ok || !policy_ok) {
    skip({"round trip"}, key_ok ? "policy failed" : "key failed");
  } else {
    CheckRoundTrip(config, &tokens, meta, &report);
  }
  return report.failed() ? 1 : 0;
}

}  // namespace vkms::broker
