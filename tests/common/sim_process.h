// Runs build/vaultsim for a test: a fresh temporary TLS directory, a free port on 127.0.0.1, and
// the address, CA file and root token it announces. Stop() (also run by the destructor) ends the
// process by pid and removes the directory, so nothing outlives the test.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace vkms::testing {

struct SimOptions {
  bool require_client_cert = false;
  std::string root_token = "vaultsim-root-token";
  std::vector<std::string> extra_args;
};

// $VAULTSIM_BIN if set, else the path CMake compiled in, else "vaultsim" next to the running
// test binary.
std::string VaultSimBinary();

class SimProcess {
 public:
  SimProcess() = default;
  ~SimProcess();
  SimProcess(const SimProcess&) = delete;
  SimProcess& operator=(const SimProcess&) = delete;

  // Starts the simulator and waits up to 10 s for its JSON line. On failure returns false with
  // *error set and leaves no process or directory behind.
  bool Start(const SimOptions& options = {}, std::string* error = nullptr);
  // SIGTERM, up to 5 s for the exit, SIGKILL after that; then removes the temporary directory.
  // Returns the waitpid status (also kept in wait_status()). Safe to call more than once.
  int Stop();

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  const std::string& addr() const { return addr_; }
  int port() const { return port_; }
  const std::string& ca_file() const { return ca_file_; }
  const std::string& root_token() const { return root_token_; }
  const std::string& tls_dir() const { return tls_dir_; }
  std::string client_cert() const { return tls_dir_ + "/client.pem"; }
  std::string client_key() const { return tls_dir_ + "/client-key.pem"; }
  // The first stdout line, exactly as printed (without the newline).
  const std::string& startup_line() const { return startup_line_; }

  // Valid after Stop(): the waitpid status, whether SIGKILL was needed, and whatever the process
  // wrote to stdout after its first line (it should be nothing).
  int wait_status() const { return wait_status_; }
  bool needed_kill() const { return needed_kill_; }
  const std::string& later_stdout() const { return later_stdout_; }

 private:
  void Cleanup();

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string dir_;
  std::string tls_dir_;
  std::string addr_;
  int port_ = 0;
  std::string ca_file_;
  std::string root_token_;
  std::string startup_line_;
  std::string buffered_;
  int wait_status_ = 0;
  bool needed_kill_ = false;
  std::string later_stdout_;
};

}  // namespace vkms::testing
