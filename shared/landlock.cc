#include "shared/landlock.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sstream>

namespace vkms::landlock {
namespace {

// Kernel UAPI (include/uapi/linux/landlock.h). Defined here because Debian bookworm's kernel
// headers are older than the network (ABI 4) and scope (ABI 6) parts.
constexpr long kSysCreateRuleset = 444;
constexpr long kSysAddRule = 445;
constexpr long kSysRestrictSelf = 446;
constexpr uint32_t kCreateRulesetVersion = 1U << 0;
constexpr int kRulePathBeneath = 1;
constexpr int kRuleNetPort = 2;

constexpr uint64_t kFsExecute = 1ULL << 0;
constexpr uint64_t kFsWriteFile = 1ULL << 1;
constexpr uint64_t kFsReadFile = 1ULL << 2;
constexpr uint64_t kFsReadDir = 1ULL << 3;
constexpr uint64_t kFsRemoveFile = 1ULL << 5;
constexpr uint64_t kFsRefer = 1ULL << 13;     // ABI 2
constexpr uint64_t kFsTruncate = 1ULL << 14;  // ABI 3
constexpr uint64_t kFsIoctlDev = 1ULL << 15;  // ABI 5
constexpr uint64_t kNetBindTcp = 1ULL << 0;
constexpr uint64_t kNetConnectTcp = 1ULL << 1;
constexpr uint64_t kScopeAbstractUnix = 1ULL << 0;
constexpr uint64_t kScopeSignal = 1ULL << 1;

struct RulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};

struct __attribute__((packed)) PathBeneathAttr {
  uint64_t allowed_access;
  int32_t parent_fd;
};

struct NetPortAttr {
  uint64_t allowed_access;
  uint64_t port;
};

uint64_t HandledFs(int abi) {
  uint64_t all = (1ULL << 13) - 1;  // ABI 1: bits 0..12
  if (abi >= 2) all |= kFsRefer;
  if (abi >= 3) all |= kFsTruncate;
  if (abi >= 5) all |= kFsIoctlDev;
  return all;
}

// Access rights that make sense on a regular file (the kernel rejects directory-only rights).
constexpr uint64_t kFileRights =
    kFsExecute | kFsWriteFile | kFsReadFile | kFsTruncate | kFsIoctlDev;

bool AddPath(int ruleset, const std::string& path, uint64_t access, Result* result,
             std::string* error) {
  int fd = open(path.c_str(), O_PATH | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      result->skipped.push_back(path);
      return true;
    }
    *error = "landlock: cannot open " + path + ": " + strerror(errno);
    return false;
  }
  PathBeneathAttr attr = {access, fd};
  struct stat st;
  if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode)) attr.allowed_access &= kFileRights;
  long rc = syscall(kSysAddRule, ruleset, kRulePathBeneath, &attr, 0);
  int err = errno;
  close(fd);
  if (rc != 0) {
    *error = "landlock: cannot add a rule for " + path + ": " + strerror(err);
    return false;
  }
  return true;
}

}  // namespace

int Abi() {
  long abi = syscall(kSysCreateRuleset, nullptr, 0, kCreateRulesetVersion);
  return abi < 0 ? 0 : static_cast<int>(abi);
}

bool Restrict(const Rules& rules, Result* result, std::string* error) {
  int abi = Abi();
  result->abi = abi;
  if (abi < 1) {
    result->missing.push_back("Landlock (filesystem, TCP and scope rules): kernel has none");
    return true;
  }
  RulesetAttr attr = {};
  attr.handled_access_fs = HandledFs(abi);
  size_t attr_size = sizeof(uint64_t);
  if (abi >= 4) {
    attr.handled_access_net = kNetBindTcp | kNetConnectTcp;
    attr_size = 2 * sizeof(uint64_t);
  } else {
    result->missing.push_back(
        "Landlock TCP rules (ABI 4): connect/bind are not restricted by port");
  }
  if (abi >= 6 && rules.scope_signals_and_abstract_sockets) {
    attr.scoped = kScopeAbstractUnix | kScopeSignal;
    attr_size = sizeof attr;
  } else if (rules.scope_signals_and_abstract_sockets) {
    result->missing.push_back(
        "Landlock scopes (ABI 6): signals and abstract sockets are not scoped");
  }
  int ruleset = static_cast<int>(syscall(kSysCreateRuleset, &attr, attr_size, 0));
  if (ruleset < 0) {
    *error = std::string("landlock_create_ruleset: ") + strerror(errno);
    return false;
  }
  bool ok = true;
  for (const auto& d : rules.read_dirs) {
    ok = ok && AddPath(ruleset, d, kFsReadFile | kFsReadDir, result, error);
  }
  for (const auto& f : rules.read_files) ok = ok && AddPath(ruleset, f, kFsReadFile, result, error);
  for (const auto& d : rules.remove_in_dirs) {
    ok = ok && AddPath(ruleset, d, kFsRemoveFile, result, error);
  }
  if (ok && abi >= 4) {
    for (uint16_t port : rules.connect_ports) {
      NetPortAttr net = {kNetConnectTcp, port};
      if (syscall(kSysAddRule, ruleset, kRuleNetPort, &net, 0) != 0) {
        *error = "landlock: cannot allow TCP port " + std::to_string(port) + ": " + strerror(errno);
        ok = false;
        break;
      }
    }
  }
  if (ok && syscall(kSysRestrictSelf, ruleset, 0) != 0) {
    *error = std::string("landlock_restrict_self: ") + strerror(errno);
    ok = false;
  }
  close(ruleset);
  return ok;
}

std::string Describe(const Rules& rules) {
  std::ostringstream o;
  auto list = [&](const char* what, const std::vector<std::string>& v) {
    o << "  " << what << ":";
    if (v.empty()) o << " (none)";
    for (const auto& s : v) o << " " << s;
    o << "\n";
  };
  list("read (directory trees)", rules.read_dirs);
  list("read (files)", rules.read_files);
  list("remove files in", rules.remove_in_dirs);
  o << "  TCP connect to ports:";
  if (rules.connect_ports.empty()) o << " (none)";
  for (auto p : rules.connect_ports) o << " " << p;
  o << "\n  TCP bind: never\n  everything else in the filesystem: denied (write, create, execute, "
       "...)\n";
  o << "  signals and abstract unix sockets outside the process: "
    << (rules.scope_signals_and_abstract_sockets ? "denied (ABI 6)" : "not scoped") << "\n";
  return o.str();
}

}  // namespace vkms::landlock
