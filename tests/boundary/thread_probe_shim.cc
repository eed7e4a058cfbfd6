// thread-probe-shim: an LD_PRELOAD library for one boundary test (FrontendThreads.*), never
// part of the product. Loaded into the real vault-kms-frontend, it
//  - replaces libseccomp's seccomp_load() with a no-op, so that what denies a file or a TCP
//    connection below can only be Landlock (the seccomp filter would refuse both itself);
//  - wraps pthread_create(): every thread the frontend creates (gRPC's, the HTTP server's, the
//    broker reader) first tries to open /etc/passwd, to open /dev/null for writing (a write
//    that loses nothing, so the probe is harmless when it succeeds), to connect to
//    127.0.0.1:$VKMS_PROBE_PORT and to the abstract unix socket @$VKMS_PROBE_ABSTRACT (made
//    outside its Landlock domain), and writes one JSON line with the results to stderr, then
//    runs as it would have.
// A thread created before the frontend's landlock_restrict_self() is outside the domain and
// succeeds; one created after it gets EACCES from Landlock.
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

const char* Outcome(long rc, int err) {
  return rc >= 0 ? "ok" : strerrorname_np(err);
}

void Say(const char* line) {
  (void)!write(STDERR_FILENO, line, strlen(line));
}

void Probe() {
  long fd = syscall(SYS_openat, AT_FDCWD, "/etc/passwd", O_RDONLY | O_CLOEXEC);
  int open_errno = errno;
  if (fd >= 0) close(static_cast<int>(fd));
  long wfd = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_WRONLY | O_CLOEXEC);
  int write_errno = errno;
  if (wfd >= 0) close(static_cast<int>(wfd));
  long rc = -1;
  int connect_errno = 0;
  const char* port = getenv("VKMS_PROBE_PORT");
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s >= 0 && port != nullptr) {
    struct sockaddr_in sa = {};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(atoi(port)));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rc = connect(s, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa);
    connect_errno = errno;
  } else {
    connect_errno = errno;
  }
  if (s >= 0) close(s);
  long arc = -1;
  int abstract_errno = 0;
  const char* name = getenv("VKMS_PROBE_ABSTRACT");
  int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (u >= 0 && name != nullptr && strlen(name) < sizeof(sockaddr_un::sun_path) - 1) {
    struct sockaddr_un ua = {};
    ua.sun_family = AF_UNIX;
    memcpy(ua.sun_path + 1, name, strlen(name));  // sun_path[0] == 0: an abstract name
    arc =
        connect(u, reinterpret_cast<struct sockaddr*>(&ua),
                static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name)));
    abstract_errno = errno;
  } else {
    abstract_errno = errno;
  }
  if (u >= 0) close(u);
  char line[320];
  snprintf(line, sizeof line,
           "{\"probe\":\"thread\",\"tid\":%ld,\"open\":\"%s\",\"open_write\":\"%s\","
           "\"connect\":\"%s\",\"abstract\":\"%s\"}\n",
           syscall(SYS_gettid), Outcome(fd, open_errno), Outcome(wfd, write_errno),
           Outcome(rc, connect_errno), Outcome(arc, abstract_errno));
  Say(line);
}

struct Start {
  void* (*fn)(void*);
  void* arg;
};

void* Trampoline(void* p) {
  Start s = *static_cast<Start*>(p);
  free(p);
  Probe();
  return s.fn(s.arg);
}

}  // namespace

extern "C" int seccomp_load(void*) {
  Say("{\"probe\":\"seccomp_load_skipped\"}\n");
  return 0;
}

extern "C" int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*fn)(void*),
                              void* arg) {
  using Real = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static Real real = reinterpret_cast<Real>(dlsym(RTLD_NEXT, "pthread_create"));
  auto* s = static_cast<Start*>(malloc(sizeof(Start)));
  if (real == nullptr || s == nullptr) return EAGAIN;
  s->fn = fn;
  s->arg = arg;
  return real(thread, attr, Trampoline, s);
}
