#include "shared/flags.h"

#include <cstdlib>
#include <sstream>

extern char** environ;

namespace vkms::flags {
namespace {

bool ValidBool(const std::string& v) {
  return v == "true" || v == "false" || v == "1" || v == "0";
}

// The variables a flag reads, in precedence order: the specific one (VAULT_KMS_VAULT_ADDR),
// then the standard one (VAULT_ADDR), which a Vault CLI user may have set for another purpose.
std::vector<std::string> VariablesOf(const Spec& s, const std::string& prefix) {
  std::vector<std::string> vars;
  if (!prefix.empty() && s.no_env.empty()) vars.push_back(EnvName(prefix, s.name));
  if (!s.env.empty()) vars.push_back(s.env);
  return vars;
}

}  // namespace

std::string EnvName(const std::string& prefix, const std::string& flag) {
  std::string out = prefix;
  for (char c : flag) out.push_back(c == '-' ? '_' : (c >= 'a' && c <= 'z') ? c - 'a' + 'A' : c);
  return out;
}

Environment Environment::Process(const std::string& prefix) {
  Environment env;
  env.prefix = prefix;
  env.get = [](const char* name) -> const char* { return getenv(name); };
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    std::string_view name = entry.substr(0, entry.find('='));
    if (!prefix.empty() && name.substr(0, prefix.size()) == prefix) env.names.emplace_back(name);
  }
  return env;
}

std::optional<std::string> Parsed::Get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::string Parsed::GetOr(const std::string& name, const std::string& fallback) const {
  auto v = Get(name);
  return v ? *v : fallback;
}

std::vector<std::string> Parsed::GetAll(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

bool Parsed::GetBool(const std::string& name) const {
  auto v = Get(name);
  return v && (*v == "true" || *v == "1");
}

bool Parsed::Given(const std::string& name) const {
  auto it = given_.find(name);
  return it != given_.end() && it->second;
}

std::string Parsed::Source(const std::string& name) const {
  auto it = env_source_.find(name);
  return it != env_source_.end() ? it->second : "--" + name;
}

std::vector<std::string> SplitList(std::string_view text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(sep, start);
    std::string_view item =
        text.substr(start, end == std::string_view::npos ? text.npos : end - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

bool Parse(const std::vector<Spec>& specs, const std::vector<std::string>& args,
           const std::function<const char*(const char*)>& getenv_fn, Parsed* out,
           std::vector<std::string>* positional, std::string* error) {
  return Parse(specs, args, Environment{"", getenv_fn, {}}, out, positional, error);
}

bool Parse(const std::vector<Spec>& specs, const std::vector<std::string>& args,
           const Environment& env, Parsed* out, std::vector<std::string>* positional,
           std::string* error) {
  auto getenv_value = [&env](const std::string& name) -> std::string {
    const char* v = env.get ? env.get(name.c_str()) : nullptr;
    return v != nullptr ? v : "";
  };
  // A prefixed variable must name a flag that may come from the environment; checked before
  // the command line, so a typo is reported even when the flag is also given.
  for (const auto& name : env.names) {
    if (env.prefix.empty() || name.compare(0, env.prefix.size(), env.prefix) != 0) continue;
    if (getenv_value(name).empty()) continue;  // empty counts as unset
    const Spec* spec = nullptr;
    for (const auto& s : specs) {
      if (EnvName(env.prefix, s.name) == name) spec = &s;
    }
    if (spec == nullptr) {
      *error = name + ": no such setting (the variables are listed in --help)";
      return false;
    }
    if (!spec->no_env.empty()) {
      *error = name + ": not read from the environment: " + spec->no_env;
      return false;
    }
  }

  std::map<std::string, const Spec*> by_name;
  for (const auto& s : specs) by_name[s.name] = &s;
  std::map<std::string, std::vector<std::string>> cli;

  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      if (!arg.empty() && arg[0] == '-') {
        *error = "unknown flag " + arg + " (flags are spelled --name=value)";
        return false;
      }
      positional->push_back(arg);
      continue;
    }
    std::string name = arg.substr(2), value;
    bool has_value = false;
    size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      *error = "unknown flag --" + name + " (see --help)";
      return false;
    }
    const Spec& spec = *it->second;
    if (spec.is_bool) {
      if (!has_value) value = "true";
      if (!ValidBool(value)) {
        *error = "--" + name + ": expected true or false, got \"" + value + "\"";
        return false;
      }
    } else if (!has_value) {
      if (i + 1 >= args.size()) {
        *error = "--" + name + ": missing value";
        return false;
      }
      value = args[++i];
    }
    if (!spec.repeatable && cli.count(name) > 0) {
      *error = "--" + name + ": given more than once";
      return false;
    }
    if (spec.repeatable) {
      for (auto& item : SplitList(value)) cli[name].push_back(item);
    } else {
      cli[name].push_back(value);
    }
  }

  for (const auto& s : specs) {
    auto it = cli.find(s.name);
    if (it != cli.end()) {
      out->values_[s.name] = it->second;
      out->given_[s.name] = true;
      continue;
    }
    std::string var, value;
    for (const std::string& candidate : VariablesOf(s, env.prefix)) {
      value = getenv_value(candidate);
      if (!value.empty()) {
        var = candidate;
        break;
      }
    }
    if (!var.empty()) {
      if (s.is_bool && !ValidBool(value)) {
        *error = var + ": expected true or false, got \"" + value + "\"";
        return false;
      }
      out->values_[s.name] = s.repeatable ? SplitList(value) : std::vector<std::string>{value};
      out->given_[s.name] = true;
      out->env_source_[s.name] = var;
    } else if (!s.default_value.empty()) {
      out->values_[s.name] = {s.default_value};
    }
  }
  return true;
}

