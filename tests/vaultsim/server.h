// HTTP front of the simulator: turns httplib requests into VaultRequests, applies faults, and
// writes Vault-shaped responses. All methods and paths go through catch-all routes, because a
// pre-routing handler runs before httplib has read the request body; the pre-routing hook only
// serves body-less writes, which httplib would otherwise refuse.
#pragma once

#include <httplib.h>

#include "faults.h"
#include "state.h"

namespace vaultsim {

class SimServer {
 public:
  SimServer(State& state, Faults& faults) : state_(state), faults_(faults) {}

  // Registers the routes and connection settings on `server`. `threads` bounds the number of
  // simultaneous keep-alive connections, since httplib dedicates a thread to each.
  void Install(httplib::Server& server, size_t threads);

 private:
  void Serve(const httplib::Request& req, httplib::Response& res);
  void ServeVault(const httplib::Request& req, httplib::Response& res);
  void ServeAdmin(const httplib::Request& req, httplib::Response& res);

  State& state_;
  Faults& faults_;
};

}  // namespace vaultsim
