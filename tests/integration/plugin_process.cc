#include "tests/integration/plugin_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "shared/flags.h"
#include "tests/kmsclient/kms_client.h"

namespace vkms::testing {
namespace {

bool Root() {
  return geteuid() == 0;
}

}  // namespace

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::pair<int, std::string> HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) != 0) {
    close(fd);
    return {0, ""};
  }
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  (void)!write(fd, req.data(), req.size());
  std::string resp;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  int status = resp.size() > 12 ? atoi(resp.c_str() + 9) : 0;
  size_t body = resp.find("\r\n\r\n");
  return {status, body == std::string::npos ? "" : resp.substr(body + 4)};
}

std::string BuildDir() {
  return VKMS_BUILD_DIR;
}

PluginProcess::PluginProcess(PluginOptions options) : options_(std::move(options)) {}

PluginProcess::~PluginProcess() {
  Stop();
  if (!dir_.empty()) std::filesystem::remove_all(dir_);
}

uid_t PluginProcess::Owner() const {
  return options_.run_as_uid != 0 ? options_.run_as_uid : kBrokerUid;
}

void PluginProcess::WriteCredential(const std::string& name, const std::string& value) {
  std::string path = dir_ + "/creds/" + name;
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << value << "\n";
  }
  chmod(tmp.c_str(), 0400);
  if (Root()) (void)!chown(tmp.c_str(), Owner(), Owner());
  std::filesystem::rename(tmp, path);  // atomic replace, as an operator's tooling would do
}

void PluginProcess::WriteSecretId(const std::string& secret_id) {
  WriteCredential("secret-id", secret_id);
}

void PluginProcess::WriteToken(const std::string& token) {
  WriteCredential("token", token);
}

void PluginProcess::WriteClientCertificate(const std::string& cert_pem,
                                           const std::string& key_pem) {
  WriteCredential("client-key.pem", key_pem);
  WriteCredential("client.pem", cert_pem);
}

