#include "broker/vault/http.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <json/reader.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <mutex>
#include <random>

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

int64_t MicrosSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count();
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
// ---------------------------------------------------------------------------------------------
// The client: a curl multi handle in the event loop, pooled easy handles, and one Transfer per
// logical request.

struct VaultHttp::Slot {
  CURL* easy = nullptr;
  Transfer* transfer = nullptr;  // the transfer using it, while in the multi handle
  std::string body;
  size_t max_body = 0;
  char errbuf[CURL_ERROR_SIZE] = {0};
  // The previous transfer's header list, reused while method, namespace and token are the
  // same (the token changes at a login, not per call). Its token line is wiped when replaced.
  curl_slist* headers = nullptr;
  bool headers_post = false;
  std::string headers_ns;
  const char* token_line = nullptr;  // inside `headers`; null when it carries no token
  bool fresh = false;                // the handle is set for VaultRequest::fresh_connection

  void FreeHeaders() {
    for (curl_slist* p = headers; p != nullptr; p = p->next) WipeMemory(p->data, strlen(p->data));
    curl_slist_free_all(headers);
    headers = nullptr;
    token_line = nullptr;
  }
  ~Slot() {
    FreeHeaders();
    WipeString(&body);
    if (easy != nullptr) curl_easy_cleanup(easy);
  }
};

struct VaultHttp::Transfer {
  TransferId id = 0;
  VaultRequest req;
  Done done;
  Clock::time_point started;
  bool in_start = true;  // inside Start(): a result found now is delivered later
  bool finish_after_start = false;
  bool cancelled = false;  // by Cancel(): says nothing about Vault
  int retry = 0;
  int attempts = 0;  // exchanges of the passes before this one
  // One pass over the addresses, from pass_start; `last` is the previous address's failure.
  size_t pass_start = 0;
  size_t pass_k = 0;
  VaultResponse last;
  // The address being tried (a configured one, or where a standby redirected to).
  size_t addr_index = 0;
  const Endpoint* ep = nullptr;
  Endpoint redirected;
  int hop = 0;
  std::string redirect_path;  // the path of the last redirect that named one
  curl_slist* redirect_connect_to = nullptr;
  Slot* slot = nullptr;
  Clock::time_point exchange_started;
  // The answer of the address being tried; once a pass ends, that pass's result.
  VaultResponse resp;
  EventLoop::Timer backoff;

  ~Transfer() { curl_slist_free_all(redirect_connect_to); }
};

struct VaultHttp::Multi {
  CURLM* multi = nullptr;
  CURLSH* share = nullptr;
  EventLoop::Timer timer;  // libcurl's one timeout
  // Per configured address: CONNECT_TO for the server-name override (else null).
  std::vector<curl_slist*> connect_to;
  std::string protocols;                             // the schemes of the configured addresses
  std::vector<std::pair<Slot*, CURLcode>> finished;  // scratch for ReadCurlMessages
};

// libcurl's C callbacks; they only forward to the client.
struct VaultHttp::Callbacks {
  static size_t Write(char* ptr, size_t size, size_t nmemb, void* userdata) {
    auto* s = static_cast<Slot*>(userdata);
    size_t n = size * nmemb;
    if (s->body.size() + n > s->max_body) return 0;  // makes curl fail with CURLE_WRITE_ERROR
    if (s->body.size() + n > s->body.capacity()) {
      // Grow by hand so the old buffer, which may hold a token or plaintext, is wiped.
      std::string bigger;
      bigger.reserve(std::max(2 * s->body.capacity(), s->body.size() + n));
      bigger.append(s->body);
      WipeString(&s->body);
      s->body.swap(bigger);
    }
    s->body.append(ptr, n);
    return n;
  }

