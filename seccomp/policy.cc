#include "seccomp/policy.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>

namespace vkms::seccomp {
namespace {

// Filled before the filter is loaded, read by the signal handler: no allocation there.
constexpr int kMaxNr = 512;
char g_names[kMaxNr][32];
char g_process[48];

// The handler's way out: HandlerExitRule() with SCMP_ACT_KILL_PROCESS, so the
// process dies by SIGSYS exactly as if the default action had been kill.
constexpr int kDeathSyscall = __NR_kexec_load;

void AppendNum(char** p, long v) {
  char tmp[24];
  int n = 0;
  if (v < 0) {
    *(*p)++ = '-';
    v = -v;
  }
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v > 0);
  while (n > 0) *(*p)++ = tmp[--n];
}

void AppendStr(char** p, const char* s) {
  while (*s) *(*p)++ = *s++;
}

void OnSigsys(int, siginfo_t* info, void*) {
  char buf[256];
  char* p = buf;
  int nr = info->si_syscall;
  AppendStr(&p, "{\"level\":\"error\",\"proc\":\"");
  AppendStr(&p, g_process);
  AppendStr(&p, "\",\"msg\":\"seccomp violation: syscall ");
  AppendNum(&p, nr);
  AppendStr(&p, " (");
  AppendStr(&p, nr >= 0 && nr < kMaxNr && g_names[nr][0] ? g_names[nr] : "unknown");
  AppendStr(&p, ")\",\"syscall\":\"");
  AppendNum(&p, nr);
  AppendStr(&p, "\"}\n");
  (void)!write(STDERR_FILENO, buf, static_cast<size_t>(p - buf));
  syscall(kDeathSyscall, 0, 0, 0, 0);
  _exit(128 + SIGSYS);  // not reached: the line above kills the process
}

uint32_t ToLibseccomp(const Rule& r) {
  switch (r.action) {
    case Action::kKill:
      return SCMP_ACT_KILL_PROCESS;
    case Action::kErrno:
      return SCMP_ACT_ERRNO(static_cast<uint16_t>(r.err));
    case Action::kAllow:
      return SCMP_ACT_ALLOW;
  }
  return SCMP_ACT_KILL_PROCESS;
}

const char* Section(Action a) {
  switch (a) {
    case Action::kKill:
      return "kill";
    case Action::kErrno:
      return "errno";
    case Action::kAllow:
      return "allow";
  }
  return "?";
}

std::string DescribeArgs(const std::vector<struct scmp_arg_cmp>& args) {
  std::ostringstream o;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    o << (i ? " && " : "") << "arg" << a.arg;
    switch (a.op) {
      case SCMP_CMP_EQ:
        o << " == " << a.datum_a;
        break;
      case SCMP_CMP_NE:
        o << " != " << a.datum_a;
        break;
      case SCMP_CMP_LT:
        o << " < " << a.datum_a;
        break;
      case SCMP_CMP_LE:
        o << " <= " << a.datum_a;
        break;
      case SCMP_CMP_GT:
        o << " > " << a.datum_a;
        break;
      case SCMP_CMP_GE:
        o << " >= " << a.datum_a;
        break;
      case SCMP_CMP_MASKED_EQ:
        o << " & 0x" << std::hex << a.datum_a << " == 0x" << a.datum_b << std::dec;
        break;
      default:
        o << " ?";
        break;
    }
  }
  return o.str();
}

}  // namespace

Rule Kill(const char* s, const char* why) {
  return {s, Action::kKill, 0, {}, why};
}
Rule Kill(const char* s, std::vector<struct scmp_arg_cmp> a, const char* why) {
  return {s, Action::kKill, 0, std::move(a), why};
}
Rule Errno(const char* s, int err, const char* why) {
  return {s, Action::kErrno, err, {}, why};
}
Rule Errno(const char* s, int err, std::vector<struct scmp_arg_cmp> a, const char* why) {
  return {s, Action::kErrno, err, std::move(a), why};
}
Rule Allow(const char* s, const char* why) {
  return {s, Action::kAllow, 0, {}, why};
}
Rule Allow(const char* s, std::vector<struct scmp_arg_cmp> a, const char* why) {
  return {s, Action::kAllow, 0, std::move(a), why};
}

