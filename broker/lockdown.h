// The broker's own confinement (DESIGN.md start-up steps 4-6), as one function that reads
// top to bottom in the order it happens. Called once from main(), after the frontend has
// been started and before any credential is read.
#pragma once

#include <sys/types.h>

#include <string>

#include "broker/config.h"
#include "seccomp/broker_policy.h"
#include "shared/landlock.h"

namespace vkms::broker {

// What Landlock leaves the broker: its credential and CA directories (read), the resolver's
// files, the socket's directory (remove the socket at exit; non-root only), and TCP connect
// to Vault's ports (+53 when a host name must be resolved). Also printed by `make audit`.
landlock::Rules BrokerLandlockRules(const BrokerConfig& config);

// Which variant of the seccomp policy these flags need: DNS only when some --vault-addr is a
// host name; deleting the socket only when not started as root. Also used by `make audit`.
seccomp::BrokerPolicyOptions BrokerPolicyOptions(const BrokerConfig& config, bool started_as_root);

// Returns false with a one-line reason; main() exits non-zero on failure.
bool LockDownBroker(const BrokerConfig& config, bool started_as_root, std::string* error);

}  // namespace vkms::broker
