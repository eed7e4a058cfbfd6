// The broker's seccomp allow-list (broker_policy.cc). Called by broker/lockdown.cc only.
#pragma once

#include <sys/types.h>

#include "seccomp/policy.h"

namespace vkms::seccomp {

// self: the broker's pid (raise()/abort() may signal its own threads only).
Policy BrokerPolicy(pid_t self);

}  // namespace vkms::seccomp
