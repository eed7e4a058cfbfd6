// vault-kms-broker: the entry point an operator starts. Reads top to bottom in the start-up
// order of DESIGN.md: flags → listening socket → frontend → lockdown → Vault → serve.
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "broker/broker.h"
#include "broker/check.h"
#include "broker/config.h"
#include "broker/effective_config.h"
#include "broker/event_loop.h"
#include "broker/listen_socket.h"
#include "broker/lockdown.h"
#include "broker/log_relay.h"
#include "broker/notify.h"
#include "broker/spawn.h"
#include "broker/vault/backend.h"
#include "shared/hardening.h"
#include "shared/log.h"
#include "shared/process_metrics.h"

namespace vkms::broker {
namespace {

constexpr int kExitFrontendDied = 1;
constexpr int kExitStartup = 1;
constexpr int kExitProtocolError = 3;
constexpr auto kShutdownGrace = std::chrono::seconds(10);

// The role-id may be given as a flag value; overwrite it in place so /proc/PID/cmdline no
// longer shows it once parsing is done.
void ScrubArgv(int argc, char** argv) {
  const std::string flag = "--approle-role-id";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == flag && i + 1 < argc) {
      memset(argv[i + 1], 'x', strlen(argv[i + 1]));
    } else if (a.rfind(flag + "=", 0) == 0) {
      memset(argv[i] + flag.size() + 1, 'x', a.size() - flag.size() - 1);
    }
  }
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    if (sig == SIGSYS) return "killed by seccomp (SIGSYS)";
    return "killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  return "stopped with status " + std::to_string(status);
}

// After the broker left root, its socket's directory (root's alone, see listen_socket.h) is
// not writable by it, and its seccomp policy has no unlinkat: the socket then stays until the
// next start removes it as stale. `left_root`: the broker was started as root and has dropped
// privileges since.
void RemoveSocket(ListenSocket* sock, bool left_root) {
  // First make it refuse connections, for the frontend's copy too (it may outlive us).
  sock->StopListening();
  std::string why = "its directory is root's alone and the broker no longer runs as root";
  if (left_root || !sock->Remove(&why)) {
    log::Info("socket left in place for the next start to remove",
              {{"socket", sock->display_path()}, {"reason", why}});
  }
}

int Serve(const BrokerConfig& config, ListenSocket* sock, const FrontendProcess& frontend,
          LogRelay* relay, ServiceNotifier* notifier, int sigfd, bool left_root) {
  // One event loop on this thread serves everything: the IPC channel, signals, the frontend's
  // log pipe, and every Vault call (broker/event_loop.h).
  EventLoop loop;
  if (!loop.error().empty()) {
    log::Error(loop.error());
    RemoveSocket(sock, left_root);
    return kExitStartup;
  }
  VaultBackend backend(config.vault, &loop);
  backend.Start();
  Broker::Limits limits;
  limits.max_in_flight = static_cast<size_t>(config.vault.workers);
  Broker broker(&backend, &loop, frontend.ipc_fd, limits);
  log::Info("broker serving", {{"socket", sock->display_path()}, {"frontend_pid", frontend.pid}});
  notifier->Ready("serving on " + sock->display_path());

  bool shutting_down = false;
  int exit_code = 0;
  EventLoop::Timer grace;
  auto begin_grace = [&](Clock::duration d) {
    loop.CancelTimer(&grace);
    grace = loop.AddTimer(Clock::now() + d, [&] {
      // The frontend runs as another uid (and outside the broker's Landlock domain), so the
      // broker cannot kill it. Once the broker is gone its channel is closed and it holds
      // nothing; the Pod's or unit's teardown ends it (SECURITY.md, known limits).
      log::Warning("frontend did not stop within the grace period; exiting without it");
      exit_code = kExitFrontendDied;
      loop.Quit();
    });
  };
  EventLoop::FdWatch* logs = nullptr;
  logs = loop.AddFd(relay->fd(), EPOLLIN, [&](uint32_t) {
    if (!relay->Pump()) {
      loop.RemoveFd(logs);
      logs = nullptr;
    }
  });
  broker.Start([&](ipc::RecvStatus st, const std::string& error) {
    if (st == ipc::RecvStatus::kProtocolError) {
      // Only a compromised frontend sends malformed bytes: stop talking to it at once. A
      // well-behaved frontend exits when it sees the channel close.
      log::Error("protocol error from the frontend; closing the channel and exiting",
                 {{"error", error}});
      exit_code = kExitProtocolError;
      loop.Quit();
      return;
    }
    // The frontend closed its end; its exit status arrives through SIGCHLD.
    if (!shutting_down) {
      shutting_down = true;
      begin_grace(std::chrono::seconds(5));
      exit_code = kExitFrontendDied;
    }
  });
  EventLoop::FdWatch* signals = loop.AddFd(sigfd, EPOLLIN, [&](uint32_t) {
    struct signalfd_siginfo si;
    if (read(sigfd, &si, sizeof si) != static_cast<ssize_t>(sizeof si)) return;
    if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) && !shutting_down) {
      log::Info("shutting down: stopping the frontend, draining in-flight calls");
      notifier->Stopping();
      shutting_down = true;
      begin_grace(kShutdownGrace);
      if (!broker.SendShutdown()) {
        log::Warning("cannot reach the frontend to stop it; exiting without it");
        exit_code = kExitFrontendDied;
        loop.Quit();
        return;
      }
    }
    int status;
    if (waitpid(frontend.pid, &status, WNOHANG) == frontend.pid) {
      relay->Flush();  // its last words (a seccomp violation names the syscall) come first
      bool clean = shutting_down && WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (clean) {
        log::Info("frontend stopped");
      } else {
        log::Error("frontend " + DescribeExit(status) + "; removing the socket and exiting");
        exit_code = kExitFrontendDied;
      }
      loop.Quit();
    }
  });
  if (signals == nullptr || logs == nullptr) {
    log::Error(std::string("cannot watch the signalfd and the frontend's log pipe: ") +
               strerror(errno));
    RemoveSocket(sock, left_root);
    return kExitStartup;
  }
  loop.Run();

  // Nothing new is read; the calls still in flight run to their end (each within its
  // deadline), then the Vault side stops. The channel is shut down first so that no reply
  // waits on a frontend that is gone or not reading.
  loop.RemoveFd(signals);
  loop.RemoveFd(logs);
  loop.CancelTimer(&grace);
  broker.StopReading();
  shutdown(frontend.ipc_fd, SHUT_RDWR);
  RemoveSocket(sock, left_root);
  while (broker.pending() > 0 && loop.RunOnce(100)) {
  }
  backend.Stop();
  close(frontend.ipc_fd);
  relay->Flush();
  log::Info("broker exiting", {{"code", exit_code}});
  return exit_code;
}

