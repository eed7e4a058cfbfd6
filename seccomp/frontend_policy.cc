// vault-kms-frontend's seccomp policy: after lockdown it serves gRPC on already-open sockets
// and talks to the broker over an inherited socketpair. It opens no file, creates no socket,
// connects nowhere, executes nothing, traces nothing, forks nothing (threads only) and cannot
// change its identity.
#include "seccomp/frontend_policy.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>

namespace vkms::seccomp {

Policy FrontendPolicy(pid_t self) {
  const auto pid = static_cast<scmp_datum_t>(self);
  return {
      "vault-kms-frontend",
      {
          // 1. Kill at once.
          HandlerExitRule(),

          // 2. Refused with an errno: libraries probe these and cope with "no".
          Errno("access", EACCES, "glibc/gRPC probe files"),
          Errno("clone3", ENOSYS,
                "its flags are in memory seccomp cannot read; glibc falls back to clone"),
          Errno("faccessat", EACCES, "as access"),
          Errno("faccessat2", EACCES, "as access"),
          Errno("newfstatat", EACCES,
                "stat of a path would tell a compromised frontend which files exist, their size, "
                "owner and times (Landlock does not cover stat); seccomp cannot see whether the "
                "path is empty, so fstat through it is refused too (glibc copes)"),
          Errno("open", EACCES, "no file may be opened"),
          Errno("openat", EACCES, "no file may be opened"),
          Errno("readlink", EACCES, "as open"),
          Errno("readlinkat", EACCES, "as open"),
          Errno("statx", ENOSYS, "glibc falls back to newfstatat"),

          // 3. Allowed.
          Allow("accept4",
                "KMS clients on the inherited socket (SOCK_NONBLOCK for gRPC); /metrics and "
                "probe clients on the inherited metrics listener"),
          Allow("brk"),
          Allow("clock_getres"),
          Allow("clock_gettime"),
          Allow("clock_nanosleep"),
          Allow("clone", {SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)},
                "threads only (gRPC, the HTTP server): no fork"),
          Allow("close"),
          Allow("epoll_create1", "gRPC's event engine"),
          Allow("epoll_ctl"),
          Allow("epoll_pwait"),
          Allow("epoll_wait"),
          Allow("eventfd2", "gRPC wakeups"),
          Allow("exit"),
          Allow("exit_group"),
          Allow("fcntl"),
          Allow("futex"),
          Allow("getdents64",
                "/proc/self/fd, opened before lockdown, counted for process_open_fds"),
          Allow("getegid"),
          Allow("geteuid"),
          Allow("getgid"),
          Allow("getpeername"),
          Allow("getpid"),
          Allow("getppid"),
          Allow("getrandom"),
          Allow("getsockname"),
          Allow("getsockopt", "SO_PEERCRED of each KMS client"),
          Allow("gettid"),
          Allow("gettimeofday"),
          Allow("getuid"),
          Allow("kill", {SCMP_A0(SCMP_CMP_EQ, pid), SCMP_A1(SCMP_CMP_EQ, SIGTERM)},
                "the broker's Shutdown message becomes our own SIGTERM"),
          Allow("lseek"),
          Allow("madvise"),
          Allow("membarrier"),
          Allow("mmap", {SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)},
                "W^X: no new executable memory"),
          Allow("mprotect", {SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)}, "W^X"),
          Allow("mremap"),
          Allow("munmap"),
          Allow("nanosleep"),
#if defined(__SANITIZE_ADDRESS__)
          // Sanitizer builds only (the one relaxation, SECURITY.md): ASan's runtime probes
          // memory through a pipe.
          Allow("pipe2"),
#endif
          Allow("poll"),
          Allow("ppoll"),
          Allow("prctl", {SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME)}, "threads name themselves"),
          Allow("prctl", {SCMP_A0(SCMP_CMP_EQ, PR_GET_NAME)}),
          Allow("pread64", "/proc/self/stat, opened before lockdown, for the process_* metrics"),
          Allow("prlimit64", {SCMP_A0(SCMP_CMP_EQ, 0), SCMP_A2(SCMP_CMP_EQ, 0)},
                "read own limits (thread stacks), never set"),
          Allow("read"),
          Allow("readv"),
          Allow("recvfrom"),
          Allow("recvmsg", "broker replies"),
          Allow("restart_syscall"),
          Allow("rseq"),
          // Never SIGSYS (the violation handler), compared on all 64 bits (policy.h).
          Allow("rt_sigaction", {SCMP_A0(SCMP_CMP_LT, SIGSYS)}, "signals 1-30"),
          Allow("rt_sigaction", {SCMP_A0(SCMP_CMP_MASKED_EQ, ~0x1fULL, 32)}, "signals 32-63"),
          Allow("rt_sigaction", {SCMP_A0(SCMP_CMP_EQ, 64)}, "signal 64"),
          Allow("rt_sigprocmask"),
          Allow("rt_sigreturn"),
          Allow("sched_getaffinity"),
          Allow("sched_getparam"),
          Allow("sched_getscheduler"),
          Allow("sched_yield"),
          Allow("sendmsg", "requests to the broker, gRPC responses"),
          Allow("sendto"),
          Allow("set_robust_list"),
          Allow("setsockopt"),
          Allow("shutdown"),
          Allow("sigaltstack"),
          Allow("tgkill", {SCMP_A0(SCMP_CMP_EQ, pid)}, "raise()/abort() on own threads only"),
          Allow("uname"),
          Allow("write"),
          Allow("writev"),
      },
  };
}

}  // namespace vkms::seccomp