Rule HandlerExitRule() {
  return Kill("kexec_load", "the SIGSYS handler's exit: dies by SIGSYS, as a plain kill would");
}

namespace {

// The invariants the trap-then-kill design depends on (see policy.h).
bool CheckInvariants(const Policy& policy, std::string* error) {
  bool exit_rule = false;
  for (const Rule& r : policy.rules) {
    std::string name = r.syscall;
    if (name == "kexec_load" && r.action == Action::kKill && r.args.empty()) exit_rule = true;
    if (r.action != Action::kAllow) continue;
    auto has = [&](unsigned arg, enum scmp_compare op, uint64_t a, uint64_t b) {
      for (const auto& c : r.args) {
        if (c.arg == arg && c.op == op && c.datum_a == a && c.datum_b == b) return true;
      }
      return false;
    };
    if ((name == "mmap" || name == "mprotect") && !has(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)) {
      *error = name + " must be allowed only without PROT_EXEC";
      return false;
    }
    if (name == "rt_sigaction" && !has(0, SCMP_CMP_NE, SIGSYS, 0)) {
      *error = "rt_sigaction must be allowed only for signals other than SIGSYS";
      return false;
    }
  }
  if (!exit_rule) {
    *error = "policy lacks the SIGSYS handler's exit rule";
    return false;
  }
  return true;
}

}  // namespace

bool Install(const Policy& policy, std::string* error) {
  if (!CheckInvariants(policy, error)) return false;
  snprintf(g_process, sizeof g_process, "%s", policy.process);
  for (int nr = 0; nr < kMaxNr; ++nr) {
    char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
    snprintf(g_names[nr], sizeof g_names[nr], "%s", name ? name : "");
    free(name);
  }
  struct sigaction sa = {};
  sa.sa_sigaction = OnSigsys;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGSYS, &sa, nullptr) != 0) {
    *error = std::string("sigaction(SIGSYS): ") + strerror(errno);
    return false;
  }
  sigset_t sys;
  sigemptyset(&sys);
  sigaddset(&sys, SIGSYS);
  pthread_sigmask(SIG_UNBLOCK, &sys, nullptr);

  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
  if (ctx == nullptr) {
    *error = "seccomp_init failed";
    return false;
  }
  auto fail = [&](const std::string& what) {
    seccomp_release(ctx);
    *error = what;
    return false;
  };
  if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) != 0 ||
      seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) != 0) {
    return fail("cannot set seccomp filter attributes");
  }
  for (const Rule& r : policy.rules) {
    int nr = seccomp_syscall_resolve_name(r.syscall);
    if (nr == __NR_SCMP_ERROR) return fail(std::string("unknown syscall in policy: ") + r.syscall);
    int rc = seccomp_rule_add_array(ctx, ToLibseccomp(r), nr, static_cast<unsigned>(r.args.size()),
                                    r.args.empty() ? nullptr : r.args.data());
    if (rc != 0) {
      return fail(std::string("cannot add seccomp rule for ") + r.syscall + ": " + strerror(-rc));
    }
  }
  int rc = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rc != 0) {
    *error = std::string("seccomp_load: ") + strerror(-rc);
    return false;
  }
  return true;
}

std::string Describe(const Policy& policy) {
  std::ostringstream o;
  o << "seccomp policy of " << policy.process
    << " (anything not listed: trap -> logged -> killed by SIGSYS; foreign arch: killed)\n";
  for (Action section : {Action::kKill, Action::kErrno, Action::kAllow}) {
    for (const Rule& r : policy.rules) {
      if (r.action != section) continue;
      o << "  " << Section(section);
      if (section == Action::kErrno) o << "(" << strerrorname_np(r.err) << ")";
      o << "  " << r.syscall;
      if (!r.args.empty()) o << " if " << DescribeArgs(r.args);
      if (r.why && *r.why) o << "  -- " << r.why;
      o << "\n";
    }
  }
  return o.str();
}

}  // namespace vkms::seccomp
