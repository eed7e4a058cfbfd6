// The broker's command line (broker/config.h ParseBrokerFlags): the input, split on NUL, is
// argv without argv[0]. Environment fallbacks (VAULT_* and VAULT_KMS_*) are cleared first so
// every run is reproducible.
// Whatever the arguments, the parser returns; an error is one line; and a configuration it
// accepts satisfies what the rest of the broker assumes.
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "broker/config.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using vkms::broker::AuthMethod;
using vkms::broker::BrokerConfig;
using vkms::broker::ParseResult;

void CheckConfig(const BrokerConfig& c) {
  // Socket: an absolute path, or an abstract name (leading NUL) that is not empty.
  FUZZ_CHECK(!c.socket_path.empty());
  FUZZ_CHECK(c.socket_path.size() < sizeof(sockaddr_un::sun_path));
  if (c.abstract_socket) {
    FUZZ_CHECK(c.socket_path[0] == '\0' && c.socket_path.size() >= 2);
    FUZZ_CHECK(!c.allowed_peer_uids.empty());  // nothing else would protect it
  } else {
    FUZZ_CHECK(c.socket_path[0] == '/');
  }
  FUZZ_CHECK((c.socket_mode & ~0777u) == 0 && (c.socket_mode & 0007u) == 0);

  // Vault: https only, no credentials, query or fragment in an address.
  FUZZ_CHECK(!c.vault.addrs.empty());
  for (const auto& a : c.vault.addrs) {
    FUZZ_CHECK(a.rfind("https://", 0) == 0 && a.size() > 8);
    FUZZ_CHECK(a.find_first_of(" \t\r\n?#@") == std::string::npos);
  }
  FUZZ_CHECK(c.vault.client_cert.empty() == c.vault.client_key.empty());
  FUZZ_CHECK(!c.vault.transit_key.empty());
  if (c.vault.auth_method == AuthMethod::kToken) {
    FUZZ_CHECK(!c.vault.token_file.empty() && c.vault.token_file[0] == '/');
  } else {
    FUZZ_CHECK(!c.vault.secret_id_file.empty() && c.vault.secret_id_file[0] == '/');
    FUZZ_CHECK(c.vault.role_id.empty() != c.vault.role_id_file.empty());
    FUZZ_CHECK(c.vault.role_id_file.empty() || c.vault.role_id_file[0] == '/');
  }
  FUZZ_CHECK(c.vault.key_refresh_interval.count() >= 1000 &&
             c.vault.key_refresh_interval.count() <= 24 * 3600 * 1000);
  FUZZ_CHECK(!c.metrics_listen.empty());
  if (geteuid() == 0) {
    FUZZ_CHECK(c.broker_user.uid != 0 && c.frontend_user.uid != 0);
    FUZZ_CHECK(c.broker_user.uid != c.frontend_user.uid);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  for (const auto& spec : vkms::broker::BrokerFlagSpecs()) {
    if (!spec.env.empty()) unsetenv(spec.env.c_str());
    unsetenv(vkms::flags::EnvName(vkms::broker::kBrokerEnvPrefix, spec.name).c_str());
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args;
  if (size > 0) {
    std::string current;
    for (size_t i = 0; i < size; ++i) {
      if (data[i] == '\0') {
        args.push_back(std::move(current));
        current.clear();
      } else {
        current.push_back(static_cast<char>(data[i]));
      }
    }
    args.push_back(std::move(current));
  }

  BrokerConfig config;
  std::string message;
  switch (vkms::broker::ParseBrokerFlags(args, &config, &message)) {
    case ParseResult::kOk:
      CheckConfig(config);
      break;
    case ParseResult::kError:
      // Printed as the one line before exit 2 (broker/config.h).
      FUZZ_CHECK(!message.empty());
      FUZZ_CHECK(message.find_first_of("\r\n") == std::string::npos);
      break;
    case ParseResult::kHelp:
    case ParseResult::kVersion:
      FUZZ_CHECK(!message.empty());
      break;
  }
  return 0;
}
