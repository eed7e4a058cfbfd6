// Credential files as the broker reads them (ReadSecretFile): what is at the path must be a
// regular file of the broker's, reached without following a symlink and without blocking.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "shared/log.h"
#include "shared/secret.h"

namespace vkms {
namespace {

class SecretFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vkms-secret-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& content, mode_t mode) {
    std::string path = dir_ + "/" + name;
    int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, mode);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    close(fd);
    chmod(path.c_str(), mode);
    return path;
  }

  std::string dir_;
};

TEST_F(SecretFileTest, ReadsATrimmedRegularFile) {
  std::string path = Write("secret-id", "  s3cr3t-value\n", 0400);
  SecretString s;
  std::string err;
  ASSERT_TRUE(ReadSecretFile(path, &s, &err)) << err;
  EXPECT_EQ(s.view(), "s3cr3t-value");
}

// Whoever can change a symlink would choose what the broker reads and sends to Vault.
TEST_F(SecretFileTest, SymlinkIsRefusedNotFollowed) {
  std::string target = Write("elsewhere", "not-the-secret", 0400);
  std::string path = dir_ + "/secret-id";
  ASSERT_EQ(symlink(target.c_str(), path.c_str()), 0);
  SecretString s;
  std::string err;
  EXPECT_FALSE(ReadSecretFile(path, &s, &err));
  EXPECT_NE(err.find("symbolic link"), std::string::npos) << err;
  EXPECT_TRUE(s.empty());
}

// A FIFO at the path would block open() until a writer came, holding up the login and with it
// shutdown. It must be refused at once. Run in a child with a deadline so that a regression
// fails the test instead of hanging the suite.
TEST_F(SecretFileTest, FifoIsRefusedWithoutBlocking) {
  std::string path = dir_ + "/secret-id";
  ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(3);  // SIGALRM kills the child if open() blocks
    SecretString s;
    std::string err;
    bool ok = ReadSecretFile(path, &s, &err);
    _exit(!ok && err.find("is not a regular file") != std::string::npos ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_FALSE(WIFSIGNALED(status))
      << "ReadSecretFile blocked on a FIFO (killed by signal " << WTERMSIG(status) << ")";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "a FIFO was not refused as a non-regular file";
}

TEST_F(SecretFileTest, DirectoryAndDeviceAreRefused) {
  SecretString s;
  std::string err;
  EXPECT_FALSE(ReadSecretFile(dir_, &s, &err));
  EXPECT_FALSE(ReadSecretFile("/dev/zero", &s, &err));
  EXPECT_NE(err.find("is not a regular file"), std::string::npos) << err;
}

// Group- or other-readable credentials still work (refusing would stop a running cluster at its
// next login) but are reported once, with the fix; `check` fails them.
TEST_F(SecretFileTest, GroupOrOtherReadableFileIsWarnedAboutOnce) {
  // One file group can read, one only other can: each is reported, once.
  const std::string group = Write("secret-id", "value", 0640);
  const std::string other = Write("role-id", "value", 0604);
  std::string log_path = dir_ + "/stderr";
  int saved = dup(STDERR_FILENO);
  int capture = open(log_path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(capture, 0);
  log::Init("secret-file-test", "info");
  dup2(capture, STDERR_FILENO);
  SecretString s;
  std::string err;
  bool read_all = true;
  for (const std::string& path : {group, group, other, other}) {
    read_all = ReadSecretFile(path, &s, &err) && read_all;
  }
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(capture);
  EXPECT_TRUE(read_all) << err;
  std::string out;
  {
    FILE* f = fopen(log_path.c_str(), "r");
    ASSERT_NE(f, nullptr);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    fclose(f);
  }
  for (const std::string& path : {group, other}) {
    // The path ends the message: no other path is a match.
    const std::string warning = "can be read by group or other; fix: chmod 0400 " + path + "\"";
    size_t at = out.find(warning);
    EXPECT_NE(at, std::string::npos) << path << " was not reported: " << out;
    EXPECT_EQ(out.find(warning, at + 1), std::string::npos) << "warned twice: " << out;
  }
  EXPECT_EQ(out.find("value\""), std::string::npos) << "the content was logged";
}

}  // namespace
}  // namespace vkms
