// Landlock, through its raw syscalls: what a process may still reach in the filesystem and on
// TCP after it restricts itself. Used by both lockdown sequences, after no_new_privs and
// before the seccomp filter (which does not allow the landlock syscalls).
//
// Degrades by ABI: files need ABI >= 1, TCP rules >= 4, signal and abstract-socket scoping >=
// 6. Whatever the running kernel lacks is reported in Result::missing, which the caller logs
// as a warning; it is never silently skipped.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vkms::landlock {

struct Rules {
  // Directories whose files (recursively) may be read. Directories, not files: a credential
  // rotated by rename or a Kubernetes secret volume's symlink swap is a new inode, which a
  // rule on the old file would not cover.
  std::vector<std::string> read_dirs;
  // Single files that may be read (system files the resolver and TLS stack need).
  std::vector<std::string> read_files;
  // Directories in which files may be removed (the broker's KMS socket at exit).
  std::vector<std::string> remove_in_dirs;
  // TCP ports connect() may reach; bind() is never allowed.
  std::vector<uint16_t> connect_ports;
  // ABI >= 6: no signals to processes outside this domain, no connecting to abstract unix
  // sockets created outside it.
  bool scope_signals_and_abstract_sockets = true;
};

struct Result {
  int abi = 0;                       // 0: Landlock unavailable
  std::vector<std::string> missing;  // what could not be enforced on this kernel
  std::vector<std::string> skipped;  // paths that did not exist (not an error)
};

// Returns false only for a real failure (a rule that could not be added, restrict_self
// refused); a kernel without Landlock is a success with Result::missing filled in.
bool Restrict(const Rules& rules, Result* result, std::string* error);

// The ABI the running kernel supports (0 if none).
int Abi();

std::string Describe(const Rules& rules);

}  // namespace vkms::landlock
