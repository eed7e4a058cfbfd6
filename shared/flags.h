// A small, strict command-line parser shared by both executables. Every error is one line
// that names the flag (or the environment variable the value came from), so the broker can
// print it and exit 2 as DESIGN.md requires.
//
// Accepted forms: --name=value, --name value, and --name for boolean flags. A flag that is
// absent falls back to its environment variables, then to its default. With an environment
// prefix (the broker's "VAULT_KMS_"), every flag --some-name has the variable
// <PREFIX>SOME_NAME, which wins over the flag's standard variable (Spec::env, e.g. VAULT_ADDR):
// the specific name beats the shared one. An empty variable counts as unset.
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
  std::string env;            // a standard variable also read (VAULT_ADDR), "" for none
  std::string default_value;  // "" = no default
  std::string help;
  bool is_bool = false;
  bool repeatable = false;  // values accumulate; comma-separated lists are split too
  // Why the flag has no <PREFIX>NAME variable ("" = it has one). Setting that variable anyway
  // is an error that gives this reason.
  std::string no_env = "";
};

// Where Parse reads the environment from.
struct Environment {
  std::string prefix;  // "" = only the flags' standard variables (Spec::env)
  std::function<const char*(const char*)> get;
  // The names of every variable set: one that starts with `prefix` but names no flag is an
  // error (a typo must not silently leave a default in place).
  std::vector<std::string> names;

  // The calling process's environment.
  static Environment Process(const std::string& prefix);
};

// "transit-key" with prefix "VAULT_KMS_" -> "VAULT_KMS_TRANSIT_KEY".
std::string EnvName(const std::string& prefix, const std::string& flag);

class Parsed {
 public:
  // The last value given (flag, else env, else default); nullopt if none.
  std::optional<std::string> Get(const std::string& name) const;
  std::string GetOr(const std::string& name, const std::string& fallback) const;
  std::vector<std::string> GetAll(const std::string& name) const;
  bool GetBool(const std::string& name) const;
  // True if given on the command line or through the environment (not just a default).
  bool Given(const std::string& name) const;
  // Where the value came from, for error messages: "--name" (the command line, or the default),
  // or the environment variable's name.
  std::string Source(const std::string& name) const;

 private:
  friend bool Parse(const std::vector<Spec>&, const std::vector<std::string>&, const Environment&,
                    Parsed*, std::vector<std::string>*, std::string*);
  std::map<std::string, std::vector<std::string>> values_;
  std::map<std::string, bool> given_;
  std::map<std::string, std::string> env_source_;  // flag -> variable, for values from the env
};

// args excludes argv[0]. Non-flag arguments are collected in *positional (e.g. "check").
bool Parse(const std::vector<Spec>& specs, const std::vector<std::string>& args,
           const Environment& env, Parsed* out, std::vector<std::string>* positional,
           std::string* error);
// Only the flags' standard variables, read through getenv_fn (no prefix).
bool Parse(const std::vector<Spec>& specs, const std::vector<std::string>& args,
           const std::function<const char*(const char*)>& getenv_fn, Parsed* out,
           std::vector<std::string>* positional, std::string* error);

// The flag table for --help; with an env prefix, each flag's variables follow its help.
std::string Usage(const std::string& program, const std::string& synopsis,
                  const std::vector<Spec>& specs, const std::string& env_prefix = "");

// "30s", "1m", "500ms", "1h30m", "2h"; bare integers are seconds.
bool ParseDuration(std::string_view text, std::chrono::milliseconds* out);

// Decimal, without sign or leading '+'; fails on overflow past max.
bool ParseUint(std::string_view text, unsigned long long max, unsigned long long* out);

std::vector<std::string> SplitList(std::string_view text, char sep = ',');

}  // namespace vkms::flags
