#include "fields.h"

#include <cmath>

#include "encoding.h"
#include "text.h"

namespace vaultsim {
namespace {

std::string Render(const Json::Value& v) {
  if (v.isString()) return v.asString();
  Json::StreamWriterBuilder b;
  b["indentation"] = "";
  return Json::writeString(b, v);
}

}  // namespace

bool ParseDurationValue(const Json::Value& value, int64_t* seconds, std::string* error) {
  if (value.isNull()) {
    *seconds = 0;
    return true;
  }
  if (value.isIntegral()) {
    *seconds = value.asInt64();
    return true;
  }
  if (value.isDouble()) {
    *seconds = static_cast<int64_t>(std::trunc(value.asDouble()));
    return true;
  }
  if (!value.isString()) {
    *error = "could not parse duration from input";
    return false;
  }
  const std::string s = value.asString();
  if (s.empty()) {
    *seconds = 0;
    return true;
  }
  int64_t n = 0;
  if (ParseGoInt(s, &n)) {
    *seconds = n;
    return true;
  }
  if (s.back() == 'd') {
    if (!ParseGoInt(s.substr(0, s.size() - 1), &n)) {
      *error = "strconv.ParseInt: parsing \"" + s.substr(0, s.size() - 1) + "\": invalid syntax";
      return false;
    }
    *seconds = n * 86400;
    return true;
  }
  return ParseGoDuration(s, seconds, error);
}

bool FieldReader::Has(const char* name) const {
  return data_.isObject() && data_.isMember(name) && !data_[name].isNull();
}

void FieldReader::Fail(const char* name, const Json::Value& value, const std::string& why) {
  if (error_.empty()) {
    error_ = "error converting input " + Render(value) + " for field \"" + name + "\": " + why;
  }
}

std::string FieldReader::String(const char* name, const std::string& fallback) {
  if (!Has(name)) return fallback;
  const Json::Value& v = data_[name];
  if (v.isString()) return v.asString();
  if (v.isIntegral()) return std::to_string(v.asInt64());
  if (v.isBool()) return v.asBool() ? "1" : "0";
  Fail(name, v, "expected a string");
  return fallback;
}

int64_t FieldReader::Int(const char* name, int64_t fallback) {
  if (!Has(name)) return fallback;
  const Json::Value& v = data_[name];
  if (v.isIntegral()) return v.asInt64();
  if (v.isDouble() && std::trunc(v.asDouble()) == v.asDouble()) {
    return static_cast<int64_t>(v.asDouble());
  }
  if (v.isBool()) return v.asBool() ? 1 : 0;
  if (v.isString()) {
    int64_t n = 0;
    if (v.asString().empty()) return 0;
    if (ParseGoInt(v.asString(), &n)) return n;
    Fail(name, v,
         "cannot parse '' as int: strconv.ParseInt: parsing \"" + v.asString() +
             "\": invalid syntax");
    return fallback;
  }
  Fail(name, v, "expected an integer");
  return fallback;
}

bool FieldReader::Bool(const char* name, bool fallback) {
  if (!Has(name)) return fallback;
  const Json::Value& v = data_[name];
  if (v.isBool()) return v.asBool();
  if (v.isNumeric()) return v.asDouble() != 0;
  if (v.isString()) {
    const std::string s = v.asString();
    if (s == "1" || s == "t" || s == "T" || s == "true" || s == "TRUE" || s == "True") return true;
    if (s == "0" || s == "f" || s == "F" || s == "false" || s == "FALSE" || s == "False" ||
        s.empty()) {
      return false;
    }
    Fail(name, v,
         "cannot parse '' as bool: strconv.ParseBool: parsing \"" + s + "\": invalid syntax");
    return fallback;
  }
  Fail(name, v, "expected a boolean");
  return fallback;
}

int64_t FieldReader::DurationSeconds(const char* name, int64_t fallback) {
  if (!Has(name)) return fallback;
  int64_t secs = 0;
  std::string why;
  if (!ParseDurationValue(data_[name], &secs, &why)) {
    Fail(name, data_[name], why);
    return fallback;
  }
  return secs;
}

std::vector<std::string> FieldReader::StringList(const char* name) {
  std::vector<std::string> out;
  if (!Has(name)) return out;
  // Vault splits every string on commas, including elements of a JSON list.
  auto add_split = [&out](const std::string& s) {
    size_t start = 0;
    while (true) {
      size_t comma = s.find(',', start);
      std::string item = Trim(s.substr(start, comma == std::string::npos ? comma : comma - start));
      if (!item.empty()) out.push_back(item);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  };
  const Json::Value& v = data_[name];
  if (v.isString()) {
    add_split(v.asString());
    return out;
  }
  if (v.isArray()) {
    for (const auto& item : v) {
      if (!item.isString()) {
        Fail(name, v, "expected a list of strings");
        return {};
      }
      add_split(item.asString());
    }
    return out;
  }
  Fail(name, v, "expected a list of strings");
  return out;
}

Json::Value FieldReader::StringMap(const char* name) {
  Json::Value out(Json::objectValue);
  if (!Has(name)) return out;
  const Json::Value& v = data_[name];
  if (!v.isObject()) {
    Fail(name, v, "expected a map of strings");
    return out;
  }
  for (const auto& key : v.getMemberNames()) {
    if (!v[key].isString()) {
      Fail(name, v, "expected a map of strings");
      return Json::Value(Json::objectValue);
    }
    out[key] = v[key];
  }
  return out;
}

}  // namespace vaultsim
