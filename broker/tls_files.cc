#include "broker/tls_files.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <memory>

#include "broker/vault/client_cert.h"

namespace vkms::broker {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Refuses to prompt: a key protected by a passphrase cannot be used by the broker either.
int NoPassphrase(char*, int, int, void*) {
  return 0;
}

// Certificates in a PEM bundle, as libcurl's OpenSSL backend loads --vault-ca-file
// (X509_load_cert_crl_file reads it with PEM_X509_INFO_read_bio); -1 if it cannot be opened.
int CountCertificates(const std::string& path) {
  Bio bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) return -1;
  STACK_OF(X509_INFO)* infos = PEM_X509_INFO_read_bio(bio.get(), nullptr, NoPassphrase, nullptr);
  int n = 0;
  for (int i = 0; infos != nullptr && i < sk_X509_INFO_num(infos); ++i) {
    if (sk_X509_INFO_value(infos, i)->x509 != nullptr) ++n;
  }
  sk_X509_INFO_pop_free(infos, X509_INFO_free);
  return n;
}

}  // namespace

std::string CheckTlsFiles(const VaultConfig& c) {
  std::string error;
  if (!c.ca_file.empty() && CountCertificates(c.ca_file) == 0) {
    error = "--vault-ca-file: " + c.ca_file + " holds no PEM certificate";
  }
  struct stat st;
  if (error.empty() && !c.ca_path.empty() &&
      (stat(c.ca_path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))) {
    error = "--vault-ca-path: " + c.ca_path + " is not a directory";
  }
  X509Ptr cert(nullptr, X509_free);
  if (error.empty() && !c.client_cert.empty()) {
    std::string open_error;  // a file that cannot be opened is the caller's to report
    cert = ReadPemCertificate(c.client_cert, &open_error);
    if (!cert && open_error.empty()) {
      error = "--vault-client-cert: " + c.client_cert + " holds no PEM certificate";
    }
  }
  if (error.empty() && !c.client_key.empty()) {
    Bio bio(BIO_new_file(c.client_key.c_str(), "r"));
    if (bio) {
      Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
      if (!key) {
        error = "--vault-client-key: " + c.client_key + " holds no unencrypted PEM private key";
      } else if (cert && X509_check_private_key(cert.get(), key.get()) != 1) {
        error = "--vault-client-key: " + c.client_key + " is not the key of --vault-client-cert " +
                c.client_cert;
      }
    }
  }
  // OpenSSL queues an error per failed parse; none of it belongs to later TLS calls.
  ERR_clear_error();
  return error;
}

}  // namespace vkms::broker
