#include "tests/kmsclient/kms_client.h"

#include <openssl/rand.h>

#include <cstdio>
#include <stdexcept>

namespace vkms::testing {
namespace {

void SetDeadline(grpc::ClientContext* ctx, std::chrono::milliseconds timeout) {
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
}

}  // namespace

KmsClient::KmsClient(const std::string& socket, const std::string& authority) {
  grpc::ChannelArguments args;
  if (!authority.empty()) args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, authority);
  std::string target = socket[0] == '@' ? "unix-abstract:" + socket.substr(1) : "unix://" + socket;
  channel_ = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  stub_ = v2::KeyManagementService::NewStub(channel_);
}

grpc::Status KmsClient::Status(v2::StatusResponse* resp, std::chrono::milliseconds timeout) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, timeout);
  v2::StatusRequest req;
  return stub_->Status(&ctx, req, resp);
}

grpc::Status KmsClient::Encrypt(const std::string& plaintext, const std::string& uid,
                                v2::EncryptResponse* resp, std::chrono::milliseconds timeout) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, timeout);
  v2::EncryptRequest req;
  req.set_plaintext(plaintext);
  req.set_uid(uid);
  return stub_->Encrypt(&ctx, req, resp);
}

grpc::Status KmsClient::Decrypt(const std::string& ciphertext, const std::string& key_id,
                                const std::string& uid, v2::DecryptResponse* resp,
                                std::chrono::milliseconds timeout,
                                const std::map<std::string, std::string>& annotations) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, timeout);
  v2::DecryptRequest req;
  req.set_ciphertext(ciphertext);
  req.set_key_id(key_id);
  req.set_uid(uid);
  for (const auto& [k, v] : annotations) (*req.mutable_annotations())[k] = v;
  return stub_->Decrypt(&ctx, req, resp);
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&out[0]), static_cast<int>(n)) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  return out;
}

std::string RandomUid() {
  std::string b = RandomBytes(16);
  b[6] = static_cast<char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<char>((b[8] & 0x3f) | 0x80);
  char out[37];
  const auto* u = reinterpret_cast<const unsigned char*>(b.data());
  snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
           u[14], u[15]);
  return out;
}

}  // namespace vkms::testing
