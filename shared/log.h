// Structured logging for both processes: glog underneath, one JSON object per line on stderr
// ({"ts","level","proc","msg", ...fields}). Init() installs the sink and turns off glog's own
// files and stderr text so the JSON lines are the only output.
//
// Callers must never pass plaintext, ciphertext, tokens, role-ids or secret-ids, neither in
// the message nor in fields; the integration tests plant such values and grep all output.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vkms::log {

using Fields = std::vector<std::pair<std::string, std::string>>;

// level: "debug", "info", "warning" or "error". Returns false for anything else.
bool ValidLevel(std::string_view level);
void Init(const char* process_name, std::string_view level);

void Debug(std::string_view msg, const Fields& fields = {});
void Info(std::string_view msg, const Fields& fields = {});
void Warning(std::string_view msg, const Fields& fields = {});
void Error(std::string_view msg, const Fields& fields = {});

// Writes one already formatted line (without its newline) to stderr, never interleaved with
// other log lines. For the broker's relay of the frontend's lines (broker/log_relay.h).
void WriteLine(std::string line);

// Renders one log line; exposed for tests.
std::string FormatLine(std::string_view level, std::string_view proc, std::string_view msg,
                       std::string_view fields_json, long long unix_ms);

}  // namespace vkms::log
