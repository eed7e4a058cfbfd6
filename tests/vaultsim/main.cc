// vaultsim: a simulated HashiCorp Vault (the API subset vault-kms uses) for tests and benchmarks.
//
//   vaultsim --listen 127.0.0.1:0 --tls-dir DIR --root-token TOKEN [--require-client-cert]
//            [--threads N]
//
// Once listening it prints exactly one JSON line on stdout:
//   {"addr":"https://127.0.0.1:PORT","ca_file":"DIR/ca.pem","root_token":"TOKEN"}
// Diagnostics go to stderr. SIGTERM or SIGINT stops it with exit status 0; bad flags exit 2.
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>
#include <thread>

#include "server.h"
#include "tls.h"

namespace {

struct Flags {
  std::string host;
  int port = -1;
  std::string tls_dir;
  std::string root_token;
  bool require_client_cert = false;
  size_t threads = 256;
};

bool ParseListen(const std::string& value, Flags* f) {
  const size_t colon = value.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == value.size()) return false;
  std::string host = value.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port = value.substr(colon + 1);
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return false;
  f->port = std::stoi(port);
  f->host = host;
  return f->port <= 65535;
}

bool ParseFlags(int argc, char** argv, Flags* f, std::string* error) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    const size_t eq = arg.find('=');
    if (arg.compare(0, 2, "--") == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    auto take = [&](std::string* out) {
      if (!has_value) {
        if (i + 1 >= argc) return false;
        value = argv[++i];
      }
      *out = value;
      return true;
    };
    std::string v;
    if (arg == "--require-client-cert" && !has_value) {
      f->require_client_cert = true;
    } else if (arg == "--listen") {
      if (!take(&v) || !ParseListen(v, f)) {
        *error = "--listen needs HOST:PORT (port 0 picks a free one)";
        return false;
      }
    } else if (arg == "--tls-dir") {
      if (!take(&f->tls_dir) || f->tls_dir.empty()) {
        *error = "--tls-dir needs a directory";
        return false;
      }
    } else if (arg == "--root-token") {
      if (!take(&f->root_token) || f->root_token.empty()) {
        *error = "--root-token needs a non-empty token";
        return false;
      }
    } else if (arg == "--threads") {
      if (!take(&v) || v.empty() || v.size() > 5 ||
          v.find_first_not_of("0123456789") != std::string::npos || std::stoul(v) < 8) {
        *error = "--threads needs a number >= 8";
        return false;
      }
      f->threads = std::stoul(v);
    } else {
      *error = "unknown flag " + arg;
      return false;
    }
  }
  if (f->port < 0) {
    *error = "--listen is required";
  } else if (f->tls_dir.empty()) {
    *error = "--tls-dir is required";
  } else if (f->root_token.empty()) {
    *error = "--root-token is required";
  }
  return error->empty();
}

std::string JsonString(const std::string& s) {
  Json::StreamWriterBuilder b;
  b["indentation"] = "";
  b["emitUTF8"] = true;
  return Json::writeString(b, Json::Value(s));
}

// cpp-httplib (the compiled Debian library) listens with a backlog of 5: 64 clients connecting
// at once overflow it, the kernel drops their SYNs and they retry after a second, which made
// the benchmark's direct baseline look slow. listen() again on the bound socket raises it.
void WidenListenBacklog(int port) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return;
  while (struct dirent* e = readdir(dir)) {
    int fd = std::atoi(e->d_name);
    if (fd <= 2) continue;
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    struct sockaddr_storage ss;
    socklen_t slen = sizeof ss;
    if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &slen) != 0) continue;
    int bound =
        ss.ss_family == AF_INET    ? ntohs(reinterpret_cast<struct sockaddr_in*>(&ss)->sin_port)
        : ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<struct sockaddr_in6*>(&ss)->sin6_port)
                                   : -1;
    if (bound == port) (void)listen(fd, SOMAXCONN);
  }
  closedir(dir);
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  std::string error;
  if (!ParseFlags(argc, argv, &flags, &error)) {
    std::fprintf(stderr, "vaultsim: %s\n", error.c_str());
    return 2;
  }
  while (flags.tls_dir.size() > 1 && flags.tls_dir.back() == '/') flags.tls_dir.pop_back();

  // Block the stop signals before any thread exists so every thread inherits the mask and only
  // sigwait below ever sees them.
  std::signal(SIGPIPE, SIG_IGN);
  // An ignored signal is discarded even while blocked, and a parent may have left these ignored.
  std::signal(SIGTERM, SIG_DFL);
  std::signal(SIGINT, SIG_DFL);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  vaultsim::TlsFiles files;
  if (!vaultsim::WriteTlsMaterial(flags.tls_dir, flags.require_client_cert, &files, &error)) {
    std::fprintf(stderr, "vaultsim: %s\n", error.c_str());
    return 1;
  }
  httplib::SSLServer server([&](SSL_CTX& ctx) {
    return vaultsim::ConfigureServerContext(&ctx, files, flags.require_client_cert, &error);
  });
  if (!server.is_valid()) {
    std::fprintf(stderr, "vaultsim: %s\n", error.c_str());
    return 1;
  }
  vaultsim::State state(flags.root_token);
  vaultsim::Faults faults;
  vaultsim::SimServer sim(state, faults);
  sim.Install(server, flags.threads);

  int port = flags.port;
  if (port == 0) {
    port = server.bind_to_any_port(flags.host);
  } else if (!server.bind_to_port(flags.host, port)) {
    port = -1;
  }
  if (port <= 0) {
    std::fprintf(stderr, "vaultsim: cannot listen on %s:%d\n", flags.host.c_str(), flags.port);
    return 1;
  }

  WidenListenBacklog(port);

  const std::string host =
      flags.host.find(':') == std::string::npos ? flags.host : "[" + flags.host + "]";
  const std::string line =
      "{\"addr\":" + JsonString("https://" + host + ":" + std::to_string(port)) +
      ",\"ca_file\":" + JsonString(files.ca_cert) +
      ",\"root_token\":" + JsonString(flags.root_token) + "}\n";
  std::fputs(line.c_str(), stdout);
  std::fflush(stdout);

  std::promise<void> finished;
  std::future<void> done = finished.get_future();
  std::thread loop([&] {
    server.listen_after_bind();
    finished.set_value();
  });
  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::fprintf(stderr, "vaultsim: received signal %d, stopping\n", sig);
  server.stop();
  if (done.wait_for(std::chrono::seconds(1)) == std::future_status::ready) {
    loop.join();
    return 0;
  }
  // httplib keeps a worker on each idle keep-alive connection until its timeout; all state is
  // in memory, so there is nothing left to save by waiting for them.
  std::fflush(stderr);
  _exit(0);
}
