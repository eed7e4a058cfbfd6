// A result code + a message that is safe to show to the caller (kube-apiserver) and to logs.
// Used by both processes; the numbering is gRPC's so the frontend can pass it through
// without a translation table, and the broker never needs to include gRPC headers.
#pragma once

#include <string>
#include <utility>

namespace vkms {

enum class Code : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kInternal = 13,
  kUnavailable = 14,
  kUnauthenticated = 16,
};

const char* CodeName(Code code);

// Messages must never contain plaintext, ciphertext, tokens, role-ids or secret-ids: whoever
// builds a Status is responsible for that, and tests grep every output for planted secrets.
class Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return Status(); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // A failure already logged by the process that knows its cause (the broker logs every error
  // it replies with), so the process that passes it on does not log it a second time.
  Status& MarkLogged() {
    logged_ = true;
    return *this;
  }
  bool logged() const { return logged_; }

 private:
  Code code_ = Code::kOk;
  std::string message_;
  bool logged_ = false;
};

}  // namespace vkms