bool PluginProcess::Start(std::string* error) {
  char tmpl[] = "/tmp/vkms-it-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    *error = "mkdtemp failed";
    return false;
  }
  dir_ = tmpl;
  chmod(dir_.c_str(), 0755);
  std::filesystem::create_directory(dir_ + "/creds");
  std::filesystem::create_directory(dir_ + "/run");
  chmod((dir_ + "/creds").c_str(), 0755);
  chmod((dir_ + "/run").c_str(), 0755);
  // A broker started as non-root creates (and removes) its socket in a directory of its own.
  if (Root() && options_.run_as_uid != 0) {
    (void)!chown((dir_ + "/run").c_str(), options_.run_as_uid, options_.run_as_uid);
  }
  socket_path_ = dir_ + "/run/kms.sock";
  log_path_ = dir_ + "/plugin.log";

  std::vector<std::string> args = {
      options_.broker_path.empty() ? BuildDir() + "/vault-kms-broker" : options_.broker_path,
      "--socket=unix://" + socket_path_, "--key-refresh-interval=" + options_.key_refresh,
      "--log-level=" + options_.log_level, "--metrics-listen=" + options_.metrics_listen};
  for (const auto& a : options_.vault_addrs) args.push_back("--vault-addr=" + a);
  if (!options_.ca_file.empty()) {
    std::string ca = dir_ + "/creds/ca.pem";
    std::filesystem::copy_file(options_.ca_file, ca);
    chmod(ca.c_str(), 0644);
    args.push_back("--vault-ca-file=" + ca);
  }
  if (!options_.client_cert_pem.empty()) {
    WriteClientCertificate(options_.client_cert_pem, options_.client_key_pem);
    args.push_back("--vault-client-cert=" + dir_ + "/creds/client.pem");
    args.push_back("--vault-client-key=" + dir_ + "/creds/client-key.pem");
  }
  if (options_.cert_auth) {
    args.push_back("--auth-method=cert");
  } else if (!options_.token.empty()) {
    WriteCredential("token", options_.token);
    args.push_back("--auth-method=token");
    args.push_back("--token-file=" + dir_ + "/creds/token");
  } else {
    WriteCredential("secret-id", options_.secret_id);
    if (options_.role_id_as_flag) {
      args.push_back("--approle-role-id=" + options_.role_id);
    } else {
      WriteCredential("role-id", options_.role_id);
      args.push_back("--approle-role-id-file=" + dir_ + "/creds/role-id");
    }
    args.push_back("--approle-secret-id-file=" + dir_ + "/creds/secret-id");
  }
  for (const auto& f : options_.extra_flags) args.push_back(f);

  std::vector<std::string> env = options_.env;
  if (options_.configure_by_environment) {
    // --some-flag=value -> VAULT_KMS_SOME_FLAG=value; repeated flags become one list.
    std::map<std::string, std::string> vars;
    for (size_t i = 1; i < args.size(); ++i) {
      size_t eq = args[i].find('=');
      std::string& value = vars[flags::EnvName("VAULT_KMS_", args[i].substr(2, eq - 2))];
      value += (value.empty() ? "" : ",") + args[i].substr(eq + 1);
    }
    for (const auto& [name, value] : vars) env.push_back(name + "=" + value);
    args.resize(1);
  }

  launched_at_ = std::chrono::steady_clock::now();
  if (options_.stdin_path.empty() && options_.run_as_uid == 0 && env.empty()) {
    pid_ = SpawnLogged(args, log_path_, error);
  } else {
    int in = open(options_.stdin_path.empty() ? "/dev/null" : options_.stdin_path.c_str(),
                  O_RDONLY | O_CLOEXEC);
    int logfd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    pid_ = in >= 0 && logfd >= 0
               ? SpawnClean(args, logfd, logfd, false, in, Root() ? options_.run_as_uid : 0, env)
               : -1;
    if (in >= 0) close(in);
    if (logfd >= 0) close(logfd);
    if (pid_ < 0) *error = "cannot start the broker with stdin " + options_.stdin_path;
  }
  if (pid_ < 0) return false;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < until) {
    if (WaitExit(std::chrono::milliseconds(0)) != -1) {
      *error = "broker exited during start-up: " + Logs();
      return false;
    }
    // Ready to accept once the frontend says so (a Status call is not used: a test may start
    // the plugin with a peer allow-list that excludes the test itself).
    struct stat st;
    if (lstat(socket_path_.c_str(), &st) == 0 &&
        Logs().find("frontend serving") != std::string::npos) {
      ready_at_ = std::chrono::steady_clock::now();
      return true;
    }
    // Short: the benchmark reports launched_at() -> ready_at() as the start-up time.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  *error = "socket did not answer within 10 s: " + Logs();
  return false;
}

v2::StatusResponse PluginProcess::Status() {
  KmsClient client(socket_path_);
  v2::StatusResponse resp;
  grpc::Status s = client.Status(&resp);
  if (!s.ok()) resp.set_healthz("grpc error: " + s.error_message());
  return resp;
}

