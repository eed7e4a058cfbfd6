#include "broker/vault/backend.h"

#include <ctime>

#include "broker/vault/backend_internal.h"
#include "broker/vault/base64.h"
#include "broker/vault/capabilities.h"
#include "broker/vault/http.h"
#include "broker/vault/key_cache.h"
#include "broker/vault/token_manager.h"
#include "shared/log.h"
#include "shared/secret.h"
#include "shared/validate.h"

namespace vkms::broker {
namespace {

constexpr size_t kMaxNameBytes = 256;

bool ValidPathName(const std::string& s, bool allow_slash) {
  if (s.empty() || s.size() > kMaxNameBytes) return false;
  size_t segment = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '/') {
      std::string_view seg(s.data() + segment, i - segment);
      if (seg.empty() || seg == "." || seg == "..") return false;
      if (i < s.size() && !allow_slash) return false;
      segment = i + 1;
      continue;
    }
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// Decodes Vault's base64 plaintext and wipes the copy in the parsed answer.
Status TakePlaintext(Json::Value* pt, std::string* plaintext) {
  const char* begin = nullptr;
  const char* end = nullptr;
  pt->getString(&begin, &end);
  bool decoded = Base64Decode(std::string_view(begin, static_cast<size_t>(end - begin)), plaintext);
  WipeJsonString(pt);
  if (!decoded) return Status(Code::kInternal, "vault's decrypt answer is not base64");
  return Status::Ok();
}

std::string Reason(const std::string& vault_message, long status) {
  return vault_message.empty() ? "HTTP " + std::to_string(status) : vault_message;
}

}  // namespace

std::string TrimSlashes(const std::string& s) {
  size_t b = s.find_first_not_of('/');
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of('/');
  return s.substr(b, e - b + 1);
}

std::string ValidateVaultConfig(const VaultConfig& c) {
  if (!ValidPathName(c.transit_mount, true)) return "invalid transit mount name";
  if (!ValidPathName(c.transit_key, false)) return "invalid transit key name";
  if (!c.ns.empty() && !ValidPathName(c.ns, true)) return "invalid vault namespace";
  if (!c.auth_ns.empty() && !ValidPathName(c.auth_ns, true)) return "invalid auth namespace";
  if (c.auth_method == AuthMethod::kAppRole) {
    if (!ValidPathName(c.approle_mount, true)) return "invalid AppRole mount name";
    if (c.role_id.empty() && c.role_id_file.empty()) return "no AppRole role-id configured";
  } else if (c.auth_method == AuthMethod::kCert) {
    if (!ValidPathName(c.cert_auth_mount, true)) return "invalid cert auth mount name";
    if (!c.cert_auth_role.empty() && !ValidPathName(c.cert_auth_role, false)) {
      return "invalid cert auth role name";
    }
    if (c.client_cert.empty() || c.client_key.empty()) {
      return "cert auth needs a client certificate and key";
    }
  } else if (c.token_file.empty()) {
    return "token auth needs a token file";
  }
  if (c.key_refresh_interval.count() <= 0) return "key refresh interval must be positive";
  return "";
}

Status MapVaultError(VaultOp op, const VaultResponse& r, const std::string& key_name) {
  switch (r.transport) {
    case Code::kOk:
      break;
    case Code::kDeadlineExceeded:
      return Status(Code::kDeadlineExceeded, "vault did not answer before the deadline");
    case Code::kUnauthenticated:
      return Status(Code::kUnavailable, r.error);
    case Code::kFailedPrecondition:
      return Status(Code::kFailedPrecondition, "invalid vault configuration: " + r.error);
    default:
      return Status(Code::kUnavailable, TransportFailureReason(r));
  }
  const std::string& msg = r.error;
  if (r.status == 429 || r.status >= 500) {
    return Status(Code::kUnavailable, "vault unavailable: " + Reason(msg, r.status));
  }
  if (r.status == 403) {
    // Name the path Vault refused, so the fix (a policy rule) is obvious.
    const size_t slash = key_name.rfind('/');
    const TransitNames names{key_name.substr(0, slash), key_name.substr(slash + 1)};
    return Status(
        Code::kPermissionDenied,
        DeniedText("update", op == VaultOp::kEncrypt ? names.EncryptPath() : names.DecryptPath(),
                   msg));
  }
  if (r.status == 404 || msg.find("encryption key not found") != std::string::npos) {
    return Status(Code::kFailedPrecondition, "transit key " + key_name + " not found");
  }
  if (r.status == 400) {
    if (op == VaultOp::kEncrypt) {
      // Our input is a validated plaintext: a 400 means the key or its configuration changed.
      return Status(Code::kFailedPrecondition, "vault refused to encrypt: " + Reason(msg, 400));
    }
    if (msg.find("disallowed by policy (too old)") != std::string::npos) {
      return Status(Code::kFailedPrecondition,
                    "vault refused the ciphertext's key version: " + msg);
    }
    return Status(Code::kInvalidArgument, "vault rejected the ciphertext: " + Reason(msg, 400));
  }
  return Status(Code::kUnavailable, "unexpected vault answer: HTTP " + std::to_string(r.status) +
                                        (msg.empty() ? std::string() : ": " + msg));
}

namespace {

// The batch_results of a batch answer, if it has that shape.
Json::Value* BatchResults(VaultResponse* r) {
  if (r->transport == Code::kOk && r->json.isObject() && r->json["data"].isObject() &&
      r->json["data"]["batch_results"].isArray()) {
    return &r->json["data"]["batch_results"];
  }
  return nullptr;
}

// Whether a batch answer has one result per item sent, in order: each an object whose
// reference (when Vault echoes one; older Vaults do not) is its index. A failed item makes
// Vault answer 400 (500 for an internal error) with every item's result.
bool MatchesItemForItem(const VaultResponse& r, const Json::Value* results, size_t sent) {
  if (results == nullptr || results->size() != sent ||
      !(r.ok() || r.status == 400 || r.status == 500)) {
    return false;
  }
  for (Json::ArrayIndex i = 0; i < sent; ++i) {
    const Json::Value& res = (*results)[i];
    if (!res.isObject() ||
        (res.isMember("reference") && res["reference"] != Json::Value(std::to_string(i)))) {
      return false;
    }
  }
  return true;
}

// What every item gets when the answer cannot be read item for item.
Status WholeBatchStatus(VaultOp op, const VaultResponse& r, const std::string& key_name) {
  if (!r.ok()) return MapVaultError(op, r, key_name);
  return Status(Code::kInternal, std::string("vault's batch ") +
                                     (op == VaultOp::kEncrypt ? "encrypt" : "decrypt") +
                                     " answer does not match the request item for item");
}

// The Status of one item Vault refused inside a batch: what the same refusal of a single call
// gives.
Status ItemError(VaultOp op, const VaultResponse& r, const Json::Value& error,
                 const std::string& key_name) {
  VaultResponse one;
  one.status = r.ok() ? 400 : r.status;
  Json::Value errors;
  errors["errors"].append(error);
  one.error = SafeVaultErrors(errors);
  return MapVaultError(op, one, key_name);
}

bool HasItemError(const Json::Value& result) {
  const Json::Value& err = result["error"];
  return err.isString() && !err.asString().empty();
}

// A ciphertext from Vault for an Encrypt pinned to `version`.
Status CheckCiphertext(const Json::Value& v, uint64_t version, std::string* out) {
  if (!v.isString()) return Status(Code::kInternal, "vault's encrypt answer has no ciphertext");
  std::string ct = v.asString();
  const std::string prefix = "vault:v" + std::to_string(version) + ":";
  if (ct.size() <= prefix.size() || ct.compare(0, prefix.size(), prefix) != 0) {
    return Status(Code::kInternal, "vault encrypted with another key version than the pinned v" +
                                       std::to_string(version));
  }
  if (ct.size() > validate::kMaxCiphertext) {
    return Status(Code::kFailedPrecondition, "vault ciphertext is " + std::to_string(ct.size()) +
                                                 " bytes, over the KMS v2 limit of " +
                                                 std::to_string(validate::kMaxCiphertext));
  }
  *out = std::move(ct);
  return Status::Ok();
}

}  // namespace

void ReadDecryptBatchAnswer(VaultResponse* answer,
                            const std::vector<VaultBackend::DecryptItem*>& sent,
                            const std::string& key_name) {
  VaultResponse& r = *answer;
  for (VaultBackend::DecryptItem* item : sent) WipeString(&item->plaintext);
  Json::Value* results = BatchResults(&r);
  const bool per_item = MatchesItemForItem(r, results, sent.size());
  const Status whole = per_item ? Status() : WholeBatchStatus(VaultOp::kDecrypt, r, key_name);
  for (Json::ArrayIndex i = 0; i < sent.size(); ++i) {
    VaultBackend::DecryptItem& item = *sent[i];
    if (!per_item) {
      item.status = whole;
    } else if (HasItemError((*results)[i])) {
      item.status = ItemError(VaultOp::kDecrypt, r, (*results)[i]["error"], key_name);
    } else if (!(*results)[i]["plaintext"].isString()) {
      item.status = Status(Code::kInternal, "vault's decrypt answer has no plaintext");
    } else {
      item.status = TakePlaintext(&(*results)[i]["plaintext"], &item.plaintext);
    }
    if (!item.status.ok()) WipeString(&item.plaintext);
  }
  // Whatever was used or refused, no plaintext stays in the answer.
  for (Json::ArrayIndex i = 0; results != nullptr && i < results->size(); ++i) {
    Json::Value& res = (*results)[i];
    if (res.isObject() && res["plaintext"].isString()) WipeJsonString(&res["plaintext"]);
  }
}

void ReadEncryptBatchAnswer(VaultResponse* answer,
                            const std::vector<VaultBackend::EncryptItem*>& sent, uint64_t version,
                            const std::string& key_id, const std::string& key_name) {
  VaultResponse& r = *answer;
  Json::Value* results = BatchResults(&r);
  const bool per_item = MatchesItemForItem(r, results, sent.size());
  const Status whole = per_item ? Status() : WholeBatchStatus(VaultOp::kEncrypt, r, key_name);
  for (Json::ArrayIndex i = 0; i < sent.size(); ++i) {
    VaultBackend::EncryptItem& item = *sent[i];
    item.ciphertext.clear();
    item.key_id.clear();
    if (!per_item) {
      item.status = whole;
    } else if (HasItemError((*results)[i])) {
      item.status = ItemError(VaultOp::kEncrypt, r, (*results)[i]["error"], key_name);
    } else {
      item.status = CheckCiphertext((*results)[i]["ciphertext"], version, &item.ciphertext);
    }
    if (item.status.ok()) {
      item.key_id = key_id;
      item.version = version;
    }
  }
}

Status ReadEncryptAnswer(const VaultResponse& r, uint64_t version, std::string* ciphertext,
                         const std::string& key_name) {
  if (!r.ok()) return MapVaultError(VaultOp::kEncrypt, r, key_name);
  const Json::Value& data = r.json.isObject() ? r.json["data"] : Json::Value::nullSingleton();
  if (!data.isObject()) return Status(Code::kInternal, "vault's encrypt answer has no ciphertext");
  return CheckCiphertext(data["ciphertext"], version, ciphertext);
}

struct VaultBackend::Impl {
  Impl(VaultConfig c, EventLoop* loop)
      : config(Normalize(std::move(c))),
        config_error(ValidateVaultConfig(config)),
        http(config, loop),
        tokens(config, &http),
        keys(config, &tokens),
        key_name(config.transit_mount + "/" + config.transit_key),
        encrypt_path(config.transit_mount + "/encrypt/" + config.transit_key),
        decrypt_path(config.transit_mount + "/decrypt/" + config.transit_key) {
    if (config_error.empty()) config_error = http.config_error();
  }