  static int Socket(CURL*, curl_socket_t fd, int what, void* userp, void* socketp) {
    auto* self = static_cast<VaultHttp*>(userp);
    auto* watch = static_cast<EventLoop::FdWatch*>(socketp);
    if (what == CURL_POLL_REMOVE) {
      self->loop_->RemoveFd(watch);
      return 0;
    }
    uint32_t events =
        ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    if (watch == nullptr) {
      watch = self->loop_->AddFd(fd, events, [self, fd](uint32_t ev) {
        int flags = ((ev & EPOLLIN) ? CURL_CSELECT_IN : 0) |
                    ((ev & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                    ((ev & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
        self->SocketAction(fd, flags);
      });
      if (watch == nullptr) return -1;
      curl_multi_assign(self->multi_->multi, fd, watch);
    } else if (!self->loop_->ModifyFd(watch, events)) {
      return -1;
    }
    return 0;
  }

  static int Timer(CURLM*, long timeout_ms, void* userp) {
    auto* self = static_cast<VaultHttp*>(userp);
    self->loop_->CancelTimer(&self->multi_->timer);
    if (timeout_ms < 0) return 0;
    // Never run from here: libcurl does not allow socket_action inside its own callback.
    self->multi_->timer =
        self->loop_->AddTimer(Clock::now() + std::chrono::milliseconds(timeout_ms), [self] {
          self->multi_->timer = EventLoop::Timer();
          self->SocketAction(CURL_SOCKET_TIMEOUT, 0);
        });
    return 0;
  }
};

VaultHttp::VaultHttp(const VaultConfig& config, EventLoop* loop, Options options)
    : config_(WithoutRoleId(config)), options_(options), loop_(loop) {
  Init();
}

VaultHttp::VaultHttp(const VaultConfig& config, Options options)
    : config_(WithoutRoleId(config)),
      options_(options),
      own_thread_(std::make_unique<LoopThread>()),
      loop_(own_thread_->loop()) {
  Init();
}

void VaultHttp::Init() {
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

  Json::CharReaderBuilder rb;
  rb["collectComments"] = false;
  reader_.reset(rb.newCharReader());

  multi_ = std::make_unique<Multi>();
  multi_->protocols = "https";
  for (const Endpoint& ep : endpoints_) {
    if (ep.scheme == "http") multi_->protocols = "http,https";
    multi_->connect_to.push_back(
        config_.tls_server_name.empty() ? nullptr : ConnectTo(config_.tls_server_name, ep));
  }
  multi_->multi = curl_multi_init();
  if (multi_->multi == nullptr) {
    if (config_error_.empty()) config_error_ = "out of memory (curl_multi_init)";
    return;
  }
  curl_multi_setopt(multi_->multi, CURLMOPT_SOCKETFUNCTION, &Callbacks::Socket);
  curl_multi_setopt(multi_->multi, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_->multi, CURLMOPT_TIMERFUNCTION, &Callbacks::Timer);
  curl_multi_setopt(multi_->multi, CURLMOPT_TIMERDATA, this);
  // Idle keep-alive connections kept for reuse: the Vault calls the broker runs at once, and
  // a few for the background jobs (login, renewal, key refresh).
  curl_multi_setopt(multi_->multi, CURLMOPT_MAXCONNECTS, static_cast<long>(MaxIdleSlots()));
  multi_->share = curl_share_init();
  if (multi_->share != nullptr) {
    // One thread uses them all: no lock callbacks. DNS answers and connections are the multi
    // handle's already; TLS sessions are per easy handle unless shared.
    curl_share_setopt(multi_->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  }
}

curl_slist* VaultHttp::ConnectTo(const std::string& server_name, const Endpoint& ep) {
  // With a server-name override the URL carries that name (so SNI, certificate verification
  // and Host use it) while CONNECT_TO sends the TCP connection to the real address. This
  // works for IP addresses too, unlike CURLOPT_RESOLVE.
  std::string name = server_name;
  if (name.find(':') != std::string::npos) name = "[" + name + "]";
  std::string entry =
      name + ":" + std::to_string(ep.port) + ":" + ep.host + ":" + std::to_string(ep.port);
  return curl_slist_append(nullptr, entry.c_str());
}

size_t VaultHttp::MaxIdleSlots() const {
  return static_cast<size_t>(std::max(config_.workers, 1)) + 4;
}

VaultHttp::~VaultHttp() {
  // Nothing may run the loop while the handles go away.
  if (own_thread_) own_thread_->Join();
  // Whoever started what is still in flight is going away too (the broker drains and the
  // token manager cancels before this): drop it without calling back into them.
  for (auto& [id, t] : transfers_) {
    if (t->slot != nullptr) {
      curl_multi_remove_handle(multi_->multi, t->slot->easy);
      ReleaseSlot(t->slot);
    }
    loop_->CancelTimer(&t->backoff);
  }
  transfers_.clear();
  for (Slot* s : idle_slots_) delete s;
  idle_slots_.clear();
  if (multi_) {
    if (multi_->multi != nullptr) curl_multi_cleanup(multi_->multi);  // closes the connections
    loop_->CancelTimer(&multi_->timer);
    if (multi_->share != nullptr) curl_share_cleanup(multi_->share);
    for (curl_slist* l : multi_->connect_to) curl_slist_free_all(l);
  }
}

VaultHttp::Slot* VaultHttp::TakeSlot() {
  if (!idle_slots_.empty()) {
    Slot* s = idle_slots_.back();
    idle_slots_.pop_back();
    return s;
  }
  auto s = std::make_unique<Slot>();
  CURL* h = s->easy = curl_easy_init();
  if (h == nullptr) return nullptr;
  // Everything that is the same for every request, set once for the handle's life.
  curl_easy_setopt(h, CURLOPT_PRIVATE, s.get());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, multi_->protocols.c_str());
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);  // redirects are checked and followed here
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  // HTTP/1.1: one request per connection at a time, connections reused from the multi pool.
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
  if (multi_->share != nullptr) curl_easy_setopt(h, CURLOPT_SHARE, multi_->share);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, s->errbuf);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "vault-kms/" VKMS_VERSION);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &Callbacks::Write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, s.get());
  s->body.reserve(kInitialBodyReserve);
  return s.release();
}

