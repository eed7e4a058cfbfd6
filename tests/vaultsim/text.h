// Small string helpers the handlers share.
#pragma once

#include <json/json.h>

#include <string>
#include <vector>

namespace vaultsim {

// "a/b/" -> {"a", "b", ""}: the trailing empty segment tells a list path from an item path.
std::vector<std::string> SplitPath(const std::string& path);
std::string Trim(const std::string& s);
std::string Lower(std::string s);
bool StartsWith(const std::string& s, const std::string& prefix);
Json::Value StringArray(const std::vector<std::string>& items);

}  // namespace vaultsim
