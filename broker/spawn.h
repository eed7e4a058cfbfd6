// Starting the frontend (DESIGN.md start-up step 3). Called from main() only, while the
// broker is still single-threaded, so fork() is safe.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace vkms::broker {

struct FrontendSpec {
  std::string path;               // executable, resolved next to the broker's own binary
  std::vector<std::string> args;  // non-secret flags only
  int listen_fd = -1;             // becomes ipc::kFrontendListenFd in the child
  int metrics_fd = -1;            // becomes ipc::kFrontendMetricsFd in the child
  bool switch_user = false;       // true when the broker was started as root
  uid_t uid = 0;
  gid_t gid = 0;
};

struct FrontendProcess {
  pid_t pid = -1;
  int ipc_fd = -1;  // the broker's end of the SOCK_SEQPACKET pair
  int log_fd = -1;  // the read end of the frontend's stdout and stderr (non-blocking)
};

// socketpair(AF_UNIX, SOCK_SEQPACKET) + fork + exec. In the child: /dev/null as stdin, a pipe
// the broker reads as stdout and stderr (so the frontend never writes to the operator's
// terminal or journal itself: broker/log_relay.h), the IPC end, the listening socket and the
// metrics listener at fixed fd numbers (shared/ipc.h), every other fd closed, an empty
// environment, the frontend uid/gid with no capabilities (when root), and a parent-death
// SIGKILL. The kernel
// delivers that signal only while the broker may signal the frontend (same uid, no Landlock
// signal scope), so in practice it covers start-up; afterwards the frontend exits when it sees
// the IPC channel close.
bool SpawnFrontend(const FrontendSpec& spec, FrontendProcess* out, std::string* error);

// Directory of the running executable (from /proc/self/exe).
std::string SelfDirectory();

}  // namespace vkms::broker
