// vault-kms-audit (`make audit`): what an auditor reads first, printed from the code itself —
// the same tables and functions the two processes use at run time, not a copy of them.
//
//   vault-kms-audit [BROKER-FLAGS...]   (Landlock rules depend on the flags; defaults shown)
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "broker.pb.h"
#include "broker/broker.h"
#include "broker/config.h"
#include "broker/lockdown.h"
#include "frontend/lockdown.h"
#include "seccomp/broker_policy.h"
#include "seccomp/frontend_policy.h"
#include "shared/ipc.h"
#include "shared/landlock.h"

namespace {

void Heading(const std::string& title) {
  std::cout << "\n== " << title << " "
            << std::string(title.size() < 90 ? 90 - title.size() : 0, '=') << "\n";
}

void PrintMessage(const google::protobuf::Descriptor* d, const std::string& indent) {
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    std::cout << indent << f->number() << " " << f->name() << " : "
              << (f->message_type() ? f->message_type()->name() : f->type_name())
              << (f->containing_oneof() ? "  (one of " + f->containing_oneof()->name() + ")" : "")
              << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> flags(argv + 1, argv + argc);
  if (flags.empty()) {
    flags = {"--vault-addr=https://vault.example:8200",
             "--approle-role-id-file=/etc/vault-kms/role-id",
             "--approle-secret-id-file=/etc/vault-kms/secret-id"};
  }
  vkms::broker::BrokerConfig config;
  std::string msg;
  if (vkms::broker::ParseBrokerFlags(flags, &config, &msg) != vkms::broker::ParseResult::kOk) {
    std::cerr << "vault-kms-audit: " << msg << "\n";
    return 2;
  }

  std::cout << "vault-kms " << VKMS_VERSION << " — isolation audit\nbroker flags:";
  for (const auto& f : flags) std::cout << " " << f;
  std::cout << "\n";

  Heading("Processes (when started as root)");
  std::cout << "vault-kms-broker    uid:gid " << config.broker_user.uid << ":"
            << config.broker_user.gid
            << "  holds the Vault token, reads the secret-id file at every login\n"
            << "vault-kms-frontend  uid:gid " << config.frontend_user.uid << ":"
            << config.frontend_user.gid << "  serves KMS v2 gRPC, holds no credential\n"
            << "both: no supplementary groups; capabilities: none in any set, bounding set empty;\n"
            << "      no_new_privs=1; dumpable=0 (no ptrace attach, /proc/PID/mem owned by root);\n"
            << "      RLIMIT_CORE=0; RLIMIT_FSIZE=0 when stderr is not a regular file;\n"
            << "      RLIMIT_NPROC=256 (dedicated uid only)\n"
            << "broker: closes every inherited fd above 2 first thing\n"
            << "frontend: exec'd with an empty environment; fd 0 /dev/null, fds 1-2 a pipe the "
               "broker reads (its log relay: re-attributed, escaped, bounded), IPC fd "
            << vkms::ipc::kFrontendIpcFd << ", KMS listening fd " << vkms::ipc::kFrontendListenFd
            << ", metrics listening fd " << vkms::ipc::kFrontendMetricsFd
            << " (bound by the broker); all others closed; confined before it creates a thread; "
               "SIGKILL when the broker dies\n"
            << "started as non-root: both share the caller's uid; everything else still applies\n";

  Heading("IPC: frontend -> broker (SOCK_SEQPACKET, one protobuf per datagram, <= " +
          std::to_string(vkms::ipc::kMaxFrame) + " bytes)");
  std::cout << "dispatch table (broker/broker.cc, Broker::Handle<Op>):\n";
  for (const auto& row : vkms::broker::Broker::MessageTable()) {
    std::cout << "  " << row.name
              << (row.calls_vault ? "   -> Vault (worker thread)" : "   -> cache only") << "\n";
  }
  std::cout << "anything else, an unknown field, oversize/truncated frames, passed fds: protocol "
               "error -> broker logs, closes the channel, exits 3\n";
  for (const auto* d : {vkms::ipc::Request::descriptor(), vkms::ipc::Reply::descriptor()}) {
    std::cout << d->full_name() << ":\n";
    PrintMessage(d, "  ");
  }

  Heading("seccomp: vault-kms-frontend (seccomp/frontend_policy.cc)");
  std::cout << vkms::seccomp::Describe(vkms::seccomp::FrontendPolicy(getpid()));
  Heading("seccomp: vault-kms-broker (seccomp/broker_policy.cc)");
  {
    // As deployed: started as root, for these --vault-addr values.
    vkms::seccomp::BrokerPolicyOptions o = vkms::broker::BrokerPolicyOptions(config, true);
    std::cout << "variant for these flags: "
              << (o.dns ? "a --vault-addr names a host: DNS lines included"
                        : "every --vault-addr is an IP address: no UDP, no DNS lines")
              << "; started as root: the socket is never deleted (no unlinkat)\n";
    std::cout << vkms::seccomp::Describe(vkms::seccomp::BrokerPolicy(o));
  }

  Heading("Landlock (this kernel: ABI " + std::to_string(vkms::landlock::Abi()) + ")");
  std::cout << "vault-kms-broker:\n"
            << vkms::landlock::Describe(vkms::broker::BrokerLandlockRules(config))
            << "vault-kms-frontend:\n"
            << vkms::landlock::Describe(vkms::frontend::FrontendLandlockRules());
  return 0;
}
