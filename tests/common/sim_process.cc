#include "sim_process.h"

#include <fcntl.h>
#include <json/json.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <thread>

namespace vkms::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::string SelfDir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

}  // namespace

std::string VaultSimBinary() {
  if (const char* env = std::getenv("VAULTSIM_BIN"); env && *env) return env;
#ifdef VKMS_VAULTSIM_PATH
  if (access(VKMS_VAULTSIM_PATH, X_OK) == 0) return VKMS_VAULTSIM_PATH;
#endif
  return SelfDir() + "/vaultsim";
}

SimProcess::~SimProcess() {
  Stop();
}

bool SimProcess::Start(const SimOptions& options, std::string* error) {
  std::string ignored;
  if (!error) error = &ignored;
  if (running()) {
    *error = "the simulator is already running";
    return false;
  }
  wait_status_ = 0;
  needed_kill_ = false;
  later_stdout_.clear();
  buffered_.clear();

  std::string tmpl = (std::filesystem::temp_directory_path() / "vaultsim-test.XXXXXX").string();
  if (!mkdtemp(tmpl.data())) {
    *error = std::string("mkdtemp: ") + std::strerror(errno);
    return false;
  }
  dir_ = tmpl;
  tls_dir_ = dir_;

  std::vector<std::string> args = {VaultSimBinary(), "--listen",     "127.0.0.1:0",     "--tls-dir",
                                   tls_dir_,         "--root-token", options.root_token};
  if (options.require_client_cert) args.push_back("--require-client-cert");
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    *error = std::string("pipe2: ") + std::strerror(errno);
    Stop();
    return false;
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec. If the test process dies, so does
    // the simulator.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    dup2(fds[1], STDOUT_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    *error = std::string("fork: ") + std::strerror(errno);
    Stop();
    return false;
  }
  pid_ = pid;
  stdout_fd_ = fds[0];

  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (buffered_.find('\n') == std::string::npos) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      *error = "timed out after 10 s waiting for the startup line of " + args[0];
      Stop();
      return false;
    }
    pollfd p{stdout_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char buf[4096];
    ssize_t n = read(stdout_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = args[0] + " exited before it was ready (see its stderr above)";
      Stop();
      return false;
    }
    buffered_.append(buf, static_cast<size_t>(n));
  }
  const size_t nl = buffered_.find('\n');
  startup_line_ = buffered_.substr(0, nl);
  buffered_.erase(0, nl + 1);

  Json::Value line;
  Json::CharReaderBuilder b;
  std::string parse_error;
  std::istringstream in(startup_line_);
  if (!Json::parseFromStream(b, in, &line, &parse_error) || !line.isObject() ||
      !line["addr"].isString() || !line["ca_file"].isString() || !line["root_token"].isString()) {
    *error = "unexpected startup line: " + startup_line_;
    Stop();
    return false;
  }
  addr_ = line["addr"].asString();
  ca_file_ = line["ca_file"].asString();
  root_token_ = line["root_token"].asString();
  port_ = std::atoi(addr_.substr(addr_.rfind(':') + 1).c_str());
  return true;
}

int SimProcess::Stop() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    bool exited = false;
    while (!exited && Clock::now() < deadline) {
      const pid_t r = waitpid(pid_, &wait_status_, WNOHANG);
      if (r == pid_ || (r < 0 && errno != EINTR)) {
        exited = true;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    if (!exited) {
      needed_kill_ = true;
      kill(pid_, SIGKILL);
      while (waitpid(pid_, &wait_status_, 0) < 0 && errno == EINTR) {
      }
    }
    pid_ = -1;
  }
  if (stdout_fd_ >= 0) {
    // The process is gone, so this read ends at EOF.
    later_stdout_ = buffered_;
    char buf[4096];
    ssize_t n;
    while ((n = read(stdout_fd_, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
      if (n > 0) later_stdout_.append(buf, static_cast<size_t>(n));
    }
    close(stdout_fd_);
    stdout_fd_ = -1;
  }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    dir_.clear();
  }
  return wait_status_;
}

}  // namespace vkms::testing
