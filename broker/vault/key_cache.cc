#include "broker/vault/key_cache.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <set>

#include "broker/vault/backend.h"
#include "broker/vault/capabilities.h"
#include "shared/log.h"
#include "shared/secret.h"

namespace vkms::broker {
namespace {

constexpr size_t kMaxKeyIdBytes = 1024;  // kube-apiserver's limit

// Types whose Vault Transit implementation supports encrypt and decrypt without a context.
const std::set<std::string>& EncryptionTypes() {
  static const auto* types = new std::set<std::string>{
      "aes128-gcm96", "aes256-gcm96", "chacha20-poly1305", "rsa-2048", "rsa-3072", "rsa-4096"};
  return *types;
}

bool JsonUint(const Json::Value& v, uint64_t* out) {
  if (v.isUInt64()) {
    *out = v.asUInt64();
    return true;
  }
  if (v.isDouble() && v.asDouble() >= 0 && v.asDouble() < 1e18) {
    *out = static_cast<uint64_t>(v.asDouble());
    return true;
  }
  return false;
}

bool ParseDecimal(const std::string& s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

}  // namespace

// key_id = "<mount>/<key>:v<version>:<h>", h = the first 32 lowercase hex digits of
// SHA-256 over the fields "vault-kms/key-id/v1", ns, mount, key, decimal version and decimal
// creation time, each preceded by its length as 8 bytes big-endian (so no two field lists
// collide). Built only from values every control-plane node sees identically (not the
// address it reaches Vault by); the creation time makes a deleted-and-recreated key's
// versions new ids. The readable prefix is for operators. Returns "" when the result would
// exceed 1024 bytes.
std::string MakeKeyId(std::string_view ns, std::string_view mount, std::string_view key,
                      uint64_t version, int64_t creation_unix) {
  std::string version_s = std::to_string(version);
  std::string id = std::string(mount) + "/" + std::string(key) + ":v" + version_s + ":";
  if (id.size() + 32 > kMaxKeyIdBytes) return "";

  std::string buf;
  auto add = [&buf](std::string_view field) {
    uint64_t n = field.size();
    for (int shift = 56; shift >= 0; shift -= 8) {
      buf.push_back(static_cast<char>((n >> shift) & 0xff));
    }
    buf.append(field.data(), field.size());
  };
  add("vault-kms/key-id/v1");
  add(ns);
  add(mount);
  add(key);
  add(version_s);
  add(std::to_string(creation_unix));

  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (EVP_Digest(buf.data(), buf.size(), md, &md_len, EVP_sha256(), nullptr) != 1 || md_len < 16) {
    return "";
  }
  static const char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 16; ++i) {
    id.push_back(kHex[md[i] >> 4]);
    id.push_back(kHex[md[i] & 0xf]);
  }
  return id;
}

bool ParseRfc3339(const std::string& text, int64_t* unix_seconds) {
  int y, mo, d, h, mi, s, n = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &n) != 6 ||
      n != 19) {
    return false;
  }
  size_t pos = 19;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
  }
  int64_t offset = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int oh, om, m = 0;
    if (std::sscanf(text.c_str() + pos + 1, "%2d:%2d%n", &oh, &om, &m) != 2 || m != 5) {
      return false;
    }
    offset = (text[pos] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    pos += 6;
  } else {
    return false;
  }
  if (pos != text.size()) return false;
  struct tm tm = {};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  *unix_seconds = static_cast<int64_t>(timegm(&tm)) - offset;
  return true;
}

