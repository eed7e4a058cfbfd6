#include "seccomp/policy.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
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
        if (a.datum_a == 0xffffffffULL) {
          o << " == " << a.datum_b << " (low 32 bits)";
        } else {
          o << " & 0x" << std::hex << a.datum_a << " == 0x" << a.datum_b << std::dec;
        }
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

struct scmp_arg_cmp Low32Eq(unsigned arg, uint32_t value) {
  return SCMP_CMP64(arg, SCMP_CMP_MASKED_EQ, 0xffffffffULL, value);
}

namespace {

bool Holds(const struct scmp_arg_cmp& c, const uint64_t args[6]) {
  const uint64_t v = args[c.arg];
  switch (c.op) {
    case SCMP_CMP_EQ:
      return v == c.datum_a;
    case SCMP_CMP_NE:
      return v != c.datum_a;
    case SCMP_CMP_LT:
      return v < c.datum_a;
    case SCMP_CMP_LE:
      return v <= c.datum_a;
    case SCMP_CMP_GT:
      return v > c.datum_a;
    case SCMP_CMP_GE:
      return v >= c.datum_a;
    case SCMP_CMP_MASKED_EQ:
      return (v & c.datum_a) == c.datum_b;
    default:
      return true;  // unknown: assume the worst (it might allow)
  }
}

// Values an attacker would try in place of `v` for an int argument: v itself and v with
// high bits set, which the kernel ignores.
std::vector<uint64_t> HighBitVariants(uint64_t v) {
  return {v, (1ULL << 32) | v, (0xffffffffULL << 32) | v, (0x80000000ULL << 32) | v};
}

}  // namespace

bool Allows(const Policy& policy, const char* syscall, const uint64_t args[6]) {
  for (const Rule& r : policy.rules) {
    if (r.action != Action::kAllow || std::string(r.syscall) != syscall) continue;
    bool all = true;
    for (const auto& c : r.args) all = all && Holds(c, args);
    if (all) return true;
  }
  return false;
}

std::string CheckInvariants(const Policy& policy) {
  bool exit_rule = false;
  for (const Rule& r : policy.rules) {
    std::string name = r.syscall;
    if (name == "kexec_load" && r.action == Action::kKill && r.args.empty()) exit_rule = true;
    if (r.action != Action::kAllow) continue;
    for (const auto& c : r.args) {
      if (c.op == SCMP_CMP_NE) {
        return "allow rule for " + name +
               " uses \"!=\": a value with high bits set passes it (list what is allowed)";
      }
    }
  }
  if (!exit_rule) return "policy lacks the SIGSYS handler's exit rule";
  // The handler cannot be replaced or ignored: no allow rule matches SIGSYS in any form.
  for (uint64_t sig : HighBitVariants(SIGSYS)) {
    const uint64_t args[6] = {sig, 1, 0, 8, 0, 0};
    if (Allows(policy, "rt_sigaction", args)) {
      return "rt_sigaction must be allowed only for signals other than SIGSYS (it is allowed for " +
             std::to_string(sig) + ")";
    }
  }
  // No new executable memory: no allow rule matches PROT_EXEC, with or without other bits.
  for (const char* call : {"mmap", "mprotect"}) {
    for (uint64_t extra : {0ULL, 1ULL, 3ULL, 1ULL << 32, 0xffffffff00000000ULL}) {
      const uint64_t args[6] = {0, 4096, PROT_EXEC | extra, 0x22, ~0ULL, 0};
      if (Allows(policy, call, args)) {
        return std::string(call) + " must be allowed only without PROT_EXEC";
      }
    }
  }
  return "";
}

bool Install(const Policy& policy, std::string* error) {
  *error = CheckInvariants(policy);
  if (!error->empty()) return false;
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
  // Each section alphabetically (rules added for an option land at the end of the list).
  std::vector<const Rule*> sorted;
  for (const Rule& r : policy.rules) sorted.push_back(&r);
  std::stable_sort(sorted.begin(), sorted.end(), [](const Rule* a, const Rule* b) {
    return std::string(a->syscall) < std::string(b->syscall);
  });
  for (Action section : {Action::kKill, Action::kErrno, Action::kAllow}) {
    for (const Rule* rp : sorted) {
      const Rule& r = *rp;
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
