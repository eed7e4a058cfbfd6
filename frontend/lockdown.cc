#include "frontend/lockdown.h"

#include <unistd.h>

#include "shared/hardening.h"

namespace vkms::frontend {

bool LockDownFrontend(std::string* error) {
  // 1. No capabilities. The uid switch itself happened in the broker before exec (when root);
  //    here the uid stays whatever it is.
  if (!hardening::SwitchUserAndClearCapabilities(getuid(), getgid(), error)) return false;
  // 2. No privilege gain through exec, no ptrace/proc-mem access by same-uid peers, no cores.
  if (!hardening::NoNewPrivsNoDumpNoCore(error)) return false;
  return true;
}

}  // namespace vkms::frontend
