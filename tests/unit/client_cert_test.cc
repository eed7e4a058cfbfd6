// ClientCertificateProblem, ClientCertificateSummary, ClientKeyProblem: what an operator is told
// about the certificate and key files of --auth-method=cert (a failed login, `check`).
#include "broker/vault/client_cert.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "test_pki.h"

namespace vkms::broker {
namespace {

using testing::CertSpec;
using testing::IssueOrThrow;

class ClientCertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vkms-client-cert-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& content) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << content;
    return path;
  }

  // `pem` (PKCS#8) encrypted with a passphrase, as `openssl pkcs8 -topk8 -v2 aes256` writes it.
  static std::string Encrypted(const std::string& pem) {
    std::unique_ptr<BIO, decltype(&BIO_free)> in(
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
    std::unique_ptr<BIO, decltype(&BIO_free)> out(BIO_new(BIO_s_mem()), BIO_free);
    char pass[] = "passphrase";
    EXPECT_EQ(PEM_write_bio_PKCS8PrivateKey(out.get(), key.get(), EVP_aes_256_cbc(), pass,
                                            sizeof pass - 1, nullptr, nullptr),
              1);
    char* data = nullptr;
    const long n = BIO_get_mem_data(out.get(), &data);
    return std::string(data, static_cast<size_t>(n));
  }

  std::string dir_;
};

TEST_F(ClientCertTest, AValidCertificateHasNoProblem) {
  CertSpec spec;
  spec.common_name = "kms-node";
  EXPECT_EQ(ClientCertificateProblem(Write("ok.pem", IssueOrThrow(spec).cert), time(nullptr)), "");
}

TEST_F(ClientCertTest, ExpiredAndNotYetValidNameTheFileAndTheTime) {
  CertSpec spec;
  spec.common_name = "kms-node";
  spec.not_before_s = -2 * 86400;
  spec.not_after_s = -86400;
  const std::string expired = Write("expired.pem", IssueOrThrow(spec).cert);
  const std::string why = ClientCertificateProblem(expired, time(nullptr));
  EXPECT_EQ(why.rfind("client certificate " + expired + " expired at 20", 0), 0u) << why;
  EXPECT_NE(why.find("Z; install a renewed one"), std::string::npos) << why;

  spec.not_before_s = 86400;
  spec.not_after_s = 2 * 86400;
  const std::string future = Write("future.pem", IssueOrThrow(spec).cert);
  EXPECT_NE(ClientCertificateProblem(future, time(nullptr)).find("is not valid before"),
            std::string::npos);
}

TEST_F(ClientCertTest, UnreadableOrNotPemIsSaid) {
  EXPECT_NE(ClientCertificateProblem(dir_ + "/missing.pem", time(nullptr)).find("cannot be read"),
            std::string::npos);
  EXPECT_NE(ClientCertificateProblem(Write("junk.pem", "not a certificate"), time(nullptr))
                .find("holds no PEM certificate"),
            std::string::npos);
}

TEST_F(ClientCertTest, SummaryNamesTheSubjectAndTheEndOfValidity) {
  CertSpec spec;
  spec.common_name = "kms-node-7";
  const std::string path = Write("ok.pem", IssueOrThrow(spec).cert);
  const std::string summary = ClientCertificateSummary(path);
  EXPECT_EQ(summary.rfind("subject CN=kms-node-7,O=vaultsim, valid until 20", 0), 0u) << summary;
  EXPECT_EQ(summary.back(), 'Z') << summary;
  EXPECT_EQ(ClientCertificateSummary(dir_ + "/missing.pem"), "");
}

TEST_F(ClientCertTest, KeyMustBeThePlainPemKeyOfTheCertificate) {
  CertSpec spec;
  spec.common_name = "kms-node";
  const testing::Pem mine = IssueOrThrow(spec);
  const testing::Pem other = IssueOrThrow(spec);
  const std::string cert = Write("cert.pem", mine.cert);
  const std::string key = Write("key.pem", mine.key);
  EXPECT_EQ(ClientKeyProblem(cert, key), "");

  const std::string wrong = Write("other-key.pem", other.key);
  EXPECT_EQ(ClientKeyProblem(cert, wrong),
            "client key " + wrong + " is not the key of the client certificate " + cert);
  const std::string junk = Write("junk-key.pem", "not a key");
  EXPECT_EQ(ClientKeyProblem(cert, junk),
            "client key " + junk + " holds no unencrypted PEM private key");
  EXPECT_EQ(ClientKeyProblem(cert, dir_ + "/missing-key.pem"),
            "client key " + dir_ + "/missing-key.pem cannot be read: No such file or directory");
  // An encrypted key is refused: the broker (libcurl) has no passphrase to give it either.
  const std::string locked = Write("locked-key.pem", Encrypted(mine.key));
  EXPECT_EQ(ClientKeyProblem(cert, locked),
            "client key " + locked + " holds no unencrypted PEM private key");
  // The certificate's own problems are ClientCertificateProblem's to say.
  EXPECT_EQ(ClientKeyProblem(dir_ + "/missing.pem", key), "");
  // Whatever is said, nothing of the key is.
  const std::string body = mine.key.substr(mine.key.find('\n') + 1, 40);
  for (const std::string& k : {key, wrong, junk}) {
    EXPECT_EQ(ClientKeyProblem(cert, k).find(body), std::string::npos);
  }
}

}  // namespace
}  // namespace vkms::broker