void VaultHttp::ReleaseSlot(Slot* s) {
  s->transfer = nullptr;
  WipeString(&s->body);
  // Bound idle handles by the broker's concurrency (the connections live in the multi pool).
  if (idle_slots_.size() < MaxIdleSlots()) {
    idle_slots_.push_back(s);
  } else {
    delete s;
  }
}

bool VaultHttp::SetHeaders(Slot* s, const VaultRequest& req) {
  const bool post = req.method == HttpMethod::kPost;
  static constexpr std::string_view kTokenHeader = "X-Vault-Token: ";
  if (s->headers != nullptr && s->headers_post == post && s->headers_ns == req.ns &&
      (s->token_line == nullptr) == req.token.empty() &&
      (req.token.empty() ||
       std::string_view(s->token_line).substr(kTokenHeader.size()) == req.token)) {
    return true;
  }
  s->FreeHeaders();
  bool ok = true;
  auto add = [&](std::string_view a, std::string_view b) {
    std::string line;
    line.reserve(a.size() + b.size());
    line.append(a);
    line.append(b);
    curl_slist* next = curl_slist_append(s->headers, line.c_str());
    WipeString(&line);
    if (next == nullptr) {
      ok = false;
      return;
    }
    s->headers = next;
  };
  add("X-Vault-Request: true", "");
  add("Expect:", "");  // no 100-continue round trip
  if (!req.ns.empty()) add("X-Vault-Namespace: ", req.ns);
  if (post) add("Content-Type: application/json", "");
  if (!req.token.empty()) {
    add(kTokenHeader, req.token);
    curl_slist* last = s->headers;
    while (last != nullptr && last->next != nullptr) last = last->next;
    if (ok && last != nullptr) s->token_line = last->data;
  }
  if (!ok) {
    s->FreeHeaders();
    return false;
  }
  s->headers_post = post;
  s->headers_ns = req.ns;
  curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
  return true;
}

VaultHttp::Transfer* VaultHttp::Find(TransferId id) {
  auto it = transfers_.find(id);
  return it == transfers_.end() ? nullptr : it->second.get();
}

VaultHttp::TransferId VaultHttp::Start(const VaultRequest& req, Done done) {
  auto owned = std::make_unique<Transfer>();
  Transfer* t = owned.get();
  t->id = ++next_id_;
  t->req = req;
  t->done = std::move(done);
  t->started = Clock::now();
  transfers_.emplace(t->id, std::move(owned));
  ++in_flight_;
  const TransferId id = t->id;
  if (!config_error_.empty() || endpoints_.empty() || multi_->multi == nullptr) {
    t->resp.transport = Code::kFailedPrecondition;
    t->resp.error = config_error_.empty() ? "no usable vault address" : config_error_;
    Finish(t);
  } else {
    BeginPass(t);
  }
  // Whatever was decided before any I/O reaches the caller from the loop, not from in here.
  t = Find(id);
  if (t != nullptr) {
    t->in_start = false;
    if (t->finish_after_start) {
      loop_->Defer([this, id] {
        if (Transfer* t = Find(id)) Finish(t);
      });
    }
  }
  return id;
}

