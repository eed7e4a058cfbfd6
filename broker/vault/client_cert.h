// What is wrong with the TLS client certificate on disk, in words an operator can act on. For
// --auth-method=cert, where that certificate is the credential: Vault's own refusal of an expired
// certificate names neither the file nor what to do.
//
// Callers: TokenManager after a failed certificate login (loop thread), and `check`. Reads a
// public file only (never the key: broker/tls_files.h matches it at start-up).
#pragma once

#include <openssl/x509.h>

#include <ctime>
#include <memory>
#include <string>

namespace vkms::broker {

using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;

// The first PEM certificate of `path`, or null: then *open_error holds errno's text when the
// file could not be opened, and stays empty when it holds no certificate. Leaves nothing in
// OpenSSL's error queue (libcurl reads it after a handshake). Also broker/tls_files.h's reader.
X509Ptr ReadPemCertificate(const std::string& path, std::string* open_error);

// "" when the PEM certificate at `path` can be read and is valid at `now` (unix seconds);
// otherwise e.g. "client certificate /etc/vault-kms/tls.crt expired at 2026-01-31T10:00:00Z".
std::string ClientCertificateProblem(const std::string& path, std::time_t now);

// "subject CN=kms-node-1, valid until 2026-01-31T10:00:00Z" for `check`'s report; "" when the
// certificate cannot be read.
std::string ClientCertificateSummary(const std::string& path);

}  // namespace vkms::broker
