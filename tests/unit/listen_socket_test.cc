// The stale-socket rule: only a socket nobody listens on is ever deleted.
#include "broker/listen_socket.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

namespace vkms::broker {
namespace {

class ListenSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vkms-sock-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/kms.sock";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_, path_;
};

TEST_F(ListenSocketTest, CreatesWithModeAndRemovesItsOwnSocket) {
  std::string err;
  auto s = ListenSocket::Create(path_, 0640, std::nullopt, &err);
  ASSERT_TRUE(s) << err;
  struct stat st;
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  close(s->fd());
  s->Remove();
  EXPECT_NE(lstat(path_.c_str(), &st), 0);
}

TEST_F(ListenSocketTest, StaleSocketIsReplaced) {
  std::string err;
  auto first = ListenSocket::Create(path_, 0660, std::nullopt, &err);
  ASSERT_TRUE(first) << err;
  close(first->fd());  // the file stays, nobody listens: a crash leftover
  auto second = ListenSocket::Create(path_, 0660, std::nullopt, &err);
  ASSERT_TRUE(second) << err;
  close(second->fd());
}

TEST_F(ListenSocketTest, LiveSocketIsRefusedAndKept) {
  std::string err;
  auto live = ListenSocket::Create(path_, 0660, std::nullopt, &err);
  ASSERT_TRUE(live) << err;
  auto second = ListenSocket::Create(path_, 0660, std::nullopt, &err);
  EXPECT_FALSE(second);
  EXPECT_NE(err.find("another process is listening"), std::string::npos) << err;
  struct stat st;
  EXPECT_EQ(lstat(path_.c_str(), &st), 0) << "the live socket must not be deleted";
  close(live->fd());
}

TEST_F(ListenSocketTest, RegularFileIsRefusedAndKept) {
  int fd = open(path_.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "data", 4), 4);
  close(fd);
  std::string err;
  EXPECT_FALSE(ListenSocket::Create(path_, 0660, std::nullopt, &err));
  EXPECT_NE(err.find("not a socket"), std::string::npos) << err;
  struct stat st;
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 4);
}

TEST_F(ListenSocketTest, RemoveLeavesANewerInstancesSocketAlone) {
  std::string err;
  auto old = ListenSocket::Create(path_, 0660, std::nullopt, &err);
  ASSERT_TRUE(old) << err;
  close(old->fd());
  auto newer = ListenSocket::Create(path_, 0660, std::nullopt, &err);
  ASSERT_TRUE(newer) << err;
  old->Remove();  // the old instance exits late
  struct stat st;
  EXPECT_EQ(lstat(path_.c_str(), &st), 0);
  close(newer->fd());
}

}  // namespace
}  // namespace vkms::broker
