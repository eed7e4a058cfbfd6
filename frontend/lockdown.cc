#include "frontend/lockdown.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "seccomp/frontend_policy.h"
#include "shared/hardening.h"
#include "shared/log.h"

namespace vkms::frontend {
namespace {

void SetLimit(int resource, rlim_t value) {
  struct rlimit lim = {value, value};
  setrlimit(resource, &lim);
}

}  // namespace

landlock::Rules FrontendLandlockRules() {
  return landlock::Rules{};
}

bool LockDownFrontend(bool dedicated_uid, std::string* error) {
  // 1. No capabilities. The uid switch itself happened in the broker before exec (when root);
  //    here the uid stays whatever it is.
  if (!hardening::SwitchUserAndClearCapabilities(getuid(), getgid(), error)) return false;

  // 2. No privilege gain through exec, no ptrace/proc-mem access by same-uid peers, no cores.
  if (!hardening::NoNewPrivsNoDumpNoCore(error)) return false;

  // 3. Resource limits: no file growth (a regular-file stderr keeps its size limit), and with a
  //    dedicated uid a bounded number of threads.
  struct stat st;
  if (fstat(STDERR_FILENO, &st) == 0 && !S_ISREG(st.st_mode)) SetLimit(RLIMIT_FSIZE, 0);
  if (dedicated_uid) SetLimit(RLIMIT_NPROC, 256);

  // 4. Landlock: no filesystem, no TCP, no signals or abstract sockets beyond itself.
  landlock::Result ll;
  if (!landlock::Restrict(FrontendLandlockRules(), &ll, error)) return false;
  for (const auto& m : ll.missing) log::Warning("landlock: not enforced on this kernel: " + m);

  // 5. seccomp: the allow-list of seccomp/frontend_policy.cc; anything else kills.
  return seccomp::Install(seccomp::FrontendPolicy(getpid()), error);
}

}  // namespace vkms::frontend
