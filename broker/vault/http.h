// VaultHttp: the broker's only HTTPS client. It knows Vault's wire conventions (headers,
// {"errors": [...]}, 307 to the active node, sealed/standby 503s, 429 rate limits) but not
// what any endpoint means; TokenManager and KeyCache/VaultBackend give the calls meaning.
//
// One logical request is a Transfer: a small state machine driven by the event loop. Each
// HTTP exchange runs on a pooled libcurl easy handle inside one curl multi handle whose
// sockets and timer are in the loop's poll; the transfer then follows a 307 (bounded, https
// only, listed ports only), fails over to the next --vault-addr, or, after a pass over every
// address, waits out a backoff (or Retry-After) on a loop timer and tries again, all within the
// request's deadline. Easy handles are configured once (TLS, CA, client certificate, callbacks)
// and reused; a transfer sets only its URL, headers, body and timeouts. Connections stay alive
// in the multi handle's pool and are reused by any later transfer.
//
// Callers: TokenManager (login, renew, and every call that carries a token, through
// CallWithToken), and tests. Start/Cancel run on the loop thread only; Call() is the blocking
// face for tests and `check`, from any other thread. Assumes curl_global_init has run
// (EnsureCurlGlobalInit) before the first VaultHttp is built.
//
// Secrets: request bodies and tokens are passed as views and handed to libcurl without copies
// of ours; they are never logged. Raw response bytes are wiped after parsing; the parsed
// Json::Value may hold a token or plaintext, and the caller wipes those strings with
// WipeJsonString once it has taken them.
#pragma once

#include <json/value.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/event_loop.h"
#include "broker/vault/config.h"
#include "broker/vault/reachability.h"
#include "shared/json_string.h"
#include "shared/status.h"
#include "shared/vault_metrics.h"

namespace Json {
class CharReader;
}
struct curl_slist;

namespace vkms::broker {

// Idempotent; libcurl's global state is the one process-wide singleton we accept.
void EnsureCurlGlobalInit();

enum class HttpMethod { kGet, kPost };

struct VaultRequest {
  HttpMethod method = HttpMethod::kGet;
  std::string path;        // below /v1/, e.g. "transit/encrypt/kms"
  std::string_view body;   // JSON for POST; may hold secrets; must outlive the transfer
  std::string_view token;  // "" = no X-Vault-Token header; must outlive the transfer
  std::string ns;          // "" = no X-Vault-Namespace header
  Deadline deadline;
  // Over a new TLS connection of its own, with no session resumed and none kept: for calls
  // whose answer depends on the client certificate (cert auth login and renewal), so that the
  // certificate on disk now is the one presented, not the one a pooled connection (or a
  // resumed session) was opened with. Slower: a full handshake.
  bool fresh_connection = false;
};

struct VaultResponse {
  // kOk when an HTTP answer arrived (whatever its status). Otherwise kUnavailable (no
  // address answered, or the transfer was cancelled), kDeadlineExceeded (the caller's deadline
  // passed) or kFailedPrecondition (the configuration cannot work, e.g. no valid address), with
  // a short safe reason in `error`.
  Code transport = Code::kOk;
  long status = 0;
  Json::Value json;  // parsed body; null when empty or not JSON
  // Safe text: the transport reason, or Vault's "errors" joined and truncated (~200 chars).
  std::string error;
  std::vector<std::string> warnings;
  std::string addr;  // configured address that gave the answer (for logs; no secrets)
  int attempts = 0;  // HTTP exchanges made, including redirects, failovers and retries
  // Transport failures only: whether the same request could succeed after a pause (a refused
  // connection may; a certificate that does not verify will not).
  bool transient = false;
  // Transport failures only: the TLS handshake or certificate verification failed (Vault was
  // reached, so this is never reported as "unreachable").
  bool tls_failure = false;
  std::chrono::seconds retry_after{0};  // a 429's Retry-After

  bool ok() const { return transport == Code::kOk && status >= 200 && status < 300; }
};

class VaultHttp {
 public:
  // Knobs that tests shorten; production uses the defaults.
  struct Options {
    std::chrono::milliseconds retry_base{100};  // first backoff; doubles per retry
    std::chrono::milliseconds retry_max{2000};  // cap on one backoff step
    // How long failover sticks to a later address before one call tries the earlier ones
    // again.
    std::chrono::milliseconds reprobe_interval{30000};
    size_t max_response_bytes = 1 << 20;
  };

  // On the caller's loop (the broker's serving loop, or another component's).
  VaultHttp(const VaultConfig& config, EventLoop* loop) : VaultHttp(config, loop, Options()) {}
  VaultHttp(const VaultConfig& config, EventLoop* loop, Options options);
  // On a loop thread of its own (tests, `check`).
  explicit VaultHttp(const VaultConfig& config) : VaultHttp(config, Options()) {}
  VaultHttp(const VaultConfig& config, Options options);
  // Transfers still in flight are dropped without their `done` being called.
  ~VaultHttp();
  VaultHttp(const VaultHttp&) = delete;
  VaultHttp& operator=(const VaultHttp&) = delete;

  EventLoop* loop() const { return loop_; }

  // "" when every address parsed and the TLS settings are usable; otherwise why not (safe).
  const std::string& config_error() const { return config_error_; }

  // One logical Vault request: failover across addresses, 307 redirects, bounded retries with
  // backoff, all within req.deadline. Loop thread only. `done` runs exactly once, on the loop
  // thread and never inside Start(), with the response (which it may modify or move from).
  // The views in `req` must stay valid until then.
  using Done = std::function<void(VaultResponse*)>;
  using TransferId = uint64_t;
  TransferId Start(const VaultRequest& req, Done done);
  // Abandons a transfer (Stop() of a background job): its `done` runs at once with transport
  // kUnavailable, "cancelled". Unknown or finished ids are ignored. Loop thread only.
  void Cancel(TransferId id);
  // Start() and wait for the answer. Never on the loop thread.
  VaultResponse Call(const VaultRequest& req);