Status KeyCache::ParseKeyMetadata(const Json::Value& data, const std::string& ns,
                                  const std::string& mount, const std::string& key,
                                  KeyMetadata* out) {
  const std::string name = mount + "/" + key;
  auto bad = [&](const std::string& why) {
    return Status(Code::kFailedPrecondition, "transit key " + name + ": " + why);
  };
  if (!data.isObject()) return bad("vault's answer has no key data");
  out->type = data["type"].isString() ? data["type"].asString() : "";
  if (out->type.size() > 64) out->type.resize(64);
  // Vault reports the capabilities; older versions did not, then the type decides.
  bool known_type = EncryptionTypes().count(out->type) > 0;
  bool supports_encryption =
      data["supports_encryption"].isBool() ? data["supports_encryption"].asBool() : known_type;
  bool supports_decryption =
      data["supports_decryption"].isBool() ? data["supports_decryption"].asBool() : known_type;
  if (!supports_encryption || !supports_decryption) {
    return Status(Code::kFailedPrecondition,
                  "transit key " + name + " has type " +
                      (out->type.empty() ? std::string("(none)") : out->type) +
                      ", which cannot encrypt and decrypt; use aes256-gcm96");
  }
  if (data["derived"].isBool() && data["derived"].asBool()) {
    return Status(
        Code::kFailedPrecondition,
        "transit key " + name + " is derived (needs a context); use a plain aes256-gcm96 key");
  }
  if (!JsonUint(data["latest_version"], &out->latest_version) || out->latest_version == 0) {
    return bad("no valid latest_version");
  }
  JsonUint(data["min_decryption_version"], &out->min_decryption_version);
  JsonUint(data["min_encryption_version"], &out->min_encryption_version);
  if (out->min_encryption_version > out->latest_version) {
    return bad("min_encryption_version is above latest_version");
  }
  out->creation.clear();
  const Json::Value& keys = data["keys"];
  if (!keys.isObject()) return bad("no keys map");
  for (const auto& version_name : keys.getMemberNames()) {
    uint64_t version = 0;
    if (!ParseDecimal(version_name, &version)) continue;
    const Json::Value& v = keys[version_name];
    int64_t created = 0;
    if (v.isObject() && v["creation_time"].isString()) {
      // Asymmetric key types list versions as objects with an RFC 3339 creation_time.
      if (!ParseRfc3339(v["creation_time"].asString(), &created)) continue;
    } else if (v.isString() || !JsonInt64(v, &created)) {
      continue;
    }
    out->creation[version] = created;
  }
  auto latest = out->creation.find(out->latest_version);
  if (latest == out->creation.end()) return bad("no creation time for the latest version");
  out->key_id = MakeKeyId(ns, mount, key, out->latest_version, latest->second);
  if (out->key_id.empty()) return bad("key_id would exceed 1024 bytes");
  return Status::Ok();
}

KeyCache::KeyCache(const VaultConfig& config, TokenManager* tokens, Options options)
    : config_(WithoutRoleId(config)), tokens_(tokens), loop_(tokens->loop()), options_(options) {}

KeyCache::~KeyCache() {
  Stop();
}

void KeyCache::Start() {
  loop_->Call([this] {
    if (started_) return;
    started_ = true;
    Schedule(Clock::now());
  });
}

void KeyCache::Stop() {
  loop_->Call([this] {
    started_ = false;
    loop_->CancelTimer(&timer_);
    if (refresh_call_ != 0) tokens_->Cancel(refresh_call_);
  });
}

void KeyCache::Schedule(Clock::time_point at) {
  loop_->CancelTimer(&timer_);
  if (!started_) return;
  timer_ = loop_->AddTimer(at, [this] {
    timer_ = EventLoop::Timer();
    RunBackground();
  });
}

void KeyCache::RequestRefresh() {
  Clock::time_point now = Clock::now();
  if (last_on_demand_ != Clock::time_point() &&
      now - last_on_demand_ < options_.on_demand_min_interval) {
    return;
  }
  last_on_demand_ = now;
  on_demand_ = true;
  // One in flight already: it is followed by another as soon as it is done.
  if (!background_in_flight_) Schedule(now);
}

void KeyCache::RunBackground() {
  on_demand_ = false;
  background_in_flight_ = true;
  std::chrono::milliseconds timeout = std::min(
      options_.background_timeout, std::max(config_.key_refresh_interval, options_.retry_min));
  Refresh(Clock::now() + timeout, [this](const Status& s) {
    background_in_flight_ = false;
    if (!started_) return;
    Clock::time_point next;
    if (s.ok()) {
      backoff_ = std::chrono::milliseconds(0);
      next = Clock::now() + config_.key_refresh_interval;
    } else {
      // Retry sooner than the regular interval, backing off, but never slower than it.
      backoff_ = backoff_.count() == 0 ? options_.retry_min : backoff_ * 2;
      backoff_ = std::min(backoff_, config_.key_refresh_interval);
      next = Clock::now() + Jitter(std::max(backoff_, std::chrono::milliseconds(1)));
    }
    Schedule(on_demand_ ? Clock::now() : next);
  });
}

namespace {

bool WasCancelled(const VaultResponse& r) {
  return r.transport == Code::kUnavailable && r.error == "cancelled";
}

}  // namespace

