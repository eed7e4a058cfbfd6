#include "acl.h"

#include <algorithm>
#include <cctype>

#include "text.h"

namespace vaultsim {
namespace {

struct Token {
  enum Kind { kIdent, kString, kPunct, kEnd } kind;
  std::string text;
  int line;
};

class Lexer {
 public:
  explicit Lexer(const std::string& src) : src_(src) {}

  bool Next(Token* tok, std::string* error) {
    SkipSpaceAndComments();
    tok->line = line_;
    if (pos_ >= src_.size()) {
      tok->kind = Token::kEnd;
      tok->text.clear();
      return true;
    }
    char c = src_[pos_];
    if (c == '"') return ReadString(tok, error);
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t start = pos_;
      while (pos_ < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[pos_])) ||
                                    src_[pos_] == '_' || src_[pos_] == '-')) {
        ++pos_;
      }
      tok->kind = Token::kIdent;
      tok->text = src_.substr(start, pos_ - start);
      return true;
    }
    if (std::string("{}[]=,").find(c) != std::string::npos) {
      ++pos_;
      tok->kind = Token::kPunct;
      tok->text = std::string(1, c);
      return true;
    }
    *error = "line " + std::to_string(line_) + ": unexpected character '" + std::string(1, c) + "'";
    return false;
  }

 private:
  void SkipSpaceAndComments() {
    while (pos_ < src_.size()) {
      char c = src_[pos_];
      if (c == '\n') {
        ++line_;
        ++pos_;
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        ++pos_;
      } else if (c == '#' || src_.compare(pos_, 2, "//") == 0) {
        while (pos_ < src_.size() && src_[pos_] != '\n') ++pos_;
      } else if (src_.compare(pos_, 2, "/*") == 0) {
        size_t end = src_.find("*/", pos_ + 2);
        end = end == std::string::npos ? src_.size() : end + 2;
        line_ += static_cast<int>(std::count(src_.begin() + static_cast<long>(pos_),
                                             src_.begin() + static_cast<long>(end), '\n'));
        pos_ = end;
      } else {
        return;
      }
    }
  }

  bool ReadString(Token* tok, std::string* error) {
    ++pos_;
    std::string out;
    while (pos_ < src_.size() && src_[pos_] != '"') {
      char c = src_[pos_++];
      if (c == '\n') break;
      if (c == '\\' && pos_ < src_.size()) {
        char e = src_[pos_++];
        out += e == 'n' ? '\n' : e == 't' ? '\t' : e;
      } else {
        out += c;
      }
    }
    if (pos_ >= src_.size() || src_[pos_] != '"') {
      *error = "line " + std::to_string(line_) + ": unterminated string";
      return false;
    }
    ++pos_;
    tok->kind = Token::kString;
    tok->text = out;
    return true;
  }

  const std::string& src_;
  size_t pos_ = 0;
  int line_ = 1;
};

uint32_t CapabilityFromName(const std::string& name) {
  static const std::map<std::string, uint32_t> kNames = {
      {"create", kCapCreate}, {"read", kCapRead}, {"update", kCapUpdate}, {"delete", kCapDelete},
      {"list", kCapList},     {"sudo", kCapSudo}, {"deny", kCapDeny},     {"patch", kCapPatch}};
  auto it = kNames.find(name);
  return it == kNames.end() ? 0 : it->second;
}

// The pre-0.9 `policy = "..."` shorthand, still accepted by Vault.
uint32_t LegacyPolicyCapabilities(const std::string& name) {
  const uint32_t write = kCapCreate | kCapRead | kCapUpdate | kCapDelete | kCapList;
  if (name == "deny") return kCapDeny;
  if (name == "read") return kCapRead | kCapList;
  if (name == "write") return write;
  if (name == "sudo") return write | kCapSudo;
  return 0;
}

class Parser {
 public:
  explicit Parser(const std::string& src) : lex_(src) {}

  bool Parse(Policy* out, std::string* error) {
    error_ = error;
    if (!Advance()) return false;
    while (tok_.kind != Token::kEnd) {
      if (tok_.kind != Token::kIdent || tok_.text != "path") {
        return Fail("expected 'path', found " + Describe());
      }
      if (!Advance()) return false;
      if (tok_.kind != Token::kString) return Fail("expected a quoted path after 'path'");
      PathRule rule;
      rule.pattern = tok_.text;
      while (!rule.pattern.empty() && rule.pattern.front() == '/') rule.pattern.erase(0, 1);
      if (!Advance() || !Expect("{")) return false;
      bool has_caps = false;
      while (!(tok_.kind == Token::kPunct && tok_.text == "}")) {
        if (tok_.kind != Token::kIdent) return Fail("expected an attribute, found " + Describe());
        std::string attr = tok_.text;
        if (!Advance() || !Expect("=")) return false;
        if (attr == "capabilities") {
          if (!ParseCapabilities(rule)) return false;
          has_caps = true;
        } else if (attr == "policy") {
          if (tok_.kind != Token::kString) return Fail("expected a string for 'policy'");
          uint32_t caps = LegacyPolicyCapabilities(tok_.text);
          if (caps == 0) {
            return Fail("path \"" + rule.pattern + "\": invalid policy \"" + tok_.text + "\"");
          }
          rule.capabilities |= caps;
          has_caps = true;
          if (!Advance()) return false;
        } else {
          return Fail("vaultsim does not support the policy attribute \"" + attr + "\"");
        }
      }
      if (!has_caps) return Fail("path \"" + rule.pattern + "\": no capabilities given");
      if (rule.capabilities & kCapDeny) rule.capabilities = kCapDeny;
      out->rules.push_back(rule);
      if (!Advance()) return false;
    }
    return true;
  }

