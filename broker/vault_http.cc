#include "broker/vault_http.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <json/reader.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

#include "shared/log.h"
#include "shared/secret.h"

namespace vkms::broker {
namespace {

// Transit answers are a few hundred bytes; key metadata about a kilobyte per version. Below
// glibc's large-request size (1024) so the per-call buffer never triggers malloc_consolidate
// (perf: ~2% of the broker's CPU at 64 concurrent with 16 KiB); a bigger answer grows it.
constexpr size_t kInitialBodyReserve = 1000;
constexpr std::chrono::milliseconds kMinConnectBudget{200};

std::once_flag g_curl_once;

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
      .count();
}

// Rounded up, so a libcurl timeout set from it never fires before the caller's deadline.
std::chrono::milliseconds Remaining(Deadline deadline) {
  return std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
}

// Text from the network or from libcurl, made fit for a log line or a Status: no control
// characters, bounded length.
std::string SafeText(std::string_view in, size_t max_len) {
  std::string out;
  out.reserve(std::min(in.size(), max_len) + 3);
  for (char c : in) {
    if (out.size() >= max_len) {
      out += "...";
      break;
    }
    unsigned char u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f ? ' ' : c);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// The reason an operator needs, without libcurl's internals.
std::string CurlReason(CURLcode rc, long os_errno, const char* errbuf) {
  std::string detail = SafeText(errbuf != nullptr ? errbuf : "", 160);
  auto with = [&](const char* what) {
    return detail.empty() ? std::string(what) : std::string(what) + ": " + detail;
  };
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
      return "could not resolve host";
    case CURLE_COULDNT_CONNECT:
      switch (os_errno) {
        case ECONNREFUSED:
          return "connection refused";
        case EHOSTUNREACH:
          return "host unreachable";
        case ENETUNREACH:
          return "network unreachable";
        case ETIMEDOUT:
          return "connection timed out";
        case EACCES:
        case EPERM:
          return "connection not permitted by the sandbox";
        default:
          return "could not connect";
      }
    case CURLE_OPERATION_TIMEDOUT:
      return "timed out";
    case CURLE_PEER_FAILED_VERIFICATION:
      return with("TLS certificate verification failed");
    case CURLE_SSL_CONNECT_ERROR:
      return with("TLS handshake failed");
    case CURLE_SSL_CACERT_BADFILE:
      return with("cannot load CA certificates");
    case CURLE_SSL_CERTPROBLEM:
      return with("cannot use client certificate");
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_USE_SSL_FAILED:
      return with("TLS error");
    // Often a TLS alert (e.g. "certificate required" when Vault wants a client certificate).
    case CURLE_SEND_ERROR:
      return with("connection error while sending");
    case CURLE_RECV_ERROR:
      return with("connection error while receiving");
    case CURLE_GOT_NOTHING:
      return "empty reply from server";
    case CURLE_UNSUPPORTED_PROTOCOL:
      return "protocol not allowed";
    case CURLE_WRITE_ERROR:
      return "response too large";
    case CURLE_ABORTED_BY_CALLBACK:
      return "cancelled";
    case CURLE_OUT_OF_MEMORY:
      return "out of memory";
    default:
      return SafeText(curl_easy_strerror(rc), 80);
  }
}

// Transport failures worth another try after a pause: the server may come back. TLS
// verification and configuration problems are not.
bool TransientCurlError(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
      return true;
    default:
      return false;
  }
}

// Failures of TLS itself: Vault (or something) answered at that address, but the handshake or
// the certificate check failed. A TLS alert from the server (e.g. "certificate required" when
// Vault wants a client certificate) arrives as a send/receive error naming OpenSSL.
bool TlsCurlError(CURLcode rc, const char* errbuf) {
  switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
      return true;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
      // Not every error inside SSL_read is TLS's: "Connection reset by peer" is the network.
      return errbuf != nullptr &&
             (strstr(errbuf, "SSL routines") != nullptr || strstr(errbuf, " alert ") != nullptr);
    default:
      return false;
  }
}

