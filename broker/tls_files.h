// The TLS files of the Vault connection, parsed with OpenSSL's PEM readers at start-up: a CA
// bundle, client certificate or key that cannot work is a configuration error found at once,
// not a TLS failure retried forever.
//
// Callers: the broker's flag parser, before lockdown (as root, so every file is readable; a
// file that cannot be opened is left to the caller's own readability check). Never prints any
// part of a file, only its flag and path.
#pragma once

#include <string>

#include "broker/vault_config.h"

namespace vkms::broker {

// "" when every configured file parses (and the client key matches the certificate);
// otherwise one line naming the flag and the path.
std::string CheckTlsFiles(const VaultConfig& config);

}  // namespace vkms::broker
