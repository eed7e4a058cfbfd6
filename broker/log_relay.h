// The frontend's log lines reach the operator only through the broker (as OpenSSH's monitor
// does with its child's logs): the frontend's stdout and stderr are a pipe the broker reads
// (broker/spawn.h). A compromised frontend can therefore neither write to the operator's
// terminal or journal directly (no escape sequences: every line is re-encoded as JSON) nor
// forge a line of the broker's (every line it sends is re-attributed to vault-kms-frontend),
// nor flood the log (lines are cut at kMaxLine bytes and at most kLinesPerSecond pass: the
// first line dropped in a second says so at once, and the count follows with the next line).
//
// Called from the broker's main loop only (not thread-safe).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

namespace vkms::broker {

class LogRelay {
 public:
  static constexpr size_t kMaxLine = 4096;
  static constexpr int kLinesPerSecond = 1000;

  explicit LogRelay(int fd) : fd_(fd) {}
  ~LogRelay();
  LogRelay(const LogRelay&) = delete;
  LogRelay& operator=(const LogRelay&) = delete;

  int fd() const { return fd_; }
  // Reads what the pipe holds now (at most 64 KiB per call, so a flood cannot starve the
  // loop) and writes out every complete line. Returns false once the frontend closed it.
  bool Pump();
  // At exit: whatever is left, including a last line without its newline.
  void Flush();

  // The line the broker writes for one line the frontend wrote (exposed for tests).
  static std::string Reframe(const std::string& raw, bool truncated);

 private:
  void Emit(const std::string& raw, bool truncated);

  int fd_;
  std::string partial_;
  bool discarding_ = false;  // inside a line already cut at kMaxLine
  long long second_ = 0;
  int lines_this_second_ = 0;
  long long dropped_ = 0;
};

}  // namespace vkms::broker