int Cancelled(void* flag, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<const std::atomic<bool>*>(flag)->load() ? 1 : 0;
}

}  // namespace

std::string TransportFailureReason(const VaultResponse& r) {
  return (r.tls_failure ? "vault TLS error: " : "vault unreachable: ") + r.error;
}

std::chrono::milliseconds Jitter(std::chrono::milliseconds d) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  if (d.count() <= 1) return d;
  std::uniform_int_distribution<int64_t> dist(d.count() / 2, d.count());
  return std::chrono::milliseconds(dist(rng));
}

void EnsureCurlGlobalInit() {
  std::call_once(g_curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct VaultHttp::Endpoint {
  std::string addr;    // as configured, for logs
  std::string scheme;  // "https" (or "http" when the operator asked for it explicitly)
  std::string host;    // as it appears in a URL (IPv6 in brackets)
  long port = 0;
  std::string path;  // request path and query, for redirect targets only
};

struct VaultHttp::Share {
  CURLSH* sh = nullptr;
  std::mutex mu[CURL_LOCK_DATA_LAST];

  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* userptr) {
    static_cast<Share*>(userptr)->mu[data].lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* userptr) {
    static_cast<Share*>(userptr)->mu[data].unlock();
  }
  ~Share() {
    if (sh != nullptr) curl_share_cleanup(sh);
  }
};

struct VaultHttp::Exchange {
  CURLcode rc = CURLE_OK;
  long status = 0;
  long os_errno = 0;
  std::string body;
  size_t max_body = 0;
  std::string redirect_url;
  int64_t retry_after_s = 0;
  char errbuf[CURL_ERROR_SIZE] = {0};

  ~Exchange() { WipeString(&body); }
};

size_t VaultHttp::WriteBody(char* ptr, size_t size, size_t nmemb, void* userdata) {
  auto* ex = static_cast<Exchange*>(userdata);
  size_t n = size * nmemb;
  if (ex->body.size() + n > ex->max_body) return 0;  // makes curl fail with CURLE_WRITE_ERROR
  if (ex->body.size() + n > ex->body.capacity()) {
    // Grow by hand so the old buffer, which may hold a token or plaintext, is wiped.
    std::string bigger;
    bigger.reserve(std::max(2 * ex->body.capacity(), ex->body.size() + n));
    bigger.append(ex->body);
    WipeString(&ex->body);
    ex->body.swap(bigger);
  }
  ex->body.append(ptr, n);
  return n;
}

namespace {

std::string UrlPart(CURLU* u, CURLUPart part, unsigned flags = 0) {
  char* v = nullptr;
  std::string out;
  if (curl_url_get(u, part, &v, flags) == CURLUE_OK && v != nullptr) out = v;
  curl_free(v);
  return out;
}

// Parses an absolute URL into scheme/host/port and path+query. For configured addresses
// (`base_only`) anything beyond scheme://host[:port][/] is refused.
bool ParseUrl(const std::string& text, bool base_only, std::string* scheme, std::string* host,
              long* port, std::string* path, std::string* error) {
  CURLU* u = curl_url();
  if (u == nullptr) {
    *error = "out of memory";
    return false;
  }
  bool ok = false;
  if (curl_url_set(u, CURLUPART_URL, text.c_str(), 0) != CURLUE_OK) {
    *error = "not an absolute URL";
  } else {
    *scheme = UrlPart(u, CURLUPART_SCHEME);
    *host = UrlPart(u, CURLUPART_HOST);
    std::string p = UrlPart(u, CURLUPART_PORT, CURLU_DEFAULT_PORT);
    *path = UrlPart(u, CURLUPART_PATH);
    std::string query = UrlPart(u, CURLUPART_QUERY);
    if (!query.empty()) *path += "?" + query;
    bool has_user = !UrlPart(u, CURLUPART_USER).empty();
    char* end = nullptr;
    *port = std::strtol(p.c_str(), &end, 10);
    if (*scheme != "https" && *scheme != "http") {
      *error = "scheme must be https";
    } else if (host->empty() || *port <= 0 || *port > 65535 || end == p.c_str()) {
      *error = "missing host or port";
    } else if (has_user) {
      *error = "credentials in the URL are not allowed";
    } else if (base_only && ((*path != "/" && !path->empty()) || !query.empty() ||
                             !UrlPart(u, CURLUPART_FRAGMENT).empty())) {
      *error = "must be scheme://host:port with no path";
    } else {
      ok = true;
    }
  }
  curl_url_cleanup(u);
  return ok;
}

// "127.0.0.1", "::1" or "[::1]" (a URL's form), but not a name.
bool IsIpLiteral(std::string host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

bool FailoverWorthy(const VaultResponse& r) {
  if (r.transport == Code::kUnavailable) return true;
  if (r.transport != Code::kOk) return false;
  return r.status == 503 && (r.error.find("sealed") != std::string::npos ||
                             r.error.find("no active Vault instance") != std::string::npos);
}

}  // namespace

void WipeJsonString(Json::Value* v) {
  if (v == nullptr || !v->isString()) return;
  const char* begin = nullptr;
  const char* end = nullptr;
  // jsoncpp hands out its own buffer here; the value is heap storage we own, so writing
  // through it is safe even though the accessor is const.
  if (v->getString(&begin, &end) && begin != nullptr && end > begin) {
    WipeMemory(const_cast<char*>(begin), static_cast<size_t>(end - begin));
  }
  *v = Json::Value();
}

void WipeTokenFields(Json::Value* json) {
  if (!json->isObject()) return;
  for (const char* block : {"auth", "data"}) {
    Json::Value& b = (*json)[block];
    if (!b.isObject()) continue;
    for (const char* f : {"client_token", "id", "accessor"}) {
      if (b.isMember(f)) WipeJsonString(&b[f]);
    }
  }
}

void RedactSecret(std::string* text, std::string_view secret) {
  if (secret.empty()) return;
  for (size_t pos = text->find(secret); pos != std::string::npos; pos = text->find(secret, pos)) {
    text->replace(pos, secret.size(), "[redacted]");
    pos += 10;
  }
}

namespace {

// Vault wraps many errors in go-multierror's text: "2 errors occurred:\n\t* a\n\t* b\n\n".
// Returns the items ("a", "b"), or the message itself when it is not in that form.
std::vector<std::string> SplitMultiError(const std::string& msg) {
  size_t colon = msg.find(" occurred:");
  if (colon == std::string::npos || msg.find("error") > colon) return {msg};
  std::vector<std::string> items;
  for (size_t pos = msg.find("* ", colon); pos != std::string::npos; pos = msg.find("* ", pos)) {
    pos += 2;
    size_t end = msg.find('\n', pos);
    items.push_back(msg.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
    if (end == std::string::npos) break;
    pos = end;
  }
  if (items.empty()) items.push_back(msg);
  return items;
}

}  // namespace

bool JsonInt64(const Json::Value& v, int64_t* out) {
  if (v.isInt64()) {
    *out = v.asInt64();
    return true;
  }
  if (v.isDouble()) {
    // Exclusive bounds that are exact doubles: 2^63 itself does not fit in int64.
    const double d = v.asDouble();
    if (!std::isfinite(d) || d <= -9223372036854775808.0 || d >= 9223372036854775808.0)
      return false;
    *out = static_cast<int64_t>(d);
    return true;
  }
  if (v.isString()) {
    const std::string s = v.asString();
    if (s.empty() || s.size() > 19) return false;
    int64_t n = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      n = n * 10 + (c - '0');
    }
    *out = n;
    return true;
  }
  return false;
}

int64_t JsonInt(const Json::Value& obj, const char* name) {
  int64_t n = 0;
  return obj.isObject() && JsonInt64(obj[name], &n) ? n : 0;
}

std::string SafeVaultErrors(const Json::Value& json, size_t max_len) {
  if (!json.isObject()) return "";
  const Json::Value& errors = json["errors"];
  if (!errors.isArray()) return "";
  std::string joined;
  for (const auto& e : errors) {
    if (!e.isString()) continue;
    for (const std::string& item : SplitMultiError(e.asString())) {
      if (!joined.empty()) joined += "; ";
      joined += item;
    }
    if (joined.size() > max_len) break;
  }
  return SafeText(joined, max_len);
}

bool VaultAddrsNeedDns(const VaultConfig& config) {
  for (const auto& addr : config.addrs) {
    std::string scheme, host, path, error;
    long port = 0;
    if (!ParseUrl(addr, true, &scheme, &host, &port, &path, &error) || !IsIpLiteral(host)) {
      return true;
    }
  }
  return false;
}

VaultConfig WithoutRoleId(VaultConfig config) {
  WipeString(&config.role_id);
  return config;
}

VaultHttp::VaultHttp(const VaultConfig& config, Options options)
    : config_(WithoutRoleId(config)), options_(options), share_(std::make_unique<Share>()) {
  EnsureCurlGlobalInit();
  if (config_.addrs.empty()) config_error_ = "no vault address configured";
  for (const auto& addr : config_.addrs) {
    Endpoint ep;
    ep.addr = addr;
    std::string error;
    if (!ParseUrl(addr, true, &ep.scheme, &ep.host, &ep.port, &ep.path, &error)) {
      if (config_error_.empty())
        config_error_ = "invalid vault address " + SafeText(addr, 100) + ": " + error;
      continue;
    }
    ep.path.clear();
    if (ep.scheme == "http") {
      log::Warning("vault address uses plain http: the token travels unencrypted",
                   {{"addr", ep.addr}});
    }
    endpoints_.push_back(std::move(ep));
  }
  if (!config_.client_key.empty() && config_.client_cert.empty() && config_error_.empty()) {
    config_error_ = "a TLS client key needs a client certificate";
  }
  needs_dns_ = VaultAddrsNeedDns(config_);
  if (config_.max_redirects < 0 || config_.max_retries < 0) {
    if (config_error_.empty()) config_error_ = "max redirects/retries must not be negative";
  }

  share_->sh = curl_share_init();
  if (share_->sh != nullptr) {
    // DNS answers and TLS sessions are shared; connections stay per easy handle because
    // libcurl does not support sharing a connection cache between concurrent threads.
    curl_share_setopt(share_->sh, CURLSHOPT_LOCKFUNC, &Share::Lock);
    curl_share_setopt(share_->sh, CURLSHOPT_UNLOCKFUNC, &Share::Unlock);
    curl_share_setopt(share_->sh, CURLSHOPT_USERDATA, share_.get());
    curl_share_setopt(share_->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(share_->sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  }
}

VaultHttp::~VaultHttp() {
  std::lock_guard<std::mutex> lock(pool_mu_);
  for (void* h : pool_) curl_easy_cleanup(static_cast<CURL*>(h));
  pool_.clear();
}

void* VaultHttp::CheckoutHandle() {
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (!pool_.empty()) {
      void* h = pool_.back();
      pool_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void VaultHttp::ReturnHandle(void* handle) {
  if (handle == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    // Bound idle handles (and their open connections) by the broker's concurrency.
    if (pool_.size() < static_cast<size_t>(std::max(config_.workers, 1))) {
      pool_.push_back(handle);
      return;
    }
  }
  curl_easy_cleanup(static_cast<CURL*>(handle));
}

void VaultHttp::Perform(const VaultRequest& req, const Endpoint& ep, const std::string& url,
                        std::chrono::milliseconds connect_budget, Exchange* ex) {
  CURL* h = static_cast<CURL*>(CheckoutHandle());
  if (h == nullptr) {
    ex->rc = CURLE_OUT_OF_MEMORY;
    return;
  }
  // reset keeps the handle's live connections, TLS session and DNS caches: that is the reuse.
  curl_easy_reset(h);

  std::chrono::milliseconds remaining = Remaining(req.deadline);
  if (remaining.count() < 1) remaining = std::chrono::milliseconds(1);
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, ep.scheme.c_str());
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(remaining.count()));
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min(remaining, connect_budget).count()));
  // Each pooled handle owns its connections; HTTP/2 multiplexing would need the multi API.
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
  // The broker talks to Vault directly; the sandbox only allows connecting to Vault's ports.
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  // Like Vault's own client: a configured CA file or directory replaces the system trust
  // store instead of adding to it (NULL switches libcurl's built-in default off).
  if (!config_.ca_file.empty() || !config_.ca_path.empty()) {
    curl_easy_setopt(h, CURLOPT_CAINFO,
                     config_.ca_file.empty() ? nullptr : config_.ca_file.c_str());
    curl_easy_setopt(h, CURLOPT_CAPATH,
                     config_.ca_path.empty() ? nullptr : config_.ca_path.c_str());
  }
  if (!config_.client_cert.empty()) {
    curl_easy_setopt(h, CURLOPT_SSLCERT, config_.client_cert.c_str());
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
  }
  if (!config_.client_key.empty()) curl_easy_setopt(h, CURLOPT_SSLKEY, config_.client_key.c_str());
  if (share_->sh != nullptr) curl_easy_setopt(h, CURLOPT_SHARE, share_->sh);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ex->errbuf);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "vault-kms/" VKMS_VERSION);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &WriteBody);
  if (req.cancel != nullptr) {
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &Cancelled);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, const_cast<std::atomic<bool>*>(req.cancel));
  }
  curl_easy_setopt(h, CURLOPT_WRITEDATA, ex);

  // With a server-name override the URL carries that name (so SNI, certificate verification
  // and Host use it) while CONNECT_TO sends the TCP connection to the real address. This
  // works for IP addresses too, unlike CURLOPT_RESOLVE.
  curl_slist* connect_to = nullptr;
  if (!config_.tls_server_name.empty()) {
    std::string name = config_.tls_server_name;
    if (name.find(':') != std::string::npos) name = "[" + name + "]";
    std::string entry =
        name + ":" + std::to_string(ep.port) + ":" + ep.host + ":" + std::to_string(ep.port);
    connect_to = curl_slist_append(nullptr, entry.c_str());
    curl_easy_setopt(h, CURLOPT_CONNECT_TO, connect_to);
  }

  curl_slist* headers = nullptr;
  bool headers_ok = true;
  auto add_header = [&](const std::string& line) {
    curl_slist* next = curl_slist_append(headers, line.c_str());
    if (next == nullptr)
      headers_ok = false;
    else
      headers = next;
  };
  add_header("X-Vault-Request: true");
  add_header("Expect:");  // no 100-continue round trip
  if (!req.ns.empty()) add_header("X-Vault-Namespace: " + req.ns);
  if (!req.token.empty()) {
    std::string line;
    line.reserve(16 + req.token.size());
    line.append("X-Vault-Token: ");
    line.append(req.token);
    add_header(line);
    WipeString(&line);
  }
  if (req.method == HttpMethod::kPost) {
    add_header("Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    // POSTFIELDS (not COPYPOSTFIELDS): libcurl reads the caller's buffer, no copy to wipe.
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body.empty() ? "" : req.body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  } else {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);

  ex->max_body = options_.max_response_bytes;
  ex->body.reserve(kInitialBodyReserve);
  ex->rc = headers_ok ? curl_easy_perform(h) : CURLE_OUT_OF_MEMORY;
  if (ex->rc == CURLE_OK) {
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ex->status);
    char* redirect = nullptr;
    if (curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &redirect) == CURLE_OK && redirect != nullptr) {
      ex->redirect_url = redirect;
    }
    curl_off_t retry_after = 0;
    if (curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK) {
      ex->retry_after_s = static_cast<int64_t>(retry_after);
    }
  } else {
    curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &ex->os_errno);
  }
  long new_connections = 0;
  if (curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &new_connections) == CURLE_OK &&
      new_connections > 0) {
    connections_opened_ += static_cast<uint64_t>(new_connections);
  }

  // libcurl strdup'ed the header lines, the token among them: wipe before freeing.
  for (curl_slist* p = headers; p != nullptr; p = p->next) WipeMemory(p->data, strlen(p->data));
  // Detach our lists and buffers from the handle before it goes back to the pool.
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(h, CURLOPT_CONNECT_TO, nullptr);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, nullptr);
  curl_slist_free_all(headers);
  curl_slist_free_all(connect_to);
  ReturnHandle(h);
}

