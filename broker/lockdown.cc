#include "broker/lockdown.h"

#include <unistd.h>

#include "shared/hardening.h"
#include "shared/log.h"

namespace vkms::broker {

bool LockDownBroker(const BrokerConfig& config, bool started_as_root, std::string* error) {
  // 1. Identity: the broker user, no supplementary groups, no capabilities, empty bounding set.
  uid_t uid = started_as_root ? config.broker_user.uid : getuid();
  gid_t gid = started_as_root ? config.broker_user.gid : getgid();
  if (!hardening::SwitchUserAndClearCapabilities(uid, gid, error)) return false;
  if (!started_as_root) {
    log::Warning(
        "started as non-root: broker and frontend share one uid; non-dumpable processes and "
        "seccomp still separate them (see SECURITY.md)",
        {{"uid", std::to_string(uid)}});
  }
  // 2. No way back up (no setuid binaries, no file capabilities), no ptrace attach by peers of
  //    the same uid, no core file that could hold the token.
  if (!hardening::NoNewPrivsNoDumpNoCore(error)) return false;
  return true;
}

}  // namespace vkms::broker
