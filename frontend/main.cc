// vault-kms-frontend: exec'd by vault-kms-broker, never started by hand. Inherits the KMS
// listening socket, the metrics listener and the broker IPC channel at fixed fds, holds no
// credential, and confines itself (no_new_privs, Landlock, seccomp) before it creates a
// single thread or serves a byte: Landlock binds only the calling thread and the threads it
// creates afterwards, so every gRPC and HTTP thread is born confined. Then it serves KMS v2
// gRPC on the inherited socket and /metrics, /healthz, /readyz on the inherited listener.
#include <absl/synchronization/mutex.h>
#include <errno.h>
#include <grpc/support/log.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <set>

#include "frontend/broker_client.h"
#include "frontend/http_server.h"
#include "frontend/kms_service.h"
#include "frontend/lockdown.h"
#include "shared/flags.h"
#include "shared/hardening.h"
#include "shared/ipc.h"
#include "shared/log.h"
#include "shared/process_metrics.h"

namespace vkms::frontend {
namespace {

constexpr auto kDrainTimeout = std::chrono::seconds(8);
// KMS v2 messages are small; annotations are capped at 32 KiB by the apiserver.
constexpr int kMaxGrpcMessage = 64 * 1024;

const std::vector<flags::Spec>& Specs() {
  static const std::vector<flags::Spec> specs = {
      {"allowed-peer-uids", "", "", "comma-separated uids allowed to call; empty = any"},
      {"log-level", "", "info", "debug, info, warning or error"},
      {"dedicated-uid", "", "", "the broker gave this process its own uid", true},
      {"help", "", "", "print this help and exit", true},
  };
  return specs;
}

bool SocketType(int fd, int* type) {
  socklen_t len = sizeof *type;
  return getsockopt(fd, SOL_SOCKET, SO_TYPE, type, &len) == 0;
}

// A listening stream socket.
bool Listening(int fd) {
  int type = 0, accepting = 0;
  socklen_t len = sizeof accepting;
  return SocketType(fd, &type) && type == SOCK_STREAM &&
         getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0 && accepting;
}

void GrpcLog(gpr_log_func_args* args) {
  std::string msg = std::string("grpc: ") + (args->message ? args->message : "");
  if (args->severity == GPR_LOG_SEVERITY_ERROR) {
    log::Error(msg);
  } else {
    log::Debug(msg);
  }
}

int Main(int argc, char** argv) {
  // UTC timestamps without a stat of /etc/localtime per log line (files are off-limits later).
  setenv("TZ", "UTC", 1);
  flags::Parsed p;
  std::vector<std::string> positional;
  std::string error;
  if (!flags::Parse(
          Specs(), std::vector<std::string>(argv + 1, argv + argc),
          [](const char*) -> const char* { return nullptr; }, &p, &positional, &error) ||
      !positional.empty()) {
    fprintf(stderr, "vault-kms-frontend: %s\n",
            error.empty() ? "unexpected argument" : error.c_str());
    return 2;
  }
  if (p.GetBool("help")) {
    printf(
        "%s",
        flags::Usage("vault-kms-frontend", "(started by vault-kms-broker only)", Specs()).c_str());
    return 0;
  }
  std::string level = p.GetOr("log-level", "info");
  if (!log::ValidLevel(level)) {
    fprintf(stderr, "vault-kms-frontend: --log-level: invalid value\n");
    return 2;
  }
  log::Init("vault-kms-frontend", level);
  gpr_set_log_function(GrpcLog);
  gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);

  std::set<uid_t> allowed;
  for (const auto& u : flags::SplitList(p.GetOr("allowed-peer-uids", ""))) {
    unsigned long long n;
    if (!flags::ParseUint(u, 0xfffffffeULL, &n)) {
      log::Error("--allowed-peer-uids: not a numeric uid");
      return 2;
    }
    allowed.insert(static_cast<uid_t>(n));
  }

  // The inherited descriptors must be what the broker promised, or we were not started by it.
  int type = 0;
  if (!SocketType(ipc::kFrontendIpcFd, &type) || type != SOCK_SEQPACKET ||
      !Listening(ipc::kFrontendListenFd) || !Listening(ipc::kFrontendMetricsFd)) {
    log::Error("vault-kms-frontend must be started by vault-kms-broker (fds 3, 4 and 5 missing)");
    return 2;
  }

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_IGN);
  int sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
  if (sigfd < 0) {
    log::Error(std::string("signalfd: ") + strerror(errno));
    return 1;
  }

