// The broker's seccomp allow-list (broker_policy.cc). Called by broker/lockdown.cc only.
#pragma once

#include <sys/types.h>

#include "seccomp/policy.h"

namespace vkms::seccomp {

// self: the broker's pid (raise()/abort() may signal its own threads only).
struct BrokerPolicyOptions {
  pid_t self = 0;
  // Some --vault-addr is a host name, not an IP literal: glibc's resolver needs UDP sockets
  // (and sendmmsg/recvmmsg, FIONREAD). Without it the broker can create TCP sockets only.
  bool dns = true;
  // The broker may delete its socket at exit: it runs as the socket directory's owner (started
  // as non-root). As root it could not (the directory is root's alone), so it is not allowed.
  bool remove_socket = false;
};

Policy BrokerPolicy(const BrokerPolicyOptions& options);

}  // namespace vkms::seccomp
