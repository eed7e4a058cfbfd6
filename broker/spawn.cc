#include "broker/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shared/hardening.h"
#include "shared/ipc.h"

namespace vkms::broker {
namespace {

// Child-side failure: report on stderr (inherited) and exit with a code the broker logs.
[[noreturn]] void ChildFail(const char* what) {
  char buf[256];
  int n = snprintf(buf, sizeof buf,
                   "{\"level\":\"error\",\"proc\":\"vault-kms-frontend\",\"msg\":\"frontend "
                   "start failed: %s: %s\"}\n",
                   what, strerror(errno));
  if (n > 0) (void)!write(STDERR_FILENO, buf, static_cast<size_t>(n));
  _exit(126);
}

}  // namespace

std::string SelfDirectory() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

bool SpawnFrontend(const FrontendSpec& spec, FrontendProcess* out, std::string* error) {
  if (access(spec.path.c_str(), X_OK) != 0) {
    *error = "frontend executable " + spec.path + " is missing or not executable";
    return false;
  }
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    *error = std::string("socketpair: ") + strerror(errno);
    return false;
  }
  int logs[2];
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0 || pipe2(logs, O_CLOEXEC) != 0) {
    *error = std::string("cannot prepare the frontend's stdio: ") + strerror(errno);
    if (devnull >= 0) close(devnull);
    close(pair[0]);
    close(pair[1]);
    return false;
  }
  // Everything the child needs is prepared before fork: no allocation after it.
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(spec.path.c_str()));
  for (const auto& a : spec.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  char* envp[] = {nullptr};
  pid_t parent = getpid();

  pid_t pid = fork();
  if (pid < 0) {
    *error = std::string("fork: ") + strerror(errno);
    close(pair[0]);
    close(pair[1]);
    close(devnull);
    close(logs[0]);
    close(logs[1]);
    return false;
  }
  if (pid == 0) {
    // Move every fd above the fixed numbers first, so dup2 never clobbers one with another.
    int in = fcntl(devnull, F_DUPFD_CLOEXEC, 10);
    int out = fcntl(logs[1], F_DUPFD_CLOEXEC, 10);
    int ipc = fcntl(pair[1], F_DUPFD_CLOEXEC, 10);
    int lis = fcntl(spec.listen_fd, F_DUPFD_CLOEXEC, 10);
    int met = fcntl(spec.metrics_fd, F_DUPFD_CLOEXEC, 10);
    if (in < 0 || out < 0 || ipc < 0 || lis < 0 || met < 0) ChildFail("dup");
    // From here on ChildFail's message goes to the broker through the log pipe.
    if (dup2(out, STDERR_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 ||
        dup2(in, STDIN_FILENO) < 0 || dup2(ipc, ipc::kFrontendIpcFd) < 0 ||
        dup2(lis, ipc::kFrontendListenFd) < 0 || dup2(met, ipc::kFrontendMetricsFd) < 0) {
      ChildFail("dup2");
    }
    // Nothing else crosses the exec.
    if (syscall(SYS_close_range, ipc::kFrontendMetricsFd + 1, ~0U, 0) != 0) {
      ChildFail("close_range");
    }
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    if (spec.switch_user) {
      std::string err;
      if (!hardening::SwitchUserAndClearCapabilities(spec.uid, spec.gid, &err)) {
        errno = EPERM;
        ChildFail("cannot switch to the frontend user");
      }
    }
    // Set after the uid switch: a credential change clears the parent-death signal.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) ChildFail("PR_SET_PDEATHSIG");
    if (getppid() != parent) _exit(1);  // the broker died before we got here
    execve(spec.path.c_str(), argv.data(), envp);
    ChildFail("execve");
  }
  close(pair[1]);
  close(logs[1]);
  close(devnull);
  fcntl(logs[0], F_SETFL, O_NONBLOCK);
  out->pid = pid;
  out->ipc_fd = pair[0];
  out->log_fd = logs[0];
  return true;
}

}  // namespace vkms::broker
