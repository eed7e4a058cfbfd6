// What the broker logs for operators (issue 14 item 3): its effective configuration at start
// (every flag, never a secret or the role-id) and how long Vault was away when it is back.
#include <gtest/gtest.h>

#include <map>

#include "broker/config.h"
#include "broker/effective_config.h"
#include "broker/vault/reachability.h"

namespace vkms::broker {
namespace {

TEST(EffectiveConfig, EveryFlagButNoSecret) {
  BrokerConfig c;
  std::string msg;
  const std::string role_id = "0d2b1c9e-role-id-value";
  ASSERT_EQ(
      ParseBrokerFlags({"--vault-addr=https://a:1,https://b:2", "--approle-role-id=" + role_id,
                        "--approle-secret-id-file=/etc/vault-kms/secret-id",
                        "--key-refresh-interval=1500ms", "--socket-group=0"},
                       &c, &msg),
      ParseResult::kOk)
      << msg;
  log::Fields fields = EffectiveConfigFields(c);
  std::map<std::string, log::Value> by_name(fields.begin(), fields.end());
  for (const auto& spec : BrokerFlagSpecs()) {
    if (spec.name == "help" || spec.name == "version") continue;
    EXPECT_EQ(by_name.count(spec.name), 1u) << "--" << spec.name << " is not logged at start";
  }
  auto text = [&](const std::string& name) { return by_name.at(name).str(); };
  EXPECT_EQ(text("version"), VKMS_VERSION);
  EXPECT_EQ(text("socket"), "unix:///var/run/kmsplugin/vault-kms.sock");
  EXPECT_EQ(text("socket-group"), "0");
  EXPECT_EQ(text("vault-addr"), "https://a:1,https://b:2");
  EXPECT_EQ(text("approle-secret-id-file"), "/etc/vault-kms/secret-id");
  EXPECT_EQ(text("approle-role-id"), "(given as a flag, not shown)");
  EXPECT_EQ(text("key-refresh-interval"), "1500ms");
  EXPECT_EQ(text("broker-user"), "65532:65532");
  // A number is a JSON number (issue 14 item 12).
  ASSERT_EQ(by_name.at("vault-concurrency").kind(), log::Value::Kind::kInt);
  EXPECT_EQ(by_name.at("vault-concurrency").int_value(), 16);
  for (const auto& [k, v] : fields) {
    EXPECT_EQ(v.str().find(role_id), std::string::npos) << k << " shows the role-id";
  }
}

TEST(VaultReachability, ReportsTheOutageOnceWhenVaultAnswersAgain) {
  using namespace std::chrono;
  VaultReachability r;
  auto t0 = steady_clock::now();
  EXPECT_FALSE(r.Observe(true, "", t0));
  EXPECT_FALSE(r.Observe(false, "vault unreachable: connection refused", t0 + seconds(1)));
  EXPECT_FALSE(r.Observe(false, "HTTP 503: Vault is sealed", t0 + seconds(5)));
  auto back = r.Observe(true, "", t0 + milliseconds(13500));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->away, milliseconds(12500));
  EXPECT_EQ(back->last_error, "HTTP 503: Vault is sealed");
  EXPECT_FALSE(r.Observe(true, "", t0 + seconds(14))) << "only once per outage";
}

}  // namespace
}  // namespace vkms::broker
