// The TLS certificate auth method, after Vault's builtin/credential/cert (path_certs.go,
// path_login.go, path_config.go): trusted certificates ("roles") and login with the client
// certificate of the TLS connection, including the renewal binding to that certificate.
//
// Chains are verified with OpenSSL where Vault uses Go's x509.Verify; the outcomes and error
// texts are Go's: the leaf's validity window first, then the chain (an unknown authority is "no
// chain", anything else an error), then the role's constraints.
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <memory>
#include <set>

#include "encoding.h"
#include "fields.h"
#include "handlers.h"
#include "text.h"

namespace vaultsim {
namespace {

constexpr char kMountType[] = "cert";

using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;
using CertList = std::vector<std::shared_ptr<X509>>;

std::shared_ptr<X509> Share(X509* x) {
  return std::shared_ptr<X509>(x, X509_free);
}

// Vault's parsePEM: every CERTIFICATE block that parses, others skipped.
CertList ParsePem(const std::string& pem) {
  CertList out;
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  while (bio) {
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (x == nullptr) break;
    out.push_back(Share(x));
  }
  ERR_clear_error();
  return out;
}

std::shared_ptr<X509> ParseDer(const std::string& der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  X509* x = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  return x ? Share(x) : nullptr;
}

bool IsCa(X509* x) {
  return X509_check_ca(x) != 0;
}

bool HasClientAuthUsage(X509* x) {
  const uint32_t flags = X509_get_extension_flags(x);
  if (!(flags & EXFLAG_XKUSAGE)) return true;  // no extended key usage: any
  return (X509_get_extended_key_usage(x) & (XKU_SSL_CLIENT | XKU_ANYEKU)) != 0;
}

std::string RawOctets(const ASN1_OCTET_STRING* s) {
  if (s == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

std::string SubjectKeyId(X509* x) {
  return RawOctets(X509_get0_subject_key_id(x));
}

std::string AuthorityKeyId(X509* x) {
  return RawOctets(X509_get0_authority_key_id(x));
}

// Vault's certutil.GetHexFormatted(b, ":").
std::string HexColons(const std::string& raw) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    if (!out.empty()) out.push_back(':');
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

std::string CommonName(X509* x) {
  X509_NAME* name = X509_get_subject_name(x);
  const int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (i < 0) return "";
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
  unsigned char* utf8 = nullptr;
  const int len = ASN1_STRING_to_UTF8(&utf8, data);
  std::string out = len > 0 ? std::string(reinterpret_cast<char*>(utf8), len) : std::string();
  OPENSSL_free(utf8);
  return out;
}

std::vector<std::string> DnsNames(X509* x) {
  std::vector<std::string> out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type == GEN_DNS || n->type == GEN_EMAIL) {
      const ASN1_IA5STRING* s = n->type == GEN_DNS ? n->d.dNSName : n->d.rfc822Name;
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<size_t>(ASN1_STRING_length(s)));
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

std::string SerialDecimal(X509* x) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr);
  char* dec = bn ? BN_bn2dec(bn) : nullptr;
  std::string out = dec ? dec : "";
  OPENSSL_free(dec);
  BN_free(bn);
  return out;
}

// ryanuber/go-glob, which Vault's constraints use: '*' matches any run of characters.
bool Glob(const std::string& pattern, const std::string& subject) {
  if (pattern == "*") return true;
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t star = pattern.find('*'); star != std::string::npos;
       star = pattern.find('*', start)) {
    parts.push_back(pattern.substr(start, star - start));
    start = star + 1;
  }
  parts.push_back(pattern.substr(start));
  if (parts.size() == 1) return pattern == subject;
  if (subject.compare(0, parts.front().size(), parts.front()) != 0) return false;
  size_t pos = parts.front().size();
  for (size_t i = 1; i + 1 < parts.size(); ++i) {
    const size_t at = subject.find(parts[i], pos);
    if (at == std::string::npos) return false;
    pos = at + parts[i].size();
  }
  const std::string& last = parts.back();
  return subject.size() >= pos + last.size() &&
         subject.compare(subject.size() - last.size(), last.size(), last) == 0;
}

bool AnyGlob(const std::vector<std::string>& patterns, const std::vector<std::string>& names) {
  for (const auto& p : patterns) {
    for (const auto& n : names) {
      if (Glob(p, n)) return true;
    }
  }
  return false;
}

bool MatchesConstraints(X509* client, const CertRole& role) {
  const std::string cn = CommonName(client);
  if (!role.allowed_names.empty()) {
    std::vector<std::string> names = DnsNames(client);
    names.push_back(cn);
    if (!AnyGlob(role.allowed_names, names)) return false;
  }
  return role.allowed_common_names.empty() || AnyGlob(role.allowed_common_names, {cn});
}

// Go's time.Format(time.RFC3339) of an ASN1 time, in UTC.
std::string GoTime(const ASN1_TIME* t) {
  struct tm tm = {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return "?";
  char out[32];
  strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return out;
}

// Go's x509.CertificateInvalidError{Reason: Expired} for `x` at `now`, or "".
std::string ValidityError(X509* x, int64_t now) {
  time_t t = static_cast<time_t>(now);
  const std::string at = FormatRfc3339(now);
  if (X509_cmp_time(X509_get0_notBefore(x), &t) > 0) {
    return "x509: certificate has expired or is not yet valid: current time " + at + " is before " +
           GoTime(X509_get0_notBefore(x));
  }
  if (X509_cmp_time(X509_get0_notAfter(x), &t) < 0) {
    return "x509: certificate has expired or is not yet valid: current time " + at + " is after " +
           GoTime(X509_get0_notAfter(x));
  }
  return "";
}

struct Trusted {
  const CertRole* role;
  CertList certs;
};

// Vault's validateConnState: the verified chain of the client certificate (empty when no
// trusted authority issued it), or an error text for a certificate that cannot verify.
bool VerifyChain(const std::vector<std::shared_ptr<X509>>& peer, const CertList& roots, int64_t now,
                 CertList* chain, std::string* error) {
  // Go checks the leaf's own validity before looking for a chain.
  *error = ValidityError(peer[0].get(), now);
  if (!error->empty()) return false;
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
  std::unique_ptr<STACK_OF(X509), void (*)(STACK_OF(X509)*)> untrusted(
      sk_X509_new_null(), [](STACK_OF(X509) * s) { sk_X509_free(s); });
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(),
                                                                      X509_STORE_CTX_free);
  if (!store || !untrusted || !ctx) {
    *error = "out of memory";
    return false;
  }
  for (const auto& r : roots) X509_STORE_add_cert(store.get(), r.get());
  for (size_t i = 1; i < peer.size(); ++i) sk_X509_push(untrusted.get(), peer[i].get());
  X509_STORE_CTX_init(ctx.get(), store.get(), peer[0].get(), untrusted.get());
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  // Go's roots are trust anchors whether or not they are self-signed.
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_USE_CHECK_TIME);
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(now));
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT);
  if (X509_verify_cert(ctx.get()) == 1) {
    STACK_OF(X509)* verified = X509_STORE_CTX_get1_chain(ctx.get());
    for (int i = 0; i < sk_X509_num(verified); ++i)
      chain->push_back(Share(sk_X509_value(verified, i)));
    sk_X509_free(verified);
    return true;
  }
  const int code = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  switch (code) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      return true;  // Go's UnknownAuthorityError: no chain, no error
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
      *error = ValidityError(X509_STORE_CTX_get_current_cert(ctx.get()), now);
      break;
    case X509_V_ERR_INVALID_PURPOSE:
      *error = "x509: certificate specifies an incompatible key usage";
      break;
    default:
      *error = std::string("x509: ") + X509_verify_cert_error_string(code);
  }
  return false;
}