void VaultHttp::BeginPass(Transfer* t) {
  if (Clock::now() >= t->req.deadline) {
    if (t->retry == 0) {
      t->resp.transport = Code::kDeadlineExceeded;
      t->resp.error = "deadline exceeded before the vault request";
    }
    t->resp.attempts = t->attempts;
    Finish(t);
    return;
  }
  const size_t n = endpoints_.size();
  size_t start = preferred_.load() % n;
  if (start != 0) {
    // Sticky to the address that last worked, but now and then let one call check whether
    // an earlier (preferred by the operator) address is back.
    int64_t now = SteadyMs();
    if (now - last_reprobe_ms_ >= options_.reprobe_interval.count()) {
      last_reprobe_ms_ = now;
      start = 0;
    }
  }
  t->pass_start = start;
  t->pass_k = 0;
  t->last = VaultResponse();
  BeginEndpoint(t, start);
}

void VaultHttp::BeginEndpoint(Transfer* t, size_t addr_index) {
  t->addr_index = addr_index;
  t->ep = &endpoints_[addr_index];
  t->hop = 0;
  t->redirect_path.clear();
  curl_slist_free_all(t->redirect_connect_to);
  t->redirect_connect_to = nullptr;
  t->resp = VaultResponse();
  t->resp.addr = t->ep->addr;
  Exchange(t);
}

void VaultHttp::Exchange(Transfer* t) {
  std::chrono::milliseconds remaining = Remaining(t->req.deadline);
  if (remaining.count() <= 0) {
    t->resp.transport = Code::kDeadlineExceeded;
    t->resp.error = "deadline exceeded before vault answered";
    EndpointDone(t);
    return;
  }
  // Leave time for the addresses after this one if this one black-holes the SYN.
  const size_t addrs_left = endpoints_.size() - t->pass_k;
  std::chrono::milliseconds connect_budget = std::max(
      kMinConnectBudget, remaining / static_cast<int64_t>(std::max<size_t>(addrs_left, 1)));

  Slot* s = TakeSlot();
  if (s == nullptr || !SetHeaders(s, t->req)) {
    if (s != nullptr) ReleaseSlot(s);
    ExchangeFailed(t, CURLE_OUT_OF_MEMORY, 0, "");
    return;
  }
  CURL* h = s->easy;
  url_.clear();
  url_.append(t->ep->scheme).append("://");
  if (config_.tls_server_name.empty()) {
    url_.append(t->ep->host);
  } else if (config_.tls_server_name.find(':') != std::string::npos) {
    url_.append("[").append(config_.tls_server_name).append("]");
  } else {
    url_.append(config_.tls_server_name);
  }
  url_.append(":").append(std::to_string(t->ep->port));
  if (t->redirect_path.empty()) {
    url_.append("/v1/").append(t->req.path);
  } else {
    url_.append(t->redirect_path);
  }
  curl_easy_setopt(h, CURLOPT_URL, url_.c_str());
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(remaining.count()));
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min(remaining, connect_budget).count()));
  if (!config_.tls_server_name.empty()) {
    curl_easy_setopt(h, CURLOPT_CONNECT_TO,
                     t->hop == 0 ? multi_->connect_to[t->addr_index] : t->redirect_connect_to);
  }
  if (s->fresh != t->req.fresh_connection) {
    // libcurl reads the certificate files when it opens a connection, and a resumed TLS session
    // carries the client certificate of the handshake that created it.
    const long fresh = t->req.fresh_connection ? 1L : 0L;
    curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, fresh);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, fresh);
    curl_easy_setopt(h, CURLOPT_SSL_SESSIONID_CACHE, 1L - fresh);
    s->fresh = t->req.fresh_connection;
  }
  if (t->req.method == HttpMethod::kPost) {
    // POSTFIELDS (not COPYPOSTFIELDS): libcurl reads the caller's buffer, no copy to wipe.
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, t->req.body.empty() ? "" : t->req.body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t->req.body.size()));
  } else {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  }
  s->max_body = options_.max_response_bytes;
  s->errbuf[0] = '\0';
  s->transfer = t;
  t->slot = s;
  t->exchange_started = Clock::now();
  if (curl_multi_add_handle(multi_->multi, h) != CURLM_OK) {
    s->transfer = nullptr;
    t->slot = nullptr;
    ReleaseSlot(s);
    ExchangeFailed(t, CURLE_OUT_OF_MEMORY, 0, "");
  }
}

