// An apiserver-like KMS v2 client for tests, the demo and benchmarks: gRPC over the unix
// socket with insecure credentials, like kube-apiserver. The :authority can be set to what
// Kubernetes 1.29-1.31 sent (the socket path) or 1.32+ sends ("localhost").
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "kms_v2.grpc.pb.h"

namespace vkms::testing {

class KmsClient {
 public:
  // socket: a filesystem path (or "@name" for an abstract socket).
  explicit KmsClient(const std::string& socket, const std::string& authority = "localhost");

  grpc::Status Status(v2::StatusResponse* resp,
                      std::chrono::milliseconds timeout = std::chrono::seconds(3));
  grpc::Status Encrypt(const std::string& plaintext, const std::string& uid,
                       v2::EncryptResponse* resp,
                       std::chrono::milliseconds timeout = std::chrono::seconds(3));
  grpc::Status Decrypt(const std::string& ciphertext, const std::string& key_id,
                       const std::string& uid, v2::DecryptResponse* resp,
                       std::chrono::milliseconds timeout = std::chrono::seconds(3),
                       const std::map<std::string, std::string>& annotations = {});

  v2::KeyManagementService::Stub* stub() { return stub_.get(); }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v2::KeyManagementService::Stub> stub_;
};

// A random RFC 4122 version-4 UUID string, as the apiserver sends in `uid`.
std::string RandomUid();
// n cryptographically random bytes (a DEK seed is 32).
std::string RandomBytes(size_t n);

}  // namespace vkms::testing
