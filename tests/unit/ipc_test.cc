// The IPC codec as the broker sees it: every malformed frame is a protocol error, never a
// crash and never a partially trusted message.
#include "shared/ipc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace vkms::ipc {
namespace {

std::chrono::steady_clock::time_point Later() {
  return std::chrono::steady_clock::now() + std::chrono::seconds(1);
}

class IpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds_), 0);
  }
  void TearDown() override {
    close(fds_[0]);
    close(fds_[1]);
  }
  void SendRaw(const std::string& bytes) {
    ASSERT_EQ(send(fds_[0], bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
  }
  int fds_[2];
};

TEST_F(IpcTest, RoundTripsARequest) {
  Request req;
  req.set_id(7);
  req.set_timeout_ms(3000);
  req.set_uid("abc");
  req.mutable_encrypt()->set_plaintext(std::string(32, 'x'));
  std::string err;
  ASSERT_TRUE(Send(fds_[0], req, Later(), &err)) << err;
  Request got;
  ASSERT_EQ(Recv(fds_[1], &got, &err), RecvStatus::kOk) << err;
  EXPECT_EQ(got.id(), 7u);
  EXPECT_EQ(got.timeout_ms(), 3000u);
  EXPECT_EQ(got.encrypt().plaintext(), std::string(32, 'x'));
}

TEST_F(IpcTest, OversizeFrameIsAProtocolError) {
  SendRaw(std::string(kMaxFrame + 100, '\x08'));
  Request got;
  std::string err;
  EXPECT_EQ(Recv(fds_[1], &got, &err), RecvStatus::kProtocolError);
  EXPECT_NE(err.find("exceeds"), std::string::npos) << err;
}

TEST_F(IpcTest, SenderRefusesOversizeFrames) {
  Request req;
  req.set_id(1);
  req.mutable_encrypt()->set_plaintext(std::string(kMaxFrame, 'a'));
  std::string err;
  EXPECT_FALSE(Send(fds_[0], req, Later(), &err));
}

TEST_F(IpcTest, GarbageIsAProtocolError) {
  SendRaw("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff");
  Request got;
  std::string err;
  EXPECT_EQ(Recv(fds_[1], &got, &err), RecvStatus::kProtocolError);
}

TEST_F(IpcTest, TruncatedFrameIsAProtocolError) {
  Request req;
  req.set_id(9);
  req.mutable_decrypt()->set_ciphertext(std::string(100, 'c'));
  std::string bytes = req.SerializeAsString();
  SendRaw(bytes.substr(0, bytes.size() - 10));
  Request got;
  std::string err;
  EXPECT_EQ(Recv(fds_[1], &got, &err), RecvStatus::kProtocolError);
}

TEST_F(IpcTest, UnknownFieldIsAProtocolError) {
  Request req;
  req.set_id(5);
  req.mutable_status();
  std::string bytes = req.SerializeAsString();
  bytes += std::string("\xf8\x06\x01", 3);  // field 111, varint 1: not in the schema
  SendRaw(bytes);
  Request got;
  std::string err;
  EXPECT_EQ(Recv(fds_[1], &got, &err), RecvStatus::kProtocolError);
  EXPECT_NE(err.find("unknown"), std::string::npos) << err;
}

TEST_F(IpcTest, UnknownFieldNestedInsideAnOperationIsAProtocolError) {
  Request req;
  req.set_id(5);
  std::string inner = std::string("\x0a\x01x", 3) + std::string("\x10\x05", 2);  // field 2 unknown
  std::string bytes = req.SerializeAsString();
  bytes += std::string("\x52", 1) + static_cast<char>(inner.size()) + inner;  // field 10 (encrypt)
  SendRaw(bytes);
  Request got;
  std::string err;
  EXPECT_EQ(Recv(fds_[1], &got, &err), RecvStatus::kProtocolError);
}

int CountOpenFds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n;
}

TEST_F(IpcTest, PassedDescriptorsAreClosedAndRefused) {
  int pipefd[2];
  // Non-blocking: a regression that leaks the passed write end must fail here, not hang.
  ASSERT_EQ(pipe2(pipefd, O_NONBLOCK), 0);
  Request req;
  req.set_id(1);
  req.mutable_status();
  std::string bytes = req.SerializeAsString();
  struct iovec iov = {&bytes[0], bytes.size()};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &pipefd[1], sizeof(int));
  ASSERT_GT(sendmsg(fds_[0], &mh, 0), 0);
  close(pipefd[1]);
  int before = CountOpenFds();
  Request got;
  std::string err;
  EXPECT_EQ(Recv(fds_[1], &got, &err), RecvStatus::kProtocolError);
  EXPECT_EQ(CountOpenFds(), before) << "a descriptor passed over the channel was leaked";
  // The only write end is gone, so the read end sees EOF (not EAGAIN).
  char ch;
  EXPECT_EQ(read(pipefd[0], &ch, 1), 0) << strerror(errno);
  close(pipefd[0]);
}

TEST_F(IpcTest, PeerCloseIsReportedAsClosed) {
  close(fds_[0]);
  fds_[0] = open("/dev/null", O_RDONLY);
  Request got;
  std::string err;
  EXPECT_EQ(Recv(fds_[1], &got, &err), RecvStatus::kClosed);
}

TEST(IpcDecodeTest, EmptyFrameIsAProtocolError) {
  Request got;
  std::string err;
  EXPECT_EQ(Decode("", 0, &got, &err), RecvStatus::kProtocolError);
}

}  // namespace
}  // namespace vkms::ipc
