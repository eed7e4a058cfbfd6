// One death test per forbidden syscall per policy (Chromium/sandbox2 style): a child loads the
// real policy, makes exactly one call, and the parent asserts how it ended — killed by SIGSYS
// with the violation line naming that syscall, or refused with the chosen errno.
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/memfd.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <functional>
#include <string>

#include "seccomp/broker_policy.h"
#include "seccomp/frontend_policy.h"

namespace vkms::seccomp {
namespace {

// kKilledUnlogged: killed by SIGSYS without the handler's line (the kernel resets a blocked
// SIGSYS to the default action, which kills; there is no handler left to log).
enum class Expect { kKilled, kKilledUnlogged, kErrno, kAllowed, kKernelErrno };

struct Case {
  const char* policy;  // "frontend" or "broker"
  const char* name;    // test name; the syscall is the part before any "_variant" suffix
  Expect expect;
  int err;
  long (*call)();
};

// Each call uses raw syscall() so that exactly the named syscall is made.
long Execve() {
  const char* argv[] = {"/bin/true", nullptr};
  return syscall(SYS_execve, "/bin/true", argv, nullptr);
}
long Execveat() {
  const char* argv[] = {"/bin/true", nullptr};
  return syscall(SYS_execveat, AT_FDCWD, "/bin/true", argv, nullptr, 0);
}
long Ptrace() {
  return syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0);
}
long ProcessVmReadv() {
  return syscall(SYS_process_vm_readv, getppid(), nullptr, 0, nullptr, 0, 0);
}
long ProcessVmWritev() {
  return syscall(SYS_process_vm_writev, getppid(), nullptr, 0, nullptr, 0, 0);
}
long Fork() {
  return syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
}
long Vfork() {
  return syscall(SYS_vfork);
}
long SocketInet() {
  return syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
}
long SocketUnix() {
  return syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
}
long SocketPacket() {
  return syscall(SYS_socket, AF_PACKET, SOCK_RAW, 0);
}
long SocketNetlink() {
  return syscall(SYS_socket, AF_NETLINK, SOCK_RAW, 0);
}
long Socketpair() {
  int sv[2];
  return syscall(SYS_socketpair, AF_UNIX, SOCK_STREAM, 0, sv);
}
long Connect() {
  return syscall(SYS_connect, 0, nullptr, 0);
}
long Bind() {
  return syscall(SYS_bind, 0, nullptr, 0);
}
long Listen() {
  return syscall(SYS_listen, 0, 1);
}
long Accept() {
  return syscall(SYS_accept, 0, nullptr, nullptr);
}
long Accept4() {
  return syscall(SYS_accept4, 0, nullptr, nullptr, 0);
}
long Open() {
  return syscall(SYS_open, "/etc/hostname", O_RDONLY);
}
long OpenatRead() {
  return syscall(SYS_openat, AT_FDCWD, "/etc/hostname", O_RDONLY);
}
long OpenatWrite() {
  return syscall(SYS_openat, AT_FDCWD, "/tmp/vkms-never", O_WRONLY | O_CREAT, 0600);
}
long OpenatTrunc() {
  return syscall(SYS_openat, AT_FDCWD, "/tmp/vkms-never", O_RDONLY | O_TRUNC);
}
long Setuid() {
  return syscall(SYS_setuid, 0);
}
long Setresuid() {
  return syscall(SYS_setresuid, 0, 0, 0);
}
long Setgid() {
  return syscall(SYS_setgid, 0);
}
long Setgroups() {
  return syscall(SYS_setgroups, 0, nullptr);
}
long Mount() {
  return syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, nullptr);
}
long Unshare() {
  return syscall(SYS_unshare, CLONE_NEWUSER);
}
long Setns() {
  return syscall(SYS_setns, 0, 0);
}
long Chmod() {
  return syscall(SYS_chmod, "/tmp", 0777);
}
long Unlink() {
  return syscall(SYS_unlink, "/tmp/vkms-never");
}
long Mkdir() {
  return syscall(SYS_mkdir, "/tmp/vkms-never", 0700);
}
long KillInit() {
  return syscall(SYS_kill, 1, 0);
}
long MmapExec() {
  return syscall(SYS_mmap, nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                 0);
}
long MprotectExec() {
  static char page[4096] __attribute__((aligned(4096)));
  return syscall(SYS_mprotect, page, 4096, PROT_READ | PROT_EXEC);
}
long SigactionSigsys() {
  struct sigaction sa = {};
  sa.sa_handler = SIG_IGN;
  return syscall(SYS_rt_sigaction, SIGSYS, &sa, nullptr, 8);
}
// The review's bypass: the kernel reads the signal number from the low 32 bits, so a rule
// comparing all 64 bits with "!= SIGSYS" let this replace the violation handler.
long SigactionSigsysHighBits() {
  struct sigaction sa = {};
  sa.sa_handler = SIG_IGN;
  return syscall(SYS_rt_sigaction, (1ULL << 32) | SIGSYS, &sa, nullptr, 8);
}
// Blocking SIGSYS does not make a violation survivable: the kernel forces the signal, with the
// default action (kill) since the handler cannot run.
long PtraceWithSigsysBlocked() {
  sigset_t sys;
  sigemptyset(&sys);
  sigaddset(&sys, SIGSYS);
  sigprocmask(SIG_BLOCK, &sys, nullptr);
  return syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0);
}
// Landlock does not cover stat: the frontend's policy refuses it, path or not.
long NewfstatatPath() {
  struct stat st;
  return syscall(SYS_newfstatat, AT_FDCWD, "/etc/hostname", &st, 0);
}
long NewfstatatPathWithEmptyPathFlag() {
  struct stat st;
  return syscall(SYS_newfstatat, AT_FDCWD, "/etc/hostname", &st, AT_EMPTY_PATH);
}
long SocketUdp() {
  return syscall(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}
long SocketInetRaw() {
  return syscall(SYS_socket, AF_INET, SOCK_RAW, IPPROTO_ICMP);
}
long SocketTcpNonblock() {
  return syscall(SYS_socket, AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}
long SocketNetlinkHighBits() {
  return syscall(SYS_socket, (1ULL << 32) | AF_NETLINK, SOCK_RAW, 0);
}
long Sendmmsg() {
  return syscall(SYS_sendmmsg, 1, nullptr, 0, 0);
}
long Unlinkat() {
  return syscall(SYS_unlinkat, AT_FDCWD, "/tmp/vkms-never", 0);
}
long MemfdCreate() {
  return syscall(SYS_memfd_create, "x", MFD_CLOEXEC);
}
long Bpf() {
  return syscall(SYS_bpf, 0, nullptr, 0);
}
long IoUringSetup() {
  return syscall(SYS_io_uring_setup, 1, nullptr);
}
long Userfaultfd() {
  return syscall(SYS_userfaultfd, 0);
}
long Clone3() {
  return syscall(SYS_clone3, nullptr, 0);
}
long Prctl() {
  return syscall(SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0);
}
long Chroot() {
  return syscall(SYS_chroot, "/");
}
long InitModule() {
  return syscall(SYS_init_module, nullptr, 0, "");
}
long Keyctl() {
  return syscall(SYS_keyctl, 0, 0, 0, 0, 0);
}
long PerfEventOpen() {
  return syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0);
}
long OpenByHandleAt() {
  return syscall(SYS_open_by_handle_at, 0, nullptr, 0);
}
// Landlock does not cover readlink either: a symlink's target tells what is where.
long Readlinkat() {
  char buf[64];
  return syscall(SYS_readlinkat, AT_FDCWD, "/proc/self/exe", buf, sizeof buf);
}
// SIGTERM is allowed to the process itself only. The target does not exist, so a policy that
// let the call through would get ESRCH instead of a kill, and no one is signalled.
long KillOtherSigterm() {
  return syscall(SYS_kill, INT_MAX, SIGTERM);
}
// Read-only does not mean harmless: O_RDONLY | O_CREAT makes a file. (The directory does not
// exist, so a policy that let the call through would get ENOENT and create nothing.)
long OpenatCreat() {
  return syscall(SYS_openat, AT_FDCWD, "/nonexistent-vkms/never", O_RDONLY | O_CREAT, 0600);
}
// A process sharing our memory but not our thread group (a vfork-like child) is a fork too.
int CloneChild(void*) {
  return 0;
}
long CloneVm() {
  static char stack[64 * 1024] __attribute__((aligned(16)));
  return clone(CloneChild, stack + sizeof stack, CLONE_VM | SIGCHLD, nullptr);
}
// Limits may be read, never set (lowering RLIMIT_CORE to 0 harms nothing if it got through).
long Prlimit64Set() {
  struct rlimit lim = {0, 0};
  return syscall(SYS_prlimit64, 0, RLIMIT_CORE, &lim, nullptr);
}
// raise()/abort() only: a thread group that cannot exist, so a regression signals no one.
long TgkillOther() {
  return syscall(SYS_tgkill, INT_MAX, INT_MAX, SIGTERM);
}
// Allowed calls, to show the policy is not "kill everything".
// A non-blocking listener made before the policy loads: accept4() reaches the kernel, which
// answers EAGAIN (nobody is connecting) instead of the policy killing the process.
int g_listener = -1;
long Accept4OnListener() {
  return syscall(SYS_accept4, g_listener, nullptr, nullptr, SOCK_CLOEXEC);
}
long Getpid() {
  return syscall(SYS_getpid);
}
long WriteStdout() {
  return syscall(SYS_write, 1, "", 0);
}

const Case kCases[] = {
    // vault-kms-frontend: no files, no sockets, no exec, no ptrace, no fork, no identity change.
    {"frontend", "execve", Expect::kKilled, 0, Execve},
    {"frontend", "execveat", Expect::kKilled, 0, Execveat},
    {"frontend", "ptrace", Expect::kKilled, 0, Ptrace},
    {"frontend", "process_vm_readv", Expect::kKilled, 0, ProcessVmReadv},
    {"frontend", "process_vm_writev", Expect::kKilled, 0, ProcessVmWritev},
    {"frontend", "clone", Expect::kKilled, 0, Fork},
    {"frontend", "vfork", Expect::kKilled, 0, Vfork},
    {"frontend", "clone_vm", Expect::kKilled, 0, CloneVm},
    {"frontend", "socket", Expect::kKilled, 0, SocketInet},
    {"frontend", "socketpair", Expect::kKilled, 0, Socketpair},
    {"frontend", "connect", Expect::kKilled, 0, Connect},
    {"frontend", "bind", Expect::kKilled, 0, Bind},
    {"frontend", "listen", Expect::kKilled, 0, Listen},
    {"frontend", "setuid", Expect::kKilled, 0, Setuid},
    {"frontend", "setresuid", Expect::kKilled, 0, Setresuid},
    {"frontend", "setgid", Expect::kKilled, 0, Setgid},
    {"frontend", "setgroups", Expect::kKilled, 0, Setgroups},
    {"frontend", "mount", Expect::kKilled, 0, Mount},
    {"frontend", "unshare", Expect::kKilled, 0, Unshare},
    {"frontend", "setns", Expect::kKilled, 0, Setns},
    {"frontend", "chmod", Expect::kKilled, 0, Chmod},
    {"frontend", "unlink", Expect::kKilled, 0, Unlink},
    {"frontend", "mkdir", Expect::kKilled, 0, Mkdir},
    {"frontend", "kill", Expect::kKilled, 0, KillInit},
    {"frontend", "kill_other", Expect::kKilled, 0, KillOtherSigterm},
    {"frontend", "tgkill_other", Expect::kKilled, 0, TgkillOther},
    {"frontend", "mmap", Expect::kKilled, 0, MmapExec},
    {"frontend", "mprotect", Expect::kKilled, 0, MprotectExec},
    {"frontend", "rt_sigaction", Expect::kKilled, 0, SigactionSigsys},
    {"frontend", "rt_sigaction_highbits", Expect::kKilled, 0, SigactionSigsysHighBits},
    {"frontend", "ptrace_sigsys_blocked", Expect::kKilledUnlogged, 0, PtraceWithSigsysBlocked},
    {"frontend", "newfstatat_path", Expect::kErrno, EACCES, NewfstatatPath},
    {"frontend", "newfstatat_emptyflag", Expect::kErrno, EACCES, NewfstatatPathWithEmptyPathFlag},
    {"frontend", "memfd_create", Expect::kKilled, 0, MemfdCreate},
    {"frontend", "bpf", Expect::kKilled, 0, Bpf},
    {"frontend", "io_uring_setup", Expect::kKilled, 0, IoUringSetup},
    {"frontend", "userfaultfd", Expect::kKilled, 0, Userfaultfd},
    {"frontend", "prctl", Expect::kKilled, 0, Prctl},
    {"frontend", "chroot", Expect::kKilled, 0, Chroot},
    {"frontend", "init_module", Expect::kKilled, 0, InitModule},
    {"frontend", "keyctl", Expect::kKilled, 0, Keyctl},
    {"frontend", "perf_event_open", Expect::kKilled, 0, PerfEventOpen},
    {"frontend", "open_by_handle_at", Expect::kKilled, 0, OpenByHandleAt},
    {"frontend", "open", Expect::kErrno, EACCES, Open},
    {"frontend", "openat", Expect::kErrno, EACCES, OpenatRead},
    {"frontend", "readlinkat", Expect::kErrno, EACCES, Readlinkat},
    {"frontend", "clone3", Expect::kErrno, ENOSYS, Clone3},
    {"frontend", "getpid", Expect::kAllowed, 0, Getpid},
    {"frontend", "accept", Expect::kKilled, 0, Accept},
    {"frontend", "accept4", Expect::kKernelErrno, EAGAIN, Accept4OnListener},
    {"frontend", "write", Expect::kAllowed, 0, WriteStdout},
    // vault-kms-broker: no exec, no ptrace, no fork, no listening sockets, no writes to files.
    {"broker", "execve", Expect::kKilled, 0, Execve},
    {"broker", "execveat", Expect::kKilled, 0, Execveat},
    {"broker", "ptrace", Expect::kKilled, 0, Ptrace},
    {"broker", "process_vm_readv", Expect::kKilled, 0, ProcessVmReadv},
    {"broker", "process_vm_writev", Expect::kKilled, 0, ProcessVmWritev},
    {"broker", "clone", Expect::kKilled, 0, Fork},
    {"broker", "vfork", Expect::kKilled, 0, Vfork},
    {"broker", "clone_vm", Expect::kKilled, 0, CloneVm},
    {"broker", "bind", Expect::kKilled, 0, Bind},
    {"broker", "listen", Expect::kKilled, 0, Listen},
    {"broker", "accept", Expect::kKilled, 0, Accept},
    {"broker", "accept4", Expect::kKilled, 0, Accept4},
    {"broker", "socket", Expect::kKilled, 0, SocketPacket},
    {"broker", "openat", Expect::kKilled, 0, OpenatWrite},
    {"broker", "openat_trunc", Expect::kKilled, 0, OpenatTrunc},
    {"broker", "openat_creat", Expect::kKilled, 0, OpenatCreat},
    {"broker", "setuid", Expect::kKilled, 0, Setuid},
    {"broker", "setresuid", Expect::kKilled, 0, Setresuid},
    {"broker", "setgroups", Expect::kKilled, 0, Setgroups},
    {"broker", "mount", Expect::kKilled, 0, Mount},
    {"broker", "unshare", Expect::kKilled, 0, Unshare},
    {"broker", "chmod", Expect::kKilled, 0, Chmod},
    {"broker", "mkdir", Expect::kKilled, 0, Mkdir},
    {"broker", "kill", Expect::kKilled, 0, KillInit},
    {"broker", "mmap", Expect::kKilled, 0, MmapExec},
    {"broker", "mprotect", Expect::kKilled, 0, MprotectExec},
    {"broker", "rt_sigaction", Expect::kKilled, 0, SigactionSigsys},
    {"broker", "rt_sigaction_highbits", Expect::kKilled, 0, SigactionSigsysHighBits},
    {"broker", "ptrace_sigsys_blocked", Expect::kKilledUnlogged, 0, PtraceWithSigsysBlocked},
    {"broker", "socket_raw", Expect::kKilled, 0, SocketInetRaw},
    {"broker", "unlinkat", Expect::kKilled, 0, Unlinkat},
    {"broker", "memfd_create", Expect::kKilled, 0, MemfdCreate},
    {"broker", "bpf", Expect::kKilled, 0, Bpf},
    {"broker", "io_uring_setup", Expect::kKilled, 0, IoUringSetup},
    {"broker", "prctl", Expect::kKilled, 0, Prctl},
    {"broker", "keyctl", Expect::kKilled, 0, Keyctl},
    {"broker", "tgkill_other", Expect::kKilled, 0, TgkillOther},
    {"broker", "prlimit64_set", Expect::kKilled, 0, Prlimit64Set},
    {"broker", "socket_netlink", Expect::kErrno, EAFNOSUPPORT, SocketNetlink},
    {"broker", "socket_netlinkhighbits", Expect::kErrno, EAFNOSUPPORT, SocketNetlinkHighBits},
    {"broker", "clone3", Expect::kErrno, ENOSYS, Clone3},
    // No path or abstract unix socket to connect to (D-Bus, journald, ...): glibc's nscd probe
    // gets EACCES and copes.
    {"broker", "socket_unix", Expect::kErrno, EACCES, SocketUnix},
    {"broker", "socket_tcp", Expect::kAllowed, 0, SocketTcpNonblock},
    {"broker", "socket_udp", Expect::kAllowed, 0, SocketUdp},  // a host name in --vault-addr
    // Every --vault-addr an IP address: no UDP at all.
    {"broker_nodns", "socket_udp", Expect::kKilled, 0, SocketUdp},
    {"broker_nodns", "sendmmsg", Expect::kKilled, 0, Sendmmsg},
    {"broker_nodns", "socket_tcp", Expect::kAllowed, 0, SocketTcpNonblock},
    {"broker", "openat_read", Expect::kAllowed, 0, OpenatRead},
    {"broker", "getpid", Expect::kAllowed, 0, Getpid},
};

class SeccompPolicyTest : public ::testing::TestWithParam<Case> {};

// "openat_trunc" -> "openat"; names that are syscalls themselves stay whole.
std::string SyscallOf(const std::string& name) {
  for (const char* suffix :
       {"_trunc", "_netlinkhighbits", "_netlink", "_unix", "_read", "_highbits", "_sigsys_blocked",
        "_path", "_emptyflag", "_udp", "_raw", "_tcp", "_set", "_other", "_creat", "_vm"}) {
    size_t pos = name.rfind(suffix);
    if (pos != std::string::npos && pos + strlen(suffix) == name.size()) return name.substr(0, pos);
  }
  return name;
}

// "broker": as deployed with a host name in --vault-addr (DNS); "broker_nodns": IP addresses
// only. Both as started by root (the socket is never deleted).
Policy PolicyFor(const std::string& which) {
  if (which == "frontend") return FrontendPolicy(getpid());
  BrokerPolicyOptions o;
  o.self = getpid();
  o.dns = which == "broker";
  return BrokerPolicy(o);
}

// Runs c.call() in a child under the policy; returns the wait status, the call's result and
// errno (through a pipe), and everything the child wrote to stderr.
void RunInChild(const Case& c, int* status, long* ret, int* err, std::string* stderr_text) {
  int res[2], errp[2];
  ASSERT_EQ(pipe(res), 0);
  ASSERT_EQ(pipe(errp), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(errp[1], STDERR_FILENO);
    g_listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    if (g_listener < 0 ||
        bind(g_listener, reinterpret_cast<struct sockaddr*>(&addr),
             sizeof(sa_family_t)) != 0 ||  // autobind: an abstract name
        listen(g_listener, 1) != 0) {
      _exit(101);
    }
    std::string why;
    Policy p = PolicyFor(c.policy);
    if (!Install(p, &why)) {
      (void)!write(STDERR_FILENO, why.data(), why.size());
      _exit(100);
    }
    errno = 0;
    long r = c.call();
    long out[2] = {r, errno};
    (void)!write(res[1], out, sizeof out);
    _exit(0);
  }
  close(res[1]);
  close(errp[1]);
  long in[2] = {0, 0};
  ssize_t n = read(res[0], in, sizeof in);
  char buf[4096];
  ssize_t m;
  while ((m = read(errp[0], buf, sizeof buf)) > 0) stderr_text->append(buf, static_cast<size_t>(m));
  close(res[0]);
  close(errp[0]);
  ASSERT_EQ(waitpid(pid, status, 0), pid);
  *ret = n == sizeof in ? in[0] : -999;
  *err = n == sizeof in ? static_cast<int>(in[1]) : 0;
}

TEST_P(SeccompPolicyTest, EndsAsThePolicySays) {
  const Case& c = GetParam();
  int status = 0, err = 0;
  long ret = 0;
  std::string errtext;
  RunInChild(c, &status, &ret, &err, &errtext);
  ASSERT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 100)
      << "policy did not load: " << errtext;
  switch (c.expect) {
    case Expect::kKilled: {
      ASSERT_TRUE(WIFSIGNALED(status)) << c.name << " returned " << ret << " errno " << err;
      EXPECT_EQ(WTERMSIG(status), SIGSYS);
      std::string syscall_name = SyscallOf(c.name);
      EXPECT_NE(errtext.find("seccomp violation: syscall "), std::string::npos) << errtext;
      EXPECT_NE(errtext.find("(" + syscall_name + ")"), std::string::npos)
          << "violation line must name " << syscall_name << ": " << errtext;
      break;
    }
    case Expect::kKilledUnlogged:
      ASSERT_TRUE(WIFSIGNALED(status)) << c.name << " returned " << ret << " errno " << err;
      EXPECT_EQ(WTERMSIG(status), SIGSYS);
      break;
    case Expect::kErrno:
    case Expect::kKernelErrno:
      ASSERT_TRUE(WIFEXITED(status))
          << c.name << " killed by signal " << WTERMSIG(status) << errtext;
      EXPECT_EQ(ret, -1);
      EXPECT_EQ(err, c.err) << strerror(err);
      break;
    case Expect::kAllowed:
      ASSERT_TRUE(WIFEXITED(status)) << c.name << " killed: " << errtext;
      EXPECT_EQ(WEXITSTATUS(status), 0);
      EXPECT_GE(ret, 0) << strerror(err);
      break;
  }
}

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  const char* verdict =
      info.param.expect == Expect::kKilled || info.param.expect == Expect::kKilledUnlogged ? "Kills"
      : info.param.expect == Expect::kErrno ? "Refuses"
                                            : "Allows";  // kernel decides
  return std::string(info.param.policy) + "_" + verdict + "_" + info.param.name;
}