  // Latency of every logical request by {operation, code}, and the last contact (metrics).
  const metrics::VaultRequestMetrics& request_metrics() const { return request_metrics_; }

  // Index of the address calls currently start from (tests/metrics). Any thread.
  size_t preferred_addr() const { return preferred_.load(); }
  // TCP connections opened so far; with keep-alive it stays near the number of transfers in
  // flight at once however many requests they make (tests/metrics). Any thread.
  uint64_t connections_opened() const { return connections_opened_.load(); }
  // Transfers started and not yet done (tests). Any thread.
  size_t in_flight() const { return in_flight_.load(); }

 private:
  struct Endpoint;
  struct Slot;
  struct Transfer;
  struct Multi;
  struct Callbacks;

  void Init();
  static curl_slist* ConnectTo(const std::string& server_name, const Endpoint& ep);
  size_t MaxIdleSlots() const;
  Transfer* Find(TransferId id);

  // The steps of a Transfer, in the order they happen: a pass over the addresses (after a
  // backoff for a retry), each address with its redirects, each of those one exchange.
  void BeginPass(Transfer* t);
  void BeginEndpoint(Transfer* t, size_t addr_index);
  void Exchange(Transfer* t);
  void OnExchangeDone(Slot* slot, int curl_code);
  void ExchangeFailed(Transfer* t, int curl_code, long os_errno, const std::string& errbuf);
  void FollowRedirect(Transfer* t, const std::string& location);
  void EndpointDone(Transfer* t);
  void PassDone(Transfer* t);
  void Finish(Transfer* t);
  // Feeds a finished transfer to reachability_ and logs Vault's return after an outage.
  void ObserveReachability(const VaultResponse& resp, Clock::time_point now);

  Slot* TakeSlot();
  void ReleaseSlot(Slot* slot);
  bool SetHeaders(Slot* slot, const VaultRequest& req);
  // Hands libcurl's finished exchanges to OnExchangeDone.
  void ReadCurlMessages();
  void SocketAction(int fd, int curl_events);

  const VaultConfig config_;
  const Options options_;
  std::unique_ptr<LoopThread> own_thread_;  // standalone only
  EventLoop* loop_ = nullptr;
  std::string config_error_;
  std::vector<Endpoint> endpoints_;
  std::unique_ptr<Multi> multi_;
  std::unique_ptr<Json::CharReader> reader_;  // one per loop, reused for every answer
  std::vector<Slot*> idle_slots_;             // easy handles, configured once, reused
  std::unordered_map<TransferId, std::unique_ptr<Transfer>> transfers_;
  TransferId next_id_ = 0;
  std::string url_;  // scratch buffer for the URL (libcurl copies it)

  std::atomic<size_t> preferred_{0};
  int64_t last_reprobe_ms_ = 0;
  metrics::VaultRequestMetrics request_metrics_;
  VaultReachability reachability_;  // logs "vault reachable again" after an outage
  std::atomic<uint64_t> connections_opened_{0};
  std::atomic<size_t> in_flight_{0};
  bool needs_dns_ = true;
};

// The reason for a transport failure (r.transport not kOk): "vault TLS error: <why>" when the
// TLS handshake or certificate verification failed, else "vault unreachable: <why>".
std::string TransportFailureReason(const VaultResponse& r);

// True when some --vault-addr names its host (not an IP literal), so the broker must resolve
// names. When false, the broker's sandbox has no UDP at all (seccomp/broker_policy.h) and a
// redirect to a host name is refused before any lookup.
bool VaultAddrsNeedDns(const VaultConfig& config);

// A delay drawn uniformly from [d/2, d]: spreads the retries of many brokers that failed at
// the same moment.
std::chrono::milliseconds Jitter(std::chrono::milliseconds d);

// A copy of `config` without the role-id, for the parts of the broker that do not log in:
// fewer copies of an identifier that must never leak.
VaultConfig WithoutRoleId(VaultConfig config);

// Appends s as a JSON string literal (quotes included). `out` must have been reserved for
// the worst case (see JsonStringReserve) by callers building bodies that hold secrets, so
// that no reallocation leaves an unwiped copy behind.
using json::AppendJsonString;
inline size_t JsonStringReserve(size_t n) {
  return json::StringReserve(n);
}

// Overwrites a parsed JSON string value in place (jsoncpp frees without wiping).
void WipeJsonString(Json::Value* v);
// Wipes the token-bearing fields a Vault response may carry (auth/data: client_token, id —
// lookup-self echoes the token — and accessor), whether or not the caller uses them.
void WipeTokenFields(Json::Value* json);

// Replaces every occurrence of `secret` in *text by "[redacted]". Used on messages that come
// from the server before they are shown, in case a server echoes what it was sent.
void RedactSecret(std::string* text, std::string_view secret);

// A JSON number (or a string of decimal digits, as some Vault fields are) as int64. False when
// absent or not representable: never throws (jsoncpp's asInt64 does on a large unsigned) and
// never converts an out-of-range double (undefined behaviour). Vault answers are untrusted.
bool JsonInt64(const Json::Value& v, int64_t* out);
// obj[name] through JsonInt64; 0 when absent or unusable.
int64_t JsonInt(const Json::Value& obj, const char* name);

// Vault's error strings are joined with "; ", control characters replaced, cut to max_len.
std::string SafeVaultErrors(const Json::Value& json, size_t max_len = 200);

}  // namespace vkms::broker
