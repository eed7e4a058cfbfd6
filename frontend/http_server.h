// /metrics, /healthz and /readyz on the TCP listener the broker bound for --metrics-listen
// (localhost by default) and handed over as an inherited fd: the frontend creates no socket.
// Served by libmicrohttpd (the HTTP parser; it adopts an existing listening socket, which
// civetweb, prometheus-cpp's exposer, cannot) from one internal thread; metrics are rendered
// by prometheus-cpp's text serializer.
//
// Start() is called after the frontend has confined itself (frontend/lockdown.h): the thread it
// creates is born inside the Landlock domain and under the seccomp filter.
#pragma once

#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "frontend/broker_client.h"

struct MHD_Daemon;

namespace vkms::frontend {

class HttpServer {
 public:
  // listen_fd: a listening TCP socket (ownership passes to the server). Returns nullptr with
  // *error if it cannot be served.
  static std::unique_ptr<HttpServer> Start(int listen_fd, BrokerClient* broker,
                                           std::shared_ptr<prometheus::Registry> registry,
                                           std::string* error);
  ~HttpServer();
  int port() const { return port_; }

 private:
  HttpServer() = default;
  struct Handlers;
  std::unique_ptr<Handlers> handlers_;
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;
};

}  // namespace vkms::frontend
