// The host:port of a TCP listener such as --metrics-listen: "127.0.0.1:8080", "[::1]:8080"
// (an IPv6 address always in brackets, as in URLs) or "localhost:8080".
//
// Callers: the broker's flag parser (validation, so a bad address stops start-up with a line
// naming the flag before anything else happens), `check`, and ListenMetrics
// (broker/listen_socket.h), which splits what passed with it before binding it.
#pragma once

#include <cstdint>
#include <string>

namespace vkms {

struct ListenAddress {
  std::string host;   // without brackets: "127.0.0.1", "::1", "localhost"
  uint16_t port = 0;  // 0: the kernel picks one (tests)
};

// False with a short reason (no flag name) when `text` is not host:port as described above.
bool ParseListenAddress(const std::string& text, ListenAddress* out, std::string* error);

}  // namespace vkms
