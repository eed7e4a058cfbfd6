#include "shared/listen_address.h"

#include <arpa/inet.h>

#include "shared/flags.h"

namespace vkms {
namespace {

// RFC 1123 host names: letters, digits, '-' and '.', no empty label.
bool ValidHostName(const std::string& h) {
  if (h.empty() || h.size() > 253 || h.front() == '.' || h.back() == '.' ||
      h.find("..") != std::string::npos) {
    return false;
  }
  for (char c : h) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

bool ParseListenAddress(const std::string& text, ListenAddress* out, std::string* error) {
  std::string host, port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      *error = "an IPv6 address is written [address]:port, e.g. [::1]:8080";
      return false;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    in6_addr a6;
    if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) {
      *error = "\"" + host + "\" is not an IPv6 address";
      return false;
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) {
      *error = "no port (host:port, e.g. 127.0.0.1:8080)";
      return false;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      *error = "an IPv6 address must be in brackets, e.g. [::1]:8080";
      return false;
    }
    in_addr a4;
    const bool dotted = host.find_first_not_of("0123456789.") == std::string::npos;
    if (inet_pton(AF_INET, host.c_str(), &a4) != 1 && (dotted || !ValidHostName(host))) {
      *error = "\"" + host + "\" is neither an IPv4 address nor a host name";
      return false;
    }
  }
  unsigned long long n = 0;
  if (!flags::ParseUint(port, 65535, &n)) {
    *error = "port \"" + port + "\" is not a number from 0 to 65535";
    return false;
  }
  out->host = host;
  out->port = static_cast<uint16_t>(n);
  return true;
}

}  // namespace vkms
