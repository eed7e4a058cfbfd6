#include "frontend/http_server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>

#include <cstring>

#include "frontend/broker_metrics.h"
#include "shared/log.h"

namespace vkms::frontend {
namespace {

// Health checks must answer within the kubelet probe timeout even if the broker is stuck.
constexpr auto kProbeDeadline = std::chrono::milliseconds(1000);
// Probes and scrapes are few; anything beyond this waits in the listen backlog.
constexpr unsigned kMaxConnections = 16;
constexpr unsigned kIdleTimeoutSeconds = 5;
// A request is one short line and a few headers: anything larger is refused by libmicrohttpd.
constexpr size_t kConnectionMemory = 16 * 1024;

int LocalPort(int fd) {
  struct sockaddr_storage ss = {};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<struct sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<struct sockaddr_in6*>(&ss)->sin6_port);
  }
  return 0;
}

void LogFromMhd(void*, const char* fmt, va_list ap) {
  char buf[256];
  vsnprintf(buf, sizeof buf, fmt, ap);
  size_t n = strlen(buf);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = '\0';
  log::Debug(std::string("http: ") + buf);
}

}  // namespace

struct HttpServer::Handlers {
  BrokerClient* broker;
  std::shared_ptr<prometheus::Registry> registry;

  // Returns the status code; fills body and content type.
  int Health(bool readiness, std::string* body) {
    BrokerStatus st;
    Status s = broker->GetStatus(Clock::now() + kProbeDeadline, &st);
    if (!s.ok()) {
      *body = "broker not answering: " + s.message() + "\n";
      return 503;
    }
    if (!readiness) {
      // Alive: the frontend runs and the broker answers, whatever Vault does (a liveness probe
      // must not restart the plugin for a Vault outage). The body is Status's healthz, so it
      // changes in the same refresh as Status does.
      *body = st.healthz + "\n";
      return 200;
    }
    if (st.ready) {
      *body = "ok\n";
      return 200;
    }
    *body = "not ready: " + st.ready_reason + "\n";
    return 503;
  }

  int Metrics(std::string* body) {
    std::vector<prometheus::MetricFamily> families = registry->Collect();
    families.push_back(BuildInfoFamily());
    // The broker's figures are read at scrape time; a broker that does not answer shows up as
    // vault_kms_broker_up 0 instead of failing the scrape.
    ipc::StatsReply stats;
    bool up = broker->Stats(Clock::now() + kProbeDeadline, &stats).ok();
    for (auto& f : BrokerFamilies(up ? &stats : nullptr)) families.push_back(std::move(f));
    *body = prometheus::TextSerializer().Serialize(families);
    return 200;
  }

  static MHD_Result Answer(void* cls, struct MHD_Connection* conn, const char* url,
                           const char* method, const char*, const char*, size_t* upload_size,
                           void** state) {
    auto* self = static_cast<Handlers*>(cls);
    // libmicrohttpd calls once with the headers, then for any body: answer on the first call,
    // refuse bodies (a GET has none).
    if (*state == nullptr) {
      *state = self;
      if (*upload_size == 0) return self->Respond(conn, url, method);
    }
    if (*upload_size != 0) return MHD_NO;  // closes the connection
    return MHD_YES;
  }

  MHD_Result Respond(struct MHD_Connection* conn, const char* url, const char* method) {
    std::string body;
    std::string type = "text/plain; charset=utf-8";
    int code;
    bool head = strcmp(method, "HEAD") == 0;
    if (strcmp(method, "GET") != 0 && !head) {
      code = 405;
      body = "only GET\n";
    } else if (strcmp(url, "/healthz") == 0) {
      code = Health(false, &body);
    } else if (strcmp(url, "/readyz") == 0) {
      code = Health(true, &body);
    } else if (strcmp(url, "/metrics") == 0) {
      code = Metrics(&body);
      type = "text/plain; version=0.0.4";
    } else {
      code = 404;
      body = "not found: /metrics, /healthz, /readyz\n";
    }
    struct MHD_Response* r =
        MHD_create_response_from_buffer(body.size(), body.data(), MHD_RESPMEM_MUST_COPY);
    if (r == nullptr) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type.c_str());
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (code == 405) MHD_add_response_header(r, "Allow", "GET, HEAD");
    MHD_Result ok = MHD_queue_response(conn, static_cast<unsigned>(code), r);
    MHD_destroy_response(r);
    return ok;
  }
};

std::unique_ptr<HttpServer> HttpServer::Start(int listen_fd, BrokerClient* broker,
                                              std::shared_ptr<prometheus::Registry> registry,
                                              std::string* error) {
  std::unique_ptr<HttpServer> s(new HttpServer());
  s->handlers_ = std::make_unique<Handlers>();
  s->handlers_->broker = broker;
  s->handlers_->registry = std::move(registry);
  s->port_ = LocalPort(listen_fd);
  s->daemon_ =
      MHD_start_daemon(MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, nullptr, nullptr,
                       &Handlers::Answer, s->handlers_.get(), MHD_OPTION_LISTEN_SOCKET, listen_fd,
                       MHD_OPTION_CONNECTION_LIMIT, kMaxConnections, MHD_OPTION_CONNECTION_TIMEOUT,
                       kIdleTimeoutSeconds, MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory,
                       MHD_OPTION_EXTERNAL_LOGGER, &LogFromMhd, nullptr, MHD_OPTION_END);
  if (s->daemon_ == nullptr) {
    *error = "cannot serve /metrics on the inherited listener (libmicrohttpd refused it)";
    return nullptr;
  }
  return s;
}

HttpServer::~HttpServer() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

}  // namespace vkms::frontend
