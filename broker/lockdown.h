// The broker's own confinement (DESIGN.md start-up steps 4-6), as one function that reads
// top to bottom in the order it happens. Called once from main(), after the frontend has
// been started and before any credential is read.
#pragma once

#include <sys/types.h>

#include <string>

#include "broker/config.h"
#include "shared/landlock.h"

namespace vkms::broker {

// What Landlock leaves the broker: its credential and CA directories (read), the resolver's
// files, the socket's directory (remove the socket at exit), and TCP connect to Vault's
// ports. Also printed by `make audit`.
landlock::Rules BrokerLandlockRules(const BrokerConfig& config);

// Returns false with a one-line reason; main() exits non-zero on failure.
bool LockDownBroker(const BrokerConfig& config, bool started_as_root, std::string* error);

}  // namespace vkms::broker
