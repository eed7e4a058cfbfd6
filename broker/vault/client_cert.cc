#include "broker/vault/client_cert.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
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

}  // namespace

std::string ClientCertificateProblem(const std::string& path, std::time_t now) {
  const std::string what = "client certificate " + path;
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(path.c_str(), "r"), BIO_free);
  if (!bio) return what + " cannot be read: " + strerror(errno);
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
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

}  // namespace vkms::broker
