#include "shared/flags.h"

#include <gtest/gtest.h>

#include <map>

namespace vkms::flags {
namespace {

const std::vector<Spec> kSpecs = {
    {"addr", "TEST_ADDR", "", "address", false, true},
    {"mode", "", "0660", "mode"},
    {"verbose", "", "", "verbose", true},
};

const char* NoEnv(const char*) {
  return nullptr;
}

TEST(Flags, FormsDefaultsAndEnv) {
  Parsed p;
  std::vector<std::string> pos;
  std::string err;
  ASSERT_TRUE(
      Parse(kSpecs, {"--addr=a,b", "--addr", "c", "--verbose", "check"}, NoEnv, &p, &pos, &err))
      << err;
  EXPECT_EQ(p.GetAll("addr"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(p.GetOr("mode", ""), "0660");
  EXPECT_FALSE(p.Given("mode"));
  EXPECT_TRUE(p.GetBool("verbose"));
  EXPECT_EQ(pos, (std::vector<std::string>{"check"}));

  Parsed q;
  auto env = [](const char* n) -> const char* {
    return std::string(n) == "TEST_ADDR" ? "x,y" : nullptr;
  };
  ASSERT_TRUE(Parse(kSpecs, {}, env, &q, &pos, &err));
  EXPECT_EQ(q.GetAll("addr"), (std::vector<std::string>{"x", "y"}));
  EXPECT_TRUE(q.Given("addr"));

  Parsed r;
  ASSERT_TRUE(Parse(kSpecs, {"--addr=flag"}, env, &r, &pos, &err));
  EXPECT_EQ(r.GetAll("addr"), (std::vector<std::string>{"flag"})) << "the flag wins over the env";
}

TEST(Flags, ErrorsNameTheFlag) {
  Parsed p;
  std::vector<std::string> pos;
  std::string err;
  EXPECT_FALSE(Parse(kSpecs, {"--nope=1"}, NoEnv, &p, &pos, &err));
  EXPECT_NE(err.find("--nope"), std::string::npos);
  EXPECT_FALSE(Parse(kSpecs, {"--mode"}, NoEnv, &p, &pos, &err));
  EXPECT_NE(err.find("--mode"), std::string::npos);
  EXPECT_FALSE(Parse(kSpecs, {"--mode=1", "--mode=2"}, NoEnv, &p, &pos, &err));
  EXPECT_NE(err.find("more than once"), std::string::npos);
  EXPECT_FALSE(Parse(kSpecs, {"--verbose=maybe"}, NoEnv, &p, &pos, &err));
  EXPECT_FALSE(Parse(kSpecs, {"-x"}, NoEnv, &p, &pos, &err));
}

// With a prefix every flag has a variable; the specific one beats the standard one, the flag
// beats both, and errors name whichever set the value.
TEST(Flags, PrefixedVariablesAndPrecedence) {
  const std::vector<Spec> specs = {
      {"addr", "TEST_ADDR", "", "address", false, true},
      {"log-level", "", "info", "level"},
      {"dry-run", "", "", "dry run", true},
  };
  std::map<std::string, std::string> vars;
  auto env = [&vars](std::vector<std::string> names = {}) {
    return Environment{"VKMS_T_",
                       [&vars](const char* n) -> const char* {
                         auto it = vars.find(n);
                         return it == vars.end() ? nullptr : it->second.c_str();
                       },
                       std::move(names)};
  };
  Parsed p;
  std::vector<std::string> pos;
  std::string err;

  vars = {{"TEST_ADDR", "standard"}, {"VKMS_T_LOG_LEVEL", "debug"}, {"VKMS_T_DRY_RUN", "1"}};
  ASSERT_TRUE(Parse(specs, {}, env(), &p, &pos, &err)) << err;
  EXPECT_EQ(p.GetAll("addr"), (std::vector<std::string>{"standard"}));
  EXPECT_EQ(p.Source("addr"), "TEST_ADDR");
  EXPECT_EQ(p.GetOr("log-level", ""), "debug");
  EXPECT_EQ(p.Source("log-level"), "VKMS_T_LOG_LEVEL");
  EXPECT_TRUE(p.GetBool("dry-run"));

  vars["VKMS_T_ADDR"] = "specific1,specific2";
  Parsed q;
  ASSERT_TRUE(Parse(specs, {}, env(), &q, &pos, &err)) << err;
  EXPECT_EQ(q.GetAll("addr"), (std::vector<std::string>{"specific1", "specific2"}))
      << "VKMS_T_ADDR must win over TEST_ADDR";
  EXPECT_EQ(q.Source("addr"), "VKMS_T_ADDR");

  Parsed r;
  ASSERT_TRUE(Parse(specs, {"--addr=flag", "--log-level=warning"}, env(), &r, &pos, &err)) << err;
  EXPECT_EQ(r.GetAll("addr"), (std::vector<std::string>{"flag"})) << "the flag wins";
  EXPECT_EQ(r.Source("addr"), "--addr");
  EXPECT_EQ(r.GetOr("log-level", ""), "warning");

  // Empty counts as unset: the standard variable, then the default, apply.
  vars = {{"VKMS_T_ADDR", ""}, {"TEST_ADDR", "standard"}, {"VKMS_T_LOG_LEVEL", ""}};
  Parsed e;
  ASSERT_TRUE(Parse(specs, {}, env({"VKMS_T_ADDR", "VKMS_T_LOG_LEVEL"}), &e, &pos, &err)) << err;
  EXPECT_EQ(e.GetAll("addr"), (std::vector<std::string>{"standard"}));
  EXPECT_EQ(e.GetOr("log-level", ""), "info");
  EXPECT_FALSE(e.Given("log-level"));
  EXPECT_EQ(e.Source("log-level"), "--log-level");

  // A boolean from the environment is checked like the flag, and the error names the variable.
  vars = {{"VKMS_T_DRY_RUN", "maybe"}};
  Parsed b;
  EXPECT_FALSE(Parse(specs, {}, env(), &b, &pos, &err));
  EXPECT_NE(err.find("VKMS_T_DRY_RUN"), std::string::npos) << err;
}

TEST(Flags, UnknownOrRefusedVariablesAreErrors) {
  const std::vector<Spec> specs = {
      {"transit-key", "", "kms", "key"},
      {"role-id", "", "", "role-id", false, false, "use VKMS_T_ROLE_ID_FILE"},
      {"help", "", "", "help", true, false, "a command"},
  };
  std::map<std::string, std::string> vars = {
      {"VKMS_T_TRANSITKEY", "typo"}, {"VKMS_T_ROLE_ID", "r-1"}, {"OTHER_VAR", "x"}};
  auto get = [&vars](const char* n) -> const char* {
    auto it = vars.find(n);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
  Parsed p;
  std::vector<std::string> pos;
  std::string err;
  EXPECT_FALSE(Parse(specs, {}, Environment{"VKMS_T_", get, {"OTHER_VAR", "VKMS_T_TRANSITKEY"}}, &p,
                     &pos, &err));
  EXPECT_NE(err.find("VKMS_T_TRANSITKEY: no such setting"), std::string::npos) << err;

  EXPECT_FALSE(Parse(specs, {}, Environment{"VKMS_T_", get, {"VKMS_T_ROLE_ID"}}, &p, &pos, &err));
  EXPECT_NE(err.find("VKMS_T_ROLE_ID: not read from the environment: use VKMS_T_ROLE_ID_FILE"),
            std::string::npos)
      << err;
  EXPECT_EQ(err.find("r-1"), std::string::npos) << "the refused value is not echoed";

  // Nothing refused is read either, even when not listed in names.
  Parsed q;
  ASSERT_TRUE(Parse(specs, {}, Environment{"VKMS_T_", get, {}}, &q, &pos, &err)) << err;
  EXPECT_FALSE(q.Get("role-id").has_value());
  EXPECT_EQ(q.GetOr("transit-key", ""), "kms");

  // Without a prefix (the frontend) no variable is read or checked but the standard ones.
  Parsed f;
  ASSERT_TRUE(Parse(specs, {}, get, &f, &pos, &err)) << err;
}

TEST(Flags, UsageListsTheVariables) {
  const std::vector<Spec> specs = {
      {"vault-addr", "VAULT_ADDR", "", "address"},
      {"transit-key", "", "kms", "key"},
      {"help", "", "", "help", true, false, "a command"},
  };
  std::string usage = Usage("prog", "[flags]", specs, "VKMS_T_");
  EXPECT_NE(usage.find("[$VKMS_T_VAULT_ADDR, $VAULT_ADDR]"), std::string::npos) << usage;
  EXPECT_NE(usage.find("(default kms) [$VKMS_T_TRANSIT_KEY]"), std::string::npos) << usage;
  EXPECT_EQ(usage.find("VKMS_T_HELP"), std::string::npos) << usage;
  EXPECT_EQ(EnvName("VAULT_KMS_", "approle-role-id-file"), "VAULT_KMS_APPROLE_ROLE_ID_FILE");
}

TEST(Flags, Durations) {
  std::chrono::milliseconds d;
  ASSERT_TRUE(ParseDuration("30s", &d));
  EXPECT_EQ(d.count(), 30000);
  ASSERT_TRUE(ParseDuration("1h30m", &d));
  EXPECT_EQ(d.count(), 5400000);
  ASSERT_TRUE(ParseDuration("250ms", &d));
  EXPECT_EQ(d.count(), 250);
  ASSERT_TRUE(ParseDuration("45", &d));
  EXPECT_EQ(d.count(), 45000);
  EXPECT_FALSE(ParseDuration("", &d));
  EXPECT_FALSE(ParseDuration("s", &d));
  EXPECT_FALSE(ParseDuration("10x", &d));
  EXPECT_FALSE(ParseDuration("-5s", &d));
}

TEST(Flags, Uints) {
  unsigned long long v;
  EXPECT_TRUE(ParseUint("65535", 65535, &v));
  EXPECT_FALSE(ParseUint("65536", 65535, &v));
  EXPECT_FALSE(ParseUint("+1", 10, &v));
  EXPECT_FALSE(ParseUint("99999999999999999999999", ~0ULL, &v));
}

}  // namespace
}  // namespace vkms::flags
