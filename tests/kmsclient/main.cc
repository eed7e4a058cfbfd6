// kms-client: plays kube-apiserver against a vault-kms socket, one call per invocation.
// Used by `make demo`. Prints one JSON object per call on stdout. Plaintext is never printed:
// seeds are shown by a SHA-256 fingerprint, which is enough to see that a round trip worked.
//
//   kms-client --socket PATH [--authority A] status
//   kms-client --socket PATH encrypt-seed SEEDFILE      (writes a random 32-byte seed to SEEDFILE)
//   kms-client --socket PATH decrypt CIPHERTEXT KEYID   (prints the plaintext's fingerprint)
//   kms-client --socket PATH fingerprint SEEDFILE
#include <json/json.h>
#include <openssl/evp.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/kmsclient/kms_client.h"

namespace {

std::string Fingerprint(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned i = 0; i < 8; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

void Print(const Json::Value& v) {
  Json::StreamWriterBuilder b;
  b["indentation"] = "";
  std::cout << Json::writeString(b, v) << std::endl;
}

int Usage() {
  std::cerr << "usage: kms-client --socket PATH [--authority A] "
               "status | encrypt-seed SEEDFILE | decrypt CIPHERTEXT KEYID | fingerprint SEEDFILE\n";
  return 2;
}

int Fail(const grpc::Status& s) {
  Json::Value v;
  v["ok"] = false;
  v["code"] = static_cast<int>(s.error_code());
  v["error"] = s.error_message();
  Print(v);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket, authority = "localhost";
  std::vector<std::string> rest;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--socket" && i + 1 < argc)
      socket = argv[++i];
    else if (a == "--authority" && i + 1 < argc)
      authority = argv[++i];
    else
      rest.push_back(a);
  }
  if (rest.empty()) return Usage();
  if (rest[0] == "fingerprint" && rest.size() == 2) {
    std::ifstream in(rest[1], std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::cout << Fingerprint(ss.str()) << std::endl;
    return 0;
  }
  if (socket.empty()) return Usage();
  vkms::testing::KmsClient client(socket, authority);
  Json::Value out;
  if (rest[0] == "status" && rest.size() == 1) {
    v2::StatusResponse resp;
    grpc::Status s = client.Status(&resp);
    if (!s.ok()) return Fail(s);
    out["version"] = resp.version();
    out["healthz"] = resp.healthz();
    out["key_id"] = resp.key_id();
  } else if (rest[0] == "encrypt-seed" && rest.size() == 2) {
    std::string seed = vkms::testing::RandomBytes(32);
    v2::EncryptResponse resp;
    grpc::Status s = client.Encrypt(seed, vkms::testing::RandomUid(), &resp);
    if (!s.ok()) return Fail(s);
    std::ofstream(rest[1], std::ios::binary) << seed;
    out["seed"] = Fingerprint(seed);
    out["ciphertext"] = resp.ciphertext();
    out["ciphertext_bytes"] = static_cast<int>(resp.ciphertext().size());
    out["key_id"] = resp.key_id();
  } else if (rest[0] == "decrypt" && rest.size() == 3) {
    v2::DecryptResponse resp;
    grpc::Status s = client.Decrypt(rest[1], rest[2], vkms::testing::RandomUid(), &resp);
    if (!s.ok()) return Fail(s);
    out["plaintext"] = Fingerprint(resp.plaintext());
  } else {
    return Usage();
  }
  out["ok"] = true;
  Print(out);
  return 0;
}
