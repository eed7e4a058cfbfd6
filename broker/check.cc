#include "broker/check.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <grp.h>
#include <json/reader.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "broker/capabilities.h"
#include "broker/key_cache.h"
#include "broker/listen_socket.h"
#include "broker/token_manager.h"
#include "broker/vault_http.h"
#include "shared/listen_address.h"
#include "shared/log.h"
#include "shared/secret.h"

namespace vkms::broker {
namespace {

// Generous for one request, short enough that an unreachable Vault does not hang the operator.
constexpr auto kStepTimeout = std::chrono::seconds(10);
constexpr int64_t kMinTtlSeconds = 300;

enum class Verdict { kPass, kWarn, kFail, kSkip };

class Report {
 public:
  Report(std::ostream& out, ReportLogCapture* logs) : out_(out), logs_(logs) {}

  void Line(Verdict v, const std::string& step, const std::string& detail,
            const std::string& fix = "") {
    static const char* const kWords[] = {"PASS", "WARN", "FAIL", "SKIP"};
    out_ << kWords[static_cast<int>(v)] << "  " << step << ": " << detail << "\n";
    // One fix line under every WARN and FAIL (every caller gives one).
    if ((v == Verdict::kWarn || v == Verdict::kFail) && !fix.empty()) {
      out_ << "      fix: " << fix << "\n";
    }
    if (v == Verdict::kFail) failed_ = true;
    for (const std::string& l : logs_->Take()) out_ << "      log: " << l << "\n";
    out_.flush();
  }
  bool failed() const { return failed_; }

 private:
  std::ostream& out_;
  ReportLogCapture* logs_;
  bool failed_ = false;
};

// Several findings of one step become one line: the worst verdict, details and fixes joined.
struct Findings {
  Verdict verdict = Verdict::kPass;
  std::vector<std::string> details, fixes;