VaultResponse VaultHttp::TryEndpoint(const VaultRequest& req, const Endpoint& base,
                                     size_t remaining_addrs) {
  VaultResponse resp;
  resp.addr = base.addr;
  Endpoint ep = base;
  std::string path = "/v1/" + req.path;
  for (int hop = 0;; ++hop) {
    std::chrono::milliseconds remaining = Remaining(req.deadline);
    if (remaining.count() <= 0) {
      resp.transport = Code::kDeadlineExceeded;
      resp.error = "deadline exceeded before vault answered";
      return resp;
    }
    // Leave time for the addresses after this one if this one black-holes the SYN.
    std::chrono::milliseconds connect_budget = std::max(
        kMinConnectBudget, remaining / static_cast<int64_t>(std::max<size_t>(remaining_addrs, 1)));
    std::string url_host = ep.host;
    if (!config_.tls_server_name.empty()) {
      url_host = config_.tls_server_name;
      if (url_host.find(':') != std::string::npos) url_host = "[" + url_host + "]";
    }
    std::string url = ep.scheme + "://" + url_host + ":" + std::to_string(ep.port) + path;

    Exchange ex;
    Clock::time_point started = Clock::now();
    Perform(req, ep, url, connect_budget, &ex);
    ++resp.attempts;
    int64_t ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();

    if (ex.rc != CURLE_OK) {
      // libcurl's clock and ours differ by a hair: a timeout this close to the deadline is it.
      bool timed_out = ex.rc == CURLE_OPERATION_TIMEDOUT &&
                       Clock::now() + std::chrono::milliseconds(5) >= req.deadline;
      resp.transport = timed_out ? Code::kDeadlineExceeded : Code::kUnavailable;
      resp.error = timed_out ? std::string("vault did not answer before the deadline")
                             : CurlReason(ex.rc, ex.os_errno, ex.errbuf);
      resp.status = 0;
      resp.transient = !timed_out && TransientCurlError(ex.rc);
      resp.tls_failure = !timed_out && TlsCurlError(ex.rc, ex.errbuf);
      log::Debug("vault request failed", [&] {
        return log::Fields{
            {"path", req.path}, {"addr", ep.addr}, {"error", resp.error}, {"ms", ms}};
      });
      return resp;
    }

    resp.transport = Code::kOk;
    resp.transient = false;
    resp.tls_failure = false;
    resp.retry_after = std::chrono::seconds(ex.retry_after_s);
    resp.status = ex.status;
    resp.json = Json::Value();
    resp.error.clear();
    resp.warnings.clear();
    if (!ex.body.empty()) {
      Json::CharReaderBuilder rb;
      rb["collectComments"] = false;
      std::unique_ptr<Json::CharReader> reader(rb.newCharReader());
      std::string errs;
      if (!reader->parse(ex.body.data(), ex.body.data() + ex.body.size(), &resp.json, &errs)) {
        resp.json = Json::Value();
      }
      WipeString(&ex.body);
    }
    if (resp.json.isObject() && resp.json["warnings"].isArray()) {
      for (const auto& w : resp.json["warnings"]) {
        if (w.isString()) resp.warnings.push_back(SafeText(w.asString(), 200));
      }
    }
    if (ex.status >= 400) {
      resp.error = SafeVaultErrors(resp.json);
    }
    log::Debug("vault request", [&] {
      return log::Fields{{"path", req.path}, {"addr", ep.addr}, {"status", ex.status}, {"ms", ms}};
    });

    if (ex.status != 307 && ex.status != 308) return resp;

    // A standby points at the active node. Follow it ourselves: same method and body, a
    // bounded number of hops, and never from https to anything weaker.
    if (hop >= config_.max_redirects) {
      resp.transport = Code::kUnavailable;
      resp.error = "too many redirects from vault standby nodes";
      return resp;
    }
    Endpoint next;
    next.addr = base.addr;
    std::string error;
    if (ex.redirect_url.empty() || !ParseUrl(ex.redirect_url, false, &next.scheme, &next.host,
                                             &next.port, &next.path, &error)) {
      resp.transport = Code::kUnavailable;
      resp.error = "vault sent a redirect without a usable location";
      return resp;
    }
    if (next.scheme != "https" && !(next.scheme == "http" && ep.scheme == "http")) {
      resp.transport = Code::kUnavailable;
      resp.error = "refusing vault redirect to a non-https address";
      return resp;
    }
    // The broker may connect only to the ports of its --vault-addr values (Landlock enforces it
    // when confined). Refuse any other port here, confined or not, so the behaviour does not
    // depend on the kernel and the reason names the fix instead of a sandbox denial.
    if (std::none_of(endpoints_.begin(), endpoints_.end(),
                     [&](const Endpoint& e) { return e.port == next.port; })) {
      resp.transport = Code::kUnavailable;
      resp.error = "vault standby redirected to port " + std::to_string(next.port) +
                   ", which is not the port of any --vault-addr; list the active node's address "
                   "in --vault-addr";
      return resp;
    }
    // With IP addresses only, the sandbox has no UDP: a name would kill the lookup. Refuse it
    // here, with the fix, before anything tries to resolve it.
    if (!needs_dns_ && !IsIpLiteral(next.host) &&
        !(!config_.tls_server_name.empty() &&
          (IEquals(next.host, url_host) || IEquals(next.host, config_.tls_server_name)))) {
      resp.transport = Code::kUnavailable;
      resp.error = "vault standby redirected to host " + SafeText(next.host, 100) +
                   ", a name, while every --vault-addr is an IP address (the broker then resolves "
                   "no names); list the active node's address in --vault-addr";
      return resp;
    }
    // A relative Location resolves against our URL, whose host is the override name.
    if (!config_.tls_server_name.empty() &&
        (IEquals(next.host, url_host) || IEquals(next.host, config_.tls_server_name))) {
      next.host = ep.host;
    }
    log::Debug("following vault redirect",
               {{"from", ep.addr},
                {"to", next.scheme + "://" + next.host + ":" + std::to_string(next.port)}});
    path = next.path.empty() ? path : next.path;
    ep = std::move(next);
  }
}