INSTANTIATE_TEST_SUITE_P(Policies, SeccompPolicyTest, ::testing::ValuesIn(kCases), CaseName);

TEST(SeccompPolicyText, DescribesEverySection) {
  std::string text = Describe(FrontendPolicy(1));
  EXPECT_NE(text.find("kill  kexec_load"), std::string::npos) << text;
  EXPECT_NE(text.find("errno(EACCES)  openat"), std::string::npos) << text;
  EXPECT_NE(text.find("allow  accept4"), std::string::npos) << text;
  EXPECT_EQ(text.find("allow  connect"), std::string::npos) << "the frontend never connects";
  std::string broker = Describe(BrokerPolicy({}));
  EXPECT_NE(broker.find("allow  connect"), std::string::npos);
  EXPECT_EQ(broker.find("allow  execve"), std::string::npos);
}

TEST(SeccompPolicyInvariants, PoliciesWithoutTheSafetyLinesAreRefused) {
  Policy p = FrontendPolicy(1);
  p.rules.erase(p.rules.begin());  // the handler's exit rule
  std::string err;
  EXPECT_FALSE(Install(p, &err));
  EXPECT_NE(err.find("exit rule"), std::string::npos) << err;
  Policy q = {"x", {HandlerExitRule(), Allow("mmap")}};
  EXPECT_FALSE(Install(q, &err));
  EXPECT_NE(err.find("PROT_EXEC"), std::string::npos) << err;
}

