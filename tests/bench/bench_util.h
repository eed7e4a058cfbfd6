// Small pieces shared by the soak run and the benchmark: their flag syntax, RSS from /proc,
// and latency formatting.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tests/integration/plugin_process.h"

namespace vkms::bench {

// One "--name value" or "--name=value" from argv at *i (advanced past the value). False with
// a message for a flag without a value; false without one for -h/--help.
inline bool NextFlag(const char* prog, int argc, char** argv, int* i, std::string* name,
                     std::string* value) {
  std::string a = argv[*i];
  auto eq = a.find('=');
  if (eq != std::string::npos) {
    *value = a.substr(eq + 1);
    *name = a.substr(0, eq);
    return true;
  }
  if (a == "-h" || a == "--help") return false;
  if (*i + 1 >= argc) {
    std::fprintf(stderr, "%s: %s needs a value\n", prog, a.c_str());
    return false;
  }
  *name = a;
  *value = argv[++*i];
  return true;
}

inline long RssKb(pid_t pid) {
  return testing::ProcStatusKb(pid, "VmRSS");
}

// "850 us" below 10 ms, "12.3 ms" above.
inline std::string FormatUs(uint64_t us) {
  char b[32];
  if (us >= 10000)
    std::snprintf(b, sizeof b, "%.1f ms", us / 1000.0);
  else
    std::snprintf(b, sizeof b, "%llu us", static_cast<unsigned long long>(us));
  return b;
}

}  // namespace vkms::bench
