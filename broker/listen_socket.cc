#include "broker/listen_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>

#include "shared/listen_address.h"
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

std::string Octal(mode_t mode) {
  char buf[8];
  snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// What an fd refers to, for messages only ("an ancestor of DIR" when /proc is unavailable).
std::string NameOf(int fd, const std::string& fallback) {
  char buf[PATH_MAX];
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = readlink(link.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : fallback;
}

// bind() and connect() take paths: for the moment of the call the working directory is the
// socket's directory (held as an fd), so the name is resolved in exactly that directory.
class InDirectory {
 public:
  explicit InDirectory(int dir_fd) {
    saved_ = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    ok_ = fchdir(dir_fd) == 0;
  }
  ~InDirectory() {
    if (saved_ >= 0) {
      (void)!fchdir(saved_);
      close(saved_);
    } else {
      (void)!chdir("/");
    }
  }
  InDirectory(const InDirectory&) = delete;
  InDirectory& operator=(const InDirectory&) = delete;
  bool ok() const { return ok_; }

 private:
  int saved_ = -1;
  bool ok_ = false;
};

std::string FixFor(const std::string& dir) {
  return "fix: chown root:root " + dir + " && chmod 0755 " + dir;
}

// The rules of CheckSocketDirectory, on an open directory and its real ancestors (reached
// through "..", so a symlink anywhere in the configured path cannot hide an unsafe one).
std::string CheckDirectoryFd(int dir_fd, const std::string& dir) {
  const uid_t me = geteuid();
  struct stat st;
  if (fstat(dir_fd, &st) != 0) return "cannot inspect " + dir + ": " + strerror(errno);
  if (!S_ISDIR(st.st_mode)) return dir + " is not a directory";
  if (st.st_uid != 0 && st.st_uid != me) {
    return "socket directory " + dir + " belongs to uid " + std::to_string(st.st_uid) +
           ", which could replace the socket root creates there; " + FixFor(dir);
  }
  if (st.st_mode & 022) {
    return "socket directory " + dir + " is writable by group or other (mode " + Octal(st.st_mode) +
           "), who could replace the socket root creates there; " + FixFor(dir);
  }
  int cur = fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (cur < 0) return std::string("dup: ") + strerror(errno);
  std::string problem;
  struct stat cur_st = st;
  for (int depth = 0; depth < 256 && problem.empty(); ++depth) {
    int parent = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct stat pst;
    if (parent < 0 || fstat(parent, &pst) != 0) {
      problem = "cannot inspect the directories above " + dir + ": " + strerror(errno);
      if (parent >= 0) close(parent);
      break;
    }
    if (pst.st_dev == cur_st.st_dev && pst.st_ino == cur_st.st_ino) {
      close(parent);  // "/" is its own parent
      break;
    }
    std::string name = NameOf(parent, "a directory above " + dir);
    if (pst.st_uid != 0 && pst.st_uid != me) {
      problem = name + " (above the socket directory " + dir + ") belongs to uid " +
                std::to_string(pst.st_uid) + ", which could replace the socket directory";
    } else if ((pst.st_mode & 022) && !(pst.st_mode & S_ISVTX)) {
      problem = name + " (above the socket directory " + dir +
                ") is writable by group or other without the sticky bit (mode " +
                Octal(pst.st_mode) + "), who could replace the socket directory";
    }
    close(cur);
    cur = parent;
    cur_st = pst;
  }
  close(cur);
  return problem;
}

int OpenDirectory(const std::string& dir, std::string* error) {
  // O_NOFOLLOW: the directory itself must not be a symlink (O_DIRECTORY then gives ENOTDIR).
  int fd = open(dir.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOTDIR || errno == ELOOP) {
      *error = "socket directory " + dir + " is a symbolic link or not a directory";
    } else {
      *error = "cannot open socket directory " + dir + ": " + strerror(errno);
    }
  }
  return fd;
}

// Decides what to do with whatever is already at dir/name. Returns false (with *error) when
// it must be left alone.
bool ClearStale(int dir_fd, const std::string& name, const std::string& path, std::string* error) {
  struct stat st;
  if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
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
  socklen_t len = FillAddr(name, &addr);
  int rc = -1, err = 0;
  {
    InDirectory in(dir_fd);
    if (in.ok()) {
      rc = connect(probe, reinterpret_cast<struct sockaddr*>(&addr), len);
      err = errno;
    } else {
      err = errno;
    }
  }
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
  struct stat again;
  if (fstatat(dir_fd, name.c_str(), &again, AT_SYMLINK_NOFOLLOW) != 0 ||
      again.st_dev != st.st_dev || again.st_ino != st.st_ino) {
    *error = path + " changed while it was being checked; refusing to delete it";
    return false;
  }
  if (unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) {
    *error = "cannot remove stale socket " + path + ": " + strerror(errno);
    return false;
  }
  log::Warning("removed a stale socket left by an earlier run", {{"path", path}});
  return true;
}

}  // namespace