void KeyCache::Refresh(Deadline deadline, std::function<void(const Status&)> done) {
  const Clock::time_point started = Clock::now();
  const TransitNames names{config_.transit_mount, config_.transit_key};
  refresh_call_ = tokens_->CallWithToken(
      HttpMethod::kGet, names.KeyPath(), "", config_.ns, deadline,
      [this, names, started, deadline, done = std::move(done)](VaultResponse* r) mutable {
        refresh_call_ = 0;
        auto meta = std::make_shared<KeyMetadata>();
        Status s = ReadKey(*r, names, meta.get());
        if (!s.ok()) return done(Apply(s, nullptr, false, started, WasCancelled(*r)));
        // On the refresh's schedule, never on a request: may the token do everything it must?
        auto cancelled = std::make_shared<bool>(false);
        AsyncVaultCall call = [this, deadline, cancelled](HttpMethod method,
                                                          const std::string& path, std::string body,
                                                          VaultCallDone call_done) {
          auto held = std::make_shared<std::string>(std::move(body));
          refresh_call_ = tokens_->CallWithToken(
              method, path, *held, config_.ns, deadline,
              [this, held, cancelled, call_done = std::move(call_done)](VaultResponse* r) {
                refresh_call_ = 0;
                WipeString(held.get());
                if (WasCancelled(*r)) *cancelled = true;
                call_done(r);
              });
        };
        const uint64_t version = meta->latest_version;
        VerifyTokenCapabilitiesAsync(
            names, version, std::move(call),
            [this, meta, started, cancelled, done = std::move(done)](CapabilityVerdict v) {
              done(Apply(v.status, meta, v.by_round_trip, started, *cancelled));
            });
      });
}

Status KeyCache::ReadKey(const VaultResponse& r, const TransitNames& names,
                         KeyMetadata* meta) const {
  if (r.transport == Code::kUnauthenticated) {
    return Status(Code::kUnavailable, r.error);  // already a full reason (login failure)
  }
  if (r.transport == Code::kFailedPrecondition) {
    return Status(Code::kFailedPrecondition, "invalid vault configuration: " + r.error);
  }
  if (r.transport != Code::kOk) return Status(r.transport, TransportFailureReason(r));
  if (r.status == 404 || r.status == 403) {
    return Status(r.status == 404 ? Code::kFailedPrecondition : Code::kPermissionDenied,
                  KeyUnreadableText(names.KeyPath(), r.status, r.error));
  }
  const std::string http = r.error.empty() ? "HTTP " + std::to_string(r.status) : r.error;
  if (r.status == 429 || r.status >= 500)
    return Status(Code::kUnavailable, "vault unavailable: " + http);
  if (!r.ok()) {
    return Status(Code::kUnavailable,
                  "reading transit key " + names.mount + "/" + names.key + " failed: " + http);
  }
  return ParseKeyMetadata(r.json.isObject() ? r.json["data"] : Json::Value(), config_.ns,
                          config_.transit_mount, config_.transit_key, meta);
}

Status KeyCache::Apply(const Status& s, std::shared_ptr<const KeyMetadata> meta,
                       bool capabilities_by_round_trip, Clock::time_point started, bool cancelled) {
  const std::string name = config_.transit_mount + "/" + config_.transit_key;
  // A refresh cancelled by Stop() changes nothing.
  if (!started_ && cancelled) return s;
  // Two refreshes may overlap (background and on demand): an older answer must not replace a
  // newer one.
  if (started < last_applied_start_) return s;
  last_applied_start_ = started;
  if (meta) {
    // Fresh metadata even when the token may not use it: Health reports the token's problem.
    if (!meta_ || meta_->key_id != meta->key_id) {
      log::Info("transit key version in use",
                {{"key", name},
                 {"version", meta->latest_version},
                 {"previous_version", meta_ ? log::Value(meta_->latest_version) : "none"},
                 {"key_id", meta->key_id}});
    }
    meta_ = std::move(meta);
    last_success_ = Clock::now();
    if (capabilities_by_round_trip && !capabilities_by_round_trip_) {
      log::Warning(
          "cannot verify the token's capabilities: allow update on sys/capabilities-self "
          "(deploy/vault/kms-policy.hcl); encrypt and decrypt were verified by a round trip "
          "instead",
          {{"key", name}});
    }
    capabilities_by_round_trip_ = capabilities_by_round_trip;
  }
  if (!s.ok()) {
    ++refreshes_failed_;
    if (last_ok_ || last_error_ != s.message()) {
      log::Warning("transit key refresh failed", {{"key", name}, {"error", s.message()}});
    }
    last_ok_ = false;
    last_error_ = s.message();
    return s;
  }
  ++refreshes_ok_;
  last_ok_ = true;
  last_error_.clear();
  return s;
}

std::shared_ptr<const KeyMetadata> KeyCache::Current() const {
  return loop_->Call([this] { return meta_; });
}

KeyCacheState KeyCache::State() const {
  return loop_->Call([this] {
    KeyCacheState st;
    st.meta = meta_;
    st.last_refresh_ok = last_ok_;
    st.last_error = last_error_;
    if (meta_) {
      st.age = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - last_success_);
    }
    st.refreshes_ok = refreshes_ok_;
    st.refreshes_failed = refreshes_failed_;
    return st;
  });
}

}  // namespace vkms::broker
