#include "tls.h"

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace vaultsim {
namespace {

using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;
using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;

std::string OpenSslError(const std::string& what) {
  unsigned long code = ERR_get_error();
  char buf[256] = "unknown error";
  if (code) ERR_error_string_n(code, buf, sizeof(buf));
  return what + ": " + buf;
}

bool AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

struct Profile {
  const char* common_name;
  bool is_ca;
  const char* extended_usage;  // null for the CA
  const char* alt_names;       // null when none
};

// Issues a P-256 certificate; a null issuer makes it self-signed.
CertPtr Issue(const Profile& p, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key,
              std::string* error) {
  CertPtr cert(X509_new(), X509_free);
  unsigned char serial_bytes[16];
  BIGNUM* serial = BN_new();
  bool ok = cert && serial && RAND_bytes(serial_bytes, sizeof(serial_bytes)) == 1;
  serial_bytes[0] &= 0x7f;  // keep the serial positive
  ok = ok && BN_bin2bn(serial_bytes, sizeof(serial_bytes), serial) &&
       BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert.get())) &&
       X509_set_version(cert.get(), 2) && X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) &&
       X509_gmtime_adj(X509_getm_notAfter(cert.get()), 30L * 24 * 3600) &&
       X509_set_pubkey(cert.get(), key);
  BN_free(serial);
  X509_NAME* name = cert ? X509_get_subject_name(cert.get()) : nullptr;
  ok = ok && name &&
       X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                  reinterpret_cast<const unsigned char*>("vaultsim"), -1, -1, 0) &&
       X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                  reinterpret_cast<const unsigned char*>(p.common_name), -1, -1,
                                  0) &&
       X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509* signer = issuer ? issuer : cert.get();
  if (ok && p.is_ca) {
    ok = AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE") &&
         AddExtension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else if (ok) {
    ok = AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE") &&
         AddExtension(cert.get(), signer, NID_key_usage,
                      "critical,digitalSignature,keyEncipherment") &&
         AddExtension(cert.get(), signer, NID_ext_key_usage, p.extended_usage);
  }
  if (ok && p.alt_names) ok = AddExtension(cert.get(), signer, NID_subject_alt_name, p.alt_names);
  ok = ok && AddExtension(cert.get(), signer, NID_subject_key_identifier, "hash") &&
       AddExtension(cert.get(), signer, NID_authority_key_identifier, "keyid:always") &&
       X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()) > 0;
  if (!ok) {
    *error = OpenSslError(std::string("issuing certificate ") + p.common_name);
    return CertPtr(nullptr, X509_free);
  }
  return cert;
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

std::string CertPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string KeyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
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

}  // namespace

bool WriteTlsMaterial(const std::string& dir, bool with_client_cert, TlsFiles* out,
                      std::string* error) {
  if (!MakeDirs(dir, error)) return false;
  KeyPtr ca_key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  KeyPtr server_key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  if (!ca_key || !server_key) {
    *error = OpenSslError("generating keys");
    return false;
  }
  CertPtr ca =
      Issue({"vaultsim CA", true, nullptr, nullptr}, ca_key.get(), nullptr, nullptr, error);
  if (!ca) return false;
  CertPtr server = Issue({"localhost", false, "serverAuth", "DNS:localhost,IP:127.0.0.1"},
                         server_key.get(), ca.get(), ca_key.get(), error);
  if (!server) return false;

  out->ca_cert = dir + "/ca.pem";
  out->server_cert = dir + "/server.pem";
  out->server_key = dir + "/server-key.pem";
  if (!WriteFile(out->ca_cert, CertPem(ca.get()), 0644, error) ||
      !WriteFile(out->server_cert, CertPem(server.get()), 0600, error) ||
      !WriteFile(out->server_key, KeyPem(server_key.get()), 0600, error)) {
    return false;
  }
  if (!with_client_cert) return true;

  KeyPtr client_key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  if (!client_key) {
    *error = OpenSslError("generating client key");
    return false;
  }
  CertPtr client = Issue({"vaultsim client", false, "clientAuth", nullptr}, client_key.get(),
                         ca.get(), ca_key.get(), error);
  if (!client) return false;
  out->client_cert = dir + "/client.pem";
  out->client_key = dir + "/client-key.pem";
  return WriteFile(out->client_cert, CertPem(client.get()), 0600, error) &&
         WriteFile(out->client_key, KeyPem(client_key.get()), 0600, error);
}

bool ConfigureServerContext(SSL_CTX* ctx, const TlsFiles& files, bool require_client_cert,
                            std::string* error) {
  bool ok = SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 &&
            SSL_CTX_use_certificate_chain_file(ctx, files.server_cert.c_str()) == 1 &&
            SSL_CTX_use_PrivateKey_file(ctx, files.server_key.c_str(), SSL_FILETYPE_PEM) == 1 &&
            SSL_CTX_check_private_key(ctx) == 1;
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (ok && require_client_cert) {
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.ca_cert.c_str());
    ok = names && SSL_CTX_load_verify_locations(ctx, files.ca_cert.c_str(), nullptr) == 1;
    if (names) SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  if (!ok) *error = OpenSslError("configuring TLS");
  return ok;
}

}  // namespace vaultsim
