#include "broker/vault/client_cert.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace vkms::broker {
namespace {

std::string Rfc3339(const ASN1_TIME* t) {
  struct tm tm = {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return "an unreadable time";
  char out[32];
  strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return out;
}

// Refuses to prompt: a certificate is never encrypted, and the broker has no terminal.
int NoPassphrase(char*, int, int, void*) {
  return 0;
}

}  // namespace

X509Ptr ReadPemCertificate(const std::string& path, std::string* open_error) {
  open_error->clear();
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(path.c_str(), "r"), BIO_free);
  if (!bio) {
    *open_error = strerror(errno);
    ERR_clear_error();
    return X509Ptr(nullptr, X509_free);
  }
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr), X509_free);
  ERR_clear_error();
  return cert;
}

std::string ClientCertificateProblem(const std::string& path, std::time_t now) {
  const std::string what = "client certificate " + path;
  std::string error;
  X509Ptr cert = ReadPemCertificate(path, &error);
  if (!error.empty()) return what + " cannot be read: " + error;
  if (!cert) return what + " holds no PEM certificate";
  const ASN1_TIME* not_after = X509_get0_notAfter(cert.get());
  const ASN1_TIME* not_before = X509_get0_notBefore(cert.get());
  if (X509_cmp_time(not_after, &now) < 0) {
    return what + " expired at " + Rfc3339(not_after) + "; install a renewed one";
  }
  if (X509_cmp_time(not_before, &now) > 0) {
    return what + " is not valid before " + Rfc3339(not_before) + " (check the node's clock)";
  }
  return "";
}

std::string ClientCertificateSummary(const std::string& path) {
  std::string error;
  X509Ptr cert = ReadPemCertificate(path, &error);
  if (!cert) return "";
  std::unique_ptr<BIO, decltype(&BIO_free)> out(BIO_new(BIO_s_mem()), BIO_free);
  std::string subject;
  if (out &&
      X509_NAME_print_ex(out.get(), X509_get_subject_name(cert.get()), 0, XN_FLAG_RFC2253) >= 0) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(out.get(), &data);
    if (n > 0) subject.assign(data, static_cast<size_t>(n));
  }
  ERR_clear_error();
  return "subject " + (subject.empty() ? "(empty)" : subject) + ", valid until " +
         Rfc3339(X509_get0_notAfter(cert.get()));
}

}  // namespace vkms::broker
