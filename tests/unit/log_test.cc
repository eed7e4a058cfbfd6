#include "shared/log.h"

#include <gtest/gtest.h>
#include <json/json.h>

namespace vkms::log {
namespace {

TEST(LogFormat, OneJsonObjectWithFields) {
  std::string line = FormatLine("info", "vault-kms-broker", "request \"done\"\n",
                                R"({"op":"Encrypt","uid":"u-1"})", 1700000000123);
  EXPECT_EQ(line.find('\n'), std::string::npos) << "one line per entry";
  Json::Value v;
  Json::CharReaderBuilder b;
  std::string errs;
  std::unique_ptr<Json::CharReader> r(b.newCharReader());
  ASSERT_TRUE(r->parse(line.data(), line.data() + line.size(), &v, &errs)) << errs;
  EXPECT_EQ(v["ts"].asString(), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(v["level"].asString(), "info");
  EXPECT_EQ(v["proc"].asString(), "vault-kms-broker");
  EXPECT_EQ(v["msg"].asString(), "request \"done\"\n");
  EXPECT_EQ(v["op"].asString(), "Encrypt");
  EXPECT_EQ(v["uid"].asString(), "u-1");
}

TEST(LogFormat, Levels) {
  EXPECT_TRUE(ValidLevel("debug"));
  EXPECT_TRUE(ValidLevel("error"));
  EXPECT_FALSE(ValidLevel("trace"));
}

}  // namespace
}  // namespace vkms::log