std::string Usage(const std::string& program, const std::string& synopsis,
                  const std::vector<Spec>& specs, const std::string& env_prefix) {
  std::ostringstream o;
  o << "Usage: " << program << " " << synopsis << "\n\nFlags:\n";
  for (const auto& s : specs) {
    std::string left = "  --" + s.name + (s.is_bool ? "" : "=VALUE");
    o << left;
    if (left.size() < 34)
      o << std::string(34 - left.size(), ' ');
    else
      o << "\n" << std::string(34, ' ');
    o << s.help;
    if (!s.default_value.empty()) o << " (default " << s.default_value << ")";
    const std::vector<std::string> vars = VariablesOf(s, env_prefix);
    for (size_t i = 0; i < vars.size(); ++i) o << (i == 0 ? " [$" : ", $") << vars[i];
    if (!vars.empty()) o << "]";
    o << "\n";
  }
  return o.str();
}

bool ParseUint(std::string_view text, unsigned long long max, unsigned long long* out) {
  if (text.empty() || text.size() > 20) return false;
  unsigned long long v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    unsigned long long d = static_cast<unsigned long long>(c - '0');
    if (v > (max - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

bool ParseDuration(std::string_view text, std::chrono::milliseconds* out) {
  if (text.empty()) return false;
  unsigned long long plain;
  if (ParseUint(text, 1ULL << 40, &plain)) {
    *out = std::chrono::milliseconds(plain * 1000);
    return true;
  }
  long long total_ms = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    if (i == start) return false;
    unsigned long long n;
    if (!ParseUint(text.substr(start, i - start), 1ULL << 40, &n)) return false;
    size_t ustart = i;
    while (i < text.size() && ((text[i] >= 'a' && text[i] <= 'z'))) ++i;
    std::string_view unit = text.substr(ustart, i - ustart);
    long long mult;
    if (unit == "ms")
      mult = 1;
    else if (unit == "s")
      mult = 1000;
    else if (unit == "m")
      mult = 60 * 1000;
    else if (unit == "h")
      mult = 3600 * 1000;
    else
      return false;
    total_ms += static_cast<long long>(n) * mult;
    if (total_ms > (1LL << 50)) return false;
  }
  *out = std::chrono::milliseconds(total_ms);
  return true;
}

}  // namespace vkms::flags
