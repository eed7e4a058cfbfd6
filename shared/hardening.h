// Process hardening steps used by both executables' lockdown sequences. Each returns false
// with a one-line reason; callers treat any failure as fatal (a half-confined process must
// not serve).
#pragma once

#include <sys/types.h>

#include <string>

namespace vkms::hardening {

// As root: drops supplementary groups, switches real/effective/saved gid and uid, clears the
// capability bounding set, and leaves no capabilities (libcap-ng's capng_change_id).
// As non-root: uid/gid stay; permitted/effective/inheritable capabilities are cleared.
bool SwitchUserAndClearCapabilities(uid_t uid, gid_t gid, std::string* error);

// PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE 0 (no ptrace attach, no /proc/PID/mem for peers of
// the same uid, no core) and RLIMIT_CORE 0.
bool NoNewPrivsNoDumpNoCore(std::string* error);

// True if the process holds no capability in any of its sets (reads /proc/self/status
// through libcap-ng, so it works before the seccomp policy forbids opening files).
bool HasNoCapabilities();

// At most two malloc arenas (one per core on a control-plane node) instead of glibc's eight per
// core: each worker thread otherwise gets its own arena and keeps its freed memory, which made
// the broker's RSS grow by ~5 MB with its 32 workers under load. Call before any thread starts.
void LimitMallocArenas();

}  // namespace vkms::hardening