  static VaultConfig Normalize(VaultConfig c) {
    c.ns = TrimSlashes(c.ns);
    c.auth_ns = TrimSlashes(c.auth_ns);
    c.transit_mount = TrimSlashes(c.transit_mount);
    c.approle_mount = TrimSlashes(c.approle_mount);
    c.cert_auth_mount = TrimSlashes(c.cert_auth_mount);
    return c;
  }

  // For DecryptBatch: ok when the ciphertext may be sent to Vault; then *version is the key
  // version its prefix names.
  Status CheckDecryptInput(std::string_view ciphertext, uint64_t* version);
  // Counts the Decrypts among `done` that succeeded (DecryptUse), `versions` aligned with
  // them, and logs a foreign key_id the first time it is seen.
  void RecordDecrypts(const std::vector<DecryptItem*>& done, const std::vector<uint64_t>& versions);
  // Whether `key_id` is what this plugin issues for `version` of the configured key.
  bool OwnKeyId(std::string_view key_id, uint64_t version,
                const std::shared_ptr<const KeyMetadata>& meta);
  BackendHealth Health() const;

  const VaultConfig config;
  std::string config_error;
  VaultHttp http;
  TokenManager tokens;
  KeyCache keys;
  const std::string key_name, encrypt_path, decrypt_path;
  DecryptUse decrypt_use;
  // key_ids of older versions, computed once per metadata read.
  std::shared_ptr<const KeyMetadata> key_ids_of;
  std::map<uint64_t, std::string> key_ids;
};

VaultBackend::VaultBackend(VaultConfig config)
    : own_thread_(std::make_unique<LoopThread>()),
      impl_(std::make_unique<Impl>(std::move(config), own_thread_->loop())) {
  LogConfiguration();
}

VaultBackend::VaultBackend(VaultConfig config, EventLoop* loop)
    : impl_(std::make_unique<Impl>(std::move(config), loop)) {
  LogConfiguration();
}

void VaultBackend::LogConfiguration() const {
  EnsureCurlGlobalInit();
  std::string addrs;
  for (const auto& a : impl_->config.addrs) addrs += (addrs.empty() ? "" : ",") + a;
  log::Info("vault backend configured", {{"addrs", addrs},
                                         {"namespace", impl_->config.ns},
                                         {"key", impl_->key_name},
                                         {"auth", AuthMethodName(impl_->config.auth_method)}});
  if (!impl_->config_error.empty()) {
    log::Error("invalid vault configuration", {{"error", impl_->config_error}});
  }
}

VaultBackend::~VaultBackend() {
  Stop();
  // Nothing may run the loop while the components go away (they are not running on it then).
  if (own_thread_) own_thread_->Join();
  impl_.reset();
}

EventLoop* VaultBackend::loop() const {
  return impl_->http.loop();
}

void VaultBackend::Start() {
  if (!impl_->config_error.empty()) return;  // Health() reports it; nothing could work
  impl_->tokens.Start();
  impl_->keys.Start();
}

void VaultBackend::Stop() {
  // The key refresher first, so that its cancelled call does not schedule another; then the
  // token manager, which cancels every call still in flight (the key refresher's included).
  impl_->keys.Stop();
  impl_->tokens.Stop();
}

BackendHealth VaultBackend::Health() const {
  return loop()->Call([this] { return impl_->Health(); });
}

BackendHealth VaultBackend::Impl::Health() const {
  BackendHealth h;
  if (!config_error.empty()) {
    h.healthz = h.ready_reason = "invalid vault configuration: " + config_error;
    return h;
  }
  TokenState t = tokens.State();
  KeyCacheState k = keys.State();
  if (k.meta) {
    h.key_id = k.meta->key_id;
    h.key_version = k.meta->latest_version;
  }
  std::string problem;
  if (!t.has_token) {
    problem = !t.last_error.empty() ? t.last_error
              : t.login_attempted   ? std::string("vault token expired")
                                    : std::string("vault login pending");
  } else if (!k.meta) {
    problem =
        k.last_error.empty() ? std::string("transit key metadata not read yet") : k.last_error;
  }
  bool stale = k.meta && k.age > 3 * config.key_refresh_interval;
  if (problem.empty() && stale) {
    problem = "key metadata stale (last refresh " +
              std::to_string(std::chrono::duration_cast<std::chrono::seconds>(k.age).count()) +
              "s ago)";
    if (!k.last_error.empty()) problem += ": " + k.last_error;
  }
  if (problem.empty() && !k.last_refresh_ok) problem = k.last_error;
  h.healthy = problem.empty();
  h.healthz = h.healthy ? "ok" : problem;
  // /readyz and Status must turn together: ready is healthy, not "healthy a few refreshes ago"
  // (kube-apiserver reads Status; a probe that lagged it would keep routing to a broken plugin).
  h.ready = h.healthy;
  h.ready_reason = h.healthz;
  return h;
}

BackendStats VaultBackend::Stats() const {
  return loop()->Call([this] {
    BackendStats s;
    TokenState t = impl_->tokens.State();
    KeyCacheState k = impl_->keys.State();
    s.logins_ok = t.logins_ok;
    s.logins_failed = t.logins_failed;
    s.renewals_ok = t.renewals_ok;
    s.renewals_failed = t.renewals_failed;
    s.token_ttl_seconds = t.has_token ? t.ttl_seconds : -1;
    s.key_version = k.meta ? k.meta->latest_version : 0;
    s.key_refreshes_ok = k.refreshes_ok;
    s.key_refreshes_failed = k.refreshes_failed;
    s.seconds_since_vault_contact = impl_->http.request_metrics().SecondsSinceLastContact();
    s.vault_requests = impl_->http.request_metrics().Snapshot();
    s.decrypt_versions = impl_->decrypt_use.Versions(s.key_version);
    s.foreign_key_id_decrypts = impl_->decrypt_use.foreign_decrypts();
    s.foreign_key_id_last_unix = impl_->decrypt_use.foreign_last_unix();
    return s;
  });
}

void VaultBackend::EncryptBatch(std::vector<EncryptItem>* items, Deadline deadline,
                                std::function<void()> done) {
  Impl& m = *impl_;
  auto finish_later = [&] { m.http.loop()->Defer(std::move(done)); };
  std::vector<EncryptItem*> sent;
  for (EncryptItem& item : *items) {
    item.ciphertext.clear();
    item.key_id.clear();
    if (!m.config_error.empty()) {
      item.status =
          Status(Code::kFailedPrecondition, "invalid vault configuration: " + m.config_error);
      continue;
    }
    // The frontend checked this; a compromised frontend may not have.
    item.status = validate::Plaintext(item.plaintext);
    if (item.status.ok()) sent.push_back(&item);
  }
  if (sent.empty()) return finish_later();
  std::shared_ptr<const KeyMetadata> meta = m.keys.Current();
  if (!meta) {
    Status none(Code::kUnavailable, "transit key metadata not available: " + m.Health().healthz);
    for (EncryptItem* item : sent) item->status = none;
    return finish_later();
  }
  // Pinned: exactly the version Status reported, never "latest at Vault right now". Vault
  // reads key_version per item of a batch (and ignores a top-level one then); every answer is
  // checked to carry that version all the same.
  const uint64_t version = meta->latest_version;
  const std::string version_text = std::to_string(version);

  // Built into a buffer reserved for the worst case: no reallocation leaves a copy of a
  // plaintext behind, and the one buffer is wiped when the answer is in.
  auto body = std::make_shared<std::string>();
  size_t reserve = 48;
  for (const EncryptItem* item : sent) {
    reserve += 64 + JsonStringReserve(4 * (item->plaintext.size() / 3 + 1));
  }
  body->reserve(reserve);
  const bool single = sent.size() == 1;
  body->append(single ? "{" : "{\"batch_input\":[");
  for (size_t i = 0; i < sent.size(); ++i) {
    std::string b64 = Base64Encode(sent[i]->plaintext);
    if (!single) body->append(i == 0 ? "{" : ",{");
    body->append("\"plaintext\":");
    AppendJsonString(body.get(), b64);
    WipeString(&b64);
    body->append(",\"key_version\":").append(version_text);
    if (!single) body->append(",\"reference\":\"").append(std::to_string(i)).append("\"}");
  }
  body->append(single ? "}" : "]}");

  m.tokens.CallWithToken(HttpMethod::kPost, m.encrypt_path, *body, m.config.ns, deadline,
                         [this, body, sent = std::move(sent), meta, version,
                          done = std::move(done)](VaultResponse* r) {
                           Impl& m = *impl_;
                           WipeString(body.get());
                           if (sent.size() == 1) {
                             sent[0]->status =
                                 ReadEncryptAnswer(*r, version, &sent[0]->ciphertext, m.key_name);
                             if (sent[0]->status.ok()) {
                               sent[0]->key_id = meta->key_id;
                               sent[0]->version = version;
                             }
                           } else {
                             ReadEncryptBatchAnswer(r, sent, version, meta->key_id, m.key_name);
                           }
                           // A refusal of the key or its version: the cached metadata may be behind
                           // Vault.
                           for (const EncryptItem* item : sent) {
                             if (item->status.code() == Code::kFailedPrecondition) {
                               m.keys.RequestRefresh();
                               break;
                             }
                           }
                           done();
                         });
}

bool VaultBackend::Impl::OwnKeyId(std::string_view key_id, uint64_t version,
                                  const std::shared_ptr<const KeyMetadata>& meta) {
  if (key_id == meta->key_id) return true;  // the current version: nearly every call
  if (key_ids_of != meta) {
    key_ids_of = meta;
    key_ids.clear();
  }
  auto it = key_ids.find(version);
  if (it == key_ids.end()) {
    auto created = meta->creation.find(version);
    if (created == meta->creation.end()) return false;
    it = key_ids
             .emplace(version, MakeKeyId(config.ns, config.transit_mount, config.transit_key,
                                         version, created->second))
             .first;
  }
  return key_id == it->second;
}

void VaultBackend::Impl::RecordDecrypts(const std::vector<DecryptItem*>& done,
                                        const std::vector<uint64_t>& versions) {
  std::shared_ptr<const KeyMetadata> meta = keys.Current();
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  for (size_t i = 0; i < done.size(); ++i) {
    const DecryptItem* item = done[i];
    const uint64_t version = versions[i];
    if (!item->status.ok()) continue;
    // Before the first metadata read nothing can be told apart: not counted as foreign.
    const bool foreign = meta && !OwnKeyId(item->key_id, version, meta);
    if (decrypt_use.Record(version, meta ? meta->latest_version : 0, foreign, item->key_id, now)) {
      log::Info(
          "decrypted a ciphertext stored with a foreign key_id (written by another KMS plugin or "
          "another configuration; kube-apiserver re-encrypts the object at its next write); "
          "logged once per key_id, counted in vault_kms_decrypt_foreign_key_id_total",
          {{"key_id", validate::LoggableKeyId(item->key_id)},
           {"key_version", std::to_string(version)}});
    }
  }
}

Status VaultBackend::Impl::CheckDecryptInput(std::string_view ciphertext, uint64_t* version) {
  if (!config_error.empty()) {
    return Status(Code::kFailedPrecondition, "invalid vault configuration: " + config_error);
  }
  // Re-checked here (the frontend may be compromised) so junk never reaches Vault.
  if (Status s = validate::VaultCiphertext(ciphertext, version); !s.ok()) return s;
  std::shared_ptr<const KeyMetadata> meta = keys.Current();
  if (meta && *version > meta->latest_version) keys.RequestRefresh();
  return Status::Ok();
}

void VaultBackend::DecryptBatch(std::vector<DecryptItem>* items, Deadline deadline,
                                std::function<void()> done) {
  Impl& m = *impl_;
  std::vector<DecryptItem*> sent;
  std::vector<uint64_t> versions;
  for (DecryptItem& item : *items) {
    item.plaintext.clear();
    uint64_t version = 0;
    item.status = m.CheckDecryptInput(item.ciphertext, &version);
    if (!item.status.ok()) continue;
    sent.push_back(&item);
    versions.push_back(version);
  }
  if (sent.empty()) return m.http.loop()->Defer(std::move(done));
  // Each item of a batch carries its index as `reference`, which Vault echoes: the answer is
  // checked against it, not only trusted to keep the order. A lone item goes in the plain
  // form, exactly as a single Decrypt.
  const bool single = sent.size() == 1;
  size_t reserve = 32;
  for (const DecryptItem* item : sent) reserve += 48 + JsonStringReserve(item->ciphertext.size());
  auto body = std::make_shared<std::string>();
  body->reserve(reserve);
  body->append(single ? "{" : "{\"batch_input\":[");
  for (size_t i = 0; i < sent.size(); ++i) {
    if (!single) body->append(i == 0 ? "{" : ",{");
    body->append("\"ciphertext\":");
    AppendJsonString(body.get(), sent[i]->ciphertext);
    if (!single) body->append(",\"reference\":\"").append(std::to_string(i)).append("\"}");
  }
  body->append(single ? "}" : "]}");
  m.tokens.CallWithToken(
      HttpMethod::kPost, m.decrypt_path, *body, m.config.ns, deadline,
      [this, body, sent = std::move(sent), versions = std::move(versions),
       done = std::move(done)](VaultResponse* r) {
        WipeString(body.get());
        if (sent.size() > 1) {
          ReadDecryptBatchAnswer(r, sent, impl_->key_name);
          impl_->RecordDecrypts(sent, versions);
          return done();
        }
        Json::Value* pt = nullptr;
        if (r->json.isObject() && r->json["data"].isObject() &&
            r->json["data"]["plaintext"].isString()) {
          pt = &r->json["data"]["plaintext"];
        }
        if (!r->ok()) {
          if (pt != nullptr) WipeJsonString(pt);
          sent[0]->status = MapVaultError(VaultOp::kDecrypt, *r, impl_->key_name);
        } else if (pt == nullptr) {
          sent[0]->status = Status(Code::kInternal, "vault's decrypt answer has no plaintext");
        } else {
          sent[0]->status = TakePlaintext(pt, &sent[0]->plaintext);
        }
        impl_->RecordDecrypts(sent, versions);
        done();
      });
}

void VaultBackend::EncryptBatch(std::vector<EncryptItem>* items, Deadline deadline) {
  loop()->Await<bool>([&](std::function<void(bool)> done) {
    EncryptBatch(items, deadline, [done = std::move(done)] { done(true); });
  });
}

void VaultBackend::DecryptBatch(std::vector<DecryptItem>* items, Deadline deadline) {
  loop()->Await<bool>([&](std::function<void(bool)> done) {
    DecryptBatch(items, deadline, [done = std::move(done)] { done(true); });
  });
}

Status VaultBackend::Encrypt(std::string_view plaintext, Deadline deadline, std::string* ciphertext,
                             std::string* key_id) {
  std::vector<EncryptItem> items(1);
  items[0].plaintext = plaintext;
  EncryptBatch(&items, deadline);
  if (!items[0].status.ok()) return items[0].status;
  *ciphertext = std::move(items[0].ciphertext);
  *key_id = std::move(items[0].key_id);
  return Status::Ok();
}

Status VaultBackend::Decrypt(std::string_view ciphertext, Deadline deadline,
                             std::string* plaintext) {
  std::vector<DecryptItem> items(1);
  items[0].ciphertext = ciphertext;
  DecryptBatch(&items, deadline);
  if (!items[0].status.ok()) return items[0].status;
  *plaintext = std::move(items[0].plaintext);
  return Status::Ok();
}

}  // namespace vkms::broker
