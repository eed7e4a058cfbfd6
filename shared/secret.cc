#include "shared/secret.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <mutex>
#include <set>
#include <vector>

#include "shared/log.h"

namespace vkms {

void WipeMemory(void* p, size_t n) {
  if (p != nullptr && n > 0) explicit_bzero(p, n);
}

void WipeString(std::string* s) {
  // Wipe the whole capacity: earlier, longer contents may still sit past size().
  if (s->capacity() > 0) {
    s->resize(s->capacity());
    WipeMemory(&(*s)[0], s->size());
  }
  s->clear();
}

namespace {

// Each file is warned about once per process, not at every login.
void WarnIfShared(const std::string& path, mode_t mode) {
  static std::mutex mu;
  static std::set<std::string> warned;
  if ((mode & 077) == 0) return;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!warned.insert(path).second) return;
  }
  char octal[8];
  snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode & 07777));
  log::Warning("credential file can be read by group or other; fix: chmod 0400 " + path,
               {{"path", path}, {"mode", octal}});
}

}  // namespace

bool ReadSecretFile(const std::string& path, SecretString* out, std::string* error,
                    size_t max_bytes) {
  // O_NOFOLLOW: a symlink is refused, not followed (whoever can change it would choose what the
  // broker reads and sends to Vault). O_NONBLOCK: a FIFO at the path must not hang the login
  // (and with it shutdown); it is then refused as not a regular file.
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    *error = "cannot open " + path + ": " +
             (errno == ELOOP ? std::string("it is a symbolic link (refused)") : strerror(errno));
    return false;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    *error = path + " is not a regular file";
    return false;
  }
  WarnIfShared(path, st.st_mode);
  std::string buf;
  buf.reserve(max_bytes + 1);
  buf.resize(max_bytes + 1);
  size_t used = 0;
  while (used < buf.size()) {
    ssize_t n = read(fd, &buf[used], buf.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      WipeString(&buf);
      *error = "cannot read " + path + ": " + strerror(e);
      return false;
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  close(fd);
  if (used > max_bytes) {
    WipeString(&buf);
    *error = path + " is larger than " + std::to_string(max_bytes) + " bytes";
    return false;
  }
  size_t begin = 0, end = used;
  auto is_space = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
  while (begin < end && is_space(buf[begin])) ++begin;
  while (end > begin && is_space(buf[end - 1])) --end;
  if (begin == end) {
    WipeString(&buf);
    *error = path + " is empty";
    return false;
  }
  // Construct the secret in place from the slice, then wipe the read buffer.
  std::string value(buf.data() + begin, end - begin);
  WipeString(&buf);
  *out = SecretString(std::move(value));
  return true;
}

}  // namespace vkms
