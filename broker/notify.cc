#include "broker/notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "shared/log.h"

namespace vkms::broker {

ServiceNotifier::~ServiceNotifier() {
  if (fd_ >= 0) close(fd_);
}

void ServiceNotifier::Connect() {
  const char* env = getenv("NOTIFY_SOCKET");
  if (env == nullptr || *env == '\0') return;
  std::string path = env;
  unsetenv("NOTIFY_SOCKET");
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if ((path[0] != '/' && path[0] != '@') || path.size() >= sizeof addr.sun_path) {
    log::Warning("NOTIFY_SOCKET is neither an absolute path nor @abstract; not notifying");
    return;
  }
  memcpy(addr.sun_path, path.data(), path.size());
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size() +
                                         (path[0] == '@' ? 0 : 1));
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<struct sockaddr*>(&addr), len) != 0) {
    log::Warning("cannot reach NOTIFY_SOCKET; systemd will not learn that the plugin is ready",
                 {{"path", path}, {"error", strerror(errno)}});
    if (fd >= 0) close(fd);
    return;
  }
  fd_ = fd;
}

void ServiceNotifier::Send(const std::string& message) {
  if (fd_ < 0) return;
  if (send(fd_, message.data(), message.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
    log::Warning("cannot notify systemd", {{"error", strerror(errno)}});
  }
}

void ServiceNotifier::Ready(const std::string& status) {
  Send("READY=1\nSTATUS=" + status + "\nMAINPID=" + std::to_string(getpid()));
}

void ServiceNotifier::Stopping() {
  Send("STOPPING=1\nSTATUS=draining in-flight calls");
}

}  // namespace vkms::broker