bool PluginProcess::WaitHealthy(std::chrono::milliseconds timeout, std::string* last) {
  auto until = std::chrono::steady_clock::now() + timeout;
  KmsClient client(socket_path_);
  std::string healthz;
  do {
    v2::StatusResponse resp;
    grpc::Status s = client.Status(&resp);
    healthz = s.ok() ? resp.healthz() : "grpc error: " + s.error_message();
    if (healthz == "ok") return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (std::chrono::steady_clock::now() < until);
  if (last) *last = healthz;
  return false;
}

bool PluginProcess::WaitKeyIdChange(const std::string& old_key_id,
                                    std::chrono::milliseconds timeout, std::string* new_key_id) {
  auto until = std::chrono::steady_clock::now() + timeout;
  KmsClient client(socket_path_);
  do {
    v2::StatusResponse resp;
    if (client.Status(&resp).ok() && resp.healthz() == "ok" && resp.key_id() != old_key_id) {
      *new_key_id = resp.key_id();
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (std::chrono::steady_clock::now() < until);
  return false;
}

int PluginProcess::WaitExit(std::chrono::milliseconds timeout) {
  if (exited_) return exit_status_;
  if (pid_ <= 0) return -1;
  auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      exit_status_ = status;
      return status;
    }
    if (std::chrono::steady_clock::now() >= until) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int PluginProcess::Stop() {
  if (pid_ <= 0 || exited_) return exit_status_;
  pid_t fe = FrontendPid();
  kill(pid_, SIGTERM);
  if (WaitExit(std::chrono::seconds(20)) == -1) {
    kill(pid_, SIGKILL);
    WaitExit(std::chrono::seconds(5));
  }
  // The frontend dies with the broker (PR_SET_PDEATHSIG); make sure of it.
  if (fe > 0 && kill(fe, 0) == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (kill(fe, 0) == 0) kill(fe, SIGKILL);
  }
  return exit_status_;
}

pid_t PluginProcess::FrontendPid() const {
  if (pid_ <= 0) return -1;
  std::string children =
      ReadFile("/proc/" + std::to_string(pid_) + "/task/" + std::to_string(pid_) + "/children");
  std::istringstream in(children);
  pid_t child = -1;
  in >> child;
  return child;
}

int PluginProcess::metrics_port() const {
  const std::string logs = Logs();
  const std::string key = "\"metrics_port\":";
  size_t pos = logs.find(key);
  if (pos == std::string::npos) return 0;
  return std::atoi(logs.c_str() + pos + key.size());
}

std::string PluginProcess::Logs() const {
  return ReadFile(log_path_);
}

bool PluginProcess::WaitForLog(const std::string& text, std::chrono::milliseconds timeout) const {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (Logs().find(text) == std::string::npos) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

pid_t SpawnClean(const std::vector<std::string>& args, int out_fd, int err_fd, bool null_stdin,
                 int in_fd, uid_t as_uid, const std::vector<std::string>& env) {
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_copy = env;
  std::vector<char*> envp;
  for (auto& e : env_copy) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    if (in_fd >= 0) {
      dup2(in_fd, STDIN_FILENO);
    } else if (null_stdin) {
      int devnull = open("/dev/null", O_RDONLY);
      dup2(devnull, STDIN_FILENO);
    }
    if (as_uid != 0 && (setgroups(0, nullptr) != 0 || setresgid(as_uid, as_uid, as_uid) != 0 ||
                        setresuid(as_uid, as_uid, as_uid) != 0)) {
      _exit(126);
    }
    // A clean environment: no VAULT_* from the developer's shell leaks into the test.
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  return pid;
}

pid_t SpawnLogged(const std::vector<std::string>& args, const std::string& log_path,
                  std::string* error) {
  int logfd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (logfd < 0) {
    *error = "cannot create the log file";
    return -1;
  }
  pid_t pid = SpawnClean(args, logfd, logfd, true);
  close(logfd);
  if (pid < 0) *error = "fork failed";
  return pid;
}

Captured RunCaptured(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  Captured c;
  char out_tmpl[] = "/tmp/vkms-out-XXXXXX";
  char err_tmpl[] = "/tmp/vkms-err-XXXXXX";
  int out = mkstemp(out_tmpl), err = mkstemp(err_tmpl);
  pid_t pid = SpawnClean(args, out, err, false);
  auto until = std::chrono::steady_clock::now() + timeout;
  while (waitpid(pid, &c.status, WNOHANG) != pid) {
    if (std::chrono::steady_clock::now() > until) {
      kill(pid, SIGKILL);
      waitpid(pid, &c.status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  close(out);
  close(err);
  c.out = ReadFile(out_tmpl);
  c.err = ReadFile(err_tmpl);
  unlink(out_tmpl);
  unlink(err_tmpl);
  return c;
}

int RunBrokerExpectingExit(const std::vector<std::string>& args, std::string* output) {
  std::vector<std::string> full = {BuildDir() + "/vault-kms-broker"};
  full.insert(full.end(), args.begin(), args.end());
  Captured c = RunCaptured(full);
  *output = c.out + c.err;
  return WIFEXITED(c.status) ? WEXITSTATUS(c.status) : -1;
}

std::string ProcStatusField(pid_t pid, const std::string& field) {
  std::istringstream in(ReadFile("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      std::string v = line.substr(field.size() + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return "";
}

long ProcStatusKb(pid_t pid, const std::string& field) {
  if (pid <= 0) return -1;
  std::string v = ProcStatusField(pid, field);  // "12345 kB"
  return v.empty() ? -1 : std::atol(v.c_str());
}

bool SocketReleased(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return errno == ENOENT;
  if (geteuid() != 0) return false;
  int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {};
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  int rc = connect(c, reinterpret_cast<struct sockaddr*>(&a), sizeof a);
  int err = errno;
  close(c);
  return rc != 0 && err == ECONNREFUSED;
}

}  // namespace vkms::testing
