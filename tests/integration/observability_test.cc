// What an operator's tools see of the real plugin: configuration from the environment alone,
// the JSON log lines per call, the /metrics exposition (checked by promtool) and the monitoring
// files of deploy/monitoring against that exposition.
#include <gtest/gtest.h>
#include <json/json.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "tests/integration/plugin_fixture.h"
#include "tests/integration/plugin_process.h"
#include "tests/kmsclient/kms_client.h"

namespace vkms::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class ObservabilityTest : public PluginFixture {};

// The plugin configured by VAULT_KMS_* variables alone: no flag on its command line.
TEST_F(ObservabilityTest, StartsConfiguredOnlyByTheEnvironment) {
  PluginOptions o = Options();
  o.configure_by_environment = true;
  auto plugin = StartPlugin(o);
  std::string cmdline = ReadFile("/proc/" + std::to_string(plugin->pid()) + "/cmdline");
  EXPECT_EQ(cmdline.find("--"), std::string::npos) << "flags on the command line: " << cmdline;

  KmsClient kms(plugin->socket_path());
  v2::EncryptResponse enc;
  std::string seed = RandomBytes(32);
  ASSERT_TRUE(kms.Encrypt(seed, RandomUid(), &enc).ok()) << plugin->Logs();
  v2::DecryptResponse dec;
  ASSERT_TRUE(kms.Decrypt(enc.ciphertext(), enc.key_id(), RandomUid(), &dec).ok());
  EXPECT_EQ(dec.plaintext(), seed);
  EXPECT_EQ(HttpGet(plugin->metrics_port(), "/readyz").first, 200);

  // The frontend still starts with an empty environment: nothing of the broker's is passed on.
  pid_t fe = plugin->FrontendPid();
  ASSERT_GT(fe, 0);
  std::ifstream environ("/proc/" + std::to_string(fe) + "/environ");
  if (environ.is_open()) {
    std::string env((std::istreambuf_iterator<char>(environ)), std::istreambuf_iterator<char>());
    EXPECT_TRUE(env.empty()) << "frontend environment: " << env;
  }
}

}  // namespace
}  // namespace vkms::testing
