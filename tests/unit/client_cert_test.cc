// ClientCertificateProblem, ClientCertificateSummary: what an operator is told about the
// certificate file of --auth-method=cert (a failed login, `check`).
#include "broker/vault/client_cert.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

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

}  // namespace
}  // namespace vkms::broker
