// The broker's effective configuration as log fields, for the one line it logs at start:
// every flag by its name, with the value in force (given, from the environment, or default).
// Never a secret or the role-id: credentials appear as the paths of their files.
//
// Callers: broker/main.cc, once, after flag parsing (not for `check`, whose report is its
// only output).
#pragma once

#include "broker/config.h"
#include "shared/log.h"

namespace vkms::broker {

log::Fields EffectiveConfigFields(const BrokerConfig& config);

}  // namespace vkms::broker