void VaultHttp::SocketAction(int fd, int curl_events) {
  int running = 0;
  curl_multi_socket_action(multi_->multi, fd, curl_events, &running);
  ReadCurlMessages();
}

void VaultHttp::ReadCurlMessages() {
  // Collected first: finishing one may start or cancel others, which changes the message list.
  auto& finished = multi_->finished;
  finished.clear();
  int left = 0;
  while (CURLMsg* m = curl_multi_info_read(multi_->multi, &left)) {
    if (m->msg != CURLMSG_DONE) continue;
    Slot* s = nullptr;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &s);
    if (s != nullptr) finished.emplace_back(s, m->data.result);
  }
  std::vector<std::pair<Slot*, CURLcode>> batch;
  batch.swap(finished);
  for (auto [s, rc] : batch) OnExchangeDone(s, rc);
  batch.clear();
  if (finished.empty()) finished.swap(batch);  // keep the capacity for the next round
}

void VaultHttp::OnExchangeDone(Slot* s, int code) {
  Transfer* t = s->transfer;
  CURL* h = s->easy;
  const CURLcode rc = static_cast<CURLcode>(code);
  long status = 0, os_errno = 0, new_connections = 0;
  std::string redirect_url;
  curl_off_t retry_after = 0;
  if (rc == CURLE_OK) {
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    char* redirect = nullptr;
    if (curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &redirect) == CURLE_OK && redirect != nullptr) {
      redirect_url = redirect;
    }
    curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &retry_after);
  } else {
    curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
  }
  if (curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &new_connections) == CURLE_OK &&
      new_connections > 0) {
    connections_opened_ += static_cast<uint64_t>(new_connections);
  }
  curl_multi_remove_handle(multi_->multi, h);
  t->slot = nullptr;
  if (rc != CURLE_OK) {
    std::string errbuf = s->errbuf;
    ReleaseSlot(s);
    ExchangeFailed(t, rc, os_errno, errbuf);
    return;
  }
  ++t->resp.attempts;
  VaultResponse& resp = t->resp;
  resp.transport = Code::kOk;
  resp.transient = false;
  resp.tls_failure = false;
  resp.retry_after = std::chrono::seconds(static_cast<int64_t>(retry_after));
  resp.status = status;
  resp.json = Json::Value();
  resp.error.clear();
  resp.warnings.clear();
  if (!s->body.empty()) {
    std::string errs;
    if (!reader_->parse(s->body.data(), s->body.data() + s->body.size(), &resp.json, &errs)) {
      resp.json = Json::Value();
    }
  }
  ReleaseSlot(s);  // wipes the raw answer
  if (resp.json.isObject()) {
    const Json::Value& warnings = resp.json["warnings"];
    if (warnings.isArray()) {
      for (const auto& w : warnings) {
        if (w.isString()) resp.warnings.push_back(SafeText(w.asString(), 200));
      }
    }
  }
  if (status >= 400) resp.error = SafeVaultErrors(resp.json);
  log::Debug("vault request", [&] {
    return log::Fields{{"path", t->req.path},
                       {"addr", t->ep->addr},
                       {"status", status},
                       {"ms", MicrosSince(t->exchange_started) / 1000}};
  });
  if (status != 307 && status != 308) {
    EndpointDone(t);
    return;
  }
  FollowRedirect(t, redirect_url);
}

