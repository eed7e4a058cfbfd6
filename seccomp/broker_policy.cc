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

Policy BrokerPolicy(const BrokerPolicyOptions& options) {
  const auto pid = static_cast<scmp_datum_t>(options.self);
  // Read-only opens: no O_WRONLY/O_RDWR, no creating or truncating.
  const scmp_datum_t kWriteFlags = O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND | O_TMPFILE;
  // socket()'s type without SOCK_NONBLOCK/SOCK_CLOEXEC.
  constexpr scmp_datum_t kTypeMask = 0xf;
  Policy policy = {
      "vault-kms-broker",
      {
          // 1. Kill at once.
          HandlerExitRule(),

          // 2. Refused with an errno: libraries probe these and cope with "no".
          Errno("clone3", ENOSYS,
                "its flags are in memory seccomp cannot read; glibc falls back to clone"),
          Errno("socket", EAFNOSUPPORT, {Low32Eq(0, AF_NETLINK)},
                "getaddrinfo may ask the kernel for interface addresses"),
          Errno("socket", EACCES, {Low32Eq(0, AF_UNIX)},
                "glibc probes nscd's socket and copes; no path or abstract socket is reachable"),
          Errno("statx", ENOSYS, "glibc falls back to newfstatat"),

          // 3. Allowed.
          Allow("access", "OpenSSL/libcurl probe their files (Landlock decides which exist)"),
          Allow("brk"),
          Allow("clock_getres"),
          Allow("clock_gettime"),
          Allow("clock_nanosleep", "retry backoff"),
          Allow("clone", {SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)},
                "threads only (libcurl's resolver): no fork"),
          Allow("close"),
          Allow("connect", "Vault over TCP (Landlock: only its ports); the resolver's UDP socket"),
          Allow("epoll_create1", "the event loop: IPC, signals and Vault sockets in one poll"),
          Allow("epoll_ctl"),
          Allow("epoll_pwait"),
          Allow("epoll_wait"),
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
          Allow("recvmsg", "IPC requests"),
          Allow("restart_syscall"),
          Allow("rseq"),
          // Never SIGSYS (the violation handler), compared on all 64 bits (policy.h).
          Allow("rt_sigaction", {SCMP_A0(SCMP_CMP_LT, SIGSYS)}, "signals 1-30"),
          Allow("rt_sigaction", {SCMP_A0(SCMP_CMP_MASKED_EQ, ~0x1fULL, 32)}, "signals 32-63"),
          Allow("rt_sigaction", {SCMP_A0(SCMP_CMP_EQ, 64)}, "signal 64"),
          Allow("rt_sigprocmask"),
          Allow("rt_sigreturn"),
          Allow("sched_getaffinity"),
          Allow("sched_yield"),
          Allow("sendmsg", "IPC replies"),
          Allow("sendto"),
          Allow("set_robust_list"),
          Allow("setsockopt"),
          Allow("shutdown"),
          Allow("sigaltstack"),
          Allow(
              "socket",
              {SCMP_A0(SCMP_CMP_EQ, AF_INET), SCMP_A1(SCMP_CMP_MASKED_EQ, kTypeMask, SOCK_STREAM)},
              "TCP to Vault (Landlock: only its ports)"),
          Allow(
              "socket",
              {SCMP_A0(SCMP_CMP_EQ, AF_INET6), SCMP_A1(SCMP_CMP_MASKED_EQ, kTypeMask, SOCK_STREAM)},
              "TCP to Vault (Landlock: only its ports)"),
          Allow("socketpair", {SCMP_A0(SCMP_CMP_EQ, AF_UNIX)}, "libcurl's internal wakeup pair"),
          Allow("sysinfo"),
          Allow("tgkill", {SCMP_A0(SCMP_CMP_EQ, pid)}, "raise()/abort() on own threads only"),
          Allow("uname"),
          Allow("wait4", "reap the frontend"),
          Allow("write"),
          Allow("writev"),
      },
  };
  if (options.dns) {
    // A host name in --vault-addr: glibc's resolver talks UDP to the name servers. Seccomp
    // cannot see a UDP destination and Landlock has no UDP rules, so a compromised broker could
    // send datagrams anywhere (SECURITY.md, residual risks). With IP literals only, none of this.
    policy.rules.push_back(
        Allow("ioctl", {SCMP_A1(SCMP_CMP_EQ, FIONREAD)}, "DNS: glibc's resolver"));
    policy.rules.push_back(Allow("recvmmsg", "DNS"));
    policy.rules.push_back(Allow("sendmmsg", "DNS: A and AAAA queries together"));
    for (int family : {AF_INET, AF_INET6}) {
      policy.rules.push_back(Allow("socket",
                                   {SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(family)),
                                    SCMP_A1(SCMP_CMP_MASKED_EQ, kTypeMask, SOCK_DGRAM)},
                                   "DNS over UDP"));
    }
  }
  if (options.remove_socket) {
    policy.rules.push_back(
        Allow("unlinkat",
              "the KMS socket at exit, through its directory's fd (non-root: Landlock, only "
              "there)"));
  }
  return policy;
}

}  // namespace vkms::seccomp