int Main(int argc, char** argv) {
  // 0. Nothing inherited beyond stdin, stdout and stderr: an fd left open by whoever started
  //    us (a shell, a supervisor, a compromised parent) must not reach Vault's side or be
  //    passed on to the frontend.
  syscall(SYS_close_range, 3U, ~0U, 0U);

  // 1. Flags: any error is one line naming the flag, exit 2.
  BrokerConfig config;
  std::string message;
  switch (ParseBrokerFlags(std::vector<std::string>(argv + 1, argv + argc), &config, &message)) {
    case ParseResult::kHelp:
    case ParseResult::kVersion:
      printf("%s\n", message.c_str());
      return 0;
    case ParseResult::kError:
      fprintf(stderr, "vault-kms-broker: %s\n", message.c_str());
      return 2;
    case ParseResult::kOk:
      break;
  }
  ScrubArgv(argc, argv);
  log::Init("vault-kms-broker", config.log_level);
  // A preflight only: no socket, no frontend, no lockdown (broker/check.h).
  if (config.check) return RunCheck(config, std::cout);
  log::Info("broker starting", EffectiveConfigFields(config));
  const bool root = geteuid() == 0;

  // Signals are read from a signalfd in the main loop; block them before any thread exists.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);
  int sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
  if (sigfd < 0) {
    log::Error(std::string("signalfd: ") + strerror(errno));
    return kExitStartup;
  }

  // 2. The listeners, created by the broker: the frontend creates no socket. First the
  //    metrics address (a flag that cannot work is a flag error: exit 2 naming it), then the
  //    KMS socket (stale-socket rule, directory rule, mode, group).
  std::string error;
  int metrics_fd = ListenMetrics(config.metrics_listen, &error);
  if (metrics_fd < 0) {
    fprintf(stderr, "vault-kms-broker: --metrics-listen: %s\n", error.c_str());
    return 2;
  }
  auto sock =
      ListenSocket::Create(config.socket_path, config.socket_mode, config.socket_gid, &error);
  if (!sock) {
    log::Error(error);
    return kExitStartup;
  }

  // 3. The frontend: socketpair, fork, exec, as the frontend user.
  FrontendSpec spec;
  spec.path = SelfDirectory() + "/vault-kms-frontend";
  spec.args = {"--log-level=" + config.log_level};
  if (!config.allowed_peer_uids_text.empty()) {
    spec.args.push_back("--allowed-peer-uids=" + config.allowed_peer_uids_text);
  }
  if (root) spec.args.push_back("--dedicated-uid");
  spec.listen_fd = sock->fd();
  spec.metrics_fd = metrics_fd;
  spec.switch_user = root;
  spec.uid = config.frontend_user.uid;
  spec.gid = config.frontend_user.gid;
  FrontendProcess frontend;
  if (!SpawnFrontend(spec, &frontend, &error)) {
    log::Error(error);
    RemoveSocket(&*sock, false);
    return kExitStartup;
  }
  close(metrics_fd);  // the frontend's now
  LogRelay relay(frontend.log_fd);
  // Only the frontend accepts. The broker keeps its copy (never accepting on it) to make the
  // socket refuse connections when it stops, whoever else still holds it.

  // systemd's notification socket: connected now, written to after lockdown (no socket can be
  // created then).
  ServiceNotifier notifier;
  notifier.Connect();

  // The process_* metrics: /proc/self is opened now, since no file opens after lockdown.
  if (!process_metrics::Open(&error)) log::Warning(error);

  // 4-6. The broker's own lockdown, before it reads any credential.
  if (!LockDownBroker(config, root, &error)) {
    log::Error("lockdown failed: " + error);
    kill(frontend.pid, SIGKILL);
    relay.Flush();
    RemoveSocket(&*sock, false);
    return kExitStartup;
  }

  // 7. Log in, read key metadata, serve IPC (login and metadata retry in the background).
  return Serve(config, &*sock, frontend, &relay, &notifier, sigfd, root);
}

}  // namespace
}  // namespace vkms::broker

#if defined(__SANITIZE_ADDRESS__)
// Sanitizer builds only: LeakSanitizer's exit-time check stops the world with clone + ptrace,
// which the broker's seccomp policy rightly kills. Leaks are checked by the unit tests, which
// run the same code unconfined (SECURITY.md, "Sanitizer builds").
extern "C" const char* __asan_default_options() {
  return "detect_leaks=0";
}
#endif

int main(int argc, char** argv) {
  vkms::hardening::LimitMallocArenas();
  return vkms::broker::Main(argc, argv);
}
