// deploy-sandbox-exec: starts vault-kms-broker the way deploy/vault-kms.service asks systemd to,
// without systemd (tests cannot run it as PID 1): no_new_privs, the capability bounding set, and
// the seccomp filters behind SystemCallFilter= + SystemCallArchitectures=native,
// RestrictAddressFamilies= and MemoryDenyWriteExecute=. The mount-namespace directives
// (ProtectSystem= and friends) are not emulated.
//
//   deploy-sandbox-exec BROKER-FLAGS... --sandbox-syscalls=FILE --sandbox-caps=setuid,setgid,...
//
// FILE holds the unit's filter with every @group expanded, one name per line. The --sandbox-*
// flags are taken out; the rest go to the broker (VKMS_BROKER_PATH), exec'd in place of this
// program so the caller's pid is the broker's. Used by tests/deploy/deploy_test.cc only.
//
// The directory of --socket is made root:root 0755 first, as systemd (RuntimeDirectory=) and
// the kubelet (hostPath DirectoryOrCreate) create it: without CAP_DAC_OVERRIDE the broker, still
// root, can create its socket only in a directory root may write.
#include <cap-ng.h>
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace {

[[noreturn]] void Fail(const std::string& what) {
  fprintf(stderr, "deploy-sandbox-exec: %s\n", what.c_str());
  _exit(125);
}

std::vector<std::string> Split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

void Load(scmp_filter_ctx ctx, const char* what) {
  int rc = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rc != 0) Fail(std::string("cannot load the ") + what + " filter: " + strerror(-rc));
}

// SystemCallFilter= with SystemCallArchitectures=native. Stricter than the unit, which answers
// EPERM (SystemCallErrorNumber=): here any other call kills, so a start-up that quietly did
// without something (Landlock, say) cannot pass for a working one.
void AllowOnly(const std::vector<std::string>& names) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
  if (ctx == nullptr) Fail("seccomp_init");
  for (const auto& name : names) {
    int nr = seccomp_syscall_resolve_name(name.c_str());
    // Names this architecture does not have are skipped, as systemd does.
    if (nr == __NR_SCMP_ERROR || nr < 0) continue;
    if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) != 0) Fail("cannot allow " + name);
  }
  Load(ctx, "SystemCallFilter");
}

// RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6: socket() with any other family fails with
// EAFNOSUPPORT (systemd blocks below the lowest, above the highest, and the gaps between).
void RestrictAddressFamilies() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) Fail("seccomp_init");
  const uint32_t refuse = SCMP_ACT_ERRNO(EAFNOSUPPORT);
  bool ok =
      seccomp_rule_add(ctx, refuse, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_LT, AF_UNIX)) == 0 &&
      seccomp_rule_add(ctx, refuse, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_GT, AF_INET6)) == 0;
  for (int family = AF_INET + 1; family < AF_INET6; ++family) {
    ok = ok && seccomp_rule_add(ctx, refuse, SCMP_SYS(socket), 1,
                                SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(family))) == 0;
  }
  if (!ok) Fail("cannot build the RestrictAddressFamilies filter");
  Load(ctx, "RestrictAddressFamilies");
}

// MemoryDenyWriteExecute=yes as systemd 252 implements it: no writable+executable mappings, no
// mprotect to executable, no executable shared memory.
void MemoryDenyWriteExecute() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) Fail("seccomp_init");
  const uint32_t refuse = SCMP_ACT_ERRNO(EPERM);
  const scmp_datum_t wx = PROT_WRITE | PROT_EXEC;
  bool ok =
      seccomp_rule_add(ctx, refuse, SCMP_SYS(mmap), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, wx, wx)) == 0 &&
      seccomp_rule_add(ctx, refuse, SCMP_SYS(mprotect), 1,
                       SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)) == 0 &&
      seccomp_rule_add(ctx, refuse, SCMP_SYS(pkey_mprotect), 1,
                       SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)) == 0 &&
      seccomp_rule_add(ctx, refuse, SCMP_SYS(shmat), 1,
                       SCMP_A2(SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC)) == 0;
  if (!ok) Fail("cannot build the MemoryDenyWriteExecute filter");
  Load(ctx, "MemoryDenyWriteExecute");
}

// CapabilityBoundingSet= for a root service: after exec the broker holds these and no others
// (with no_new_privs, exec cannot add to what the bounding set leaves).
void BoundCapabilities(const std::vector<std::string>& caps) {
  if (geteuid() != 0) return;  // nothing to bound: the broker runs unprivileged anyway
  capng_clear(CAPNG_SELECT_BOTH);
  for (const auto& name : caps) {
    int cap = capng_name_to_capability(name.c_str());
    if (cap < 0) Fail("unknown capability " + name);
    capng_update(CAPNG_ADD,
                 static_cast<capng_type_t>(CAPNG_EFFECTIVE | CAPNG_PERMITTED | CAPNG_BOUNDING_SET),
                 static_cast<unsigned>(cap));
  }
  if (capng_apply(CAPNG_SELECT_BOTH) != 0) Fail("cannot apply the capability sets");
}

}  // namespace

int main(int argc, char** argv) {
  std::string syscalls_file;
  std::vector<std::string> caps;
  bool have_caps = false;
  std::vector<char*> broker_argv = {const_cast<char*>(VKMS_BROKER_PATH)};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--sandbox-syscalls=", 0) == 0) {
      syscalls_file = a.substr(a.find('=') + 1);
    } else if (a.rfind("--sandbox-caps=", 0) == 0) {
      caps = Split(a.substr(a.find('=') + 1), ',');
      have_caps = true;
    } else {
      broker_argv.push_back(argv[i]);
    }
  }
  broker_argv.push_back(nullptr);
  if (syscalls_file.empty() || !have_caps) Fail("--sandbox-syscalls and --sandbox-caps needed");
  std::ifstream in(syscalls_file);
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') names.push_back(line);
  }
  if (names.empty()) Fail("no system calls in " + syscalls_file);

  if (geteuid() == 0) {
    for (char* arg : broker_argv) {
      std::string a = arg != nullptr ? arg : "";
      const std::string flag = "--socket=unix://";
      if (a.rfind(flag, 0) != 0 || a.find('/', flag.size()) != flag.size()) continue;
      std::string dir = a.substr(flag.size(), a.rfind('/') - flag.size());
      if (chown(dir.c_str(), 0, 0) != 0 || chmod(dir.c_str(), 0755) != 0) {
        Fail("cannot make " + dir + " root-owned: " + strerror(errno));
      }
    }
  }

  // The order systemd uses: no_new_privs, capabilities, then the filters, then exec.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) Fail("PR_SET_NO_NEW_PRIVS");
  BoundCapabilities(caps);
  AllowOnly(names);
  RestrictAddressFamilies();
  MemoryDenyWriteExecute();
  execve(VKMS_BROKER_PATH, broker_argv.data(), environ);
  Fail(std::string("execve ") + VKMS_BROKER_PATH + ": " + strerror(errno));
}
