// SpawnFrontend's exec boundary on its own. The boundary test (CompromisedFrontendTest) sees
// the frontend start with fds 0-5 only, but there every other broker fd is close-on-exec anyway,
// so the child's own close_range is never put to the test. Here the "broker" (this process)
// holds a descriptor without close-on-exec, as a library might open one, and the child must
// still not receive it.
#include "broker/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <sstream>
#include <string>

namespace vkms::broker {
namespace {

// Everything the child writes to its stdout, until it closes it.
std::string ReadUntilEof(int fd) {
  std::string out;
  char buf[512];
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 10000) != 1) break;  // the child hung: what came so far fails the test
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      break;
    }
  }
  return out;
}

TEST(SpawnFrontend, NoDescriptorButTheHandedOnesCrossesExecEvenWithoutCloexec) {
  // Deliberately not close-on-exec, and above the numbers the child assigns (0-5).
  int opened = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(opened, 0);
  int leaked = fcntl(opened, F_DUPFD, 20);
  close(opened);
  ASSERT_GE(leaked, 20);
  int listener = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int metrics = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(listener, 0);
  ASSERT_GE(metrics, 0);
  FrontendSpec spec;
  // The shell lists its own descriptors (echo and cd are built in: the environment is empty).
  spec.path = "/bin/sh";
  spec.args = {"-c", "cd /proc/self/fd && echo *"};
  spec.listen_fd = listener;
  spec.metrics_fd = metrics;
  FrontendProcess child;
  std::string err;
  ASSERT_TRUE(SpawnFrontend(spec, &child, &err)) << err;
  const std::string listing = ReadUntilEof(child.log_fd);
  int status = 0;
  ASSERT_EQ(waitpid(child.pid, &status, 0), child.pid);
  close(child.log_fd);
  close(child.ipc_fd);
  close(listener);
  close(metrics);
  close(leaked);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << listing;

  std::set<int> fds;
  std::istringstream in(listing);
  for (int fd; in >> fd;) fds.insert(fd);
  for (int fd = 0; fd <= 5; ++fd) EXPECT_EQ(fds.count(fd), 1u) << "fd " << fd << ": " << listing;
  EXPECT_EQ(fds.count(leaked), 0u) << "fd " << leaked << " crossed exec: " << listing;
  // 0-5 and the directory the shell reads to list them: nothing else.
  EXPECT_LE(fds.size(), 7u) << listing;
}

}  // namespace
}  // namespace vkms::broker
