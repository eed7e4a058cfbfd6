// `vault-kms-broker check`: a preflight an operator runs with the broker's own flags. It walks
// the path a real start-up takes (address, TLS, the files the broker reads, the socket's
// directory, the metrics address, login, token, key, policy, one encrypt/decrypt) and prints one
// verdict line per step, with one fix line under every WARN/FAIL, so a misconfiguration is found
// before kube-apiserver depends on the plugin.
//
// Callers: broker/main.cc, right after flag parsing, while the process has a single thread: the
// files are opened by a forked child that switches to --broker-user (when run as root). It never
// creates the socket, starts the frontend or locks the process down (it may run as root, as a
// one-off), and it never prints a token, role-id, secret-id, plaintext or ciphertext: only
// names, paths, sizes and Vault's safe error texts.
#pragma once

#include <sys/types.h>

#include <ostream>
#include <string>
#include <vector>

#include "broker/config.h"

namespace vkms::broker {

// While it lives, what the process logs goes to a memory file instead of stderr, at error level
// only (the library code the steps run logs through shared/log): the report is the only
// output, with no JSON line in its middle, and an error still shows in it (Take()).
class ReportLogCapture {
 public:
  ReportLogCapture();
  ~ReportLogCapture();
  ReportLogCapture(const ReportLogCapture&) = delete;
  ReportLogCapture& operator=(const ReportLogCapture&) = delete;

  // The lines logged since the last call, each as "<level>: <msg> (<field>=<value>, ...)".
  std::vector<std::string> Take();

 private:
  void Restore();
  int fd_ = -1;
  int saved_ = -1;
  off_t read_ = 0;
};

// Runs every step and writes the report to `out`. Returns 0 when no step FAILed (WARN is
// allowed), 1 otherwise.
int RunCheck(const BrokerConfig& config, std::ostream& out);

}  // namespace vkms::broker