void VaultHttp::ExchangeFailed(Transfer* t, int code, long os_errno, const std::string& errbuf) {
  const CURLcode rc = static_cast<CURLcode>(code);
  ++t->resp.attempts;
  VaultResponse& resp = t->resp;
  // libcurl's clock and ours differ by a hair: a timeout this close to the deadline is it.
  bool timed_out = rc == CURLE_OPERATION_TIMEDOUT &&
                   Clock::now() + std::chrono::milliseconds(5) >= t->req.deadline;
  resp.transport = timed_out ? Code::kDeadlineExceeded : Code::kUnavailable;
  resp.error = timed_out ? std::string("vault did not answer before the deadline")
                         : CurlReason(rc, os_errno, errbuf.c_str());
  resp.status = 0;
  resp.transient = !timed_out && TransientCurlError(rc);
  resp.tls_failure = !timed_out && TlsCurlError(rc, errbuf.c_str());
  log::Debug("vault request failed", [&] {
    return log::Fields{{"path", t->req.path},
                       {"addr", t->ep->addr},
                       {"error", resp.error},
                       {"ms", MicrosSince(t->exchange_started) / 1000}};
  });
  EndpointDone(t);
}

void VaultHttp::FollowRedirect(Transfer* t, const std::string& location) {
  // A standby points at the active node. Follow it ourselves: same method and body, a
  // bounded number of hops, and never from https to anything weaker.
  VaultResponse& resp = t->resp;
  if (t->hop >= config_.max_redirects) {
    resp.transport = Code::kUnavailable;
    resp.error = "too many redirects from vault standby nodes";
    EndpointDone(t);
    return;
  }
  Endpoint next;
  next.addr = t->ep->addr;
  std::string error;
  if (location.empty() ||
      !ParseUrl(location, false, &next.scheme, &next.host, &next.port, &next.path, &error)) {
    resp.transport = Code::kUnavailable;
    resp.error = "vault sent a redirect without a usable location";
    EndpointDone(t);
    return;
  }
  if (next.scheme != "https" && !(next.scheme == "http" && t->ep->scheme == "http")) {
    resp.transport = Code::kUnavailable;
    resp.error = "refusing vault redirect to a non-https address";
    EndpointDone(t);
    return;
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
    EndpointDone(t);
    return;
  }
  // A relative Location resolves against our URL, whose host is the override name.
  bool override_name = false;
  if (!config_.tls_server_name.empty()) {
    std::string url_host = config_.tls_server_name;
    if (url_host.find(':') != std::string::npos) url_host = "[" + url_host + "]";
    override_name = IEquals(next.host, url_host) || IEquals(next.host, config_.tls_server_name);
  }
  // With IP addresses only, the sandbox has no UDP: a name would kill the lookup. Refuse it
  // here, with the fix, before anything tries to resolve it.
  if (!needs_dns_ && !IsIpLiteral(next.host) && !override_name) {
    resp.transport = Code::kUnavailable;
    resp.error = "vault standby redirected to host " + SafeText(next.host, 100) +
                 ", a name, while every --vault-addr is an IP address (the broker then resolves "
                 "no names); list the active node's address in --vault-addr";
    EndpointDone(t);
    return;
  }
  if (override_name) next.host = t->ep->host;
  log::Debug("following vault redirect", [&] {
    return log::Fields{{"from", t->ep->addr},
                       {"to", next.scheme + "://" + next.host + ":" + std::to_string(next.port)}};
  });
  if (!next.path.empty()) t->redirect_path = next.path;
  t->redirected = std::move(next);
  t->ep = &t->redirected;
  ++t->hop;
  curl_slist_free_all(t->redirect_connect_to);
  t->redirect_connect_to =
      config_.tls_server_name.empty() ? nullptr : ConnectTo(config_.tls_server_name, *t->ep);
  Exchange(t);
}

void VaultHttp::EndpointDone(Transfer* t) {
  VaultResponse& r = t->resp;
  const size_t n = endpoints_.size();
  const size_t i = t->addr_index;
  if (!FailoverWorthy(r)) {
    if (r.transport == Code::kOk && preferred_.exchange(i) != i) {
      // The reprobe clock starts when we move, not at start-up.
      last_reprobe_ms_ = SteadyMs();
      log::Info("vault address in use", {{"addr", endpoints_[i].addr}});
    }
    r.attempts += t->last.attempts;
    PassDone(t);
    return;
  }
  if (n > 1) {
    log::Warning("vault address failed; trying the next one",
                 {{"addr", endpoints_[i].addr}, {"error", r.error}});
  }
  r.attempts += t->last.attempts;
  t->last = std::move(r);
  if (++t->pass_k < n) {
    BeginEndpoint(t, (t->pass_start + t->pass_k) % n);
    return;
  }
  t->resp = std::move(t->last);
  t->last = VaultResponse();
  PassDone(t);
}

