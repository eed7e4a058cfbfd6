// The frontend's seccomp allow-list (frontend_policy.cc). Called by frontend/lockdown.cc only.
#pragma once

#include <sys/types.h>

#include "seccomp/policy.h"

namespace vkms::seccomp {

// self: the frontend's own pid (the only target it may signal).
Policy FrontendPolicy(pid_t self);

}  // namespace vkms::seccomp