VaultResponse VaultHttp::TryAddresses(const VaultRequest& req) {
  size_t n = endpoints_.size();
  size_t start = preferred_.load() % n;
  if (start != 0) {
    // Sticky to the address that last worked, but now and then let one call check whether
    // an earlier (preferred by the operator) address is back.
    int64_t now = SteadyMs();
    int64_t last = last_reprobe_ms_.load();
    if (now - last >= options_.reprobe_interval.count() &&
        last_reprobe_ms_.compare_exchange_strong(last, now)) {
      start = 0;
    }
  }
  VaultResponse last;
  for (size_t k = 0; k < n; ++k) {
    size_t i = (start + k) % n;
    VaultResponse r = TryEndpoint(req, endpoints_[i], n - k);
    if (!FailoverWorthy(r)) {
      if (r.transport == Code::kOk && preferred_.exchange(i) != i) {
        // The reprobe clock starts when we move, not at start-up.
        last_reprobe_ms_.store(SteadyMs());
        log::Info("vault address in use", {{"addr", endpoints_[i].addr}});
      }
      r.attempts += last.attempts;
      return r;
    }
    if (n > 1) {
      log::Warning("vault address failed; trying the next one",
                   {{"addr", endpoints_[i].addr}, {"error", r.error}});
    }
    r.attempts += last.attempts;
    last = std::move(r);
  }
  return last;
}

