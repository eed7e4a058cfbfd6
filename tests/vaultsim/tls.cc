#include "tls.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "test_pki.h"

namespace vaultsim {
namespace {

std::string OpenSslError(const std::string& what) {
  unsigned long code = ERR_get_error();
  char buf[256] = "unknown error";
  if (code) ERR_error_string_n(code, buf, sizeof(buf));
  return what + ": " + buf;
}

bool WriteFile(const std::string& path, const std::string& content, mode_t mode,
               std::string* error) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  // fchmod as well: O_CREAT's mode is filtered by the umask and ignored for existing files.
  bool ok = fd >= 0 && fchmod(fd, mode) == 0 &&
            write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  int saved = errno;
  if (fd >= 0 && close(fd) != 0 && ok) {
    ok = false;
    saved = errno;
  }
  if (!ok) *error = "writing " + path + ": " + std::strerror(saved);
  return ok;
}

bool MakeDirs(const std::string& dir, std::string* error) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    const std::string part = dir.substr(0, pos);
    if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
      *error = "creating " + part + ": " + std::strerror(errno);
      return false;
    }
  }
  return true;
}

// Asks every client for a certificate without requiring one or judging it: what Vault's
// listener does (Go's tls.RequestClientCert) so that TLS certificate auth can read it.
int AcceptAnyClientCertificate(int, X509_STORE_CTX*) {
  return 1;
}

}  // namespace

bool WriteTlsMaterial(const std::string& dir, bool with_client_cert, TlsFiles* out,
                      std::string* error) {
  if (!MakeDirs(dir, error)) return false;
  using vkms::testing::CertSpec;
  vkms::testing::Pem ca, server;
  CertSpec ca_spec;
  ca_spec.common_name = "vaultsim CA";
  ca_spec.is_ca = true;
  CertSpec server_spec;
  server_spec.common_name = "localhost";
  server_spec.extended_usage = "serverAuth";
  server_spec.alt_names = "DNS:localhost,IP:127.0.0.1";
  if (!vkms::testing::IssueCertificate(ca_spec, nullptr, &ca, error) ||
      !vkms::testing::IssueCertificate(server_spec, &ca, &server, error)) {
    return false;
  }
  out->ca_cert = dir + "/ca.pem";
  out->server_cert = dir + "/server.pem";
  out->server_key = dir + "/server-key.pem";
  if (!WriteFile(out->ca_cert, ca.cert, 0644, error) ||
      !WriteFile(out->server_cert, server.cert, 0600, error) ||
      !WriteFile(out->server_key, server.key, 0600, error)) {
    return false;
  }
  if (!with_client_cert) return true;

  vkms::testing::Pem client;
  CertSpec client_spec;
  client_spec.common_name = "vaultsim client";
  if (!vkms::testing::IssueCertificate(client_spec, &ca, &client, error)) return false;
  out->client_cert = dir + "/client.pem";
  out->client_key = dir + "/client-key.pem";
  return WriteFile(out->client_cert, client.cert, 0600, error) &&
         WriteFile(out->client_key, client.key, 0600, error);
}

bool ConfigureServerContext(SSL_CTX* ctx, const TlsFiles& files, bool require_client_cert,
                            std::string* error) {
  bool ok = SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 &&
            SSL_CTX_use_certificate_chain_file(ctx, files.server_cert.c_str()) == 1 &&
            SSL_CTX_use_PrivateKey_file(ctx, files.server_key.c_str(), SSL_FILETYPE_PEM) == 1 &&
            SSL_CTX_check_private_key(ctx) == 1;
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  // Sessions are resumed (with the client certificate of the handshake that created them, as
  // Go's TLS server does), which OpenSSL allows with peer verification only within a context.
  static const unsigned char kSessionContext[] = "vaultsim";
  ok = ok && SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1) == 1;
  if (ok && require_client_cert) {
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.ca_cert.c_str());
    ok = names && SSL_CTX_load_verify_locations(ctx, files.ca_cert.c_str(), nullptr) == 1;
    if (names) SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  } else if (ok) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, AcceptAnyClientCertificate);
  }
  if (!ok) *error = OpenSslError("configuring TLS");
  return ok;
}

}  // namespace vaultsim