  void Add(Verdict v, const std::string& detail, const std::string& fix = "") {
    if (static_cast<int>(v) > static_cast<int>(verdict)) verdict = v;
    details.push_back(detail);
    // One fix per problem: three files behind the same closed directory need one chmod.
    if (!fix.empty() && std::find(fixes.begin(), fixes.end(), fix) == fixes.end()) {
      fixes.push_back(fix);
    }
  }
  void Print(Report* r, const std::string& step, const std::string& lead = "") const {
    std::string d = Join(details);
    r->Line(verdict, step, lead.empty() ? d : lead + d, Join(fixes));
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

std::string Mode(mode_t m) {
  char mode[8];
  snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(m & 07777));
  return mode;
}

std::string HttpReason(const VaultResponse& r) {
  if (r.transport != Code::kOk) return r.error;
  std::string s = "HTTP " + std::to_string(r.status);
  return r.error.empty() ? s : s + ": " + r.error;
}

std::string HostOf(const std::string& addr) {
  std::string h = addr.substr(addr.find("://") == std::string::npos ? 0 : addr.find("://") + 3);
  if (!h.empty() && h[0] == '[') return h.substr(0, h.find(']') + 1);
  return h.substr(0, h.find(':'));
}

std::string NsFlag(const VaultConfig& v) {
  return v.ns.empty() ? "" : " -namespace=" + v.ns;
}

std::string Dirname(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

// --- the files, opened as the broker user -----------------------------------------------------

struct FileToRead {
  std::string what;  // "secret-id file"
  std::string path;
  enum class Kind { kCredential, kFile, kDirectory } kind = Kind::kFile;
  bool secret = false;  // group/other must not read it
};

struct Opened {
  bool ok = false;
  std::string error;        // why not, naming the path, never the content
  std::string blocked_dir;  // the first directory on the way the user cannot search
};

std::vector<FileToRead> FilesTheBrokerReads(const VaultConfig& v) {
  using K = FileToRead::Kind;
  std::vector<FileToRead> files;
  if (v.auth_method == AuthMethod::kToken) {
    files.push_back({"token file", v.token_file, K::kCredential, true});
  } else {
    if (!v.role_id_file.empty()) files.push_back({"role-id file", v.role_id_file, K::kCredential});
    files.push_back({"secret-id file", v.secret_id_file, K::kCredential, true});
  }
  if (!v.ca_file.empty()) files.push_back({"CA file", v.ca_file});
  if (!v.ca_path.empty()) files.push_back({"CA directory", v.ca_path, K::kDirectory});
  if (!v.client_cert.empty()) files.push_back({"client certificate", v.client_cert});
  if (!v.client_key.empty()) files.push_back({"client key", v.client_key, K::kFile, true});
  return files;
}

// In the child, as the broker user: what the broker itself will do with the file.
Opened OpenAsBroker(const FileToRead& f) {
  Opened o;
  int err = 0;
  switch (f.kind) {
    case FileToRead::Kind::kCredential: {
      // The broker's own reader (O_NOFOLLOW, regular file, not empty); the value is wiped.
      SecretString value;
      o.ok = ReadSecretFile(f.path, &value, &o.error);
      err = o.ok ? 0 : errno;
      break;
    }
    case FileToRead::Kind::kFile: {
      int fd = open(f.path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
      o.ok = fd >= 0;
      err = errno;
      if (fd >= 0) close(fd);
      if (!o.ok) o.error = "cannot open " + f.path + ": " + strerror(err);
      break;
    }
    case FileToRead::Kind::kDirectory:
      // OpenSSL looks certificates up by name: the directory must be searchable.
      o.ok = access(f.path.c_str(), X_OK) == 0;
      err = errno;
      if (!o.ok) o.error = "cannot search " + f.path + ": " + strerror(err);
      break;
  }
  if (!o.ok && err == EACCES) {
    for (size_t pos = 1; (pos = f.path.find('/', pos)) != std::string::npos; ++pos) {
      std::string dir = f.path.substr(0, pos);
      if (access(dir.c_str(), X_OK) != 0) {
        o.blocked_dir = dir;
        break;
      }
    }
  }
  return o;
}

// Opens every file as the broker will: in a child switched to --broker-user's uid and gid
// with no supplementary groups (when run as root; otherwise the broker runs as this user),
// reporting back over a pipe. Must run before any thread exists (fork, then malloc in the
// child), so RunCheck calls it first.
std::vector<Opened> OpenAllAsBroker(const BrokerConfig& config,
                                    const std::vector<FileToRead>& files) {
  std::vector<Opened> out(files.size());
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    for (auto& o : out) o.error = std::string("pipe: ") + strerror(errno);
    return out;
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    std::string msg;
    if (geteuid() == 0 &&
        (setgroups(0, nullptr) != 0 ||
         setresgid(config.broker_user.gid, config.broker_user.gid, config.broker_user.gid) != 0 ||
         setresuid(config.broker_user.uid, config.broker_user.uid, config.broker_user.uid) != 0)) {
      msg = std::string("E\tcannot switch to the broker user: ") + strerror(errno) + "\n";
    } else {
      for (const FileToRead& f : files) {
        Opened o = OpenAsBroker(f);
        msg += std::string(o.ok ? "1" : "0") + "\t" + o.blocked_dir + "\t" + o.error + "\n";
      }
    }
    for (size_t off = 0; off < msg.size();) {
      ssize_t n = write(p[1], msg.data() + off, msg.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(p[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(p[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  close(p[0]);
  if (pid > 0) {
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  std::istringstream in(text);
  std::string line;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::getline(in, line)) {
      out[i].error = pid < 0 ? std::string("fork: ") + strerror(errno)
                             : "the probe running as the broker user gave no answer";
      continue;
    }
    if (line.rfind("E\t", 0) == 0) {
      for (auto& o : out) o.error = line.substr(2);
      break;
    }
    size_t a = line.find('\t'), b = line.find('\t', a + 1);
    out[i].ok = line[0] == '1';
    out[i].blocked_dir = line.substr(a + 1, b - a - 1);
    out[i].error = line.substr(b + 1);
  }
  return out;
}

// What group or other may do with a file whose mode has bits in 077.
std::string SharedAccess(mode_t mode) {
  const bool read = mode & 044, write = mode & 022;
  return read && write ? "group/other can read and write it"
         : read        ? "group/other can read it"
         : write       ? "group/other can write it"
                       : "group/other have access to it";
}

std::string BrokerUser(const BrokerConfig& config) {
  return geteuid() == 0 ? "uid " + std::to_string(config.broker_user.uid) + " (--broker-user)"
                        : "uid " + std::to_string(geteuid()) + " (the broker's own)";
}

bool CheckFiles(const BrokerConfig& config, const std::vector<FileToRead>& files,
                const std::vector<Opened>& opened, Report* report) {
  Findings f;
  const std::string owner =
      std::to_string(config.broker_user.uid) + ":" + std::to_string(config.broker_user.gid);
  if (config.vault.auth_method == AuthMethod::kAppRole && config.vault.role_id_file.empty()) {
    f.Add(Verdict::kWarn, "role-id given as a flag (visible in the process list until start-up)",
          "use --approle-role-id-file");
  }
  for (size_t i = 0; i < files.size(); ++i) {
    const FileToRead& file = files[i];
    const std::string name = file.what + " " + file.path;
    struct stat st;
    const bool stat_ok = stat(file.path.c_str(), &st) == 0;
    if (!opened[i].ok) {
      std::string fix;
      if (!opened[i].blocked_dir.empty()) {
        fix = "chmod 0755 " + opened[i].blocked_dir + " (the broker user must be able to enter it)";
      } else if (!stat_ok) {
        fix = "create it, or correct the flag that names it";
      } else if (file.kind == FileToRead::Kind::kDirectory) {
        fix = "chmod 0755 " + file.path;
      } else if (file.secret || file.kind == FileToRead::Kind::kCredential) {
        fix = "chown " + owner + " " + file.path + " && chmod 0400 " + file.path;
      } else {
        fix = "chmod 0644 " + file.path;
      }
      const std::string why = !opened[i].blocked_dir.empty()
                                  ? "directory " + opened[i].blocked_dir + " cannot be entered"
                                  : opened[i].error;
      f.Add(Verdict::kFail,
            name + ": the broker cannot read it as " + BrokerUser(config) + ": " + why, fix);
      continue;
    }
    std::string detail = name;
    if (stat_ok) {
      detail += ": mode " + Mode(st.st_mode) + ", owner uid " + std::to_string(st.st_uid);
    }
    if (stat_ok && file.secret && (st.st_mode & 077) != 0) {
      // A secret-id or token anyone else can read is a leaked credential, not a style issue.
      const bool fatal = file.kind == FileToRead::Kind::kCredential;
      f.Add(fatal ? Verdict::kFail : Verdict::kWarn, detail + ", " + SharedAccess(st.st_mode),
            "chmod 0400 " + file.path);
      continue;
    }
    if (stat_ok && file.what == "role-id file" && (st.st_mode & 077) != 0) {
      f.Add(Verdict::kWarn, detail + ", " + SharedAccess(st.st_mode), "chmod 0400 " + file.path);
      continue;
    }
    f.Add(Verdict::kPass, detail);
  }
  f.Print(report, "files", "as " + BrokerUser(config) + ": ");
  return f.verdict != Verdict::kFail;
}

// --- socket directory and metrics address -----------------------------------------------------

void CheckSocket(const BrokerConfig& config, Report* report) {
  if (config.abstract_socket) {
    report->Line(Verdict::kPass, "socket",
                 "abstract socket @" + config.socket_path.substr(1) + ": no directory");
    return;
  }
  const std::string& sock = config.socket_path;
  const std::string dir = Dirname(sock);
  const bool root = geteuid() == 0;
  struct stat st;
  const bool exists = lstat(dir.c_str(), &st) == 0;
  if (!exists && errno == ENOENT) {
    report->Line(Verdict::kFail, "socket", "directory " + dir + " does not exist",
                 root ? "install -d -o root -g root -m 0755 " + dir : "mkdir -m 0755 " + dir);
    return;
  }
  if (exists && S_ISLNK(st.st_mode)) {
    report->Line(Verdict::kFail, "socket",
                 "socket directory " + dir + " is a symbolic link (root does not follow it)",
                 "point --socket into the real directory, or replace the link by one: rm " + dir +
                     " && install -d -o root -g root -m 0755 " + dir);
    return;
  }
  std::string unsafe = CheckSocketDirectory(dir);
  if (!unsafe.empty()) {
    // The reason may carry its own fix ("...; fix: chown ..."): it goes on the fix line.
    std::string fix = root ? "chown root:root " + dir + " && chmod 0755 " + dir
                           : "chmod 0755 " + dir + " (and let it belong to root or to uid " +
                                 std::to_string(geteuid()) + ")";
    if (size_t at = unsafe.find("; fix: "); at != std::string::npos) {
      fix = unsafe.substr(at + 7);
      unsafe.resize(at);
    }
    if (root) fix += " (or 0750 when kube-apiserver runs as root)";
    report->Line(Verdict::kFail, "socket", unsafe, fix);
    return;
  }
  if (lstat(sock.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode)) {
    report->Line(Verdict::kFail, "socket",
                 sock +
                     " exists and is not a socket; the broker will "
                     "refuse to delete it",
                 "remove " + sock + " after checking what it is, or choose another --socket");
    return;
  }
  lstat(dir.c_str(), &st);
  report->Line(Verdict::kPass, "socket",
               "directory " + dir + ": owner uid " + std::to_string(st.st_uid) + ", mode " +
                   Mode(st.st_mode) + ", no unprivileged uid can change it");
}

size_t Collect(char* ptr, size_t size, size_t nmemb, void* out) {
  auto* body = static_cast<std::string*>(out);
  if (body->size() > (1 << 20)) return 0;
  body->append(ptr, size * nmemb);
  return size * nmemb;
}

// Whether what listens at `addr` is a vault-kms: its /metrics carries vault_kms_build_info.
bool ServedByVaultKms(const ListenAddress& addr) {
  CURL* h = curl_easy_init();
  if (h == nullptr) return false;
  const std::string host =
      addr.host.find(':') != std::string::npos ? "[" + addr.host + "]" : addr.host;
  const std::string url = "http://" + host + ":" + std::to_string(addr.port) + "/metrics";
  std::string body;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 2000L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &Collect);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
  const bool ok = curl_easy_perform(h) == CURLE_OK;
  curl_easy_cleanup(h);
  return ok && body.find("vault_kms_build_info") != std::string::npos;
}

void CheckMetrics(const BrokerConfig& config, Report* report) {
  const std::string& m = config.metrics_listen;
  ListenAddress addr;
  std::string error;
  if (!ParseListenAddress(m, &addr, &error)) {  // the flag parser already refused these
    report->Line(Verdict::kFail, "metrics", m + ": " + error, "correct --metrics-listen");
    return;
  }
  // The broker's own bind: what fails here fails its start (exit 2) the same way.
  int fd = ListenMetrics(m, &error);
  if (fd < 0 && ServedByVaultKms(addr)) {
    // `check` may run next to this node's plugin: that is no reason to fail it.
    report->Line(Verdict::kWarn, "metrics",
                 "--metrics-listen " + m +
                     " is in use by a running vault-kms (its /metrics "
                     "answered); a second plugin could not bind it",
                 "stop the running vault-kms before starting another one with this "
                 "--metrics-listen");
    return;
  }
  if (fd < 0) {
    report->Line(Verdict::kFail, "metrics", "--metrics-listen: " + error,
                 "choose a free address for --metrics-listen, or stop what listens there (ss "
                 "-ltnp 'sport = :" +
                     std::to_string(addr.port) + "')");
    return;
  }
  close(fd);
  report->Line(Verdict::kPass, "metrics", "--metrics-listen " + m + " can be bound");
}

// --- address, tls -----------------------------------------------------------------------------

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
      if (r.tls_failure) {
        res.tls_errors.push_back(addr + ": " + r.error);
        f.Add(Verdict::kWarn, addr + ": health not read, TLS failed (see tls)",
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

// --- login, token ---------------------------------------------------------------------------

bool CheckLogin(const BrokerConfig& config, TokenManager* tokens, Report* report) {
  const VaultConfig& v = config.vault;
  const bool approle = v.auth_method == AuthMethod::kAppRole;
  const std::string how =
      approle ? "approle login at auth/" + v.approle_mount : "token from " + v.token_file;
  Status s = tokens->Login(StepDeadline());
  if (!s.ok()) {
    std::string msg = s.message();
    for (const char* prefix : {"vault login failed: ", "vault token unavailable: "}) {
      if (msg.rfind(prefix, 0) == 0) msg = msg.substr(strlen(prefix));
    }
    report->Line(Verdict::kFail, "login", how + ": " + msg,
                 approle ? "check that the role-id and secret-id belong to the same role, the "
                           "secret-id is neither expired nor used up, and --approle-mount"
                         : "write a valid, unexpired Vault token into " + v.token_file);
    return false;
  }

  VaultResponse r =
      tokens->CallWithToken(HttpMethod::kGet, "auth/token/lookup-self", "", v.ns, StepDeadline());
  WipeTokenFields(&r.json);
  if (!r.ok()) {
    report->Line(Verdict::kPass, "login", how + ": token issued (lookup-self failed)");
    report->Line(Verdict::kWarn, "token", "lookup-self: " + HttpReason(r),
                 "allow read on auth/token/lookup-self (deploy/vault/kms-policy.hcl does)");
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
    f.Add(Verdict::kWarn, "the broker must log in again before every expiry",
          approle ? "let the AppRole role issue renewable tokens"
                  : "use a renewable (or periodic) token");
  }
  if (ttl > 0 && ttl < kMinTtlSeconds) {
    f.Add(Verdict::kWarn, "ttl below " + Duration(kMinTtlSeconds),
          approle ? "raise token_ttl on the AppRole role to 5m or more"
                  : "issue the token with a ttl of 5m or more");
  }
  f.Print(report, "token");
  return true;
}

// --- key --------------------------------------------------------------------------------------

bool CheckKey(const BrokerConfig& config, TokenManager* tokens, KeyMetadata* meta, Report* report) {
  const VaultConfig& v = config.vault;
  const std::string path = TransitNames{v.transit_mount, v.transit_key}.KeyPath();
  VaultResponse r = tokens->CallWithToken(HttpMethod::kGet, path, "", v.ns, StepDeadline());
  if (r.transport == Code::kOk && (r.status == 404 || r.status == 403)) {
    // A mistyped --transit-key usually meets the ACL first (403), a missing key 404.
    report->Line(Verdict::kFail, "key", KeyUnreadableText(path, r.status, r.error),
                 r.status == 404 ? "correct --transit-key, or create the key: vault write" +
                                       NsFlag(v) + " -f " + path + " type=aes256-gcm96"
                                 : "correct --transit-key, or grant read on " + path +
                                       " in the broker's policy");
    return false;
  }
  if (!r.ok()) {
    report->Line(
        Verdict::kFail, "key",
        path + ": " + (r.transport == Code::kOk ? HttpReason(r) : TransportFailureReason(r)),
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

// --- policy -----------------------------------------------------------------------------------

// The same question the broker asks at every key refresh (capabilities.h), with the warnings
// an auditor wants on top: create on encrypt, and more than the broker needs.
bool CheckPolicy(const BrokerConfig& config, TokenManager* tokens, Report* report) {
  const VaultConfig& v = config.vault;
  const TransitNames names{v.transit_mount, v.transit_key};
  const std::vector<NeededCapability> needed = NeededCapabilities(names);
  VaultResponse r = tokens->CallWithToken(HttpMethod::kPost, kCapabilitiesSelfPath,
                                          CapabilitiesRequestBody(needed), v.ns, StepDeadline());
  GrantedCapabilities granted;
  std::string error;
  if (!r.ok() || !ParseCapabilitiesAnswer(r.json, needed, &granted, &error)) {
    report->Line(
        Verdict::kWarn, "policy",
        "cannot verify the token's capabilities: " +
            (r.ok() ? error
                    : (r.transport == Code::kOk ? HttpReason(r) : TransportFailureReason(r))) +
            " (the broker then proves encrypt and decrypt by a round trip, as below)",
        "add " + PolicyRule(kCapabilitiesSelfPath, "update") +
            " to the broker's policy (deploy/vault/kms-policy.hcl has it)");
    return true;
  }
  Findings f;
  std::string summary;
  for (const NeededCapability& n : needed) {
    std::string list;
    for (const auto& c : granted[n.path]) list += (list.empty() ? "" : ", ") + c;
    summary += (summary.empty() ? "" : ", ") + n.path + " [" + list + "]";
  }
  for (const NeededCapability& n : MissingCapabilities(needed, granted)) {
    f.Add(Verdict::kFail, MissingText(n),
          "add " + PolicyRule(n.path, n.capability) + " to the broker's policy");
  }
  const std::set<std::string>& enc = granted[names.EncryptPath()];
  if (enc.count("create") > 0) {
    f.Add(Verdict::kWarn,
          names.EncryptPath() +
              " has create: a mistyped --transit-key would silently create a "
              "new key",
          "remove \"create\" from " + names.EncryptPath() + " in the broker's policy");
  }
  for (const NeededCapability& n : needed) {
    for (const char* broad : {"root", "sudo", "delete"}) {
      if (granted[n.path].count(broad) > 0) {
        f.Add(Verdict::kWarn, n.path + " has " + broad + ", more than the broker needs",
              "give the broker only deploy/vault/kms-policy.hcl");
      }
    }
  }
  // The capability list leads the line; findings follow it.
  f.details.insert(f.details.begin(), summary);
  f.Print(report, "policy");
  return f.verdict != Verdict::kFail;
}

// --- round trip -------------------------------------------------------------------------------

void CheckRoundTrip(const BrokerConfig& config, TokenManager* tokens, const KeyMetadata& meta,
                    Report* report) {
  const VaultConfig& v = config.vault;
  const TransitNames names{v.transit_mount, v.transit_key};
  const std::string version = std::to_string(meta.latest_version);
  RoundTripResult rt =
      CanaryRoundTrip(names, meta.latest_version,
                      [&](HttpMethod m, const std::string& path, std::string_view body) {
                        return tokens->CallWithToken(m, path, body, v.ns, StepDeadline());
                      });
  const std::string why =
      rt.answer.transport == Code::kOk ? HttpReason(rt.answer) : TransportFailureReason(rt.answer);
  switch (rt.failed) {
    case RoundTripResult::Failed::kNothing:
      report->Line(Verdict::kPass, "round trip",
                   "32 random bytes encrypted with key version " + version + " (ciphertext " +
                       std::to_string(rt.ciphertext_bytes) +
                       " bytes) and decrypted back identical");
      break;
    case RoundTripResult::Failed::kRandom:
      report->Line(Verdict::kFail, "round trip", "no random bytes from OpenSSL",
                   "check the system's entropy source");
      break;
    case RoundTripResult::Failed::kEncrypt:
      report->Line(Verdict::kFail, "round trip", "encrypt with key version " + version + ": " + why,
                   "grant update on " + names.EncryptPath() + " and check min_encryption_version");
      break;
    case RoundTripResult::Failed::kDecrypt:
      report->Line(Verdict::kFail, "round trip", "decrypt: " + why,
                   "grant update on " + names.DecryptPath() + " in the broker's policy");
      break;
    case RoundTripResult::Failed::kCompare:
      report->Line(Verdict::kFail, "round trip", "decrypt returned a different value",
                   "check that every --vault-addr is a node of the same Vault cluster");
      break;
  }
}

}  // namespace

ReportLogCapture::ReportLogCapture() {
  log::Init("vault-kms-broker", "error");
  fd_ = memfd_create("vault-kms-check-log", MFD_CLOEXEC);
  saved_ = fd_ < 0 ? -1 : dup(STDERR_FILENO);
  if (saved_ < 0 || dup2(fd_, STDERR_FILENO) < 0) Restore();
}

ReportLogCapture::~ReportLogCapture() {
  Restore();
  if (fd_ >= 0) close(fd_);
}

void ReportLogCapture::Restore() {
  if (saved_ >= 0) {
    dup2(saved_, STDERR_FILENO);
    close(saved_);
    saved_ = -1;
  }
}

std::vector<std::string> ReportLogCapture::Take() {
  std::vector<std::string> out;
  if (fd_ < 0) return out;
  char buf[4096];
  std::string text;
  for (ssize_t n; (n = pread(fd_, buf, sizeof buf, read_)) > 0; read_ += n) text.append(buf, n);
  std::istringstream in(text);
  Json::CharReaderBuilder rb;
  std::unique_ptr<Json::CharReader> reader(rb.newCharReader());
  for (std::string line; std::getline(in, line);) {
    Json::Value j;
    std::string errs;
    if (!reader->parse(line.data(), line.data() + line.size(), &j, &errs) || !j.isObject()) {
      out.push_back(line);
      continue;
    }
    std::string fields;
    for (const auto& k : j.getMemberNames()) {
      if (k == "ts" || k == "level" || k == "proc" || k == "msg") continue;
      fields += (fields.empty() ? "" : ", ") + k + "=" + j[k].asString();
    }
    std::string shown = j["level"].asString() + ": " + j["msg"].asString();
    out.push_back(fields.empty() ? shown : shown + " (" + fields + ")");
  }
  return out;
}

int RunCheck(const BrokerConfig& config, std::ostream& out) {
  // Before anything logs (the child below included: the broker's file reader warns about
  // shared files), so that nothing but the report reaches the terminal.
  ReportLogCapture logs;
  // Then, while the process has one thread: the files, as the broker user (a fork).
  const std::vector<FileToRead> files = FilesTheBrokerReads(config.vault);
  const std::vector<Opened> opened = OpenAllAsBroker(config, files);
  EnsureCurlGlobalInit();
  Report report(out, &logs);

  AddressResult addr = CheckAddresses(config, &report);
  const bool files_ok = CheckFiles(config, files, opened, &report);
  CheckSocket(config, &report);
  CheckMetrics(config, &report);

  auto skip = [&](std::initializer_list<const char*> steps, const std::string& why) {
    for (const char* s : steps) report.Line(Verdict::kSkip, s, why);
  };
  if (!addr.usable) {
    skip({"login", "token", "key", "policy", "round trip"}, "no usable Vault address");
    return 1;
  }
  if (!files_ok) {
    skip({"login", "token", "key", "policy", "round trip"}, "files failed");
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
