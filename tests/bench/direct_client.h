// The benchmark's baseline: the same Transit calls the broker makes, sent straight to Vault by
// a minimal keep-alive HTTPS client (one libcurl easy handle per worker, so one connection per
// worker reused for every call, TLS verified as the broker does). It does what any Vault client
// must (base64 the plaintext, build and parse the JSON) and nothing more: no gRPC, no IPC, no
// retries. The plugin's figures are compared against this in the same run.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "tests/bench/loadgen.h"

namespace vkms::bench {

struct DirectTarget {
  std::string addr;     // https://host:port
  std::string ca_file;  // PEM bundle that verifies the server
  std::string token;    // a token with the plugin's policy
  std::string mount = "transit";
  std::string key = "kms";
  std::chrono::milliseconds timeout{std::chrono::seconds(3)};
};

// Status has no Vault call to compare with: the direct client answers it UNIMPLEMENTED.
std::unique_ptr<Client> NewDirectClient(const DirectTarget& target);

// At most N calls at Vault at once across every client that shares it (each worker keeps its
// own connection; the others wait their turn): a direct client held to the same number of
// Vault calls in flight as the plugin's --vault-concurrency.
class InFlightGate {
 public:
  explicit InFlightGate(int limit) : free_(limit) {}
  void Enter();
  void Leave();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int free_;
};

// `inner`, each of its Vault calls made inside `gate` (which must outlive it).
std::unique_ptr<Client> NewGatedClient(std::unique_ptr<Client> inner, InFlightGate* gate);

}  // namespace vkms::bench
