#include "shared/listen_address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

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

int BindListenAddress(const ListenAddress& address, std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(address.port);
  int rc = getaddrinfo(address.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    *error = "cannot resolve " + address.host + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  int err = fd < 0 ? errno : 0;
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 16) != 0) {
      err = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) *error = strerror(err);
  return fd;
}

}  // namespace vkms
