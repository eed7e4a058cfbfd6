// SecretString holds a credential (token, secret-id, role-id) and wipes its bytes when it is
// destroyed or cleared. It has no operator<< and no implicit conversion to std::string, so a
// secret cannot be streamed into a log line by accident; code that must put it on the wire
// (an HTTP header, a JSON body) asks for view() explicitly and wipes its own copies.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace vkms {

// Overwrites n bytes in a way the compiler may not elide.
void WipeMemory(void* p, size_t n);
// Wipes and clears a std::string's current buffer.
void WipeString(std::string* s);

class SecretString {
 public:
  SecretString() = default;
  explicit SecretString(std::string value) : value_(std::move(value)) {}
  ~SecretString() { Clear(); }

  SecretString(const SecretString&) = delete;
  SecretString& operator=(const SecretString&) = delete;
  SecretString(SecretString&& other) noexcept : value_(std::move(other.value_)) { other.Clear(); }
  SecretString& operator=(SecretString&& other) noexcept {
    if (this != &other) {
      Clear();
      value_ = std::move(other.value_);
      other.Clear();
    }
    return *this;
  }

  bool empty() const { return value_.empty(); }
  size_t size() const { return value_.size(); }
  std::string_view view() const { return value_; }
  void Clear() { WipeString(&value_); }

 private:
  std::string value_;
};

// Reads a whole credential file (at most max_bytes), trimming one trailing newline and
// surrounding whitespace. Returns false with a message that names the path, never the content.
bool ReadSecretFile(const std::string& path, SecretString* out, std::string* error,
                    size_t max_bytes = 4096);

}  // namespace vkms