// The check evaluates the rules as the filter compares them, so the forms the review found
// (and their relatives) are refused before anything is loaded.
TEST(SeccompPolicyInvariants, RulesThatLetSigsysOrExecThroughAreRefused) {
  // The old rule: "!= SIGSYS" on 64 bits lets (1 << 32) | SIGSYS replace the handler.
  Policy ne = {"x", {HandlerExitRule(), Allow("rt_sigaction", {SCMP_A0(SCMP_CMP_NE, SIGSYS)})}};
  EXPECT_NE(CheckInvariants(ne).find("\"!=\""), std::string::npos) << CheckInvariants(ne);
  Policy range = {"x", {HandlerExitRule(), Allow("rt_sigaction", {SCMP_A0(SCMP_CMP_LE, 64)})}};
  EXPECT_NE(CheckInvariants(range).find("other than SIGSYS"), std::string::npos)
      << CheckInvariants(range);
  Policy low = {"x",
                {HandlerExitRule(),
                 Allow("rt_sigaction", {SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffULL, SIGSYS + 256)})}};
  EXPECT_EQ(CheckInvariants(low), "") << "a rule that can never match SIGSYS is fine";
  Policy exec = {"x", {HandlerExitRule(), Allow("mprotect", {SCMP_A2(SCMP_CMP_LE, PROT_EXEC)})}};
  EXPECT_NE(CheckInvariants(exec).find("PROT_EXEC"), std::string::npos) << CheckInvariants(exec);
  // "Signals above 64 do not exist" compared on 64 bits: (1 << 32) | SIGSYS is above 64, and the
  // kernel reads it as SIGSYS.
  Policy above = {"x", {HandlerExitRule(), Allow("rt_sigaction", {SCMP_A0(SCMP_CMP_GT, 64)})}};
  EXPECT_NE(CheckInvariants(above).find("other than SIGSYS"), std::string::npos)
      << CheckInvariants(above);
  // Read+execute for code is still new executable memory.
  Policy rx = {"x",
               {HandlerExitRule(), Allow("mmap", {SCMP_A2(SCMP_CMP_EQ, PROT_READ | PROT_EXEC)})}};
  EXPECT_NE(CheckInvariants(rx).find("PROT_EXEC"), std::string::npos) << CheckInvariants(rx);
  // Both real policies pass, in every variant.
  EXPECT_EQ(CheckInvariants(FrontendPolicy(1)), "");
  for (bool dns : {false, true}) {
    for (bool remove : {false, true}) {
      EXPECT_EQ(CheckInvariants(BrokerPolicy({1, dns, remove})), "");
    }
  }
}

// Deny rules match on the low 32 bits (what the kernel reads); allow rules on all 64 bits.
TEST(SeccompPolicyInvariants, AllowRulesCompareAllSixtyFourBits) {
  const Policy broker = BrokerPolicy({1, true, false});
  const uint64_t tcp[6] = {AF_INET, SOCK_STREAM, 0, 0, 0, 0};
  const uint64_t tcp_high[6] = {(1ULL << 32) | AF_INET, SOCK_STREAM, 0, 0, 0, 0};
  EXPECT_TRUE(Allows(broker, "socket", tcp));
  EXPECT_FALSE(Allows(broker, "socket", tcp_high));
  for (const Rule& r : broker.rules) {
    if (r.action == Action::kAllow) continue;
    for (const auto& c : r.args) {
      EXPECT_TRUE(c.op == SCMP_CMP_MASKED_EQ && c.datum_a == 0xffffffffULL)
          << r.syscall << ": a deny rule must compare the low 32 bits only (Low32Eq)";
    }
  }
}

}  // namespace
}  // namespace vkms::seccomp
