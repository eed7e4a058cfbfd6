// The standard process_* figures (resident and virtual memory, CPU seconds, open and maximum
// fds, start time) of the calling process, for /metrics.
//
// After lockdown neither process may open a file (Landlock, seccomp), so Open() opens
// /proc/self/stat and /proc/self/fd once, before lockdown, and Read() only reads those fds
// again: pread on the stat file, lseek + getdents64 on the directory, getrlimit. Each process's
// seccomp policy allows exactly those.
//
// Open() is called once from main() before the process confines itself; Read() from any
// thread afterwards (it serialises itself).
#pragma once

#include <cstdint>
#include <string>

namespace vkms::process_metrics {

struct Sample {
  double cpu_seconds = 0;         // user + system, all threads
  uint64_t resident_bytes = 0;    // RSS
  uint64_t virtual_bytes = 0;     // VSZ
  uint64_t open_fds = 0;          // entries of /proc/self/fd (the one Read() holds included)
  uint64_t max_fds = 0;           // RLIMIT_NOFILE soft limit
  double start_time_seconds = 0;  // since the Unix epoch
};

// Returns false with a one-line reason if /proc cannot be read; Read() then fails too.
bool Open(std::string* error);

// False if Open() was not called or failed, or /proc answered something unexpected.
bool Read(Sample* out);

// Parses the text of /proc/PID/stat. `boot_time` is /proc/stat's btime, `ticks_per_second`
// sysconf(_SC_CLK_TCK), `page_size` sysconf(_SC_PAGESIZE). Exposed for tests.
bool ParseStat(const std::string& text, double boot_time, long ticks_per_second, long page_size,
               Sample* out);

}  // namespace vkms::process_metrics