 private:
  bool ParseCapabilities(PathRule& rule) {
    if (!Expect("[")) return false;
    while (!(tok_.kind == Token::kPunct && tok_.text == "]")) {
      if (tok_.kind != Token::kString) return Fail("expected a capability string");
      uint32_t cap = CapabilityFromName(tok_.text);
      if (cap == 0) {
        return Fail("path \"" + rule.pattern + "\": invalid capability \"" + tok_.text + "\"");
      }
      rule.capabilities |= cap;
      if (!Advance()) return false;
      if (tok_.kind == Token::kPunct && tok_.text == ",") {
        if (!Advance()) return false;
      } else if (!(tok_.kind == Token::kPunct && tok_.text == "]")) {
        return Fail("expected ',' or ']' in capabilities");
      }
    }
    return Advance();
  }

  bool Advance() { return lex_.Next(&tok_, error_); }

  bool Expect(const char* punct) {
    if (tok_.kind != Token::kPunct || tok_.text != punct) {
      return Fail(std::string("expected '") + punct + "', found " + Describe());
    }
    return Advance();
  }

  std::string Describe() const {
    if (tok_.kind == Token::kEnd) return "end of input";
    if (tok_.kind == Token::kString) return "\"" + tok_.text + "\"";
    return "'" + tok_.text + "'";
  }

  bool Fail(const std::string& msg) {
    *error_ = "line " + std::to_string(tok_.line) + ": " + msg;
    return false;
  }

  Lexer lex_;
  Token tok_{Token::kEnd, "", 1};
  std::string* error_ = nullptr;
};

bool IsWildcardPattern(const std::string& p) {
  return (!p.empty() && p.back() == '*') || p.find('+') != std::string::npos;
}

}  // namespace

bool ParsePolicy(const std::string& text, Policy* out, std::string* error) {
  Policy parsed;
  if (!Parser(text).Parse(&parsed, error)) return false;
  *out = std::move(parsed);
  return true;
}

std::vector<std::string> CapabilityNames(uint32_t caps) {
  static const std::pair<uint32_t, const char*> kOrder[] = {
      {kCapCreate, "create"}, {kCapDelete, "delete"}, {kCapDeny, "deny"}, {kCapList, "list"},
      {kCapPatch, "patch"},   {kCapRead, "read"},     {kCapSudo, "sudo"}, {kCapUpdate, "update"}};
  std::vector<std::string> out;
  for (const auto& [bit, name] : kOrder) {
    if (caps & bit) out.push_back(name);
  }
  return out;
}

bool PatternMatches(const std::string& pattern, const std::string& path) {
  const bool glob = !pattern.empty() && pattern.back() == '*';
  const std::string body = glob ? pattern.substr(0, pattern.size() - 1) : pattern;
  if (body.find('+') == std::string::npos) {
    return glob ? path.compare(0, body.size(), body) == 0 : path == body;
  }
  const auto pat = SplitPath(body);
  const auto segs = SplitPath(path);
  // With a glob, the last pattern segment is a prefix of the remaining path, slashes included.
  const size_t fixed = glob ? pat.size() - 1 : pat.size();
  if (glob ? segs.size() < fixed : segs.size() != fixed) return false;
  for (size_t i = 0; i < fixed; ++i) {
    if (pat[i] != "+" && pat[i] != segs[i]) return false;
  }
  if (!glob) return true;
  // "a/+/*" needs the slash after the wildcard segment, so "a/x" alone does not match.
  if (segs.size() == fixed) return false;
  std::string rest;
  for (size_t i = fixed; i < segs.size(); ++i) rest += (i > fixed ? "/" : "") + segs[i];
  return rest.compare(0, pat.back().size(), pat.back()) == 0;
}

bool HigherPriority(const std::string& a, const std::string& b) {
  auto first_wild = [](const std::string& p) {
    size_t pos = p.find_first_of("+*");
    return pos == std::string::npos ? p.size() : pos;
  };
  if (first_wild(a) != first_wild(b)) return first_wild(a) > first_wild(b);
  const bool a_glob = !a.empty() && a.back() == '*';
  const bool b_glob = !b.empty() && b.back() == '*';
  if (a_glob != b_glob) return !a_glob;
  auto pluses = [](const std::string& p) { return std::count(p.begin(), p.end(), '+'); };
  if (pluses(a) != pluses(b)) return pluses(a) < pluses(b);
  if (a.size() != b.size()) return a.size() > b.size();
  return a > b;
}

void Acl::Add(const Policy& policy) {
  for (const auto& rule : policy.rules) {
    auto& slot = IsWildcardPattern(rule.pattern) ? wildcard_[rule.pattern] : exact_[rule.pattern];
    slot |= rule.capabilities;
    if (slot & kCapDeny) slot = kCapDeny;
  }
}

uint32_t Acl::Capabilities(const std::string& path, bool list) const {
  auto it = exact_.find(path);
  if (it == exact_.end() && list && !path.empty() && path.back() == '/') {
    it = exact_.find(path.substr(0, path.size() - 1));
  }
  if (it != exact_.end()) return it->second & kCapDeny ? 0 : it->second;
  const std::string* best = nullptr;
  uint32_t caps = 0;
  for (const auto& [pattern, c] : wildcard_) {
    if (PatternMatches(pattern, path) && (!best || HigherPriority(pattern, *best))) {
      best = &pattern;
      caps = c;
    }
  }
  return caps & kCapDeny ? 0 : caps;
}

}  // namespace vaultsim
