// Vault ACL policies: the HCL subset real policies for this product use, and Vault's rule
// selection (exact path first, then the highest-priority glob/segment-wildcard rule; rules for the
// same path string in several policies are unioned, deny wins).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace vaultsim {

enum Capability : uint32_t {
  kCapCreate = 1u << 0,
  kCapRead = 1u << 1,
  kCapUpdate = 1u << 2,
  kCapDelete = 1u << 3,
  kCapList = 1u << 4,
  kCapSudo = 1u << 5,
  kCapDeny = 1u << 6,
  kCapPatch = 1u << 7,
};

struct PathRule {
  std::string pattern;
  uint32_t capabilities = 0;
};

struct Policy {
  std::vector<PathRule> rules;
};

// Accepts `path "<pattern>" { capabilities = [...] }` blocks (and the legacy `policy = "write"`),
// with #, // and /* */ comments. Anything else is rejected rather than silently ignored, so a
// policy the simulator cannot enforce never passes as if it were enforced.
bool ParsePolicy(const std::string& text, Policy* out, std::string* error);

std::vector<std::string> CapabilityNames(uint32_t capabilities);

class Acl {
 public:
  void Add(const Policy& policy);
  // For list requests Vault also tries the exact rule without the trailing slash.
  uint32_t Capabilities(const std::string& path, bool list) const;

 private:
  std::map<std::string, uint32_t> exact_;
  std::map<std::string, uint32_t> wildcard_;
};

// True when `a` outranks `b` among matching non-exact rules (Vault's documented priority order).
bool HigherPriority(const std::string& a, const std::string& b);
bool PatternMatches(const std::string& pattern, const std::string& path);

}  // namespace vaultsim
