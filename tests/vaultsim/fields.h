// Reads request parameters with the weak typing of Vault's framework.FieldData: numbers may come
// as strings, booleans as "true"/"1", lists as comma-separated strings, durations as seconds or
// Go duration strings. The first conversion failure is kept, worded like Vault's, so a handler
// reads every field and then checks ok() once.
#pragma once

#include <json/json.h>

#include <cstdint>
#include <string>
#include <vector>

namespace vaultsim {

class FieldReader {
 public:
  explicit FieldReader(const Json::Value& data) : data_(data) {}

  // Present and not JSON null.
  bool Has(const char* name) const;
  std::string String(const char* name, const std::string& fallback = "");
  int64_t Int(const char* name, int64_t fallback = 0);
  bool Bool(const char* name, bool fallback = false);
  // Vault's TypeDurationSecond: 3600, "3600", "1h", "90s", "2d".
  int64_t DurationSeconds(const char* name, int64_t fallback = 0);
  // Vault's TypeCommaStringSlice: ["a","b"] or "a,b".
  std::vector<std::string> StringList(const char* name);
  // Vault's TypeKVPairs: an object of string values.
  Json::Value StringMap(const char* name);

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

 private:
  void Fail(const char* name, const Json::Value& value, const std::string& why);

  const Json::Value& data_;
  std::string error_;
};

// Shared with token increments, which are parsed outside a FieldReader.
bool ParseDurationValue(const Json::Value& value, int64_t* seconds, std::string* error);

}  // namespace vaultsim
