#include "broker/vault_backend.h"

#include "broker/base64.h"
#include "broker/capabilities.h"
#include "broker/key_cache.h"
#include "broker/token_manager.h"
#include "broker/vault_backend_internal.h"
#include "broker/vault_http.h"
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

struct VaultBackend::Impl {
  explicit Impl(VaultConfig c)
      : config(Normalize(std::move(c))),
        config_error(ValidateVaultConfig(config)),
        http(config),
        tokens(config, &http),
        keys(config, &tokens) {
    if (config_error.empty()) config_error = http.config_error();
    key_name = config.transit_mount + "/" + config.transit_key;
  }

  static VaultConfig Normalize(VaultConfig c) {
    c.ns = TrimSlashes(c.ns);
    c.auth_ns = TrimSlashes(c.auth_ns);
    c.transit_mount = TrimSlashes(c.transit_mount);
    c.approle_mount = TrimSlashes(c.approle_mount);
    return c;
  }

  // For Decrypt and DecryptBatch: ok when the ciphertext may be sent to Vault.
  Status CheckDecryptInput(std::string_view ciphertext);
  VaultResponse PostDecrypt(const std::string& body, Deadline deadline);
  // The single-form Decrypt of a ciphertext CheckDecryptInput accepted.
  Status DecryptOne(std::string_view ciphertext, Deadline deadline, std::string* plaintext);

  const VaultConfig config;
  std::string config_error;
  std::string key_name;
  VaultHttp http;
  TokenManager tokens;
  KeyCache keys;
};

