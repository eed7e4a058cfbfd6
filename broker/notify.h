// systemd's readiness protocol (sd_notify(3)) for `Type=notify` units: "READY=1" once the KMS
// socket serves, "STOPPING=1" when shutdown begins. Written here rather than with libsystemd,
// whose sd_notify() opens a new socket for every message: after its lockdown the broker may
// create no socket at all, so the datagram socket to $NOTIFY_SOCKET is connected once, before
// lockdown, and only written to afterwards.
//
// Called from main() and the broker's main loop only. Without $NOTIFY_SOCKET (a static Pod, a
// shell) every call does nothing.
#pragma once

#include <string>

namespace vkms::broker {

class ServiceNotifier {
 public:
  ServiceNotifier() = default;
  ~ServiceNotifier();
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

  // Connects to $NOTIFY_SOCKET (a path, or "@name" for an abstract socket) and removes the
  // variable from the environment. A socket that cannot be reached is logged, not fatal: the
  // plugin serves either way (systemd then reports the start as timed out).
  void Connect();
  bool connected() const { return fd_ >= 0; }

  void Ready(const std::string& status);
  void Stopping();

 private:
  void Send(const std::string& message);
  int fd_ = -1;
};

}  // namespace vkms::broker
