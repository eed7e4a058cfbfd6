// confined-probe: applies the *real* lockdown of one process (the same functions the product
// calls), then does one thing a compromised process would try, and reports how it went.
//
//   confined-probe frontend ACTION [ARG]
//   confined-probe broker ACTION [ARG] -- BROKER-FLAGS...
//
// Actions: open PATH | write PATH | connect PORT | ptrace PID | readmem PID | exec
// Prints {"action":..., "result":"ok" | "errno:NAME"} on stdout; a seccomp violation kills the
// probe with SIGSYS after its handler logged the syscall on stderr.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "broker/config.h"
#include "broker/lockdown.h"
#include "frontend/lockdown.h"
#include "shared/hardening.h"
#include "shared/log.h"

namespace {

constexpr uid_t kFrontendUid = 65533;

int Report(const std::string& action, long rc) {
  std::string result = rc >= 0 ? "ok" : std::string("errno:") + strerrorname_np(errno);
  printf("{\"action\":\"%s\",\"result\":\"%s\"}\n", action.c_str(), result.c_str());
  fflush(stdout);
  return 0;
}

int Act(const std::string& action, const std::string& arg) {
  if (action == "open") return Report(action, open(arg.c_str(), O_RDONLY | O_CLOEXEC));
  if (action == "write")
    return Report(action, open(arg.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  if (action == "connect") {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Report(action, fd);
    struct sockaddr_in sa = {};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(atoi(arg.c_str())));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return Report(action, connect(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa));
  }
  if (action == "ptrace") return Report(action, ptrace(PTRACE_ATTACH, atoi(arg.c_str()), 0, 0));
  if (action == "readmem") {
    int fd = open(("/proc/" + arg + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Report(action, fd);
    char b;
    return Report(action, pread(fd, &b, 1, 0x400000));
  }
  if (action == "exec") {
    const char* argv[] = {"/bin/true", nullptr};
    return Report(action, execve("/bin/true", const_cast<char**>(argv), nullptr));
  }
  fprintf(stderr, "unknown action %s\n", action.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: confined-probe frontend|broker ACTION [ARG] [-- BROKER-FLAGS]\n");
    return 2;
  }
  std::string who = argv[1], action = argv[2];
  std::string arg = argc > 3 && std::string(argv[3]) != "--" ? argv[3] : "";
  std::string error;
  bool root = geteuid() == 0;
  vkms::log::Init("confined-probe", "info");
  if (who == "frontend") {
    // What the broker does before exec'ing the frontend, then the frontend's own lockdown.
    if (root &&
        !vkms::hardening::SwitchUserAndClearCapabilities(kFrontendUid, kFrontendUid, &error)) {
      fprintf(stderr, "switch user: %s\n", error.c_str());
      return 3;
    }
    if (!vkms::frontend::LockDownFrontend(root, &error)) {
      fprintf(stderr, "lockdown: %s\n", error.c_str());
      return 3;
    }
  } else if (who == "broker") {
    std::vector<std::string> flags;
    bool after = false;
    for (int i = 3; i < argc; ++i) {
      if (after) flags.push_back(argv[i]);
      if (std::string(argv[i]) == "--") after = true;
    }
    vkms::broker::BrokerConfig config;
    std::string msg;
    if (vkms::broker::ParseBrokerFlags(flags, &config, &msg) != vkms::broker::ParseResult::kOk) {
      fprintf(stderr, "flags: %s\n", msg.c_str());
      return 3;
    }
    if (!vkms::broker::LockDownBroker(config, root, &error)) {
      fprintf(stderr, "lockdown: %s\n", error.c_str());
      return 3;
    }
  } else {
    return 2;
  }
  // Leave like the confined processes do: no exit-time work (LeakSanitizer's check would need
  // ptrace, which the policy rightly kills).
  int rc = Act(action, arg);
  fflush(stdout);
  _exit(rc);
}
