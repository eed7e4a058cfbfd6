#include "tests/bench/direct_client.h"

#include <curl/curl.h>
#include <json/reader.h>
#include <json/value.h>

#include "broker/vault/base64.h"

namespace vkms::bench {
namespace {

constexpr int kOk = 0, kDeadlineExceeded = 4, kInvalidArgument = 3, kPermissionDenied = 7,
              kResourceExhausted = 8, kUnimplemented = 12, kInternal = 13, kUnavailable = 14;

class DirectClient : public Client {
 public:
  explicit DirectClient(const DirectTarget& t)
      : encrypt_url_(t.addr + "/v1/" + t.mount + "/encrypt/" + t.key),
        decrypt_url_(t.addr + "/v1/" + t.mount + "/decrypt/" + t.key) {
    curl_ = curl_easy_init();
    headers_ = curl_slist_append(headers_, ("X-Vault-Token: " + t.token).c_str());
    headers_ = curl_slist_append(headers_, "Content-Type: application/json");
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers_);
    curl_easy_setopt(curl_, CURLOPT_CAINFO, t.ca_file.c_str());
    curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(curl_, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(curl_, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, static_cast<long>(t.timeout.count()));
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &DirectClient::Write);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &response_);
    curl_easy_setopt(curl_, CURLOPT_POST, 1L);
    reader_.reset(Json::CharReaderBuilder().newCharReader());
    body_.reserve(4096);
    response_.reserve(4096);
  }
  ~DirectClient() override {
    curl_easy_cleanup(curl_);
    curl_slist_free_all(headers_);
  }

  int Status() override { return kUnimplemented; }

  int Encrypt(const std::string& plaintext, const std::string&, std::string* ciphertext,
              std::string* key_id) override {
    body_ = "{\"plaintext\":\"" + broker::Base64Encode(plaintext) + "\"}";
    int code = Post(encrypt_url_);
    if (code != kOk) return code;
    const Json::Value& ct = Data()["ciphertext"];
    if (!ct.isString()) return kInternal;
    *ciphertext = ct.asString();
    key_id->clear();
    return kOk;
  }

  int Decrypt(const std::string& ciphertext, const std::string&, const std::string&,
              std::string* plaintext) override {
    // Vault ciphertext is "vault:vN:" + base64: nothing in it needs JSON escaping.
    body_ = "{\"ciphertext\":\"" + ciphertext + "\"}";
    int code = Post(decrypt_url_);
    if (code != kOk) return code;
    const Json::Value& pt = Data()["plaintext"];
    if (!pt.isString() || !broker::Base64Decode(pt.asString(), plaintext)) return kInternal;
    return kOk;
  }

 private:
  static size_t Write(char* ptr, size_t size, size_t nmemb, void* userdata) {
    static_cast<std::string*>(userdata)->append(ptr, size * nmemb);
    return size * nmemb;
  }

  // The answer's "data" object, or null: never throws on an unexpected shape.
  const Json::Value& Data() const {
    static const Json::Value kNull;
    const Json::Value& j = json_;
    return j.isObject() && j["data"].isObject() ? j["data"] : kNull;
  }

  int Post(const std::string& url) {
    response_.clear();
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body_.data());
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(body_.size()));
    CURLcode rc = curl_easy_perform(curl_);
    if (rc == CURLE_OPERATION_TIMEDOUT) return kDeadlineExceeded;
    if (rc != CURLE_OK) return kUnavailable;
    long status = 0;
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &status);
    if (status == 400) return kInvalidArgument;
    if (status == 403) return kPermissionDenied;
    if (status == 429) return kResourceExhausted;
    if (status != 200) return kUnavailable;
    std::string errs;
    json_ = Json::Value();
    if (!reader_->parse(response_.data(), response_.data() + response_.size(), &json_, &errs))
      return kInternal;
    return kOk;
  }

  const std::string encrypt_url_, decrypt_url_;
  CURL* curl_ = nullptr;
  curl_slist* headers_ = nullptr;
  std::unique_ptr<Json::CharReader> reader_;
  std::string body_, response_;
  Json::Value json_;
};

}  // namespace

std::unique_ptr<Client> NewDirectClient(const DirectTarget& target) {
  return std::make_unique<DirectClient>(target);
}

void InFlightGate::Enter() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return free_ > 0; });
  --free_;
}

void InFlightGate::Leave() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++free_;
  }
  cv_.notify_one();
}

namespace {

class GatedClient : public Client {
 public:
  GatedClient(std::unique_ptr<Client> inner, InFlightGate* gate)
      : inner_(std::move(inner)), gate_(gate) {}
  int Status() override { return inner_->Status(); }
  int Encrypt(const std::string& plaintext, const std::string& uid, std::string* ciphertext,
              std::string* key_id) override {
    gate_->Enter();
    int code = inner_->Encrypt(plaintext, uid, ciphertext, key_id);
    gate_->Leave();
    return code;
  }
  int Decrypt(const std::string& ciphertext, const std::string& key_id, const std::string& uid,
              std::string* plaintext) override {
    gate_->Enter();
    int code = inner_->Decrypt(ciphertext, key_id, uid, plaintext);
    gate_->Leave();
    return code;
  }

 private:
  std::unique_ptr<Client> inner_;
  InFlightGate* gate_;
};

}  // namespace

std::unique_ptr<Client> NewGatedClient(std::unique_ptr<Client> inner, InFlightGate* gate) {
  return std::make_unique<GatedClient>(std::move(inner), gate);
}

}  // namespace vkms::bench