void VaultHttp::PassDone(Transfer* t) {
  VaultResponse& resp = t->resp;
  t->attempts += resp.attempts;
  resp.attempts = t->attempts;
  bool retryable = (resp.transport == Code::kUnavailable && resp.transient) ||
                   (resp.transport == Code::kOk && (resp.status == 429 || resp.status == 500 ||
                                                    resp.status == 502 || resp.status == 503));
  if (!retryable || t->retry >= config_.max_retries) {
    Finish(t);
    return;
  }
  std::chrono::milliseconds delay = Jitter(
      std::min(options_.retry_max, options_.retry_base * (int64_t{1} << std::min(t->retry, 20))));
  // Retry-After is the server's own estimate; it may exceed retry_max but never the deadline.
  if (resp.status == 429 && resp.retry_after.count() > 0) delay = resp.retry_after;
  if (Clock::now() + delay >= t->req.deadline) {
    Finish(t);
    return;
  }
  log::Debug("retrying vault request", [&] {
    return log::Fields{{"path", t->req.path},
                       {"status", resp.status},
                       {"error", resp.error},
                       {"delay_ms", delay.count()}};
  });
  ++t->retry;
  const TransferId id = t->id;
  t->backoff = loop_->AddTimer(Clock::now() + delay, [this, id] {
    Transfer* t = Find(id);
    if (t == nullptr) return;
    t->backoff = EventLoop::Timer();
    BeginPass(t);
  });
}

void VaultHttp::Finish(Transfer* t) {
  if (t->in_start) {
    t->finish_after_start = true;
    return;
  }
  const Clock::time_point now = Clock::now();
  request_metrics_.Record(t->req.path, t->resp.status,
                          std::chrono::duration<double>(now - t->started).count());
  if (!t->cancelled) ObserveReachability(t->resp, now);
  // Out of the table before the callback, which may start or cancel other transfers.
  auto node = transfers_.extract(t->id);
  --in_flight_;
  Done done = std::move(t->done);
  done(&t->resp);
}

void VaultHttp::Cancel(TransferId id) {
  Transfer* t = Find(id);
  if (t == nullptr) return;
  if (t->slot != nullptr) {
    curl_multi_remove_handle(multi_->multi, t->slot->easy);
    ReleaseSlot(t->slot);
    t->slot = nullptr;
  }
  loop_->CancelTimer(&t->backoff);
  t->resp = VaultResponse();
  t->resp.transport = Code::kUnavailable;
  t->resp.error = "cancelled";
  t->cancelled = true;
  t->resp.attempts = t->attempts;
  t->in_start = false;
  Finish(t);
}

void VaultHttp::ObserveReachability(const VaultResponse& resp, Clock::time_point now) {
  // Sealed, leaderless or behind a failing gateway counts as away; the caller's own deadline
  // says nothing about Vault.
  const bool away = resp.transport == Code::kUnavailable ||
                    (resp.transport == Code::kOk &&
                     (resp.status == 502 || resp.status == 503 || resp.status == 504));
  if (!away && resp.transport != Code::kOk) return;
  // The reason is built only while Vault is away, never for the answers of the hot path.
  static const std::string kNone;
  auto back = reachability_.Observe(
      !away,
      !away ? kNone
      : resp.transport == Code::kOk
          ? "HTTP " + std::to_string(resp.status) + (resp.error.empty() ? "" : ": " + resp.error)
          : TransportFailureReason(resp),
      now);
  if (back) {
    const double seconds = static_cast<double>(back->away.count()) / 1000;
    log::Info("vault reachable again",
              {{"away_seconds", seconds}, {"last_error", back->last_error}, {"addr", resp.addr}});
  }
}

VaultResponse VaultHttp::Call(const VaultRequest& req) {
  return loop_->Await<VaultResponse>([this, &req](std::function<void(VaultResponse)> done) {
    Start(req, [done = std::move(done)](VaultResponse* r) { done(std::move(*r)); });
  });
}

}  // namespace vkms::broker
