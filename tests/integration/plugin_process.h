// Runs the real vault-kms-broker (which starts the real frontend) for integration tests, the
// way an operator would: flags, credential files, a socket in a private directory. Every
// process is stopped by pid and every file removed by Stop()/the destructor.
//
// When the tests run as root (CI), the credential files are owned by the broker user with
// mode 0400 and the socket directory by root (mode 0755), as in a real deployment; the two
// processes then run as 65532 (broker) and 65533 (frontend).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "kms_v2.pb.h"

namespace vkms::testing {

constexpr uid_t kBrokerUid = 65532;
constexpr uid_t kFrontendUid = 65533;

struct PluginOptions {
  std::vector<std::string> vault_addrs;
  std::string ca_file;    // copied next to the credentials, readable by the broker user
  std::string role_id;    // written to role-id (0400)
  std::string secret_id;  // written to secret-id (0400)
  std::string token;      // if set: --auth-method=token with a token file instead of AppRole
  // If set: written (PEM, 0400) to client.pem/client-key.pem next to the other credentials and
  // given as --vault-client-cert/--vault-client-key.
  std::string client_cert_pem, client_key_pem;
  bool cert_auth = false;        // --auth-method=cert: the client certificate is the credential
  bool role_id_as_flag = false;  // --approle-role-id=<id> instead of a role-id file
  std::string key_refresh = "1s";
  std::string metrics_listen = "127.0.0.1:0";
  std::string log_level = "debug";
  std::vector<std::string> extra_flags;
  // Every flag above becomes its VAULT_KMS_<FLAG> variable (added to `env`) and the broker
  // gets no argument: a start configured only by the environment, as a systemd
  // EnvironmentFile gives it.
  bool configure_by_environment = false;
  // The broker executable; empty means BuildDir()/vault-kms-broker. A copy elsewhere starts
  // whatever vault-kms-frontend sits beside it (the boundary tests put a hostile one there).
  std::string broker_path;
  // The broker's stdin; empty means /dev/null.
  std::string stdin_path;
  // When the tests run as root: start the broker as this uid instead (its files and socket
  // directory then belong to it), to test what holds in a non-root start. 0 = as the test.
  uid_t run_as_uid = 0;
  // The broker's environment ("NAME=value"); empty by default, so nothing leaks from the shell.
  std::vector<std::string> env;
};

class PluginProcess {
 public:
  explicit PluginProcess(PluginOptions options);
  ~PluginProcess();

  PluginProcess(const PluginProcess&) = delete;
  PluginProcess& operator=(const PluginProcess&) = delete;

  // Starts the broker and waits until the socket accepts a Status call.
  bool Start(std::string* error);
  // Polls Status until healthz == "ok" (returns false with the last healthz otherwise).
  bool WaitHealthy(std::chrono::milliseconds timeout, std::string* last = nullptr);
  // Polls Status until the key_id differs from `old_key_id` and healthz is ok.
  bool WaitKeyIdChange(const std::string& old_key_id, std::chrono::milliseconds timeout,
                       std::string* new_key_id);

  // SIGTERM, wait (SIGKILL after 20 s); returns the wait status. Idempotent.
  int Stop();
  // Waits for the broker to exit by itself; returns the wait status or -1 on timeout.
  int WaitExit(std::chrono::milliseconds timeout);

  pid_t pid() const { return pid_; }
  pid_t FrontendPid() const;
  const std::string& socket_path() const { return socket_path_; }
  const std::string& dir() const { return dir_; }
  std::string secret_id_path() const { return dir_ + "/creds/secret-id"; }
  void WriteSecretId(const std::string& secret_id);
  // Replace the credential files by atomic renames, as Vault Agent's sink or cert-manager do.
  void WriteToken(const std::string& token);
  void WriteClientCertificate(const std::string& cert_pem, const std::string& key_pem);
  int metrics_port() const;
  std::string Logs() const;  // everything both processes wrote to stdout/stderr so far
  // Until Logs() holds `text`: the frontend's lines reach the log through the broker's relay,
  // so they may trail what a client saw (a refused connection) by a loop turn or more.
  bool WaitForLog(const std::string& text, std::chrono::milliseconds timeout) const;

  v2::StatusResponse Status();

  // When Start() forked the broker, and when it saw the socket serving (to within ~2 ms).
  std::chrono::steady_clock::time_point launched_at() const { return launched_at_; }
  std::chrono::steady_clock::time_point ready_at() const { return ready_at_; }

 private:
  void WriteCredential(const std::string& name, const std::string& value);
  uid_t Owner() const;  // of the credential files: the uid the broker reads them as

  PluginOptions options_;
  std::string dir_, socket_path_, log_path_;
  std::chrono::steady_clock::time_point launched_at_, ready_at_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_status_ = 0;
};

// The build directory (where vault-kms-broker and vaultsim live).
std::string BuildDir();

// Forks and runs args[0] with args and an empty environment, stdout to out_fd and stderr to
// err_fd, stdin from in_fd if given, else from /dev/null when null_stdin. Returns the child's
// pid, or -1 if fork failed.
pid_t SpawnClean(const std::vector<std::string>& args, int out_fd, int err_fd, bool null_stdin,
                 int in_fd = -1, uid_t as_uid = 0, const std::vector<std::string>& env = {});
// SpawnClean with stdout and stderr both written to log_path (created or truncated) and stdin
// from /dev/null. Returns the pid, or -1 with a short reason in *error.
pid_t SpawnLogged(const std::vector<std::string>& args, const std::string& log_path,
                  std::string* error);

// What a finished child left: its wait status and what it wrote.
struct Captured {
  int status = -1;
  std::string out, err;
};
// Runs argv[0] with an empty environment, stdout and stderr captured separately; SIGKILL after
// the timeout.
Captured RunCaptured(const std::vector<std::string>& argv,
                     std::chrono::milliseconds timeout = std::chrono::seconds(10));
// Runs the broker with args and no Vault; returns its exit code (-1 if killed) and everything
// it printed.
int RunBrokerExpectingExit(const std::vector<std::string>& args, std::string* output);

std::string ReadFile(const std::string& path);
// A plain HTTP GET on 127.0.0.1:port (the metrics listener: localhost-only, no TLS); returns
// the status (0 when nothing answered) and the body.
std::pair<int, std::string> HttpGet(int port, const std::string& path);
// After the broker stopped: nobody can connect to the socket any more (ECONNREFUSED), even
// through a frontend left behind holding it; and when the broker could write the socket's
// directory (non-root runs) the file is gone. As root the directory is root's alone
// (broker/listen_socket.h), so the file stays for the next start to remove.
bool SocketReleased(const std::string& path);
// One field of /proc/PID/status ("CapEff", "Seccomp", ...), "" if absent.
std::string ProcStatusField(pid_t pid, const std::string& field);
// A field of /proc/PID/status in kB ("VmRSS", "RssAnon", "VmHWM", ...), -1 if unreadable.
long ProcStatusKb(pid_t pid, const std::string& field);

}  // namespace vkms::testing
