// The fixture integration tests share: a Vault (simulator, or real with VAULT_ADDR) configured
// for the plugin, and a way to start the real plugin against it. Header-only: it needs gtest,
// which the harness library does not link.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "tests/integration/plugin_process.h"
#include "tests/integration/vault_env.h"

// Skips a test that needs the simulator's fault API when running against a real Vault.
#define REQUIRE_SIM()                                                        \
  do {                                                                       \
    if (!vault_.is_sim()) GTEST_SKIP() << "needs the simulator's fault API"; \
  } while (0)

namespace vkms::testing {

// Polls `pred` every 50 ms until it holds or `timeout` passes.
inline bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  do {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (std::chrono::steady_clock::now() < until);
  return pred();
}

class PluginFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    ASSERT_TRUE(vault_.Start(&err)) << err;
  }

  PluginOptions Options() { return vault_.DefaultPluginOptions(); }

  // Starts the plugin; unless told otherwise, waits until Status says "ok".
  std::unique_ptr<PluginProcess> StartPlugin(PluginOptions o, bool wait_healthy = true) {
    auto p = std::make_unique<PluginProcess>(std::move(o));
    std::string err;
    EXPECT_TRUE(p->Start(&err)) << err;
    if (wait_healthy) {
      std::string last;
      EXPECT_TRUE(p->WaitHealthy(std::chrono::seconds(10), &last)) << last << "\n" << p->Logs();
    }
    return p;
  }

  // Requests the simulator saw for Vault paths starting with `prefix`.
  int64_t SimCount(const std::string& prefix) {
    return SimControl::CountWithPrefix(vault_.sim().Stats(), prefix);
  }

  VaultEnv vault_;
};

}  // namespace vkms::testing
