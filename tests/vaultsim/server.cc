#include "server.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <sstream>
#include <thread>

#include "handlers.h"

namespace vaultsim {
namespace {

std::string ToJson(const Json::Value& v) {
  thread_local std::unique_ptr<Json::StreamWriter> writer = [] {
    Json::StreamWriterBuilder b;
    b["indentation"] = "";
    b["emitUTF8"] = true;
    return std::unique_ptr<Json::StreamWriter>(b.newStreamWriter());
  }();
  std::ostringstream out;
  writer->write(v, &out);
  // Go's json.Encoder, which Vault uses, ends every body with a newline.
  out << '\n';
  return out.str();
}

void Write(const VaultResponse& r, httplib::Response& res) {
  res.status = r.status;
  res.set_header("Cache-Control", "no-store");
  for (const auto& [name, value] : r.headers) res.set_header(name, value);
  if (!r.body.isNull()) res.set_content(ToJson(r.body), "application/json");
}

const char* GoKind(const Json::Value& v) {
  if (v.isArray()) return "array";
  if (v.isString()) return "string";
  if (v.isBool()) return "bool";
  if (v.isNull()) return "null";
  return "number";
}

bool ParseBody(const std::string& body, Json::Value* out, std::string* error) {
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) {
    *out = Json::Value(Json::objectValue);
    return true;
  }
  Json::CharReaderBuilder b;
  b["collectComments"] = false;
  std::unique_ptr<Json::CharReader> reader(b.newCharReader());
  if (!reader->parse(body.data(), body.data() + body.size(), out, error)) return false;
  if (!out->isObject()) {
    *error = std::string("json: cannot unmarshal ") + GoKind(*out) +
             " into Go value of type map[string]interface {}";
    return false;
  }
  return true;
}

std::string NamespaceOf(const httplib::Request& req) {
  std::string ns = req.get_header_value("X-Vault-Namespace");
  while (!ns.empty() && ns.front() == '/') ns.erase(0, 1);
  while (!ns.empty() && ns.back() == '/') ns.pop_back();
  return ns.empty() ? ns : ns + "/";
}

std::string TokenOf(const httplib::Request& req) {
  std::string token = req.get_header_value("X-Vault-Token");
  const std::string auth = req.get_header_value("Authorization");
  if (token.empty() && auth.compare(0, 7, "Bearer ") == 0) token = auth.substr(7);
  return token;
}

std::string Der(X509* cert) {
  unsigned char* der = nullptr;
  const int len = i2d_X509(cert, &der);
  std::string out = len > 0 ? std::string(reinterpret_cast<char*>(der), len) : std::string();
  OPENSSL_free(der);
  return out;
}

// On the server side OpenSSL keeps the leaf apart from the rest of the chain the client sent.
std::vector<std::string> PeerCertificates(const httplib::Request& req) {
  std::vector<std::string> out;
  if (req.ssl == nullptr) return out;
  X509* leaf = SSL_get1_peer_certificate(req.ssl);
  if (leaf == nullptr) return out;
  out.push_back(Der(leaf));
  X509_free(leaf);
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(req.ssl);
  for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
    std::string der = Der(sk_X509_value(chain, i));
    if (der != out.front()) out.push_back(std::move(der));
  }
  return out;
}

bool ParseBool(const std::string& s) {
  return s == "1" || s == "t" || s == "T" || s == "true" || s == "TRUE" || s == "True";
}

}  // namespace

void SimServer::Install(httplib::Server& server, size_t threads) {
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // Headers and body leave in separate writes; without TCP_NODELAY, Nagle's algorithm and the
  // client's delayed ACK add ~40 ms to every response.
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(1000000);
  server.set_keep_alive_timeout(30);
  server.set_read_timeout(30);
  server.set_payload_max_length(32u << 20);  // Vault's default max_request_size
  auto handler = [this](const httplib::Request& req, httplib::Response& res) { Serve(req, res); };
  server.Get(".*", handler);
  server.Post(".*", handler);
  server.Put(".*", handler);
  server.Delete(".*", handler);
  server.Patch(".*", handler);
  server.Options(".*", handler);
  // httplib answers 400 to a POST/PUT/DELETE without Content-Length, yet HTTP/1.1 defines such a
  // request as having an empty body and Vault accepts it (curl -X DELETE sends exactly that).
  // The pre-routing hook runs before httplib tries to read a body, so serve those here.
  server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    const bool may_have_body = req.method == "POST" || req.method == "PUT" ||
                               req.method == "PATCH" || req.method == "DELETE";
    if (!may_have_body || req.has_header("Content-Length") || req.has_header("Transfer-Encoding")) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    Serve(req, res);
    return httplib::Server::HandlerResponse::Handled;
  });
  // Requests httplib rejects itself (unknown verbs such as LIST, malformed requests) still get a
  // JSON body.
  server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    VaultResponse r = EmptyError(res.status);
    if (req.method == "LIST") {
      r = Error(res.status, "vaultsim does not accept the LIST verb; use GET with ?list=true");
    }
    Write(r, res);
  });
  server.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        Write(Error(500, "vaultsim internal error: " + what), res);
      });
}

