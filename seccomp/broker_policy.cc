// vault-kms-broker's seccomp policy: after lockdown it reads its credential and CA files
// (Landlock narrows which), makes HTTPS connections to Vault with libcurl, serves the IPC
// socketpair, and reaps its frontend. It executes nothing, traces nothing, forks nothing
// (threads only), signals no one, binds/listens/accepts nothing, writes no file, and cannot
// change identity.
#include "seccomp/broker_policy.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>

namespace vkms::seccomp {

Policy BrokerPolicy(pid_t self) {
  const auto pid = static_cast<scmp_datum_t>(self);
  // Read-only opens: no O_WRONLY/O_RDWR, no creating or truncating.
  const scmp_datum_t kWriteFlags = O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND | O_TMPFILE;
  return {
      "vault-kms-broker",
      {
          // 1. Kill at once.
          HandlerExitRule(),

          // 2. Refused with an errno: libraries probe these and cope with "no".
          Errno("clone3", ENOSYS,
                "its flags are in memory seccomp cannot read; glibc falls back to clone"),
          Errno("socket", EAFNOSUPPORT, {SCMP_A0(SCMP_CMP_EQ, AF_NETLINK)},
                "getaddrinfo may ask the kernel for interface addresses"),
          Errno("statx", ENOSYS, "glibc falls back to newfstatat"),

          // 3. Allowed.
          Allow("access", "OpenSSL/libcurl probe their files (Landlock decides which exist)"),
          Allow("brk"),
          Allow("clock_getres"),
          Allow("clock_gettime"),
          Allow("clock_nanosleep", "retry backoff"),
          Allow("clone", {SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)},
                "threads only (workers, token and key refreshers): no fork"),
          Allow("close"),
          Allow("connect", "Vault over TCP (Landlock: only its ports); the resolver's UDP socket"),
          Allow("exit"),
          Allow("exit_group"),
          Allow("faccessat"),
          Allow("faccessat2"),
          Allow("fcntl"),
          Allow("futex"),
          Allow("getdents64",
                "OpenSSL's hashed CA directory (--vault-ca-path); /proc/self/fd for "
                "process_open_fds"),
          Allow("getegid"),
          Allow("geteuid"),
          Allow("getgid"),
          Allow("getpeername"),
          Allow("getpid"),
          Allow("getppid"),
          Allow("getrandom"),
          Allow("getsockname"),
          Allow("getsockopt"),
          Allow("gettid"),
          Allow("gettimeofday"),
          Allow("getuid"),
          Allow("ioctl", {SCMP_A1(SCMP_CMP_EQ, FIONREAD)}, "glibc's DNS resolver"),
          Allow("lseek"),
          Allow("madvise"),
          Allow("membarrier"),
          Allow("mmap", {SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)},
                "W^X: no new executable memory"),
          Allow("mprotect", {SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)}, "W^X"),
          Allow("mremap"),
          Allow("munmap"),
          Allow("nanosleep"),
          Allow("newfstatat"),
          Allow("openat", {SCMP_A2(SCMP_CMP_MASKED_EQ, kWriteFlags, O_RDONLY)},
                "credential and CA files, read-only (Landlock: only those)"),
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
          Allow("recvmmsg"),
          Allow("recvmsg", "IPC requests"),
          Allow("restart_syscall"),
          Allow("rseq"),
          Allow("rt_sigaction", {SCMP_A0(SCMP_CMP_NE, SIGSYS)},
                "never for SIGSYS (the violation handler)"),
          Allow("rt_sigprocmask"),
          Allow("rt_sigreturn"),
          Allow("sched_getaffinity"),
          Allow("sched_yield"),
          Allow("sendmmsg", "glibc's resolver sends A and AAAA queries together"),
          Allow("sendmsg", "IPC replies"),
          Allow("sendto"),
          Allow("set_robust_list"),
          Allow("setsockopt"),
          Allow("shutdown"),
          Allow("sigaltstack"),
          Allow("socket", {SCMP_A0(SCMP_CMP_EQ, AF_INET)}, "libcurl to Vault, DNS"),
          Allow("socket", {SCMP_A0(SCMP_CMP_EQ, AF_INET6)}, "libcurl to Vault, DNS"),
          Allow("socket", {SCMP_A0(SCMP_CMP_EQ, AF_UNIX)}, "glibc probes nscd"),
          Allow("socketpair", {SCMP_A0(SCMP_CMP_EQ, AF_UNIX)}, "libcurl's internal wakeup pair"),
          Allow("sysinfo"),
          Allow("tgkill", {SCMP_A0(SCMP_CMP_EQ, pid)}, "raise()/abort() on own threads only"),
          Allow("uname"),
          Allow("unlink", "the KMS socket at exit (Landlock: only in its directory)"),
          Allow("wait4", "reap the frontend"),
          Allow("write"),
          Allow("writev"),
      },
  };
}

}  // namespace vkms::seccomp
