// A small libcurl HTTPS client for tests that talk to Vault (simulated or real): verifies the
// server against a CA file, keeps one connection alive per instance, and returns status, parsed
// JSON body and headers. Not thread-safe; use one instance per thread.
#pragma once

#include <curl/curl.h>
#include <json/json.h>

#include <map>
#include <string>

namespace vkms::testing {

struct HttpResult {
  long status = 0;  // 0 when no HTTP response arrived (see curl_code/error)
  CURLcode curl_code = CURLE_OK;
  std::string error;                           // libcurl's explanation when status == 0
  std::string body;                            // raw body
  Json::Value json;                            // parsed body; null when empty or not JSON
  std::map<std::string, std::string> headers;  // lower-case names
  double seconds = 0;                          // total time of the exchange

  // Header value by case-insensitive name, "" when absent.
  std::string Header(const std::string& name) const;
  // The first entry of Vault's "errors" array, "" when there is none.
  std::string FirstError() const;
};

class VaultHttp {
 public:
  VaultHttp(std::string addr, std::string ca_file);
  ~VaultHttp();
  VaultHttp(const VaultHttp&) = delete;
  VaultHttp& operator=(const VaultHttp&) = delete;

  void SetClientCertificate(const std::string& cert_file, const std::string& key_file);
  void SetTimeoutMs(long ms) { timeout_ms_ = ms; }

  // `method`: GET, POST, PUT, DELETE, or LIST (sent as GET ?list=true, as Vault's own client
  // does). `path`: a Vault path sent under /v1/ ("transit/encrypt/kms"), or a raw URL path when
  // it starts with '/' ("/_sim/seal"). A null body sends no JSON (POST/PUT send an empty body).
  HttpResult Call(const std::string& method, const std::string& path,
                  const Json::Value& body = Json::Value(), const std::string& token = "",
                  const std::string& ns = "");

  const std::string& addr() const { return addr_; }

 private:
  std::string addr_;
  std::string ca_file_;
  std::string cert_file_;
  std::string key_file_;
  long timeout_ms_ = 10000;
  CURL* curl_;
};

std::string ToJsonString(const Json::Value& v);

}  // namespace vkms::testing
