// Throwaway PKI for one simulator run: a CA, a server certificate for localhost/127.0.0.1 and,
// when client certificates are required, a client certificate, all generated with OpenSSL's C API.
#pragma once

#include <openssl/ssl.h>

#include <string>

namespace vaultsim {

struct TlsFiles {
  std::string ca_cert;
  std::string server_cert;
  std::string server_key;
  std::string client_cert;  // empty unless requested
  std::string client_key;
};

// Creates `dir` (0700) if missing and writes fresh PEM files into it: ca.pem (0644), everything
// else 0600. Existing files of the same names are replaced.
bool WriteTlsMaterial(const std::string& dir, bool with_client_cert, TlsFiles* out,
                      std::string* error);

// For httplib's SSLServer callback: server certificate and key, TLS 1.2 minimum and, when asked,
// a mandatory client certificate issued by our CA.
bool ConfigureServerContext(SSL_CTX* ctx, const TlsFiles& files, bool require_client_cert,
                            std::string* error);

}  // namespace vaultsim
