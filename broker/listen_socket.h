// The KMS listening socket. The broker creates it (DESIGN.md start-up step 2) and hands the
// listening fd to the frontend; the frontend never touches the filesystem. Called from
// main() only, single-threaded, before privileges are dropped: Create() changes the process's
// umask, fsgid and working directory for the moment of the bind and restores them.
//
// Root never follows a path another uid can change. Everything below works through a file
// descriptor of the socket's directory (opened without following a final symlink), and the
// directory and every ancestor must be writable by root (or the uid running the broker) alone
// (CheckSocketDirectory). The socket is born with its final mode (through the umask) and group
// (through the fsgid): there is no chmod or chown by path, and no moment in which it is
// reachable with any other permissions.
#pragma once

#include <sys/types.h>
#include <time.h>

#include <optional>
#include <string>

namespace vkms::broker {

// "" when `dir` is a safe place for root to create the socket in; otherwise a one-line reason
// with the fix. Safe: a real directory (not a symlink), owned by root or the calling uid, not
// writable by group or other, and every ancestor owned by root or the calling uid and not
// writable by group or other unless it has the sticky bit (like /tmp). `check` uses it too.
std::string CheckSocketDirectory(const std::string& dir);

// Binds and listens on --metrics-listen ("host:port" or "[v6]:port"; the host an IP address or
// a name such as localhost) for the frontend to serve /metrics, /healthz and /readyz on: the
// frontend creates no socket. Returns the listening fd (close-on-exec, non-blocking) or -1 with
// a one-line *error naming the address (e.g. "Address already in use").
int ListenMetrics(const std::string& host_port, std::string* error);

class ListenSocket {
 public:
  // path: filesystem path, or an abstract name starting with '\0'.
  // If something exists at a filesystem path it is unlinked only when it is a socket that
  // nobody is listening on; anything else is refused and left untouched.
  // gid: the socket's group; set through the fsgid at creation (as root), else by fchown of
  // the verified inode.
  static std::optional<ListenSocket> Create(const std::string& path, mode_t mode,
                                            std::optional<gid_t> gid, std::string* error);

  ListenSocket() = default;
  ListenSocket(ListenSocket&& other) noexcept;
  ListenSocket& operator=(ListenSocket&& other) noexcept;
  ListenSocket(const ListenSocket&) = delete;
  ListenSocket& operator=(const ListenSocket&) = delete;
  ~ListenSocket();  // closes the directory fd (never the listening fd: see fd())

  // The listening socket (the frontend gets a copy across exec; the broker keeps this one only
  // to StopListening()).
  int fd() const { return fd_; }

  // Makes the socket refuse new connections (ECONNREFUSED) for every process that holds it,
  // the frontend's copy included, and closes this process's fd. Connections already accepted
  // are not affected. A frontend that outlives the broker, or a socket file the broker may not
  // remove, then serves no one.
  void StopListening();
  const std::string& display_path() const { return display_; }

  // Removes the socket file if it is still the one this process created (same inode and
  // change time: inode numbers are reused), so a newer instance's socket is never deleted.
  // Works through the directory fd. Returns false with *why when the file could not be removed
  // (e.g. after dropping root, the directory is not writable: the next start removes it).
  bool Remove(std::string* why = nullptr);

 private:
  int fd_ = -1;
  int dir_fd_ = -1;   // O_PATH of the socket's directory; -1 for an abstract socket
  std::string name_;  // the socket's name inside that directory
  std::string display_;
  bool abstract_ = false;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  struct timespec ctime_ = {};
};

}  // namespace vkms::broker
