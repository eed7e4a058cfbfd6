// /metrics, /healthz and /readyz on --metrics-listen (localhost by default), served by
// civetweb; metrics are rendered by prometheus-cpp's text serializer. Constructed before the
// frontend confines itself (it binds a TCP socket), used from civetweb's threads afterwards.
#pragma once

#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "frontend/broker_client.h"

class CivetServer;

namespace vkms::frontend {

class HttpServer {
 public:
  // Returns nullptr with *error if the address cannot be bound.
  static std::unique_ptr<HttpServer> Start(const std::string& listen, BrokerClient* broker,
                                           std::shared_ptr<prometheus::Registry> registry,
                                           std::string* error);
  ~HttpServer();
  int port() const { return port_; }

 private:
  HttpServer() = default;
  struct Handlers;
  std::unique_ptr<Handlers> handlers_;
  std::unique_ptr<CivetServer> server_;
  int port_ = 0;
};

}  // namespace vkms::frontend