VaultBackend::VaultBackend(VaultConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {
  EnsureCurlGlobalInit();
  std::string addrs;
  for (const auto& a : impl_->config.addrs) addrs += (addrs.empty() ? "" : ",") + a;
  log::Info("vault backend configured",
            {{"addrs", addrs},
             {"namespace", impl_->config.ns},
             {"key", impl_->key_name},
             {"auth", impl_->config.auth_method == AuthMethod::kToken ? "token" : "approle"}});
  if (!impl_->config_error.empty()) {
    log::Error("invalid vault configuration", {{"error", impl_->config_error}});
  }
}

VaultBackend::~VaultBackend() {
  Stop();
}

void VaultBackend::Start() {
  if (!impl_->config_error.empty()) return;  // Health() reports it; nothing could work
  impl_->tokens.Start();
  impl_->keys.Start();
}

void VaultBackend::Stop() {
  // Tokens first: that cancels any login the key refresher may be waiting on, so neither join
  // waits for a slow Vault.
  impl_->tokens.Stop();
  impl_->keys.Stop();
}

BackendHealth VaultBackend::Health() const {
  BackendHealth h;
  if (!impl_->config_error.empty()) {
    h.healthz = h.ready_reason = "invalid vault configuration: " + impl_->config_error;
    return h;
  }
  TokenState t = impl_->tokens.State();
  KeyCacheState k = impl_->keys.State();
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
  bool stale = k.meta && k.age > 3 * impl_->config.key_refresh_interval;
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
  return s;
}

Status VaultBackend::Encrypt(std::string_view plaintext, Deadline deadline, std::string* ciphertext,
                             std::string* key_id) {
  if (!impl_->config_error.empty()) {
    return Status(Code::kFailedPrecondition, "invalid vault configuration: " + impl_->config_error);
  }
  // The frontend checked this; a compromised frontend may not have.
  if (Status s = validate::Plaintext(plaintext); !s.ok()) return s;
  std::shared_ptr<const KeyMetadata> meta = impl_->keys.Current();
  if (!meta) {
    BackendHealth h = Health();
    return Status(Code::kUnavailable, "transit key metadata not available: " + h.healthz);
  }
  // Pinned: exactly the version Status reported, never "latest at Vault right now".
  const uint64_t version = meta->latest_version;

  std::string b64 = Base64Encode(plaintext);
  std::string body;
  body.reserve(64 + JsonStringReserve(b64.size()));
  body.append("{\"plaintext\":");
  AppendJsonString(&body, b64);
  body.append(",\"key_version\":");
  body.append(std::to_string(version));
  body.push_back('}');
  WipeString(&b64);
  VaultResponse r = impl_->tokens.CallWithToken(
      HttpMethod::kPost, impl_->config.transit_mount + "/encrypt/" + impl_->config.transit_key,
      body, impl_->config.ns, deadline);
  WipeString(&body);
  if (!r.ok()) {
    Status s = MapVaultError(VaultOp::kEncrypt, r, impl_->key_name);
    if (s.code() == Code::kFailedPrecondition) impl_->keys.RequestRefresh();
    return s;
  }
  const Json::Value& data = r.json.isObject() ? r.json["data"] : Json::Value::nullSingleton();
  if (!data.isObject() || !data["ciphertext"].isString()) {
    return Status(Code::kInternal, "vault's encrypt answer has no ciphertext");
  }
  std::string ct = data["ciphertext"].asString();
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
  *ciphertext = std::move(ct);
  *key_id = meta->key_id;
  return Status::Ok();
}

void ReadDecryptBatchAnswer(VaultResponse* answer,
                            const std::vector<VaultBackend::DecryptItem*>& sent,
                            const std::string& key_name) {
  VaultResponse& r = *answer;
  for (VaultBackend::DecryptItem* item : sent) WipeString(&item->plaintext);
  Json::Value* results = nullptr;
  if (r.transport == Code::kOk && r.json.isObject() && r.json["data"].isObject() &&
      r.json["data"]["batch_results"].isArray()) {
    results = &r.json["data"]["batch_results"];
  }
  // A failed item makes Vault answer 400 (500 for an internal error) with every item's result.
  bool per_item = results != nullptr && results->size() == sent.size() &&
                  (r.ok() || r.status == 400 || r.status == 500);
  for (Json::ArrayIndex i = 0; per_item && i < sent.size(); ++i) {
    const Json::Value& res = (*results)[i];
    per_item = res.isObject() &&
               (!res.isMember("reference") || res["reference"] == Json::Value(std::to_string(i)));
  }
  Status whole;
  if (!per_item) {
    whole = r.ok() ? Status(Code::kInternal,
                            "vault's batch decrypt answer does not match the request item for item")
                   : MapVaultError(VaultOp::kDecrypt, r, key_name);
  }
  for (Json::ArrayIndex i = 0; i < sent.size(); ++i) {
    Json::Value* pt = nullptr;
    if (per_item && (*results)[i]["plaintext"].isString()) pt = &(*results)[i]["plaintext"];
    VaultBackend::DecryptItem& item = *sent[i];
    if (!per_item) {
      item.status = whole;
    } else if (const Json::Value& err = (*results)[i]["error"];
               err.isString() && !err.asString().empty()) {
      VaultResponse one;
      one.status = r.ok() ? 400 : r.status;
      Json::Value errors;
      errors["errors"].append(err);
      one.error = SafeVaultErrors(errors);
      item.status = MapVaultError(VaultOp::kDecrypt, one, key_name);
    } else if (pt == nullptr) {
      item.status = Status(Code::kInternal, "vault's decrypt answer has no plaintext");
    } else {
      item.status = TakePlaintext(pt, &item.plaintext);
    }
    if (!item.status.ok()) WipeString(&item.plaintext);
  }
  // Whatever was used or refused, no plaintext stays in the answer.
  for (Json::ArrayIndex i = 0; results != nullptr && i < results->size(); ++i) {
    Json::Value& res = (*results)[i];
    if (res.isObject() && res["plaintext"].isString()) WipeJsonString(&res["plaintext"]);
  }
}

Status VaultBackend::Impl::CheckDecryptInput(std::string_view ciphertext) {
  if (!config_error.empty()) {
    return Status(Code::kFailedPrecondition, "invalid vault configuration: " + config_error);
  }
  // Re-checked here (the frontend may be compromised) so junk never reaches Vault.
  uint64_t version = 0;
  if (Status s = validate::VaultCiphertext(ciphertext, &version); !s.ok()) return s;
  std::shared_ptr<const KeyMetadata> meta = keys.Current();
  if (meta && version > meta->latest_version) keys.RequestRefresh();
  return Status::Ok();
}

VaultResponse VaultBackend::Impl::PostDecrypt(const std::string& body, Deadline deadline) {
  return tokens.CallWithToken(HttpMethod::kPost,
                              config.transit_mount + "/decrypt/" + config.transit_key, body,
                              config.ns, deadline);
}

Status VaultBackend::Impl::DecryptOne(std::string_view ciphertext, Deadline deadline,
                                      std::string* plaintext) {
  std::string body;
  body.reserve(32 + JsonStringReserve(ciphertext.size()));
  body.append("{\"ciphertext\":");
  AppendJsonString(&body, ciphertext);
  body.push_back('}');
  VaultResponse r = PostDecrypt(body, deadline);
  WipeString(&body);
  Json::Value* pt = nullptr;
  if (r.json.isObject() && r.json["data"].isObject() && r.json["data"]["plaintext"].isString()) {
    pt = &r.json["data"]["plaintext"];
  }
  if (!r.ok()) {
    if (pt != nullptr) WipeJsonString(pt);
    return MapVaultError(VaultOp::kDecrypt, r, key_name);
  }
  if (pt == nullptr) return Status(Code::kInternal, "vault's decrypt answer has no plaintext");
  return TakePlaintext(pt, plaintext);
}

Status VaultBackend::Decrypt(std::string_view ciphertext, Deadline deadline,
                             std::string* plaintext) {
  if (Status s = impl_->CheckDecryptInput(ciphertext); !s.ok()) return s;
  return impl_->DecryptOne(ciphertext, deadline, plaintext);
}

void VaultBackend::DecryptBatch(std::vector<DecryptItem>* items, Deadline deadline) {
  std::vector<DecryptItem*> sent;
  for (DecryptItem& item : *items) {
    item.plaintext.clear();
    item.status = impl_->CheckDecryptInput(item.ciphertext);
    if (item.status.ok()) sent.push_back(&item);
  }
  if (sent.size() <= 1) {
    // Nothing to share a call with: the plain form, exactly as a lone Decrypt.
    if (sent.size() == 1) {
      sent[0]->status = impl_->DecryptOne(sent[0]->ciphertext, deadline, &sent[0]->plaintext);
    }
    return;
  }
  // Each item carries its index as `reference`, which Vault echoes: the answer is checked
  // against it, not only trusted to keep the order.
  size_t reserve = 32;
  for (const DecryptItem* item : sent) reserve += 48 + JsonStringReserve(item->ciphertext.size());
  std::string body;
  body.reserve(reserve);
  body.append("{\"batch_input\":[");
  for (size_t i = 0; i < sent.size(); ++i) {
    body.append(i == 0 ? "{\"ciphertext\":" : ",{\"ciphertext\":");
    AppendJsonString(&body, sent[i]->ciphertext);
    body.append(",\"reference\":\"");
    body.append(std::to_string(i));
    body.append("\"}");
  }
  body.append("]}");
  VaultResponse r = impl_->PostDecrypt(body, deadline);
  WipeString(&body);

  ReadDecryptBatchAnswer(&r, sent, impl_->key_name);
}

}  // namespace vkms::broker
