#include "shared/log.h"

#include <glog/logging.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "shared/json_string.h"

namespace vkms::log {
namespace {

std::string g_proc = "vault-kms";

// The threshold Init() set, as a Level; read on every log call.
std::atomic<int> g_threshold{static_cast<int>(Level::kInfo)};

template <typename T>
void AppendNumber(std::string* out, T v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, r.ptr);
}

void AppendValue(std::string* out, const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kString:
      json::AppendJsonString(out, v.str());
      break;
    case Value::Kind::kInt:
      AppendNumber(out, v.int_value());
      break;
    case Value::Kind::kUint:
      AppendNumber(out, v.uint_value());
      break;
    case Value::Kind::kDouble:
      // JSON has no NaN or infinity.
      if (std::isfinite(v.double_value())) {
        AppendNumber(out, v.double_value());
      } else {
        out->append("null");
      }
      break;
    case Value::Kind::kBool:
      out->append(v.bool_value() ? "true" : "false");
      break;
  }
}

bool Reserved(std::string_view key) {
  return key == "ts" || key == "level" || key == "proc" || key == "msg";
}

const char* LevelName(google::LogSeverity s) {
  switch (s) {
    case google::GLOG_INFO:
      return "info";
    case google::GLOG_WARNING:
      return "warning";
    case google::GLOG_ERROR:
      return "error";
    default:
      return "fatal";
  }
}

// One write per line, under one lock, so lines from several threads (and relayed lines) never
// interleave.
std::mutex g_write_mu;

// The lines a Coalesce on this thread is gathering (null: none).
thread_local std::string* g_gathered = nullptr;

void WriteOut(const std::string& text) {
  std::lock_guard<std::mutex> lock(g_write_mu);
  const char* p = text.data();
  size_t left = text.size();
  while (left > 0) {
    ssize_t n = write(STDERR_FILENO, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace

void WriteLine(std::string line) {
  line.push_back('\n');
  if (g_gathered == nullptr) return WriteOut(line);
  // A pipe keeps a write of at most PIPE_BUF bytes whole: gathered lines stay within it.
  if (!g_gathered->empty() && g_gathered->size() + line.size() > PIPE_BUF) {
    WriteOut(*g_gathered);
    g_gathered->clear();
  }
  g_gathered->append(line);
}

Coalesce::Coalesce() {
  if (g_gathered != nullptr) return;
  g_gathered = new std::string();
  owner_ = true;
}

Coalesce::~Coalesce() {
  if (!owner_) return;
  if (!g_gathered->empty()) WriteOut(*g_gathered);
  delete g_gathered;
  g_gathered = nullptr;
}

namespace {

// What glog itself writes (a failed CHECK, a LOG in a library) reaches stderr in the same
// format, without fields.
class JsonSink : public google::LogSink {
 public:
  void send(google::LogSeverity severity, const char* /*full_filename*/,
            const char* /*base_filename*/, int /*line*/, const google::LogMessageTime& time,
            const char* message, size_t message_len) override {
    long long ms = static_cast<long long>(time.timestamp()) * 1000 + time.usec() / 1000;
    WriteLine(
        FormatLine(LevelName(severity), g_proc, std::string_view(message, message_len), "", ms));
  }
};

JsonSink* g_sink = nullptr;

// The plugin's own lines are rendered and written here directly, not through LOG(): glog
// costs two more syscalls per line (gettid, and a stat of /etc/localtime for its local-time
// prefix) that this format never uses, which tripled the cost of the line the broker writes
// for every Encrypt and Decrypt. The clock is read through the vDSO, the time formatted in UTC.
void Emit(const char* level, std::string_view msg, const Fields& fields) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  long long ms = static_cast<long long>(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
  WriteLine(FormatLine(level, g_proc, msg, FieldsJson(fields), ms));
}

}  // namespace

bool ValidLevel(std::string_view level) {
  return level == "debug" || level == "info" || level == "warning" || level == "error";
}

void Init(const char* process_name, std::string_view level) {
  g_proc = process_name;
  if (g_sink == nullptr) {
    google::InitGoogleLogging(process_name);
    // No log files anywhere (the frontend cannot open files at all), no glog text on stderr.
    for (int s = google::GLOG_INFO; s < google::NUM_SEVERITIES; ++s) {
      google::SetLogDestination(s, "");
    }
    FLAGS_logtostderr = false;
    FLAGS_alsologtostderr = false;
    FLAGS_stderrthreshold = google::NUM_SEVERITIES;
    g_sink = new JsonSink();  // lives for the whole process
    google::AddLogSink(g_sink);
  }
  Level threshold = Level::kInfo;
  if (level == "debug") {
    FLAGS_minloglevel = google::GLOG_INFO;
    FLAGS_v = 1;
    threshold = Level::kDebug;
  } else if (level == "warning") {
    FLAGS_minloglevel = google::GLOG_WARNING;
    FLAGS_v = 0;
    threshold = Level::kWarning;
  } else if (level == "error") {
    FLAGS_minloglevel = google::GLOG_ERROR;
    FLAGS_v = 0;
    threshold = Level::kError;
  } else {
    FLAGS_minloglevel = google::GLOG_INFO;
    FLAGS_v = 0;
  }
  g_threshold.store(static_cast<int>(threshold), std::memory_order_relaxed);
}

bool Enabled(Level level) {
  return static_cast<int>(level) >= g_threshold.load(std::memory_order_relaxed);
}

// Each level is tested before anything is rendered: a line below the threshold costs one load.
void Debug(std::string_view msg, const Fields& fields) {
  if (Enabled(Level::kDebug)) Emit("debug", msg, fields);
}
void Info(std::string_view msg, const Fields& fields) {
  if (Enabled(Level::kInfo)) Emit("info", msg, fields);
}
void Warning(std::string_view msg, const Fields& fields) {
  if (Enabled(Level::kWarning)) Emit("warning", msg, fields);
}
void Error(std::string_view msg, const Fields& fields) {
  Emit("error", msg, fields);
}

std::string FieldsJson(const Fields& fields) {
  if (fields.empty()) return "";
  std::string out = "{";
  for (const auto& [key, value] : fields) {
    if (out.size() > 1) out.push_back(',');
    // A field may not replace the line's own members.
    json::AppendJsonString(&out, Reserved(key) ? "field_" + key : key);
    out.push_back(':');
    AppendValue(&out, value);
  }
  out.push_back('}');
  return out;
}

std::string FormatLine(std::string_view level, std::string_view proc, std::string_view msg,
                       std::string_view fields_json, long long unix_ms) {
  time_t secs = static_cast<time_t>(unix_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char ts[64];
  snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(unix_ms % 1000));
  std::string line;
  line.reserve(96 + msg.size() + fields_json.size());
  line.append("{\"ts\":\"").append(ts).append("\",\"level\":");
  json::AppendJsonString(&line, level);
  line.append(",\"proc\":");
  json::AppendJsonString(&line, proc);
  line.append(",\"msg\":");
  json::AppendJsonString(&line, msg);
  // The object's members follow the line's own, spliced in without parsing it again.
  if (fields_json.size() > 2 && fields_json.front() == '{' && fields_json.back() == '}') {
    line.push_back(',');
    line.append(fields_json.substr(1, fields_json.size() - 2));
  }
  line.push_back('}');
  return line;
}

}  // namespace
