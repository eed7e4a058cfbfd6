#include "broker/log_relay.h"

#include <errno.h>
#include <json/json.h>
#include <unistd.h>

#include <memory>

#include "shared/log.h"

namespace vkms::broker {
namespace {

constexpr const char* kFrontend = "vault-kms-frontend";

long long NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Compact(const Json::Value& v) {
  Json::StreamWriterBuilder b;
  b["indentation"] = "";
  return Json::writeString(b, v);
}

// Printable ASCII only: anything else (control bytes, and any non-ASCII, since a terminal may
// read U+0080-U+009F as C1 controls) becomes "\xNN" text.
std::string Printable(const std::string& in) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(in.size());
  for (char c : in) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out.push_back(c);
    } else {
      out += "\\x";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    }
  }
  return out;
}

// Every string in a field value (keys included), made printable.
Json::Value PrintableValue(const Json::Value& v) {
  if (v.isString()) return Printable(v.asString());
  if (v.isArray()) {
    Json::Value out(Json::arrayValue);
    for (const auto& item : v) out.append(PrintableValue(item));
    return out;
  }
  if (v.isObject()) {
    Json::Value out(Json::objectValue);
    for (const auto& name : v.getMemberNames()) out[Printable(name)] = PrintableValue(v[name]);
    return out;
  }
  return v;
}

}  // namespace

LogRelay::~LogRelay() {
  if (fd_ >= 0) close(fd_);
}

std::string LogRelay::Reframe(const std::string& raw, bool truncated) {
  Json::Value obj;
  Json::CharReaderBuilder rb;
  rb["collectComments"] = false;
  std::unique_ptr<Json::CharReader> reader(rb.newCharReader());
  std::string errs;
  bool parsed = !truncated && reader->parse(raw.data(), raw.data() + raw.size(), &obj, &errs) &&
                obj.isObject();
  std::string level = "warning", msg;
  Json::Value fields(Json::objectValue);
  if (parsed) {
    const Json::Value& l = obj["level"];
    if (l.isString() && log::ValidLevel(l.asString())) level = l.asString();
    if (obj["msg"].isString()) msg = Printable(obj["msg"].asString());
    for (const auto& name : obj.getMemberNames()) {
      if (name == "ts" || name == "level" || name == "proc" || name == "msg") continue;
      fields[Printable(name)] = PrintableValue(obj[name]);
    }
  } else {
    // Not one of the frontend's JSON lines (a library writing to stderr, or a compromised
    // frontend): carried as text, escaped, never as raw bytes.
    msg = truncated ? "a line from the frontend, cut at " + std::to_string(kMaxLine) + " bytes"
                    : "unstructured output from the frontend";
    fields["text"] = Printable(raw.substr(0, 512));
  }
  return log::FormatLine(level, kFrontend, msg, fields.empty() ? "" : Compact(fields), NowMs());
}

void LogRelay::Emit(const std::string& raw, bool truncated) {
  long long second = NowMs() / 1000;
  if (second != second_) {
    if (dropped_ > 0) {
      log::Warning(
          "frontend log lines dropped (over " + std::to_string(kLinesPerSecond) + " per second)",
          {{"dropped", dropped_}});
    }
    second_ = second;
    lines_this_second_ = 0;
    dropped_ = 0;
  }
  if (lines_this_second_ >= kLinesPerSecond) {
    if (dropped_++ == 0) {
      log::Warning("the frontend writes more than " + std::to_string(kLinesPerSecond) +
                   " log lines per second; dropping the rest of this second");
    }
    return;
  }
  ++lines_this_second_;
  log::WriteLine(Reframe(raw, truncated));
}

bool LogRelay::Pump() {
  char buf[8192];
  for (size_t total = 0; total < 64 * 1024;) {
    ssize_t n = read(fd_, buf, sizeof buf);
    if (n == 0) return false;
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    total += static_cast<size_t>(n);
    for (ssize_t i = 0; i < n; ++i) {
      char c = buf[i];
      if (c == '\n') {
        if (!discarding_) Emit(partial_, false);
        partial_.clear();
        discarding_ = false;
      } else if (!discarding_) {
        partial_.push_back(c);
        if (partial_.size() >= kMaxLine) {
          Emit(partial_, true);
          partial_.clear();
          discarding_ = true;
        }
      }
    }
  }
  return true;
}

void LogRelay::Flush() {
  Pump();
  if (!partial_.empty() && !discarding_) Emit(partial_, false);
  partial_.clear();
}

}  // namespace vkms::broker
