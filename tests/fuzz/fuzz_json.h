// Parses a fuzz input as JSON with the broker's reader settings (broker/vault/http.cc):
// false when it is not JSON, which the targets skip.
#pragma once

#include <json/reader.h>
#include <json/value.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

inline bool ParseFuzzJson(const uint8_t* data, size_t size, Json::Value* out) {
  Json::CharReaderBuilder rb;
  rb["collectComments"] = false;
  std::unique_ptr<Json::CharReader> reader(rb.newCharReader());
  std::string errs;
  const char* begin = reinterpret_cast<const char*>(data);
  return reader->parse(begin, begin + size, out, &errs);
}
