// A small, strict command-line parser shared by both executables. Every error is one line
// that names the flag, so the broker can print it and exit 2 as DESIGN.md requires.
//
// Accepted forms: --name=value, --name value, and --name for boolean flags. A flag that is
// absent falls back to its environment variable (if it has one), then to its default.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vkms::flags {

struct Spec {
  std::string name;           // without the leading "--"
  std::string env;            // environment fallback, "" for none
  std::string default_value;  // "" = no default
  std::string help;
  bool is_bool = false;
  bool repeatable = false;  // values accumulate; comma-separated lists are split too
};

class Parsed {
 public:
  // The last value given (flag, else env, else default); nullopt if none.
  std::optional<std::string> Get(const std::string& name) const;
  std::string GetOr(const std::string& name, const std::string& fallback) const;
  std::vector<std::string> GetAll(const std::string& name) const;
  bool GetBool(const std::string& name) const;
  // True if given on the command line or through the environment (not just a default).
  bool Given(const std::string& name) const;

 private:
  friend bool Parse(const std::vector<Spec>&, const std::vector<std::string>&,
                    const std::function<const char*(const char*)>&, Parsed*,
                    std::vector<std::string>*, std::string*);
  std::map<std::string, std::vector<std::string>> values_;
  std::map<std::string, bool> given_;
};

// args excludes argv[0]. Non-flag arguments are collected in *positional (e.g. "check").
bool Parse(const std::vector<Spec>& specs, const std::vector<std::string>& args,
           const std::function<const char*(const char*)>& getenv_fn, Parsed* out,
           std::vector<std::string>* positional, std::string* error);

std::string Usage(const std::string& program, const std::string& synopsis,
                  const std::vector<Spec>& specs);

// "30s", "1m", "500ms", "1h30m", "2h"; bare integers are seconds.
bool ParseDuration(std::string_view text, std::chrono::milliseconds* out);

// Decimal, without sign or leading '+'; fails on overflow past max.
bool ParseUint(std::string_view text, unsigned long long max, unsigned long long* out);

std::vector<std::string> SplitList(std::string_view text, char sep = ',');

}  // namespace vkms::flags
