// Structured logging for both processes: one JSON object per line on stderr
// ({"ts","level","proc","msg", ...fields}), written with one write() per line. Init() also
// gives glog a sink in the same format and turns off glog's own files and stderr text, so what
// glog itself reports (a failed CHECK) comes out as the same JSON lines.
//
// Field values are typed: a number is passed as a number and written as a JSON number, so log
// pipelines can compare and sum it without parsing strings.
//
// Lines on a per-request path are built only when they will be written: pass the fields as a
// callable (`log::Info("encrypt", [&] { return log::Fields{...}; })`), which runs only when the
// level is enabled, or test Enabled() first.
//
// Callers must never pass plaintext, ciphertext, tokens, role-ids or secret-ids, neither in
// the message nor in fields; the integration tests plant such values and grep all output.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace vkms::log {

// One field value: a string, an integer, a floating-point number or a boolean.
class Value {
 public:
  enum class Kind { kString, kInt, kUint, kDouble, kBool };

  Value(const char* s) : kind_(Kind::kString), s_(s) {}
  Value(std::string s) : kind_(Kind::kString), s_(std::move(s)) {}
  Value(std::string_view s) : kind_(Kind::kString), s_(s) {}
  Value(bool b) : kind_(Kind::kBool), b_(b) {}
  Value(double d) : kind_(Kind::kDouble), d_(d) {}
  template <typename T,
            std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  Value(T n) {
    if constexpr (std::is_signed_v<T>) {
      kind_ = Kind::kInt;
      i_ = static_cast<int64_t>(n);
    } else {
      kind_ = Kind::kUint;
      u_ = static_cast<uint64_t>(n);
    }
  }

  Kind kind() const { return kind_; }
  const std::string& str() const { return s_; }
  int64_t int_value() const { return i_; }
  uint64_t uint_value() const { return u_; }
  double double_value() const { return d_; }
  bool bool_value() const { return b_; }

 private:
  Kind kind_;
  std::string s_;
  int64_t i_ = 0;
  uint64_t u_ = 0;
  double d_ = 0;
  bool b_ = false;
};

using Fields = std::vector<std::pair<std::string, Value>>;

enum class Level { kDebug, kInfo, kWarning, kError };

// level: "debug", "info", "warning" or "error". Returns false for anything else.
bool ValidLevel(std::string_view level);
void Init(const char* process_name, std::string_view level);

// Whether a line at `level` would be written. Cheap: one relaxed atomic load.
bool Enabled(Level level);
inline bool DebugEnabled() {
  return Enabled(Level::kDebug);
}

void Debug(std::string_view msg, const Fields& fields = {});
void Info(std::string_view msg, const Fields& fields = {});
void Warning(std::string_view msg, const Fields& fields = {});
void Error(std::string_view msg, const Fields& fields = {});

// The lazy forms: make_fields() runs only if the line is written.
template <typename F, typename = std::enable_if_t<std::is_invocable_r_v<Fields, F>>>
void Debug(std::string_view msg, F&& make_fields) {
  if (Enabled(Level::kDebug)) Debug(msg, make_fields());
}
template <typename F, typename = std::enable_if_t<std::is_invocable_r_v<Fields, F>>>
void Info(std::string_view msg, F&& make_fields) {
  if (Enabled(Level::kInfo)) Info(msg, make_fields());
}
template <typename F, typename = std::enable_if_t<std::is_invocable_r_v<Fields, F>>>
void Warning(std::string_view msg, F&& make_fields) {
  if (Enabled(Level::kWarning)) Warning(msg, make_fields());
}

// The fields as one JSON object ("" for none). Exposed for tests and for lines built elsewhere.
std::string FieldsJson(const Fields& fields);

// Writes one already formatted line (without its newline) to stderr, never interleaved with
// other log lines. For the broker's relay of the frontend's lines (broker/log_relay.h).
void WriteLine(std::string line);

// While one lives on a thread, the lines that thread writes are gathered and written when it
// ends (or when they fill PIPE_BUF), several whole lines per write(): for the broker's one line
// per request, so that a batch of 16 answers costs one write, not 16. Lines of other threads go
// out as usual and never land inside a gathered line. A nested one joins the outermost.
class Coalesce {
 public:
  Coalesce();
  ~Coalesce();
  Coalesce(const Coalesce&) = delete;
  Coalesce& operator=(const Coalesce&) = delete;

 private:
  bool owner_ = false;
};

// Renders one log line; `fields_json` is a JSON object (FieldsJson(), or jsoncpp's compact
// output for relayed lines) or "". Its members follow ts, level, proc and msg; the caller
// vouches that it is one well-formed object (it is spliced in, not parsed again).
std::string FormatLine(std::string_view level, std::string_view proc, std::string_view msg,
                       std::string_view fields_json, long long unix_ms);

}  // namespace vkms::log
