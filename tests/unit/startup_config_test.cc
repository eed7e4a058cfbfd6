// What the broker finds wrong at start-up (issue 14 items 9, 10): --metrics-listen as
// host:port with IPv6 in brackets, TLS files that are not PEM, and the default socket.
#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "broker/config.h"
#include "broker/tls_files.h"
#include "shared/listen_address.h"

namespace vkms::broker {
namespace {

TEST(ListenAddress, AcceptsIpv4Ipv6InBracketsAndNames) {
  struct Good {
    std::string text, host;
    uint16_t port;
  } good[] = {{"127.0.0.1:8080", "127.0.0.1", 8080},
              {"[::1]:8081", "::1", 8081},
              {"[fe80::1%lo]:1", "", 0},  // not an address inet_pton knows: refused below
              {"0.0.0.0:0", "0.0.0.0", 0},
              {"localhost:9090", "localhost", 9090}};
  for (const auto& g : good) {
    ListenAddress a;
    std::string error;
    bool ok = ParseListenAddress(g.text, &a, &error);
    if (g.host.empty()) {
      EXPECT_FALSE(ok) << g.text;
      continue;
    }
    ASSERT_TRUE(ok) << g.text << ": " << error;
    EXPECT_EQ(a.host, g.host);
    EXPECT_EQ(a.port, g.port);
  }
}

TEST(ListenAddress, RefusesWhatCouldOnlyFailLater) {
  const std::map<std::string, std::string> bad = {
      {"::1:8080", "an IPv6 address must be in brackets, e.g. [::1]:8080"},
      {"[::1]8080", "an IPv6 address is written [address]:port, e.g. [::1]:8080"},
      {"[::1]", "an IPv6 address is written [address]:port, e.g. [::1]:8080"},
      {"[127.0.0.1]:80", "\"127.0.0.1\" is not an IPv6 address"},
      {"8080", "no port (host:port, e.g. 127.0.0.1:8080)"},
      {"127.0.0.1:65536", "port \"65536\" is not a number from 0 to 65535"},
      {"127.0.0.1:", "port \"\" is not a number from 0 to 65535"},
      {":8080", "\"\" is neither an IPv4 address nor a host name"},
      {"256.1.1.1:80", "\"256.1.1.1\" is neither an IPv4 address nor a host name"},
      {"a b:80", "\"a b\" is neither an IPv4 address nor a host name"},
      {"host/x:80", "\"host/x\" is neither an IPv4 address nor a host name"},
  };
  for (const auto& [text, why] : bad) {
    ListenAddress a;
    std::string error;
    EXPECT_FALSE(ParseListenAddress(text, &a, &error)) << text;
    EXPECT_EQ(error, why) << text;
  }
}

std::vector<std::string> BaseFlags() {
  return {"--socket=unix:///tmp/vkms-test.sock", "--vault-addr=https://127.0.0.1:8200",
          "--approle-role-id-file=/etc/vkms/role-id",
          "--approle-secret-id-file=/etc/vkms/secret-id"};
}

ParseResult Parse(std::vector<std::string> extra, BrokerConfig* c, std::string* msg) {
  auto args = BaseFlags();
  for (auto& e : extra) args.push_back(std::move(e));
  return ParseBrokerFlags(args, c, msg);
}

TEST(StartupFlags, MetricsListenIsValidatedAsHostPort) {
  BrokerConfig c;
  std::string msg;
  ASSERT_EQ(Parse({"--metrics-listen=[::1]:8080"}, &c, &msg), ParseResult::kOk) << msg;
  EXPECT_EQ(c.metrics_listen, "[::1]:8080");
  ASSERT_EQ(Parse({"--metrics-listen=::1:8080"}, &c, &msg), ParseResult::kError);
  EXPECT_EQ(msg,
            "--metrics-listen: expected host:port such as 127.0.0.1:8080 or [::1]:8080, got "
            "\"::1:8080\": an IPv6 address must be in brackets, e.g. [::1]:8080");
  ASSERT_EQ(Parse({"--metrics-listen=[::1]:99999"}, &c, &msg), ParseResult::kError);
  EXPECT_EQ(msg.rfind("--metrics-listen: ", 0), 0u) << msg;
}

// The default --socket is the path deploy/ uses (and kube-apiserver's EncryptionConfiguration).
TEST(StartupFlags, DefaultSocketIsTheDeployPath) {
  BrokerConfig c;
  std::string msg;
  ASSERT_EQ(ParseBrokerFlags({"--vault-addr=https://127.0.0.1:8200", "--approle-role-id-file=/r",
                              "--approle-secret-id-file=/s"},
                             &c, &msg),
            ParseResult::kOk)
      << msg;
  EXPECT_EQ(c.socket_path, "/var/run/kmsplugin/vault-kms.sock");
}

class TempFiles {
 public:
  TempFiles() {
    char tmpl[] = "/tmp/vkms-tls-files-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~TempFiles() { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& content) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << content;
    return path;
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

// A P-256 key and a self-signed certificate for it, in PEM.
void MakeCertAndKey(std::string* cert_pem, std::string* key_pem) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  ASSERT_NE(key, nullptr);
  X509* x = X509_new();
  ASSERT_EQ(X509_set_version(x, 2), 1);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("vkms test"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509_set_pubkey(x, key);
  ASSERT_GT(X509_sign(x, key, EVP_sha256()), 0);
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, x);
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  cert_pem->assign(data, static_cast<size_t>(n));
  BIO_free(b);
  b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
  n = BIO_get_mem_data(b, &data);
  key_pem->assign(data, static_cast<size_t>(n));
  BIO_free(b);
  X509_free(x);
  EVP_PKEY_free(key);
}

TEST(StartupFlags, TlsFilesMustBePem) {
  TempFiles t;
  std::string cert, key, other_cert, other_key;
  MakeCertAndKey(&cert, &key);
  MakeCertAndKey(&other_cert, &other_key);
  const std::string ca = t.Write("ca.pem", cert + other_cert);
  const std::string not_pem = t.Write("not-pem", "this is no certificate\n");
  const std::string client = t.Write("client.pem", cert);
  const std::string client_key = t.Write("client-key.pem", key);
  const std::string wrong_key = t.Write("other-key.pem", other_key);
  const std::string secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n";
  const std::string broken_key = t.Write("broken-key.pem", secret);

  BrokerConfig c;
  std::string msg;
  EXPECT_EQ(Parse({"--vault-ca-file=" + ca, "--vault-client-cert=" + client,
                   "--vault-client-key=" + client_key, "--vault-ca-path=" + t.dir()},
                  &c, &msg),
            ParseResult::kOk)
      << msg;
  const std::map<std::vector<std::string>, std::string> bad = {
      {{"--vault-ca-file=" + not_pem}, "--vault-ca-file: " + not_pem + " holds no PEM certificate"},
      {{"--vault-ca-file=" + client_key},
       "--vault-ca-file: " + client_key + " holds no PEM certificate"},
      {{"--vault-ca-path=" + ca}, "--vault-ca-path: " + ca + " is not a directory"},
      {{"--vault-client-cert=" + not_pem, "--vault-client-key=" + client_key},
       "--vault-client-cert: " + not_pem + " holds no PEM certificate"},
      {{"--vault-client-cert=" + client, "--vault-client-key=" + broken_key},
       "--vault-client-key: " + broken_key + " holds no unencrypted PEM private key"},
      {{"--vault-client-cert=" + client, "--vault-client-key=" + wrong_key},
       "--vault-client-key: " + wrong_key + " is not the key of --vault-client-cert " + client},
  };
  for (const auto& [flags, want] : bad) {
    BrokerConfig d;
    EXPECT_EQ(Parse(flags, &d, &msg), ParseResult::kError) << flags[0];
    EXPECT_EQ(msg, want);
    EXPECT_EQ(msg.find("c2VjcmV0"), std::string::npos) << "never a file's content";
  }
}

}  // namespace
}  // namespace vkms::broker
