// `vault-kms-broker check`: a preflight an operator runs with the broker's own flags. It walks
// the path a real start-up takes (address, TLS, credential files, login, token, key, policy,
// one encrypt/decrypt) and prints one verdict line per step, with a one-line fix for every
// WARN/FAIL, so a misconfiguration is found before kube-apiserver depends on the plugin.
//
// Callers: broker/main.cc, right after flag parsing. It never creates the socket, starts the
// frontend or locks the process down (it may run as root, as a one-off), and it never prints a
// token, role-id, secret-id, plaintext or ciphertext: only names, paths, sizes and Vault's
// safe error texts.
#pragma once

#include <ostream>

#include "broker/config.h"

namespace vkms::broker {

// Runs every step and writes the report to `out`. Returns 0 when no step FAILed (WARN is
// allowed), 1 otherwise.
int RunCheck(const BrokerConfig& config, std::ostream& out);

}  // namespace vkms::broker