  // The process_* metrics: /proc/self is opened now, since no file opens after lockdown.
  if (!process_metrics::Open(&error)) log::Warning(error);

  // Confinement first: no thread exists yet, so every thread created below (gRPC's, the
  // HTTP server's, the broker reader) starts inside the Landlock domain and the seccomp filter.
  if (!LockDownFrontend(p.GetBool("dedicated-uid"), &error)) {
    log::Error("lockdown failed: " + error);
    return 1;
  }

  BrokerClient broker(ipc::kFrontendIpcFd);
  auto registry = std::make_shared<prometheus::Registry>();
  KmsService service(&broker, registry.get());

  grpc::ServerBuilder builder;
  service.Register(&builder);
  builder.SetMaxReceiveMessageSize(kMaxGrpcMessage);
  builder.SetMaxSendMessageSize(kMaxGrpcMessage);
  // No BDP probing: on a unix socket to one local client there is no bandwidth-delay product to
  // learn, and each probe is a PING the client must answer, waking both processes once more
  // per call (perf sched: 2 of the ~9 wake-ups of a Status call).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  // An asynchronous service only (kms_service.h): no sync-server thread pool and no callback
  // pollers are created, so the frontend's threads do not grow with the calls waiting on Vault.
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    log::Error("cannot start the gRPC server");
    return 1;
  }
  service.Start();

  auto http = HttpServer::Start(ipc::kFrontendMetricsFd, &broker, registry, &error);
  if (!http) {
    log::Error(error);
    return 1;
  }

  broker.Start(
      [](const std::string& why) {
        log::Error("lost the broker; exiting", {{"reason", why}});
        _exit(1);
      },
      // Process-directed, so the main loop's signalfd sees it like an operator's SIGTERM.
      [] { kill(getpid(), SIGTERM); },
      // The calls it answered are freed on this thread, waking no other.
      [&service] { service.Reap(); });
  log::Info("frontend serving", {{"metrics_port", http->port()},
                                 {"allowed_peer_uids", p.GetOr("allowed-peer-uids", "any")}});

  for (;;) {
    struct pollfd fds[2] = {{ipc::kFrontendListenFd, POLLIN, 0}, {sigfd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      log::Error(std::string("poll: ") + strerror(errno));
      return 1;
    }
    if (fds[1].revents & POLLIN) break;
    if (!(fds[0].revents & POLLIN)) continue;
    // Non-blocking, as gRPC's fd transport requires (a blocking fd hangs every call).
    int fd = accept4(ipc::kFrontendListenFd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
        log::Warning(std::string("accept: ") + strerror(errno));
      }
      continue;
    }
    struct ucred cred = {};
    socklen_t clen = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
      log::Warning("refused a connection: cannot read peer credentials");
      close(fd);
      continue;
    }
    if (!allowed.empty() && allowed.count(cred.uid) == 0) {
      log::Warning("refused a connection from a uid outside --allowed-peer-uids",
                   {{"peer_uid", cred.uid}, {"peer_pid", cred.pid}});
      close(fd);
      continue;
    }
    log::Debug("accepted a connection", {{"peer_uid", cred.uid}});
    grpc::AddInsecureChannelFromFd(server.get(), fd);
  }

  log::Info("frontend stopping: no new connections, draining in-flight calls");
  close(ipc::kFrontendListenFd);
  server->Shutdown(std::chrono::system_clock::now() + kDrainTimeout);
  log::Info("frontend stopped");
  // No destructors: nothing here needs flushing (every log line is already one write()), and
  // stopping the HTTP thread would only delay the exit.
  _exit(0);
}

}  // namespace
}  // namespace vkms::frontend

int main(int argc, char** argv) {
  vkms::hardening::LimitMallocArenas();
  // Debian builds abseil without NDEBUG, so every absl::Mutex gRPC takes also updates a lock
  // graph for deadlock detection (perf: ~4% of the frontend's CPU under load). A debugging
  // aid; release builds of abseil have it off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return vkms::frontend::Main(argc, argv);
}