void SimServer::Serve(const httplib::Request& req, httplib::Response& res) {
  if (req.path.compare(0, 6, "/_sim/") == 0) return ServeAdmin(req, res);
  if (req.path.compare(0, 4, "/v1/") == 0) return ServeVault(req, res);
  Write(EmptyError(404), res);
}

void SimServer::ServeAdmin(const httplib::Request& req, httplib::Response& res) {
  if (req.get_header_value("X-Vault-Token") != state_.root_token()) {
    Write(Error(403, "permission denied"), res);
    return;
  }
  Json::Value body(Json::objectValue);
  std::string error;
  if (req.method == "GET") {
    for (const auto& [k, v] : req.params) body[k] = v;
  } else if (!ParseBody(req.body, &body, &error)) {
    Write(Error(400, "failed to parse JSON input: " + error), res);
    return;
  }
  Write(faults_.Admin(req.method, req.path.substr(6), body, state_), res);
}

void SimServer::ServeVault(const httplib::Request& req, httplib::Response& res) {
  VaultRequest vr;
  vr.method = req.method;
  vr.path = req.path.substr(4);
  vr.ns = NamespaceOf(req);
  vr.token = TokenOf(req);
  vr.peer_certs = PeerCertificates(req);
  const size_t q = req.target.find('?');
  vr.raw_query = q == std::string::npos ? "" : req.target.substr(q + 1);
  const std::string stats_key = vr.ns + vr.path;
  faults_.Enter(stats_key);
  struct Leave {
    Faults& faults;
    const std::string& key;
    ~Leave() { faults.Leave(key); }
  } leave{faults_, stats_key};

  Faults::Decision decision = faults_.Before(vr.path, req.target, vr.ns);
  if (decision.latency_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(decision.latency_ms));
  }
  if (decision.drop) {
    faults_.Record(stats_key, 0, false);
    // httplib's reply then fails to write and it closes the connection: the client sees the
    // connection end without any response.
    if (req.ssl) shutdown(SSL_get_fd(req.ssl), SHUT_RDWR);
    return;
  }

  VaultResponse resp;
  const bool read = req.method == "GET" || req.method == "HEAD";
  if (decision.response) {
    resp = *decision.response;
  } else if (vr.path == "sys/health" || vr.path == "sys/seal-status") {
    std::map<std::string, std::string> query(req.params.begin(), req.params.end());
    resp = !read                     ? UnsupportedOperation()
           : vr.path == "sys/health" ? faults_.Health(query, state_.Now())
                                     : faults_.SealStatus();
  } else {
    bool valid = true;
    if (read) {
      vr.op =
          req.has_param("list") && ParseBool(req.get_param_value("list")) ? Op::kList : Op::kRead;
    } else if (req.method == "POST" || req.method == "PUT") {
      vr.op = Op::kUpdate;
    } else if (req.method == "DELETE") {
      vr.op = Op::kDelete;
    } else {
      valid = false;
      resp = UnsupportedOperation();
    }
    // Vault lists "foo/" whether or not the client wrote the slash.
    if (vr.op == Op::kList && (vr.path.empty() || vr.path.back() != '/')) vr.path += '/';
    std::string error;
    if (valid && (vr.op == Op::kUpdate)) {
      if (!ParseBody(req.body, &vr.data, &error)) {
        valid = false;
        resp = Error(400, "failed to parse JSON input: " + error);
      }
    } else if (valid) {
      for (const auto& [k, v] : req.params) vr.data[k] = v;
    }
    if (valid) resp = Dispatch(state_, vr);
  }

  const bool login = resp.status == 200 && vr.path.compare(0, 5, "auth/") == 0 &&
                     vr.path.size() >= 6 && vr.path.compare(vr.path.size() - 6, 6, "/login") == 0;
  faults_.Record(stats_key, resp.status, login);
  Write(resp, res);
}

}  // namespace vaultsim
