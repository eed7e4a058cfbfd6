#include "test_pki.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <memory>
#include <stdexcept>

namespace vkms::testing {
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

bool AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

std::string ToPem(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

bool IssueCertificate(const CertSpec& spec, const Pem* issuer, Pem* out, std::string* error) {
  KeyPtr key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  if (!key) {
    *error = OpenSslError("generating a key");
    return false;
  }
  CertPtr issuer_cert(nullptr, X509_free);
  KeyPtr issuer_key(nullptr, EVP_PKEY_free);
  if (issuer != nullptr) {
    BioPtr cb(BIO_new_mem_buf(issuer->cert.data(), static_cast<int>(issuer->cert.size())),
              BIO_free);
    BioPtr kb(BIO_new_mem_buf(issuer->key.data(), static_cast<int>(issuer->key.size())), BIO_free);
    issuer_cert.reset(PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr));
    issuer_key.reset(PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr));
    if (!issuer_cert || !issuer_key) {
      *error = OpenSslError("reading the issuer");
      return false;
    }
  }
  CertPtr cert(X509_new(), X509_free);
  unsigned char serial_bytes[16];
  BIGNUM* serial = BN_new();
  bool ok = cert && serial && RAND_bytes(serial_bytes, sizeof(serial_bytes)) == 1;
  serial_bytes[0] &= 0x7f;  // keep the serial positive
  ok = ok && BN_bin2bn(serial_bytes, sizeof(serial_bytes), serial) &&
       BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert.get())) &&
       X509_set_version(cert.get(), 2) &&
       X509_gmtime_adj(X509_getm_notBefore(cert.get()), spec.not_before_s) &&
       X509_gmtime_adj(X509_getm_notAfter(cert.get()), spec.not_after_s) &&
       X509_set_pubkey(cert.get(), key.get());
  BN_free(serial);
  X509_NAME* name = cert ? X509_get_subject_name(cert.get()) : nullptr;
  ok = ok && name &&
       X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                  reinterpret_cast<const unsigned char*>("vaultsim"), -1, -1, 0) &&
       X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                  reinterpret_cast<const unsigned char*>(spec.common_name.c_str()),
                                  -1, -1, 0) &&
       X509_set_issuer_name(cert.get(),
                            issuer_cert ? X509_get_subject_name(issuer_cert.get()) : name);
  X509* signer = issuer_cert ? issuer_cert.get() : cert.get();
  if (ok && spec.is_ca) {
    ok = AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE") &&
         AddExtension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else if (ok) {
    ok = AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE") &&
         AddExtension(cert.get(), signer, NID_key_usage,
                      "critical,digitalSignature,keyEncipherment") &&
         (spec.extended_usage.empty() ||
          AddExtension(cert.get(), signer, NID_ext_key_usage, spec.extended_usage));
  }
  if (ok && !spec.alt_names.empty()) {
    ok = AddExtension(cert.get(), signer, NID_subject_alt_name, spec.alt_names);
  }
  ok = ok && AddExtension(cert.get(), signer, NID_subject_key_identifier, "hash") &&
       AddExtension(cert.get(), signer, NID_authority_key_identifier, "keyid:always") &&
       X509_sign(cert.get(), issuer_key ? issuer_key.get() : key.get(), EVP_sha256()) > 0;
  if (!ok) {
    *error = OpenSslError("issuing certificate " + spec.common_name);
    return false;
  }
  BioPtr cert_bio(BIO_new(BIO_s_mem()), BIO_free);
  BioPtr key_bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!cert_bio || !key_bio || PEM_write_bio_X509(cert_bio.get(), cert.get()) != 1 ||
      PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) !=
          1) {
    *error = OpenSslError("encoding certificate " + spec.common_name);
    return false;
  }
  out->cert = ToPem(cert_bio.get());
  out->key = ToPem(key_bio.get());
  return true;
}

Pem IssueOrThrow(const CertSpec& spec, const Pem* issuer) {
  Pem out;
  std::string error;
  if (!IssueCertificate(spec, issuer, &out, &error)) throw std::runtime_error(error);
  return out;
}

}  // namespace vkms::testing
