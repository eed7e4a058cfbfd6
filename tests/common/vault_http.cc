#include "vault_http.h"

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>

namespace vkms::testing {
namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* headers = static_cast<std::map<std::string, std::string>*>(user);
  std::string line(data, size * n);
  // A new status line (e.g. after "100 Continue") starts a new header set.
  if (line.compare(0, 5, "HTTP/") == 0) headers->clear();
  const size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    value.erase(value.find_last_not_of(" \t\r\n") + 1);
    (*headers)[Lower(line.substr(0, colon))] = value;
  }
  return size * n;
}

}  // namespace

std::string HttpResult::Header(const std::string& name) const {
  auto it = headers.find(Lower(name));
  return it == headers.end() ? "" : it->second;
}

std::string HttpResult::FirstError() const {
  if (json.isObject() && json["errors"].isArray() && !json["errors"].empty() &&
      json["errors"][0].isString()) {
    return json["errors"][0].asString();
  }
  return "";
}

std::string ToJsonString(const Json::Value& v) {
  Json::StreamWriterBuilder b;
  b["indentation"] = "";
  return Json::writeString(b, v);
}

VaultHttp::VaultHttp(std::string addr, std::string ca_file)
    : addr_(std::move(addr)), ca_file_(std::move(ca_file)) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  curl_ = curl_easy_init();
  if (!curl_) throw std::runtime_error("curl_easy_init failed");
}

VaultHttp::~VaultHttp() {
  curl_easy_cleanup(curl_);
}

void VaultHttp::SetClientCertificate(const std::string& cert_file, const std::string& key_file) {
  cert_file_ = cert_file;
  key_file_ = key_file;
}

HttpResult VaultHttp::Call(const std::string& method, const std::string& path,
                           const Json::Value& body, const std::string& token,
                           const std::string& ns) {
  HttpResult result;
  std::string url = addr_ + (path.empty() || path[0] != '/' ? "/v1/" + path : path);
  std::string verb = method;
  if (method == "LIST") {
    verb = "GET";
    url += url.find('?') == std::string::npos ? "?list=true" : "&list=true";
  }
  const std::string payload = body.isNull() ? "" : ToJsonString(body);

  // Reset per call but keep the handle: its connection cache is what keeps the connection alive.
  curl_easy_reset(curl_);
  curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl_, CURLOPT_CAINFO, ca_file_.c_str());
  curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(curl_, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  if (!cert_file_.empty()) {
    curl_easy_setopt(curl_, CURLOPT_SSLCERT, cert_file_.c_str());
    curl_easy_setopt(curl_, CURLOPT_SSLKEY, key_file_.c_str());
  }
  curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, timeout_ms_);
  curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &result.body);
  curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &result.headers);
  if (verb == "POST" || verb == "PUT") {
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, payload.c_str());
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
  }
  if (verb != "GET" && verb != "POST") {
    curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, verb.c_str());
  }

  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers(nullptr, curl_slist_free_all);
  auto add = [&](const std::string& h) {
    headers.reset(curl_slist_append(headers.release(), h.c_str()));
  };
  add("X-Vault-Request: true");
  if (!payload.empty()) add("Content-Type: application/json");
  if (!token.empty()) add("X-Vault-Token: " + token);
  if (!ns.empty()) add("X-Vault-Namespace: " + ns);
  curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers.get());

  result.curl_code = curl_easy_perform(curl_);
  curl_easy_getinfo(curl_, CURLINFO_TOTAL_TIME, &result.seconds);
  if (result.curl_code != CURLE_OK) {
    result.error = curl_easy_strerror(result.curl_code);
    return result;
  }
  curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &result.status);
  if (!result.body.empty()) {
    Json::CharReaderBuilder b;
    std::string errs;
    std::istringstream in(result.body);
    if (!Json::parseFromStream(b, in, &result.json, &errs)) result.json = Json::Value();
  }
  return result;
}

}  // namespace vkms::testing
