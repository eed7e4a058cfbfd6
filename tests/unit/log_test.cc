#include "shared/log.h"

#include <gtest/gtest.h>
#include <json/json.h>
#include <limits.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

namespace vkms::log {
namespace {

Json::Value ParseLine(const std::string& line) {
  Json::Value v;
  Json::CharReaderBuilder b;
  b["failIfExtra"] = true;
  std::string errs;
  std::unique_ptr<Json::CharReader> r(b.newCharReader());
  EXPECT_TRUE(r->parse(line.data(), line.data() + line.size(), &v, &errs)) << errs << ": " << line;
  return v;
}

// Runs `fn` with stderr going to `fd` (then closed here), and restores it.
template <typename F>
void WithStderrOn(int fd, F fn) {
  int saved = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  close(fd);
  fn();
  dup2(saved, STDERR_FILENO);
  close(saved);
}

// What the process writes to stderr while `fn` runs.
template <typename F>
std::string CaptureStderr(F fn) {
  int pipefd[2];
  EXPECT_EQ(pipe(pipefd), 0);
  WithStderrOn(pipefd[1], fn);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  return out;
}

// Each write() the process makes to stderr while `fn` runs, as one string: stderr is a
// SOCK_SEQPACKET socket for the duration, so every write is one datagram.
template <typename F>
std::vector<std::string> CaptureWrites(F fn) {
  int sv[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
  int size = 1 << 20;
  setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  WithStderrOn(sv[1], fn);
  std::vector<std::string> writes;
  char buf[65536];
  ssize_t n;
  while ((n = recv(sv[0], buf, sizeof buf, MSG_DONTWAIT)) > 0) {
    writes.emplace_back(buf, static_cast<size_t>(n));
  }
  close(sv[0]);
  return writes;
}

size_t Lines(const std::string& text) {
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

// The broker's one line per request: a batch of answers leaves in one write of whole lines,
// split only where a pipe would no longer keep the write whole (PIPE_BUF).
TEST(LogCoalesce, GatheredLinesLeaveInFewWholeWrites) {
  Init("vault-kms-test", "info");
  const std::string filler(100, 'x');
  // Without it: one write per line (the counting works).
  auto plain = CaptureWrites([&] {
    for (int i = 0; i < 16; ++i) Info("request done", {{"n", i}, {"f", filler}});
  });
  EXPECT_EQ(plain.size(), 16u);

  auto gathered = CaptureWrites([&] {
    Coalesce one_write;
    for (int i = 0; i < 16; ++i) Info("request done", {{"n", i}, {"f", filler}});
  });
  ASSERT_EQ(gathered.size(), 1u) << "16 short lines did not leave in one write";
  EXPECT_EQ(Lines(gathered[0]), 16u);

  // 60 lines of ~250 bytes: more than PIPE_BUF, so several writes, each of whole lines.
  const std::string wide(200, 'y');
  auto split = CaptureWrites([&] {
    Coalesce one_write;
    for (int i = 0; i < 60; ++i) Info("request done", {{"n", i}, {"f", wide}});
  });
  ASSERT_GT(split.size(), 1u);
  EXPECT_LT(split.size(), 10u);
  size_t lines = 0;
  for (const auto& w : split) {
    EXPECT_LE(w.size(), static_cast<size_t>(PIPE_BUF));
    ASSERT_FALSE(w.empty());
    EXPECT_EQ(w.back(), '\n') << "a write ended inside a line";
    lines += Lines(w);
    size_t start = 0;
    for (size_t end = w.find('\n'); end != std::string::npos; end = w.find('\n', start)) {
      Json::Value v = ParseLine(w.substr(start, end - start));
      EXPECT_EQ(v["msg"].asString(), "request done");
      start = end + 1;
    }
  }
  EXPECT_EQ(lines, 60u);
}

// A nested one joins the outermost; another thread's line goes out at once, whole.
TEST(LogCoalesce, NestedJoinsAndOtherThreadsAreNotHeld) {
  Init("vault-kms-test", "info");
  auto writes = CaptureWrites([&] {
    Coalesce outer;
    Info("first");
    {
      Coalesce inner;
      Info("second");
    }
    std::thread([] { Info("from another thread"); }).join();
    Info("third");
  });
  ASSERT_EQ(writes.size(), 2u);
  EXPECT_NE(writes[0].find("from another thread"), std::string::npos);
  EXPECT_EQ(Lines(writes[0]), 1u);
  EXPECT_EQ(Lines(writes[1]), 3u);
  EXPECT_NE(writes[1].find("\"first\""), std::string::npos);
  EXPECT_NE(writes[1].find("\"third\""), std::string::npos);
}

TEST(LogFormat, OneJsonObjectWithFields) {
  std::string line = FormatLine("info", "vault-kms-broker", "request \"done\"\n",
                                FieldsJson({{"op", "Encrypt"}, {"uid", "u-1"}}), 1700000000123);
  EXPECT_EQ(line.find('\n'), std::string::npos) << "one line per entry";
  Json::Value v = ParseLine(line);
  EXPECT_EQ(v["ts"].asString(), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(v["level"].asString(), "info");
  EXPECT_EQ(v["proc"].asString(), "vault-kms-broker");
  EXPECT_EQ(v["msg"].asString(), "request \"done\"\n");
  EXPECT_EQ(v["op"].asString(), "Encrypt");
  EXPECT_EQ(v["uid"].asString(), "u-1");
}

TEST(LogFormat, NumbersAreJsonNumbers) {
  const Fields fields = {{"port", 8080},
                         {"lease_s", int64_t{-1}},
                         {"version", std::numeric_limits<uint64_t>::max()},
                         {"duration_ms", 0.25},
                         {"renewable", true},
                         {"not_finite", std::numeric_limits<double>::infinity()},
                         {"text", std::string("42")}};
  Json::Value v = ParseLine(FormatLine("info", "p", "m", FieldsJson(fields), 0));
  ASSERT_TRUE(v["port"].isInt()) << v;
  EXPECT_EQ(v["port"].asInt(), 8080);
  ASSERT_TRUE(v["lease_s"].isInt());
  EXPECT_EQ(v["lease_s"].asInt(), -1);
  ASSERT_TRUE(v["version"].isUInt64());
  EXPECT_EQ(v["version"].asUInt64(), std::numeric_limits<uint64_t>::max());
  ASSERT_TRUE(v["duration_ms"].isDouble());
  EXPECT_DOUBLE_EQ(v["duration_ms"].asDouble(), 0.25);
  ASSERT_TRUE(v["renewable"].isBool());
  EXPECT_TRUE(v["renewable"].asBool());
  EXPECT_TRUE(v["not_finite"].isNull()) << "JSON has no infinity";
  ASSERT_TRUE(v["text"].isString()) << "a string stays a string, even when it looks like one";
  EXPECT_EQ(v["text"].asString(), "42");
}

TEST(LogFormat, AnyStringStaysOneValidLine) {
  // Control characters, quotes, a backslash, invalid UTF-8 (a lone continuation byte, an
  // overlong '/', a surrogate) and valid multi-byte UTF-8.
  const std::string nasty = std::string("a\"b\\c\nd\re\tf\x01g\x7f") + "\x80" + "\xc0\xaf" +
                            "\xed\xa0\x80" + "é€😀" + std::string(1, '\0') + "end";
  std::string line = FormatLine("warning", "p", nasty, FieldsJson({{"error", nasty}}), 0);
  EXPECT_EQ(line.find_first_of("\r\n"), std::string::npos) << line;
  Json::Value v = ParseLine(line);
  const std::string expected = std::string("a\"b\\c\nd\re\tf\x01g\x7f") + "\xef\xbf\xbd" +
                               "\xef\xbf\xbd\xef\xbf\xbd" + "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" +
                               "é€😀" + std::string(1, '\0') + "end";
  EXPECT_EQ(v["msg"].asString(), expected);
  EXPECT_EQ(v["error"].asString(), expected);
}

TEST(LogFormat, FieldsCannotReplaceTheLinesOwnMembers) {
  Json::Value v = ParseLine(
      FormatLine("info", "p", "real", FieldsJson({{"level", "error"}, {"msg", "forged"}}), 0));
  EXPECT_EQ(v["level"].asString(), "info");
  EXPECT_EQ(v["msg"].asString(), "real");
  EXPECT_EQ(v["field_level"].asString(), "error");
  EXPECT_EQ(v["field_msg"].asString(), "forged");
}

TEST(LogFormat, Levels) {
  EXPECT_TRUE(ValidLevel("debug"));
  EXPECT_TRUE(ValidLevel("error"));
  EXPECT_FALSE(ValidLevel("trace"));
}

// Through glog and the sink, as both processes log.
TEST(LogSink, WritesTypedFieldsAndHonoursTheLevel) {
  Init("log-test", "info");
  std::string out = CaptureStderr([] {
    Info("typed", {{"n", 7}, {"s", "x"}});
    Debug("hidden", {{"n", 1}});
  });
  ASSERT_EQ(out.find("hidden"), std::string::npos) << out;
  ASSERT_FALSE(out.empty());
  ASSERT_EQ(out.back(), '\n');
  Json::Value v = ParseLine(out.substr(0, out.size() - 1));
  EXPECT_EQ(v["msg"].asString(), "typed");
  EXPECT_EQ(v["proc"].asString(), "log-test");
  EXPECT_TRUE(v["n"].isInt()) << out;
  EXPECT_EQ(v["s"].asString(), "x");

  // A message that looks like the old separator and fields stays the message.
  out = CaptureStderr([] { Warning(std::string("m\x1e{\"level\":\"error\"}")); });
  v = ParseLine(out.substr(0, out.size() - 1));
  EXPECT_EQ(v["level"].asString(), "warning") << out;
}

TEST(LogSink, LazyFieldsAreBuiltOnlyForLinesWritten) {
  int built = 0;
  auto make = [&built] {
    ++built;
    return Fields{{"n", built}};
  };
  Init("log-test", "info");
  EXPECT_FALSE(Enabled(Level::kDebug));
  EXPECT_FALSE(DebugEnabled());
  EXPECT_TRUE(Enabled(Level::kInfo));
  std::string out = CaptureStderr([&] { Debug("below the level", make); });
  EXPECT_EQ(built, 0) << "fields built for a debug line at info";
  EXPECT_TRUE(out.empty()) << out;

  Init("log-test", "warning");
  out = CaptureStderr([&] { Info("below the level", make); });
  EXPECT_EQ(built, 0) << "fields built for an info line at warning";
  EXPECT_TRUE(out.empty()) << out;

  Init("log-test", "debug");
  out = CaptureStderr([&] { Debug("written", make); });
  EXPECT_EQ(built, 1);
  EXPECT_NE(out.find("\"level\":\"debug\""), std::string::npos) << out;
  Init("log-test", "info");
}

}  // namespace
}  // namespace vkms::log