// Vault's verifyCredentials. `cert_name` empty: every trusted certificate is a candidate.
// Returns the matched role, or null with *refused set.
const CertRole* VerifyCredentials(Ctx& c, const Mount& mount, const std::string& cert_name,
                                  VaultResponse* refused) {
  if (c.req.peer_certs.empty()) {
    *refused = Error(400, "client certificate must be supplied");
    return nullptr;
  }
  std::vector<std::shared_ptr<X509>> peer;
  for (const auto& der : c.req.peer_certs) {
    auto x = ParseDer(der);
    if (!x) {
      *refused = Error(400, "client certificate must be supplied");
      return nullptr;
    }
    peer.push_back(std::move(x));
  }
  X509* client = peer[0].get();

  std::vector<Trusted> trusted, non_ca;
  CertList roots;
  auto consider = [&](const CertRole& role) {
    CertList parsed = ParsePem(role.certificate);
    if (parsed.empty()) return;
    if (!IsCa(parsed[0].get())) {
      non_ca.push_back({&role, parsed});
      return;
    }
    roots.insert(roots.end(), parsed.begin(), parsed.end());
    trusted.push_back({&role, parsed});
  };
  if (!cert_name.empty()) {
    auto it = mount.certs.find(Lower(cert_name));
    if (it != mount.certs.end()) consider(it->second);
  } else {
    for (const auto& [name, role] : mount.certs) consider(role);
  }

  CertList chain;
  std::string error;
  if (!VerifyChain(peer, roots, c.st.Now(), &chain, &error)) {
    *refused = Error(500, MultiError({"failed to verify client's certificate: " + error}));
    return nullptr;
  }
  // A leaf registered as such: serial number and issuer key identifier, not the chain.
  for (const Trusted& t : non_ca) {
    X509* registered = t.certs[0].get();
    if (ASN1_INTEGER_cmp(X509_get0_serialNumber(registered), X509_get0_serialNumber(client)) == 0 &&
        AuthorityKeyId(registered) == AuthorityKeyId(client) &&
        MatchesConstraints(client, *t.role)) {
      return t.role;
    }
  }
  if (chain.empty()) {
    *refused = Error(400, "invalid certificate or no client certificate supplied");
    return nullptr;
  }
  for (const Trusted& t : trusted) {
    for (const auto& tc : t.certs) {
      for (const auto& cc : chain) {
        if (X509_cmp(tc.get(), cc.get()) == 0 && MatchesConstraints(client, *t.role)) {
          return t.role;
        }
      }
    }
  }
  *refused =
      Error(400, "no chain matching all constraints could be found for this login certificate");
  return nullptr;
}

