// What a Vault handler sees and returns, independent of the HTTP library, plus builders for the
// response shapes Vault uses (success envelope, 204, {"errors": [...]}).
#pragma once

#include <json/json.h>

#include <string>
#include <utility>
#include <vector>

namespace vaultsim {

// Vault's logical operations. Create is never sent by a client: POST/PUT arrive as Update and
// become Create when the path has an existence check and the target is missing.
enum class Op { kRead, kList, kCreate, kUpdate, kDelete };

struct VaultRequest {
  std::string method;
  Op op = Op::kRead;
  std::string path;       // relative to /v1/ and to the namespace, no leading slash
  std::string raw_query;  // as received, for standby redirects
  Json::Value data{Json::objectValue};
  std::string token;
  std::string ns;  // "" (root) or "team/" (always with a trailing slash)
  // The TLS client certificate of the connection (DER), leaf first; empty when the client
  // presented none. TLS certificate auth reads it, like Vault's req.Connection.ConnState.
  std::vector<std::string> peer_certs;
};

struct VaultResponse {
  int status = 200;
  Json::Value body;  // null: no body at all (204)
  std::vector<std::pair<std::string, std::string>> headers;
};

// 200 with the standard envelope; `data` may be null (auth-only responses).
VaultResponse Respond(Json::Value data, const std::string& mount_type,
                      const std::vector<std::string>& warnings = {});
VaultResponse RespondAuth(Json::Value auth, const std::string& mount_type,
                          const std::vector<std::string>& warnings = {});
// The same envelope with a non-200 status (Vault's RespondWithStatusCode, e.g. partial batches).
VaultResponse RespondWithStatus(int status, Json::Value data, const std::string& mount_type,
                                const std::vector<std::string>& warnings = {});
VaultResponse NoContent();
VaultResponse Error(int status, const std::string& message);
// {"errors":[]}: what Vault sends when a read or list finds nothing.
VaultResponse EmptyError(int status);

VaultResponse UnsupportedPath();
VaultResponse UnsupportedOperation();
VaultResponse PermissionDenied();
VaultResponse InvalidToken();
VaultResponse NoHandlerForRoute(const std::string& full_path);

// Vault answers an empty list with 404 rather than {"keys": []}.
VaultResponse ListResponse(const std::vector<std::string>& keys, const std::string& mount_type);

}  // namespace vaultsim
