// The broker's own confinement (DESIGN.md start-up steps 4-6), as one function that reads
// top to bottom in the order it happens. Called once from main(), after the frontend has
// been started and before any credential is read.
#pragma once

#include <string>

#include "broker/config.h"

namespace vkms::broker {

// Returns false with a one-line reason; main() exits non-zero on failure.
bool LockDownBroker(const BrokerConfig& config, bool started_as_root, std::string* error);

}  // namespace vkms::broker
