// Throwaway X.509 certificates for tests and the simulator: a P-256 key and a certificate per
// call, self-signed or issued by another one, with the validity window, usages and names a test
// needs (an expired client certificate, a second CA, a leaf for TLS certificate auth).
// OpenSSL's C API only; everything is PEM text in memory.
#pragma once

#include <string>

namespace vkms::testing {

struct CertSpec {
  std::string common_name;
  bool is_ca = false;
  std::string extended_usage = "clientAuth";  // leaf only: "clientAuth", "serverAuth", ...
  std::string alt_names;                      // "DNS:localhost,IP:127.0.0.1"; "" for none
  long not_before_s = -3600;                  // validity window, in seconds from now
  long not_after_s = 30L * 24 * 3600;
};

struct Pem {
  std::string cert;
  std::string key;  // PKCS#8, unencrypted
};

// Issues `spec`, signed by `issuer` (self-signed when null). False with *error on failure.
bool IssueCertificate(const CertSpec& spec, const Pem* issuer, Pem* out, std::string* error);

// The same, for tests: throws std::runtime_error on failure.
Pem IssueOrThrow(const CertSpec& spec, const Pem* issuer = nullptr);

}  // namespace vkms::testing
