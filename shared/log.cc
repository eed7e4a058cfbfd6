#include "shared/log.h"

#include <glog/logging.h>
#include <json/json.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace vkms::log {
namespace {

// Separates the message from its JSON-encoded fields inside one glog message. A control
// character that callers never put in a message; the sink splits on it.
constexpr char kFieldSep = '\x1e';

std::string g_proc = "vault-kms";

std::string JsonCompact(const Json::Value& v) {
  Json::StreamWriterBuilder b;
  b["indentation"] = "";
  b["emitUTF8"] = true;
  return Json::writeString(b, v);
}

const char* LevelName(google::LogSeverity s, bool verbose) {
  switch (s) {
    case google::GLOG_INFO:
      return verbose ? "debug" : "info";
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

}  // namespace

void WriteLine(std::string line) {
  line.push_back('\n');
  std::lock_guard<std::mutex> lock(g_write_mu);
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = write(STDERR_FILENO, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

namespace {

class JsonSink : public google::LogSink {
 public:
  void send(google::LogSeverity severity, const char* /*full_filename*/,
            const char* /*base_filename*/, int /*line*/, const google::LogMessageTime& time,
            const char* message, size_t message_len) override {
    std::string_view text(message, message_len);
    std::string_view msg = text, fields;
    bool verbose = false;
    size_t sep = text.find(kFieldSep);
    if (sep != std::string_view::npos) {
      msg = text.substr(0, sep);
      fields = text.substr(sep + 1);
      if (!fields.empty() && fields.front() == 'D') {  // debug marker, see Emit()
        verbose = true;
        fields.remove_prefix(1);
      }
    }
    long long ms = static_cast<long long>(time.timestamp()) * 1000 + time.usec() / 1000;
    std::string line = FormatLine(LevelName(severity, verbose), g_proc, msg, fields, ms);
    WriteLine(line);
  }
};

JsonSink* g_sink = nullptr;

void Emit(google::LogSeverity severity, bool debug, std::string_view msg, const Fields& fields) {
  std::string payload(msg);
  payload.push_back(kFieldSep);
  if (debug) payload.push_back('D');
  if (!fields.empty()) {
    Json::Value obj(Json::objectValue);
    for (const auto& [k, v] : fields) obj[k] = v;
    payload += JsonCompact(obj);
  }
  switch (severity) {
    case google::GLOG_WARNING:
      LOG(WARNING) << payload;
      break;
    case google::GLOG_ERROR:
      LOG(ERROR) << payload;
      break;
    default:
      LOG(INFO) << payload;
      break;
  }
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
  if (level == "debug") {
    FLAGS_minloglevel = google::GLOG_INFO;
    FLAGS_v = 1;
  } else if (level == "warning") {
    FLAGS_minloglevel = google::GLOG_WARNING;
    FLAGS_v = 0;
  } else if (level == "error") {
    FLAGS_minloglevel = google::GLOG_ERROR;
    FLAGS_v = 0;
  } else {
    FLAGS_minloglevel = google::GLOG_INFO;
    FLAGS_v = 0;
  }
}

void Debug(std::string_view msg, const Fields& fields) {
  if (FLAGS_v >= 1) Emit(google::GLOG_INFO, true, msg, fields);
}
void Info(std::string_view msg, const Fields& fields) {
  Emit(google::GLOG_INFO, false, msg, fields);
}
void Warning(std::string_view msg, const Fields& fields) {
  Emit(google::GLOG_WARNING, false, msg, fields);
}
void Error(std::string_view msg, const Fields& fields) {
  Emit(google::GLOG_ERROR, false, msg, fields);
}

std::string FormatLine(std::string_view level, std::string_view proc, std::string_view msg,
                       std::string_view fields_json, long long unix_ms) {
  Json::Value obj(Json::objectValue);
  if (!fields_json.empty()) {
    Json::CharReaderBuilder rb;
    std::unique_ptr<Json::CharReader> reader(rb.newCharReader());
    Json::Value parsed;
    std::string errs;
    if (reader->parse(fields_json.data(), fields_json.data() + fields_json.size(), &parsed,
                      &errs) &&
        parsed.isObject()) {
      obj = parsed;
    }
  }
  time_t secs = static_cast<time_t>(unix_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char ts[64];
  snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(unix_ms % 1000));
  obj["ts"] = ts;
  obj["level"] = std::string(level);
  obj["proc"] = std::string(proc);
  obj["msg"] = std::string(msg);
  return JsonCompact(obj);
}

}  // namespace vkms::log
