// The KMS listening socket. The broker creates it (DESIGN.md start-up step 2) and hands the
// listening fd to the frontend; the frontend never touches the filesystem. Called from
// main() only, single-threaded, before privileges are dropped.
#pragma once

#include <sys/types.h>
#include <time.h>

#include <optional>
#include <string>

namespace vkms::broker {

class ListenSocket {
 public:
  // path: filesystem path, or an abstract name starting with '\0'.
  // If something exists at a filesystem path it is unlinked only when it is a socket that
  // nobody is listening on; anything else is refused and left untouched.
  static std::optional<ListenSocket> Create(const std::string& path, mode_t mode,
                                            std::optional<gid_t> gid, std::string* error);

  int fd() const { return fd_; }
  const std::string& display_path() const { return display_; }

  // Removes the socket file if it is still the one this process created (same inode and
  // change time: inode numbers are reused), so a newer instance's socket is never deleted.
  void Remove();

 private:
  int fd_ = -1;
  std::string path_;
  std::string display_;
  bool abstract_ = false;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  struct timespec ctime_ = {};
};

}  // namespace vkms::broker
