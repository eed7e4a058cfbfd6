#include "shared/process_metrics.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <vector>

namespace vkms::process_metrics {
namespace {

struct Handles {
  std::mutex mu;  // the directory stream has one position
  int stat_fd = -1;
  DIR* fd_dir = nullptr;
  double boot_time = 0;
  long ticks_per_second = 0;
  long page_size = 0;
};

Handles& Self() {
  static Handles* h = new Handles();  // lives for the whole process, used from any thread
  return *h;
}

// /proc/stat's "btime": the boot time in seconds since the epoch. Read once: a process's start
// time is boot time + its start tick, and neither changes.
bool ReadBootTime(double* out) {
  std::ifstream in("/proc/stat");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("btime ", 0) == 0) {
      *out = std::strtod(line.c_str() + 6, nullptr);
      return *out > 0;
    }
  }
  return false;
}

}  // namespace

bool ParseStat(const std::string& text, double boot_time, long ticks_per_second, long page_size,
               Sample* out) {
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so the fields start after
  // the last ')'. The first field after it is field 3 of proc(5).
  size_t paren = text.rfind(')');
  if (paren == std::string::npos || ticks_per_second <= 0 || page_size <= 0) return false;
  std::istringstream in(text.substr(paren + 1));
  std::vector<std::string> f;
  std::string token;
  while (in >> token) f.push_back(token);
  if (f.size() < 24 - 2) return false;
  auto field = [&f](size_t n) -> const std::string& { return f[n - 3]; };
  bool ok = true;
  auto number = [&ok](const std::string& s) {
    char* end = nullptr;
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (end == s.c_str() || *end != '\0' || v < 0) ok = false;
    return static_cast<unsigned long long>(v);
  };
  unsigned long long utime = number(field(14)), stime = number(field(15));
  unsigned long long start = number(field(22)), vsize = number(field(23));
  unsigned long long rss = number(field(24));
  if (!ok) return false;
  out->cpu_seconds = static_cast<double>(utime + stime) / static_cast<double>(ticks_per_second);
  out->start_time_seconds =
      boot_time + static_cast<double>(start) / static_cast<double>(ticks_per_second);
  out->virtual_bytes = vsize;
  out->resident_bytes = rss * static_cast<uint64_t>(page_size);
  return true;
}

bool Open(std::string* error) {
  Handles& h = Self();
  std::lock_guard<std::mutex> lock(h.mu);
  if (h.stat_fd >= 0) return true;
  h.ticks_per_second = sysconf(_SC_CLK_TCK);
  h.page_size = sysconf(_SC_PAGESIZE);
  if (!ReadBootTime(&h.boot_time)) {
    *error = "process metrics: cannot read btime from /proc/stat";
    return false;
  }
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = std::string("process metrics: cannot open /proc/self/stat: ") + strerror(errno);
    return false;
  }
  DIR* dir = opendir("/proc/self/fd");  // O_CLOEXEC, like every opendir in glibc
  if (dir == nullptr) {
    *error = std::string("process metrics: cannot open /proc/self/fd: ") + strerror(errno);
    close(fd);
    return false;
  }
  h.stat_fd = fd;
  h.fd_dir = dir;
  return true;
}

bool Read(Sample* out) {
  Handles& h = Self();
  std::lock_guard<std::mutex> lock(h.mu);
  if (h.stat_fd < 0) return false;
  char buf[4096];
  ssize_t n = pread(h.stat_fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return false;
  if (!ParseStat(std::string(buf, static_cast<size_t>(n)), h.boot_time, h.ticks_per_second,
                 h.page_size, out)) {
    return false;
  }
  // rewinddir is an lseek to 0; readdir reads the directory afresh with getdents64.
  rewinddir(h.fd_dir);
  uint64_t fds = 0;
  while (struct dirent* e = readdir(h.fd_dir)) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) ++fds;
  }
  out->open_fds = fds;
  struct rlimit lim;
  out->max_fds = getrlimit(RLIMIT_NOFILE, &lim) == 0 ? lim.rlim_cur : 0;
  return true;
}

}  // namespace vkms::process_metrics
