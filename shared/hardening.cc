#include "shared/hardening.h"

#include <malloc.h>

#include <cap-ng.h>
#include <errno.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace vkms::hardening {

bool SwitchUserAndClearCapabilities(uid_t uid, gid_t gid, std::string* error) {
  capng_clear(CAPNG_SELECT_BOTH);
  if (geteuid() == 0) {
    int rc =
        capng_change_id(static_cast<int>(uid), static_cast<int>(gid),
                        static_cast<capng_flags_t>(CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING));
    if (rc != 0) {
      *error = "cannot switch to uid " + std::to_string(uid) + " gid " + std::to_string(gid) +
               " (capng_change_id returned " + std::to_string(rc) + ")";
      return false;
    }
    uid_t r, e, s;
    gid_t gr, ge, gs;
    if (getresuid(&r, &e, &s) != 0 || r != uid || e != uid || s != uid ||
        getresgid(&gr, &ge, &gs) != 0 || gr != gid || ge != gid || gs != gid) {
      *error = "uid/gid switch did not take effect";
      return false;
    }
    if (getgroups(0, nullptr) > 1) {
      *error = "supplementary groups survived the uid switch";
      return false;
    }
  } else if (capng_apply(CAPNG_SELECT_CAPS) != 0) {
    *error = "cannot clear capabilities";
    return false;
  }
  if (!HasNoCapabilities()) {
    *error = "capabilities remain after clearing them";
    return false;
  }
  return true;
}

bool NoNewPrivsNoDumpNoCore(std::string* error) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    *error = std::string("PR_SET_NO_NEW_PRIVS: ") + strerror(errno);
    return false;
  }
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    *error = std::string("PR_SET_DUMPABLE: ") + strerror(errno);
    return false;
  }
  struct rlimit zero = {0, 0};
  if (setrlimit(RLIMIT_CORE, &zero) != 0) {
    *error = std::string("RLIMIT_CORE: ") + strerror(errno);
    return false;
  }
  return true;
}

bool HasNoCapabilities() {
  capng_clear(CAPNG_SELECT_BOTH);
  if (capng_get_caps_process() != 0) return false;
  return capng_have_capabilities(CAPNG_SELECT_CAPS) == CAPNG_NONE;
}

void LimitMallocArenas() {
  mallopt(M_ARENA_MAX, 2);
}

}  // namespace vkms::hardening