Json::Value RoleData(const CertRole& r) {
  Json::Value d(Json::objectValue);
  d["certificate"] = r.certificate;
  d["display_name"] = r.display_name;
  d["allowed_names"] = StringArray(r.allowed_names);
  d["allowed_common_names"] = StringArray(r.allowed_common_names);
  for (const char* empty :
       {"allowed_dns_sans", "allowed_email_sans", "allowed_uri_sans",
        "allowed_organizational_units", "required_extensions", "allowed_metadata_extensions"}) {
    d[empty] = Json::Value(Json::arrayValue);
  }
  WriteTokenFields(r, &d);
  return d;
}

VaultResponse WriteRole(Ctx& c, const std::string& name) {
  FieldReader f(c.req.data);
  // Constraints and features the simulator does not evaluate are refused, not ignored.
  for (const char* unsupported :
       {"allowed_dns_sans", "allowed_email_sans", "allowed_uri_sans",
        "allowed_organizational_units", "required_extensions", "allowed_metadata_extensions",
        "ocsp_enabled", "ocsp_ca_certificates", "ocsp_servers_override"}) {
    if (f.Has(unsupported)) {
      return Error(400, std::string("vaultsim does not support ") + unsupported);
    }
  }
  auto existing = c.mount->certs.find(name);
  CertRole r;
  if (existing != c.mount->certs.end()) {
    r = existing->second;
  } else {
    r.name = name;
  }
  if (f.Has("certificate")) r.certificate = f.String("certificate");
  if (f.Has("display_name")) r.display_name = f.String("display_name");
  if (f.Has("allowed_names")) r.allowed_names = f.StringList("allowed_names");
  if (f.Has("allowed_common_names")) r.allowed_common_names = f.StringList("allowed_common_names");
  // The deprecated names Vault's cert method still reads.
  if (!f.Has("token_ttl") && f.Has("ttl")) r.token_ttl = f.DurationSeconds("ttl");
  if (!f.Has("token_max_ttl") && f.Has("max_ttl")) r.token_max_ttl = f.DurationSeconds("max_ttl");
  const std::string token_error = ReadTokenFields(f, &r);
  if (!token_error.empty()) return Error(400, token_error);
  if (r.display_name.empty()) r.display_name = name;
  CertList parsed = ParsePem(r.certificate);
  if (parsed.empty()) return Error(400, "failed to parse certificate");
  if (!IsCa(parsed[0].get()) && !HasClientAuthUsage(parsed[0].get())) {
    return Error(400,
                 "nonCA certificates should have TLS client authentication set as an extended key "
                 "usage");
  }
  c.mount->certs[name] = std::move(r);
  return NoContent();
}

VaultResponse Login(Ctx& c) {
  FieldReader f(c.req.data);
  const std::string name = f.String("name");
  if (!f.ok()) return Error(400, f.error());
  VaultResponse refused;
  const CertRole* role = VerifyCredentials(c, *c.mount, name, &refused);
  if (role == nullptr) return refused;

  std::shared_ptr<X509> client = ParseDer(c.req.peer_certs.front());
  const std::string cn = CommonName(client.get());
  Json::Value meta(Json::objectValue);
  meta["cert_name"] = role->name;
  meta["common_name"] = cn;
  meta["serial_number"] = SerialDecimal(client.get());
  meta["subject_key_id"] = HexColons(SubjectKeyId(client.get()));
  meta["authority_key_id"] = HexColons(AuthorityKeyId(client.get()));

  std::string& entity = c.mount->cert_entities[cn];
  if (entity.empty()) entity = RandomUuid();

  TokenParams p;
  ApplyTokenFields(*role, &p);
  p.meta = meta;
  // Vault prefixes the method's display name with its mount path: "cert-<display_name>".
  p.display_name = c.mount->path + role->display_name;
  std::replace(p.display_name.begin(), p.display_name.end(), '/', '-');
  p.path = "auth/" + c.mount->path + "login";
  p.entity_id = entity;
  p.auth_mount = c.mount->path;
  p.role_name = role->name;
  std::vector<std::string> warnings;
  Token& t = IssueToken(c, p, &warnings);
  t.cert_subject_key_id = SubjectKeyId(client.get());
  t.cert_authority_key_id = AuthorityKeyId(client.get());
  return RespondAuth(AuthBlock(t), kMountType, warnings);
}