VaultResponse VaultHttp::Call(const VaultRequest& req) {
  auto start = Clock::now();
  VaultResponse resp = CallUntimed(req);
  request_metrics_.Record(req.path, resp.status,
                          std::chrono::duration<double>(Clock::now() - start).count());
  // Sealed, leaderless or behind a failing gateway counts as away; the caller's own deadline
  // or a cancellation says nothing about Vault.
  const bool cancelled = req.cancel != nullptr && req.cancel->load();
  const bool away = resp.transport == Code::kUnavailable ||
                    (resp.transport == Code::kOk &&
                     (resp.status == 502 || resp.status == 503 || resp.status == 504));
  if (!cancelled && (away || resp.transport == Code::kOk)) {
    std::string why =
        resp.transport == Code::kOk
            ? "HTTP " + std::to_string(resp.status) + (resp.error.empty() ? "" : ": " + resp.error)
            : TransportFailureReason(resp);
    if (auto back = reachability_.Observe(!away, why, Clock::now())) {
      const double seconds = static_cast<double>(back->away.count()) / 1000;
      log::Info("vault reachable again",
                {{"away_seconds", seconds}, {"last_error", back->last_error}, {"addr", resp.addr}});
    }
  }
  return resp;
}

VaultResponse VaultHttp::CallUntimed(const VaultRequest& req) {
  VaultResponse resp;
  if (!config_error_.empty() || endpoints_.empty()) {
    resp.transport = Code::kFailedPrecondition;
    resp.error = config_error_.empty() ? "no usable vault address" : config_error_;
    return resp;
  }
  int attempts = 0;
  for (int retry = 0;; ++retry) {
    if (Clock::now() >= req.deadline) {
      if (retry == 0) {
        resp.transport = Code::kDeadlineExceeded;
        resp.error = "deadline exceeded before the vault request";
      }
      resp.attempts = attempts;
      return resp;
    }
    resp = TryAddresses(req);
    attempts += resp.attempts;
    resp.attempts = attempts;

    bool retryable = (resp.transport == Code::kUnavailable && resp.transient) ||
                     (resp.transport == Code::kOk && (resp.status == 429 || resp.status == 500 ||
                                                      resp.status == 502 || resp.status == 503));
    if (!retryable || retry >= config_.max_retries) return resp;

    std::chrono::milliseconds delay = Jitter(
        std::min(options_.retry_max, options_.retry_base * (int64_t{1} << std::min(retry, 20))));
    // Retry-After is the server's own estimate; it may exceed retry_max but never the deadline.
    if (resp.status == 429 && resp.retry_after.count() > 0) delay = resp.retry_after;
    if (Clock::now() + delay >= req.deadline) return resp;
    if (req.cancel != nullptr && req.cancel->load()) return resp;
    log::Debug("retrying vault request", [&] {
      return log::Fields{{"path", req.path},
                         {"status", resp.status},
                         {"error", resp.error},
                         {"delay_ms", delay.count()}};
    });
    // Sleep in slices so a cancelled background call does not hold up Stop().
    for (Clock::time_point until = Clock::now() + delay; Clock::now() < until;) {
      if (req.cancel != nullptr && req.cancel->load()) return resp;
      std::this_thread::sleep_for(
          std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(50)));
    }
  }
}

}  // namespace vkms::broker
