// The broker's relay of the frontend's log lines (broker/log_relay.h): whatever bytes a
// compromised frontend writes as one line, the broker writes out exactly one JSON object on one
// line, of printable ASCII only (no escape sequence, no C1 control reaches a terminal), marked
// as the frontend's, with a level from the known set. The first input byte says whether the
// line was cut at the length limit.
#include <json/json.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "broker/log_relay.h"
#include "shared/log.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool truncated = data[0] & 1;
  const std::string raw(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::string out = vkms::broker::LogRelay::Reframe(raw, truncated);
  for (char c : out) {
    unsigned char u = static_cast<unsigned char>(c);
    FUZZ_CHECK(u >= 0x20 && u < 0x7f);
  }
  Json::CharReaderBuilder rb;
  std::unique_ptr<Json::CharReader> reader(rb.newCharReader());
  Json::Value v;
  std::string errs;
  FUZZ_CHECK(reader->parse(out.data(), out.data() + out.size(), &v, &errs));
  FUZZ_CHECK(v.isObject());
  FUZZ_CHECK(v["proc"].asString() == "vault-kms-frontend");
  FUZZ_CHECK(vkms::log::ValidLevel(v["level"].asString()));
  FUZZ_CHECK(v["msg"].isString());
  return 0;
}
