#include "shared/secret.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

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

bool ReadSecretFile(const std::string& path, SecretString* out, std::string* error,
                    size_t max_bytes) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
  if (fd < 0) {
    *error = "cannot open " + path + ": " + strerror(errno);
    return false;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    *error = path + " is not a regular file";
    return false;
  }
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
