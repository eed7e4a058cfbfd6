#include "shared/flags.h"

#include <gtest/gtest.h>

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