VaultResponse Config(Ctx& c) {
  if (c.op == Op::kRead) {
    Json::Value d(Json::objectValue);
    d["disable_binding"] = c.mount->disable_binding;
    d["enable_identity_alias_metadata"] = false;
    return Respond(d, kMountType);
  }
  if (c.op != Op::kUpdate && c.op != Op::kCreate) return UnsupportedOperation();
  FieldReader f(c.req.data);
  const bool disable_binding = f.Bool("disable_binding", c.mount->disable_binding);
  if (!f.ok()) return Error(400, f.error());
  c.mount->disable_binding = disable_binding;
  return NoContent();
}

std::vector<std::string> WithoutDefault(std::vector<std::string> policies) {
  policies.erase(std::remove(policies.begin(), policies.end(), "default"), policies.end());
  return SanitizePolicies(policies, false);
}

}  // namespace

bool CertUnauthenticated(const std::string& sub) {
  return sub == "login";
}

VaultResponse HandleCert(Ctx& c) {
  const auto parts = SplitPath(c.sub);
  const bool write = c.op == Op::kUpdate || c.op == Op::kCreate;
  if (c.sub == "login") return write ? Login(c) : UnsupportedOperation();
  if (c.sub == "config") return Config(c);
  if (parts[0] != "certs") return UnsupportedPath();
  if (parts.size() == 1 || (parts.size() == 2 && parts[1].empty())) {
    if (c.op != Op::kList) return UnsupportedOperation();
    std::vector<std::string> names;
    for (const auto& [name, role] : c.mount->certs) names.push_back(name);
    return ListResponse(names, kMountType);
  }
  if (parts.size() != 2 || !IsGenericName(parts[1])) return UnsupportedPath();
  const std::string name = Lower(parts[1]);
  auto it = c.mount->certs.find(name);
  switch (c.op) {
    case Op::kRead:
      return it == c.mount->certs.end() ? EmptyError(404)
                                        : Respond(RoleData(it->second), kMountType);
    case Op::kCreate:
    case Op::kUpdate:
      return WriteRole(c, name);
    case Op::kDelete:
      c.mount->certs.erase(name);
      return NoContent();
    case Op::kList:
      break;
  }
  return UnsupportedOperation();
}

std::optional<VaultResponse> CertRenewal(Ctx& c, const Token& token, int64_t* ttl, int64_t* max_ttl,
                                         int64_t* period) {
  Namespace* ns = c.st.FindNamespace(token.ns);
  if (ns == nullptr || ns->auth_mounts.count(token.auth_mount) == 0) {
    return Error(400, "vaultsim: the token's certificate auth mount is gone");
  }
  const Mount& mount = ns->auth_mounts.at(token.auth_mount);
  if (!mount.disable_binding) {
    VaultResponse refused;
    if (VerifyCredentials(c, mount, token.role_name, &refused) == nullptr) return refused;
    std::shared_ptr<X509> client = ParseDer(c.req.peer_certs.front());
    if (SubjectKeyId(client.get()) != token.cert_subject_key_id &&
        AuthorityKeyId(client.get()) != token.cert_authority_key_id) {
      return Error(500, MultiError({"client identity during renewal not matching client identity "
                                    "used during login"}));
    }
  }
  auto role = mount.certs.find(token.role_name);
  if (role == mount.certs.end()) {
    // Vault's backend answers nothing at all here and the token is not renewed.
    return Error(400, "vaultsim: certificate role \"" + token.role_name +
                          "\" no longer exists; Vault does not renew its tokens");
  }
  if (WithoutDefault(role->second.policies) != WithoutDefault(token.policies)) {
    return Error(500, MultiError({"policies have changed, not renewing"}));
  }
  *ttl = role->second.token_ttl;
  *max_ttl = role->second.token_max_ttl;
  *period = role->second.token_period;
  return std::nullopt;
}

}  // namespace vaultsim