int ListenMetrics(const std::string& host_port, std::string* error) {
  ListenAddress addr;
  std::string why;
  if (!ParseListenAddress(host_port, &addr, &why)) {
    *error = "cannot listen on " + host_port + ": " + why;
    return -1;
  }
  const std::string port = std::to_string(addr.port);
  struct addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  struct addrinfo* res = nullptr;
  int rc = getaddrinfo(addr.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    *error = "cannot listen on " + host_port + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 16) != 0) {
    *error = "cannot listen on " + host_port + ": " + strerror(errno);
    if (fd >= 0) close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

std::string CheckSocketDirectory(const std::string& dir) {
  std::string error;
  int fd = OpenDirectory(dir, &error);
  if (fd < 0) return error;
  std::string problem = CheckDirectoryFd(fd, dir);
  close(fd);
  return problem;
}

ListenSocket::ListenSocket(ListenSocket&& o) noexcept {
  *this = std::move(o);
}

ListenSocket& ListenSocket::operator=(ListenSocket&& o) noexcept {
  if (this != &o) {
    if (dir_fd_ >= 0) close(dir_fd_);
    fd_ = o.fd_;
    dir_fd_ = o.dir_fd_;
    name_ = std::move(o.name_);
    display_ = std::move(o.display_);
    abstract_ = o.abstract_;
    dev_ = o.dev_;
    ino_ = o.ino_;
    ctime_ = o.ctime_;
    o.fd_ = -1;
    o.dir_fd_ = -1;
    o.name_.clear();
  }
  return *this;
}

ListenSocket::~ListenSocket() {
  if (dir_fd_ >= 0) close(dir_fd_);
}

std::optional<ListenSocket> ListenSocket::Create(const std::string& path, mode_t mode,
                                                 std::optional<gid_t> gid, std::string* error) {
  ListenSocket s;
  s.abstract_ = !path.empty() && path[0] == '\0';
  s.display_ = s.abstract_ ? "@" + path.substr(1) : path;
  std::string bind_name = path;
  if (!s.abstract_) {
    size_t slash = path.rfind('/');
    if (path.empty() || path[0] != '/' || slash == std::string::npos) {
      *error = "socket path " + path + " is not absolute";
      return std::nullopt;
    }
    std::string dir = slash == 0 ? "/" : path.substr(0, slash);
    s.name_ = path.substr(slash + 1);
    if (s.name_.empty() || s.name_ == "." || s.name_ == "..") {
      *error = "socket path " + path + " does not name a file";
      return std::nullopt;
    }
    s.dir_fd_ = OpenDirectory(dir, error);
    if (s.dir_fd_ < 0) return std::nullopt;
    *error = CheckDirectoryFd(s.dir_fd_, dir);
    if (!error->empty()) return std::nullopt;
    if (!ClearStale(s.dir_fd_, s.name_, path, error)) return std::nullopt;
    bind_name = s.name_;
  }

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + strerror(errno);
    return std::nullopt;
  }
  struct sockaddr_un addr;
  socklen_t len = FillAddr(bind_name, &addr);
  // The file is born with its final mode (the umask) and, as root, its final group (the
  // fsgid): nothing is changed by path afterwards, and no one can connect with other
  // permissions in between.
  mode_t old_umask = umask(~mode & 0777);
  int old_fsgid = -1;
  if (gid && !s.abstract_) old_fsgid = setfsgid(*gid);
  int rc = -1, bind_errno = 0;
  if (s.abstract_) {
    rc = bind(fd, reinterpret_cast<struct sockaddr*>(&addr), len);
    bind_errno = errno;
  } else {
    InDirectory in(s.dir_fd_);
    rc = in.ok() ? bind(fd, reinterpret_cast<struct sockaddr*>(&addr), len) : -1;
    bind_errno = errno;
  }
  if (old_fsgid >= 0) setfsgid(static_cast<gid_t>(old_fsgid));
  umask(old_umask);
  if (rc != 0) {
    *error = "cannot bind " + s.display_ + ": " + strerror(bind_errno);
    close(fd);
    return std::nullopt;
  }
  if (!s.abstract_) {
    // Verify what is at the name now is the socket just bound (a socket owned by us), through
    // an fd of that very inode; a group change, if one is still needed, goes to that inode.
    int pfd = openat(s.dir_fd_, s.name_.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    bool ours = pfd >= 0 && fstat(pfd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_uid == geteuid();
    if (!ours) {
      *error = s.display_ +
               " was replaced while it was being created (by someone who can write its "
               "directory); refusing to continue";
    } else if (gid && st.st_gid != *gid &&
               (fchownat(pfd, "", static_cast<uid_t>(-1), *gid, AT_EMPTY_PATH) != 0 ||
                fstat(pfd, &st) != 0)) {
      *error = "cannot set group of " + s.display_ + ": " + strerror(errno);
    } else if ((st.st_mode & 07777) != (mode & 0777)) {
      *error = s.display_ + " was created with mode " + Octal(st.st_mode) + " instead of " +
               Octal(mode) + " (a default ACL on its directory overrides the umask); remove it: " +
               "setfacl -k <directory>";
    } else {
      s.dev_ = st.st_dev;
      s.ino_ = st.st_ino;
      s.ctime_ = st.st_ctim;
    }
    if (pfd >= 0) close(pfd);
    if (!error->empty()) {
      // Only a file this process made is removed; a replacement is left to its owner.
      if (ours) unlinkat(s.dir_fd_, s.name_.c_str(), 0);
      close(fd);
      return std::nullopt;
    }
  }
  if (listen(fd, 128) != 0) {
    *error = "cannot listen on " + s.display_ + ": " + strerror(errno);
    if (!s.abstract_) s.Remove();
    close(fd);
    return std::nullopt;
  }
  s.fd_ = fd;
  return s;
}

void ListenSocket::StopListening() {
  if (fd_ < 0) return;
  shutdown(fd_, SHUT_RDWR);
  close(fd_);
  fd_ = -1;
}

bool ListenSocket::Remove(std::string* why) {
  if (abstract_ || dir_fd_ < 0 || name_.empty()) return true;
  struct stat st;
  if (fstatat(dir_fd_, name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) {
      name_.clear();
      return true;
    }
    if (why) *why = std::string("cannot inspect the socket: ") + strerror(errno);
    return false;
  }
  if (st.st_dev != dev_ || st.st_ino != ino_ || st.st_ctim.tv_sec != ctime_.tv_sec ||
      st.st_ctim.tv_nsec != ctime_.tv_nsec) {
    name_.clear();  // a newer instance's socket: not ours to remove
    return true;
  }
  if (unlinkat(dir_fd_, name_.c_str(), 0) != 0) {
    if (why) *why = strerror(errno);
    return false;
  }
  name_.clear();
  return true;
}

}  // namespace vkms::broker
