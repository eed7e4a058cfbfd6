// The KMS socket as root creates it: the stale-socket rule (only a socket nobody listens on is
// ever deleted), the directory rule (root works only where no other uid can write), and the
// proof that nothing is done through a path another thread can swap: attacker threads replace
// the socket by symlinks and hard links to a file during hundreds of creations, and the file
// is never touched; an observer never sees the socket with any mode or group but its final one.
#include "broker/listen_socket.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

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

  // A group the socket can be given: another one than ours when root, else our own.
  static gid_t SocketGroup() { return geteuid() == 0 ? 65533 : getegid(); }

  std::string dir_, path_;
};

TEST_F(ListenSocketTest, CreatesWithModeAndGroupAndRemovesItsOwnSocket) {
  std::string err;
  auto s = ListenSocket::Create(path_, 0640, SocketGroup(), &err);
  ASSERT_TRUE(s) << err;
  struct stat st;
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_EQ(st.st_gid, SocketGroup());
  close(s->fd());
  EXPECT_TRUE(s->Remove());
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

// A symlink at the socket path pointing at a stale socket elsewhere: neither followed nor
// deleted.
TEST_F(ListenSocketTest, SymlinkAtThePathIsRefusedAndKept) {
  std::string err;
  auto elsewhere = ListenSocket::Create(dir_ + "/other.sock", 0660, std::nullopt, &err);
  ASSERT_TRUE(elsewhere) << err;
  close(elsewhere->fd());  // stale: connect() through the link would say ECONNREFUSED
  ASSERT_EQ(symlink((dir_ + "/other.sock").c_str(), path_.c_str()), 0);
  EXPECT_FALSE(ListenSocket::Create(path_, 0660, std::nullopt, &err));
  EXPECT_NE(err.find("not a socket"), std::string::npos) << err;
  struct stat st;
  ASSERT_EQ(lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the symlink must be left alone";
  EXPECT_EQ(lstat((dir_ + "/other.sock").c_str(), &st), 0) << "its target must be left alone";
}

TEST_F(ListenSocketTest, RemoveLeavesANewerInstancesSocketAlone) {
  std::string err;
  auto old = ListenSocket::Create(path_, 0660, std::nullopt, &err);
  ASSERT_TRUE(old) << err;
  close(old->fd());
  auto newer = ListenSocket::Create(path_, 0660, std::nullopt, &err);
  ASSERT_TRUE(newer) << err;
  EXPECT_TRUE(old->Remove());  // the old instance exits late
  struct stat st;
  EXPECT_EQ(lstat(path_.c_str(), &st), 0);
  close(newer->fd());
}

// The frontend holds a copy of the listening socket; once the broker stops listening, no
// one can connect through either copy, even with the file still there.
TEST_F(ListenSocketTest, StopListeningRefusesConnectionsForEveryHolder) {
  std::string err;
  auto s = ListenSocket::Create(path_, 0660, std::nullopt, &err);
  ASSERT_TRUE(s) << err;
  int frontend_copy = dup(s->fd());
  ASSERT_GE(frontend_copy, 0);
  auto connect_errno = [&] {
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {};
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
    int rc = connect(c, reinterpret_cast<struct sockaddr*>(&a), sizeof a);
    int e = rc == 0 ? 0 : errno;
    close(c);
    return e;
  };
  EXPECT_EQ(connect_errno(), 0);
  s->StopListening();
  EXPECT_EQ(s->fd(), -1);
  EXPECT_EQ(connect_errno(), ECONNREFUSED);
  close(frontend_copy);
}

TEST_F(ListenSocketTest, DirectoryWritableByOthersIsRefusedWithTheFix) {
  const std::string run = dir_ + "/run";
  ASSERT_EQ(mkdir(run.c_str(), 0755), 0);
  ASSERT_EQ(chmod(run.c_str(), 0775), 0);
  std::string err;
  EXPECT_FALSE(ListenSocket::Create(run + "/kms.sock", 0660, std::nullopt, &err));
  EXPECT_NE(err.find("writable by group or other (mode 0775)"), std::string::npos) << err;
  EXPECT_NE(err.find("chown root:root " + run + " && chmod 0755 " + run), std::string::npos) << err;
  EXPECT_EQ(CheckSocketDirectory(run), err);
  struct stat st;
  EXPECT_NE(lstat((run + "/kms.sock").c_str(), &st), 0) << "nothing is created there";
  ASSERT_EQ(chmod(run.c_str(), 0755), 0);
  EXPECT_EQ(CheckSocketDirectory(run), "");
}

TEST_F(ListenSocketTest, DirectoryOwnedByAnotherUserIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the directory away";
  const std::string run = dir_ + "/run";
  ASSERT_EQ(mkdir(run.c_str(), 0755), 0);
  ASSERT_EQ(chown(run.c_str(), 65532, 65532), 0);  // the old recommended layout's owner
  std::string err;
  EXPECT_FALSE(ListenSocket::Create(run + "/kms.sock", 0660, std::nullopt, &err));
  EXPECT_NE(err.find("belongs to uid 65532"), std::string::npos) << err;

  // Root's own directory below one another uid owns is no safer: that uid can rename it away
  // and put its own in its place.
  const std::string safe = run + "/safe";
  ASSERT_EQ(mkdir(safe.c_str(), 0755), 0);
  err.clear();
  EXPECT_FALSE(ListenSocket::Create(safe + "/kms.sock", 0660, std::nullopt, &err));
  EXPECT_NE(err.find("(above the socket directory " + safe + ") belongs to uid 65532"),
            std::string::npos)
      << err;
}

TEST_F(ListenSocketTest, SymlinkedDirectoryAndUnsafeAncestorsAreRefused) {
  const std::string real = dir_ + "/real";
  ASSERT_EQ(mkdir(real.c_str(), 0755), 0);
  ASSERT_EQ(symlink(real.c_str(), (dir_ + "/link").c_str()), 0);
  std::string err;
  EXPECT_FALSE(ListenSocket::Create(dir_ + "/link/kms.sock", 0660, std::nullopt, &err));
  EXPECT_NE(err.find("is a symbolic link or not a directory"), std::string::npos) << err;

  // A safe directory below a group-writable one (without the sticky bit) is still unsafe:
  // whoever writes the parent can rename the socket directory away and put another there.
  ASSERT_EQ(mkdir((real + "/run").c_str(), 0755), 0);
  ASSERT_EQ(chmod(real.c_str(), 0770), 0);
  EXPECT_NE(CheckSocketDirectory(real + "/run").find("without the sticky bit (mode 0770)"),
            std::string::npos)
      << CheckSocketDirectory(real + "/run");
  ASSERT_EQ(chmod(real.c_str(), 01777), 0);  // sticky, like /tmp (an ancestor of every test)
  EXPECT_EQ(CheckSocketDirectory(real + "/run"), "");
}

// The attack of the review: whoever can write the socket's directory swaps the fresh socket
// for a symlink or a hard link to a file between bind and any later step. Root must never
// change that file. Here the attacker is a thread with root's own rights (the directory rule
// cannot stop it), so what is proved is that nothing after bind goes through the path.
TEST_F(ListenSocketTest, RacingSymlinkAndHardLinkSwapsNeverTouchTheTarget) {
  const std::string target = dir_ + "/target";
  // Mode and (as root) group differ from the socket's 0660 and SocketGroup(), so a chmod or
  // chown that followed a link would show. (Not ctime: linking the file changes it anyway.)
  int fd = open(target.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  close(fd);
  struct stat before;
  ASSERT_EQ(stat(target.c_str(), &before), 0);

  std::atomic<bool> stop{false};
  std::atomic<int> swaps{0};
  std::thread attacker([&] {
    const std::string aside = dir_ + "/aside";
    for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      // Move whatever was just created away and put a link to the target in its place.
      if (rename(path_.c_str(), aside.c_str()) == 0) {
        int rc = (i % 2 == 0) ? symlink(target.c_str(), path_.c_str())
                              : link(target.c_str(), path_.c_str());
        if (rc == 0) swaps.fetch_add(1, std::memory_order_relaxed);
        unlink(aside.c_str());
      }
    }
  });
  int created = 0;
  for (int i = 0; i < 400; ++i) {
    unlink(path_.c_str());  // a leftover link would otherwise refuse every later start
    std::string err;
    auto s = ListenSocket::Create(path_, 0660, SocketGroup(), &err);
    if (s) {
      ++created;
      s->StopListening();
      s->Remove();
    }
  }
  stop = true;
  attacker.join();

  struct stat after;
  ASSERT_EQ(stat(target.c_str(), &after), 0);
  EXPECT_GT(swaps.load(), 0) << "the attacker never got a swap in: the race was not exercised";
  EXPECT_EQ(after.st_mode, before.st_mode) << "root changed the target's mode";
  EXPECT_EQ(after.st_gid, before.st_gid) << "root changed the target's group";
  EXPECT_EQ(after.st_uid, before.st_uid);
  RecordProperty("created", created);
  RecordProperty("swaps", swaps.load());
}

// From its first instant the socket has its final mode and group: an observer polling the
// path during hundreds of creations never sees anything else.
TEST_F(ListenSocketTest, SocketNeverExistsWithAnotherModeOrGroup) {
  std::atomic<bool> stop{false};
  std::atomic<int> seen{0}, wrong{0};
  std::atomic<unsigned> wrong_mode{0}, wrong_gid{0};
  const gid_t group = SocketGroup();
  std::thread observer([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      struct stat st;
      if (lstat(path_.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
      seen.fetch_add(1, std::memory_order_relaxed);
      if ((st.st_mode & 07777) != 0660 || st.st_gid != group) {
        wrong.fetch_add(1, std::memory_order_relaxed);
        wrong_mode = st.st_mode & 07777;
        wrong_gid = st.st_gid;
      }
    }
  });
  for (int i = 0; i < 1000; ++i) {
    std::string err;
    auto s = ListenSocket::Create(path_, 0660, group, &err);
    ASSERT_TRUE(s) << err;
    close(s->fd());
    ASSERT_TRUE(s->Remove());
  }
  stop = true;
  observer.join();
  EXPECT_GT(seen.load(), 0) << "the observer never saw a socket: nothing was proved";
  EXPECT_EQ(wrong.load(), 0) << "seen with mode 0" << std::oct << wrong_mode.load() << std::dec
                             << " and gid " << wrong_gid.load();
}

}  // namespace
}  // namespace vkms::broker
