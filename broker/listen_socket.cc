#include "broker/listen_socket.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "shared/log.h"

namespace vkms::broker {
namespace {

socklen_t FillAddr(const std::string& path, struct sockaddr_un* addr) {
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  memcpy(addr->sun_path, path.data(), path.size());
  return static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size() +
                                (path[0] == '\0' ? 0 : 1));
}

// Decides what to do with whatever is already at the path. Returns false (with *error) when
// the path must be left alone.
bool ClearStale(const std::string& path, std::string* error) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return true;
    *error = "cannot inspect " + path + ": " + strerror(errno);
    return false;
  }
  if (!S_ISSOCK(st.st_mode)) {
    *error = path + " exists and is not a socket; refusing to delete it";
    return false;
  }
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) {
    *error = std::string("socket: ") + strerror(errno);
    return false;
  }
  struct sockaddr_un addr;
  socklen_t len = FillAddr(path, &addr);
  int rc = connect(probe, reinterpret_cast<struct sockaddr*>(&addr), len);
  int err = errno;
  close(probe);
  if (rc == 0) {
    *error = "another process is listening on " + path + "; refusing to replace it";
    return false;
  }
  if (err != ECONNREFUSED) {
    *error =
        "cannot tell whether " + path + " is in use (" + strerror(err) + "); refusing to delete it";
    return false;
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    *error = "cannot remove stale socket " + path + ": " + strerror(errno);
    return false;
  }
  log::Warning("removed a stale socket left by an earlier run", {{"path", path}});
  return true;
}

}  // namespace

std::optional<ListenSocket> ListenSocket::Create(const std::string& path, mode_t mode,
                                                 std::optional<gid_t> gid, std::string* error) {
  ListenSocket s;
  s.path_ = path;
  s.abstract_ = !path.empty() && path[0] == '\0';
  s.display_ = s.abstract_ ? "@" + path.substr(1) : path;
  if (!s.abstract_ && !ClearStale(path, error)) return std::nullopt;

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + strerror(errno);
    return std::nullopt;
  }
  struct sockaddr_un addr;
  socklen_t len = FillAddr(path, &addr);
  // Bind with a umask that leaves the file inaccessible until chmod sets the final mode, so
  // no one can connect in between.
  mode_t old_umask = umask(0777);
  int rc = bind(fd, reinterpret_cast<struct sockaddr*>(&addr), len);
  int bind_errno = errno;
  umask(old_umask);
  if (rc != 0) {
    *error = "cannot bind " + s.display_ + ": " + strerror(bind_errno);
    close(fd);
    return std::nullopt;
  }
  if (!s.abstract_) {
    struct stat st;
    if (gid && chown(path.c_str(), static_cast<uid_t>(-1), *gid) != 0) {
      *error = "cannot set group of " + path + ": " + strerror(errno);
    } else if (chmod(path.c_str(), mode) != 0) {
      *error = "cannot set mode of " + path + ": " + strerror(errno);
    } else if (lstat(path.c_str(), &st) != 0) {
      *error = "cannot stat " + path + ": " + strerror(errno);
    } else {
      s.dev_ = st.st_dev;
      s.ino_ = st.st_ino;
      s.ctime_ = st.st_ctim;
    }
    if (!error->empty()) {
      unlink(path.c_str());
      close(fd);
      return std::nullopt;
    }
  }
  if (listen(fd, 128) != 0) {
    *error = "cannot listen on " + s.display_ + ": " + strerror(errno);
    if (!s.abstract_) unlink(path.c_str());
    close(fd);
    return std::nullopt;
  }
  s.fd_ = fd;
  return s;
}

void ListenSocket::Remove() {
  if (abstract_ || path_.empty()) return;
  struct stat st;
  if (lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_ &&
      st.st_ctim.tv_sec == ctime_.tv_sec && st.st_ctim.tv_nsec == ctime_.tv_nsec) {
    unlink(path_.c_str());
  }
  path_.clear();
}

}  // namespace vkms::broker
