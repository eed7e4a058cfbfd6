#include "vault_types.h"

#include "encoding.h"

namespace vaultsim {
namespace {

Json::Value Envelope(const std::string& mount_type, const std::vector<std::string>& warnings) {
  Json::Value e(Json::objectValue);
  e["request_id"] = RandomUuid();
  e["lease_id"] = "";
  e["renewable"] = false;
  e["lease_duration"] = 0;
  e["data"] = Json::nullValue;
  e["wrap_info"] = Json::nullValue;
  e["warnings"] = Json::nullValue;
  if (!warnings.empty()) {
    e["warnings"] = Json::Value(Json::arrayValue);
    for (const auto& w : warnings) e["warnings"].append(w);
  }
  e["auth"] = Json::nullValue;
  e["mount_type"] = mount_type;
  return e;
}

}  // namespace

VaultResponse Respond(Json::Value data, const std::string& mount_type,
                      const std::vector<std::string>& warnings) {
  return RespondWithStatus(200, std::move(data), mount_type, warnings);
}

VaultResponse RespondWithStatus(int status, Json::Value data, const std::string& mount_type,
                                const std::vector<std::string>& warnings) {
  VaultResponse r;
  r.status = status;
  r.body = Envelope(mount_type, warnings);
  r.body["data"] = std::move(data);
  return r;
}

VaultResponse RespondAuth(Json::Value auth, const std::string& mount_type,
                          const std::vector<std::string>& warnings) {
  VaultResponse r;
  r.body = Envelope(mount_type, warnings);
  r.body["auth"] = std::move(auth);
  return r;
}

VaultResponse NoContent() {
  VaultResponse r;
  r.status = 204;
  return r;
}

VaultResponse Error(int status, const std::string& message) {
  VaultResponse r = EmptyError(status);
  r.body["errors"].append(message);
  return r;
}

VaultResponse EmptyError(int status) {
  VaultResponse r;
  r.status = status;
  r.body = Json::Value(Json::objectValue);
  r.body["errors"] = Json::Value(Json::arrayValue);
  return r;
}

VaultResponse UnsupportedPath() {
  return Error(404, MultiError({"unsupported path"}));
}

VaultResponse UnsupportedOperation() {
  return Error(405, MultiError({"unsupported operation"}));
}

VaultResponse PermissionDenied() {
  return Error(403, MultiError({"permission denied"}));
}

VaultResponse InvalidToken() {
  return Error(403, MultiError({"permission denied", "invalid token"}));
}

VaultResponse NoHandlerForRoute(const std::string& full_path) {
  return Error(404, "no handler for route \"" + full_path + "\". route entry not found.");
}

VaultResponse ListResponse(const std::vector<std::string>& keys, const std::string& mount_type) {
  if (keys.empty()) return EmptyError(404);
  Json::Value data(Json::objectValue);
  data["keys"] = Json::Value(Json::arrayValue);
  for (const auto& k : keys) data["keys"].append(k);
  return Respond(data, mount_type);
}

}  // namespace vaultsim
