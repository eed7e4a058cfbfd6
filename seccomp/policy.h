// The seccomp policy language both processes' allow-lists are written in, and the one function
// that loads a policy. A policy is a list of lines in fixed sections:
//   1. calls that kill the process at once (the most dangerous, and the SIGSYS handler's exit);
//   2. calls denied with an errno because libraries probe them and cope with a refusal;
//   3. the allow-list, one syscall per line, alphabetical, with argument conditions where
//      they matter;
// and everything else traps. The trap handler writes one JSON log line naming the syscall
// ("seccomp violation: syscall N (name)") and then kills the process with SIGSYS, so a
// violation is both fatal and diagnosable. Foreign architectures (x32, i386) kill outright.
//
// Called once per process, from its lockdown function, after no_new_privs; applies to every
// thread (TSYNC). Afterwards the SIGSYS handler cannot be replaced (rt_sigaction on SIGSYS
// kills) and no new executable memory can be mapped (PROT_EXEC kills), so even code running
// inside a compromised process cannot turn a violation into a survivable error.
#pragma once

#include <seccomp.h>

#include <string>
#include <vector>

namespace vkms::seccomp {

enum class Action { kKill, kErrno, kAllow };

struct Rule {
  const char* syscall;  // name as libseccomp knows it
  Action action;
  int err;                                // errno for kErrno
  std::vector<struct scmp_arg_cmp> args;  // all must hold; several Rules for one call = OR
  const char* why;                        // who needs it, when the line is not self-evident
};

struct Policy {
  const char* process;
  std::vector<Rule> rules;
};

// Argument conditions. The kernel reads an `int` argument from the low 32 bits of its register
// and ignores the rest, while libseccomp compares all 64 bits. So:
//  - a rule that ALLOWS compares all 64 bits (SCMP_A0(...), the default): a value with stray
//    high bits matches no allow rule and traps, however the kernel would have read it;
//  - a rule that KILLS or REFUSES matches on the low 32 bits only (Low32Eq), so that no
//    high-bit variant of the value it refuses escapes it;
//  - an allow rule never uses SCMP_CMP_NE ("anything but X" lets (1<<32)|X through):
//    Install() refuses such a policy. Write ranges or lists of what is allowed instead.
struct scmp_arg_cmp Low32Eq(unsigned arg, uint32_t value);

// Line builders, so a policy reads like a table.
Rule Kill(const char* syscall, const char* why = "");
Rule Kill(const char* syscall, std::vector<struct scmp_arg_cmp> args, const char* why = "");
Rule Errno(const char* syscall, int err, const char* why);
Rule Errno(const char* syscall, int err, std::vector<struct scmp_arg_cmp> args, const char* why);
Rule Allow(const char* syscall, const char* why = "");
Rule Allow(const char* syscall, std::vector<struct scmp_arg_cmp> args, const char* why = "");

// The line the SIGSYS handler relies on to die (kexec_load: kill). Install() refuses a policy
// without it. Every policy must also allow mmap/mprotect only without PROT_EXEC and
// rt_sigaction only for signals other than SIGSYS; Install() checks those by evaluating every
// allow rule on the forbidden values, high-bit variants included (CheckInvariants).
Rule HandlerExitRule();

// Loads the policy for all threads. Returns false with a reason (nothing is loaded then).
bool Install(const Policy& policy, std::string* error);

// What Install() refuses, without loading anything: "" when the policy keeps the invariants.
std::string CheckInvariants(const Policy& policy);

// Whether some allow rule of the policy matches this call, comparing as libseccomp's filter
// does (all 64 bits, unsigned). For the invariant check and tests.
bool Allows(const Policy& policy, const char* syscall, const uint64_t args[6]);

// The policy as text, section by section, for `make audit`.
std::string Describe(const Policy& policy);

}  // namespace vkms::seccomp
