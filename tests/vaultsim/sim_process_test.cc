// The simulator as a process: its command line, startup line, TLS files, TLS policy and
// shutdown. Each test starts its own simulator.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <regex>

#include "sim_process.h"
#include "vault_http.h"

namespace vkms::testing {
namespace {

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

// Runs the simulator with `args`, returning its exit status and what it wrote to stderr.
int RunExpectingExit(const std::string& args, std::string* stderr_text) {
  const std::string cmd = VaultSimBinary() + " " + args + " 2>&1 >/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[512];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) stderr_text->append(buf, n);
  return pclose(p);
}

// A TLS handshake with exactly one protocol version; returns the OpenSSL error reason on
// failure and 0 on success.
int HandshakeWithVersion(int port, int version) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  // Level 0 lets this client offer old versions at all; the server must be the one refusing.
  SSL_CTX_set_security_level(ctx, 0);
  SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
  SSL_CTX_set_min_proto_version(ctx, version);
  SSL_CTX_set_max_proto_version(ctx, version);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  ERR_clear_error();
  int reason = 0;
  if (SSL_connect(ssl) != 1) reason = ERR_GET_REASON(ERR_peek_last_error());
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  close(fd);
  return reason;
}

TEST(SimProcessTest, PrintsOneJsonLineAndWritesTlsFiles) {
  SimProcess sim;
  std::string error;
  ASSERT_TRUE(sim.Start({}, &error)) << error;
  const std::string dir = sim.tls_dir();
  const std::regex line("\\{\"addr\":\"https://127\\.0\\.0\\.1:([0-9]+)\",\"ca_file\":\"" + dir +
                        "/ca\\.pem\",\"root_token\":\"vaultsim-root-token\"\\}");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(sim.startup_line(), m, line)) << sim.startup_line();
  EXPECT_EQ(std::stoi(m[1].str()), sim.port());
  EXPECT_GT(sim.port(), 0);
  EXPECT_EQ(ModeOf(dir + "/ca.pem"), 0644u);
  EXPECT_EQ(ModeOf(dir + "/server.pem"), 0600u);
  EXPECT_EQ(ModeOf(dir + "/server-key.pem"), 0600u);
  EXPECT_EQ(access((dir + "/client.pem").c_str(), F_OK), -1);

  {
    VaultHttp http(sim.addr(), sim.ca_file());
    EXPECT_EQ(http.Call("GET", "sys/health").status, 200);
    EXPECT_EQ(http.Call("GET", "sys/mounts", Json::Value(), sim.root_token()).status, 200);
  }
  const int status = sim.Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(sim.later_stdout(), "") << "stdout must carry nothing but the first line";
  EXPECT_EQ(access(dir.c_str(), F_OK), -1) << "Stop() removes the temporary directory";
}

TEST(SimProcessTest, SigtermExitsZeroPromptlyWithAnIdleKeepAliveConnection) {
  SimProcess sim;
  std::string error;
  ASSERT_TRUE(sim.Start({}, &error)) << error;
  VaultHttp http(sim.addr(), sim.ca_file());
  ASSERT_EQ(http.Call("GET", "sys/health").status, 200);  // connection stays open in `http`
  const auto start = std::chrono::steady_clock::now();
  const int status = sim.Stop();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(sim.needed_kill());
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(took).count(), 3000);
}

TEST(SimProcessTest, BadFlagsExitTwoWithOneLine) {
  for (const std::string args : {"--bogus", "--tls-dir /tmp/x --root-token t",
                                 "--listen nonsense --tls-dir /tmp/x "
                                 "--root-token t",
                                 "--listen 127.0.0.1:0 --tls-dir /tmp/x"}) {
    std::string err;
    const int status = RunExpectingExit(args, &err);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << args << ": " << status;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << args << ": " << err;
    EXPECT_EQ(err.rfind("vaultsim: ", 0), 0u) << err;
  }
}

TEST(SimProcessTest, AClientTrustingAnotherCaIsRejected) {
  SimProcess a, b;
  std::string error;
  ASSERT_TRUE(a.Start({}, &error)) << error;
  ASSERT_TRUE(b.Start({}, &error)) << error;
  VaultHttp wrong(a.addr(), b.ca_file());
  HttpResult r = wrong.Call("GET", "sys/health");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.curl_code, CURLE_PEER_FAILED_VERIFICATION) << r.error;
  VaultHttp right(a.addr(), a.ca_file());
  EXPECT_EQ(right.Call("GET", "sys/health").status, 200);
}

TEST(SimProcessTest, RefusesTls11AndAcceptsTls12) {
  SimProcess sim;
  std::string error;
  ASSERT_TRUE(sim.Start({}, &error)) << error;
  EXPECT_EQ(HandshakeWithVersion(sim.port(), TLS1_1_VERSION), SSL_R_TLSV1_ALERT_PROTOCOL_VERSION);
  EXPECT_EQ(HandshakeWithVersion(sim.port(), TLS1_2_VERSION), 0);
  EXPECT_EQ(HandshakeWithVersion(sim.port(), TLS1_3_VERSION), 0);
}

TEST(SimProcessTest, RequireClientCertRefusesClientsWithoutOne) {
  SimProcess sim;
  SimOptions options;
  options.require_client_cert = true;
  std::string error;
  ASSERT_TRUE(sim.Start(options, &error)) << error;
  EXPECT_EQ(ModeOf(sim.client_cert()), 0600u);
  EXPECT_EQ(ModeOf(sim.client_key()), 0600u);
  VaultHttp anonymous(sim.addr(), sim.ca_file());
  HttpResult r = anonymous.Call("GET", "sys/health");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.curl_code, CURLE_OK);
  VaultHttp identified(sim.addr(), sim.ca_file());
  identified.SetClientCertificate(sim.client_cert(), sim.client_key());
  EXPECT_EQ(identified.Call("GET", "sys/health").status, 200);
}

}  // namespace
}  // namespace vkms::testing
