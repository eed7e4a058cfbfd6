#include "frontend/http_server.h"

#include <CivetServer.h>
#include <prometheus/text_serializer.h>

#include "frontend/broker_metrics.h"
#include "shared/log.h"

namespace vkms::frontend {
namespace {

void Reply(struct mg_connection* conn, int status, const std::string& content_type,
           const std::string& body) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            status, status == 200 ? "OK" : "Service Unavailable", content_type.c_str(),
            body.size());
  mg_write(conn, body.data(), body.size());
}

// Health checks must answer within the kubelet probe timeout even if the broker is stuck.
constexpr auto kProbeDeadline = std::chrono::milliseconds(1000);

class HealthHandler : public CivetHandler {
 public:
  HealthHandler(BrokerClient* broker, bool readiness) : broker_(broker), readiness_(readiness) {}
  bool handleGet(CivetServer*, struct mg_connection* conn) override {
    BrokerStatus st;
    Status s = broker_->GetStatus(Clock::now() + kProbeDeadline, &st);
    if (!s.ok()) {
      Reply(conn, 503, "text/plain", "broker not answering: " + s.message() + "\n");
    } else if (!readiness_) {
      // Alive: the frontend runs and the broker answers, whatever Vault does (a liveness probe
      // must not restart the plugin for a Vault outage). The body is Status's healthz, so it
      // changes in the same refresh as Status does.
      Reply(conn, 200, "text/plain", st.healthz + "\n");
    } else if (st.ready) {
      Reply(conn, 200, "text/plain", "ok\n");
    } else {
      Reply(conn, 503, "text/plain", "not ready: " + st.ready_reason + "\n");
    }
    return true;
  }

 private:
  BrokerClient* broker_;
  bool readiness_;
};

class MetricsHandler : public CivetHandler {
 public:
  MetricsHandler(BrokerClient* broker, std::shared_ptr<prometheus::Registry> registry)
      : broker_(broker), registry_(std::move(registry)) {}
  bool handleGet(CivetServer*, struct mg_connection* conn) override {
    std::vector<prometheus::MetricFamily> families = registry_->Collect();
    families.push_back(BuildInfoFamily());
    // The broker's figures are read at scrape time; a broker that does not answer shows up as
    // vault_kms_broker_up 0 instead of failing the scrape.
    ipc::StatsReply stats;
    bool up = broker_->Stats(Clock::now() + kProbeDeadline, &stats).ok();
    for (auto& f : BrokerFamilies(up ? &stats : nullptr)) families.push_back(std::move(f));
    Reply(conn, 200, "text/plain; version=0.0.4", prometheus::TextSerializer().Serialize(families));
    return true;
  }

 private:
  BrokerClient* broker_;
  std::shared_ptr<prometheus::Registry> registry_;
};

}  // namespace

struct HttpServer::Handlers {
  Handlers(BrokerClient* broker, std::shared_ptr<prometheus::Registry> registry)
      : healthz(broker, false), readyz(broker, true), metrics(broker, std::move(registry)) {}
  HealthHandler healthz;
  HealthHandler readyz;
  MetricsHandler metrics;
};

std::unique_ptr<HttpServer> HttpServer::Start(const std::string& listen, BrokerClient* broker,
                                              std::shared_ptr<prometheus::Registry> registry,
                                              std::string* error) {
  std::unique_ptr<HttpServer> s(new HttpServer());
  s->handlers_ = std::make_unique<Handlers>(broker, std::move(registry));
  std::vector<std::string> options = {"listening_ports",    listen, "num_threads", "2",
                                      "request_timeout_ms", "5000"};
  try {
    s->server_ = std::make_unique<CivetServer>(options);
  } catch (const CivetException& e) {
    *error = "cannot listen on " + listen + " for metrics: " + e.what();
    return nullptr;
  }
  s->server_->addHandler("/healthz", &s->handlers_->healthz);
  s->server_->addHandler("/readyz", &s->handlers_->readyz);
  s->server_->addHandler("/metrics", &s->handlers_->metrics);
  auto ports = s->server_->getListeningPorts();
  s->port_ = ports.empty() ? 0 : ports[0];
  return s;
}

HttpServer::~HttpServer() {
  if (server_) server_->close();
}

}  // namespace vkms::frontend
