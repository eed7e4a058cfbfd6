// image-root-exec: starts /usr/local/bin/vault-kms-broker from the unpacked image root the way
// deploy/static-pod.yaml has a container runtime start it, without a runtime (none runs here):
// the image's files only (chroot), a read-only root (readOnlyRootFilesystem), /proc, a /dev with
// the usual few devices, the node's /etc/hosts and /etc/resolv.conf, the volumes bind-mounted,
// no_new_privs (allowPrivilegeEscalation: false) and the capability bounding set reduced to the
// Pod's SETUID, SETGID and SETPCAP. Not emulated: the PID namespace, cgroups, the runtime's
// seccomp profile.
//
//   image-root-exec --image-root=DIR [--image-volume=DIR]... BROKER-ARGS...
//
// --image-volume: a host directory mounted at the same path inside (the Pod's hostPath volumes).
// The directory of every absolute path in a BROKER-ARG (--socket=unix:///..., --*-file=/...) is
// mounted that way too; the socket's is made root:root 0755 first, as the kubelet creates it.
// Execs the broker in place of this program, so the caller's pid is the broker's; everything
// mounted disappears with the process's mount namespace. Root only. Used by
// tests/package/image_test.cc.
#include <cap-ng.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

extern char** environ;

namespace {

[[noreturn]] void Fail(const std::string& what) {
  fprintf(stderr, "image-root-exec: %s: %s\n", what.c_str(), strerror(errno));
  _exit(125);
}

void MakeDirs(const std::string& path) {
  std::string current;
  for (size_t pos = 1; pos != std::string::npos;) {
    pos = path.find('/', pos + 1);
    current = path.substr(0, pos);
    if (mkdir(current.c_str(), 0755) != 0 && errno != EEXIST) Fail("mkdir " + current);
  }
}

// A bind mount onto a file needs a file to mount on (a runtime creates it the same way).
void BindFile(const std::string& host, const std::string& target) {
  int fd = open(target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) Fail("create " + target);
  close(fd);
  if (mount(host.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    Fail("bind " + host + " on " + target);
  }
}

void BindDir(const std::string& host, const std::string& target) {
  MakeDirs(target);
  if (mount(host.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    Fail("bind " + host + " on " + target);
  }
}

// The directory of the absolute path an argument carries, "" if none.
std::string VolumeOf(const std::string& arg) {
  size_t eq = arg.find('=');
  if (arg.rfind("--", 0) != 0 || eq == std::string::npos) return "";
  std::string value = arg.substr(eq + 1);
  if (value.rfind("unix://", 0) == 0) value = value.substr(7);
  if (value.empty() || value[0] != '/' || value.find(',') != std::string::npos) return "";
  return value.substr(0, value.rfind('/'));
}

}  // namespace

int main(int argc, char** argv) {
  std::string root;
  std::set<std::string> volumes;
  std::vector<char*> broker_argv = {const_cast<char*>("/usr/local/bin/vault-kms-broker")};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--image-root=", 0) == 0) {
      root = a.substr(13);
    } else if (a.rfind("--image-volume=", 0) == 0) {
      volumes.insert(a.substr(15));
    } else {
      std::string v = VolumeOf(a);
      if (!v.empty()) volumes.insert(v);
      broker_argv.push_back(argv[i]);
    }
  }
  broker_argv.push_back(nullptr);
  if (root.empty() || root[0] != '/') {
    errno = EINVAL;
    Fail("--image-root=/absolute/dir is needed");
  }

  if (unshare(CLONE_NEWNS) != 0) Fail("unshare(CLONE_NEWNS)");
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) Fail("make / private");
  // The root a mount point of its own, so that it can be made read-only below.
  if (mount(root.c_str(), root.c_str(), nullptr, MS_BIND, nullptr) != 0) Fail("bind " + root);

  MakeDirs(root + "/proc");
  if (mount("proc", (root + "/proc").c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) !=
      0) {
    Fail("mount proc");
  }
  MakeDirs(root + "/dev");
  if (mount("tmpfs", (root + "/dev").c_str(), "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755") != 0) {
    Fail("mount /dev");
  }
  for (const char* dev : {"null", "zero", "full", "random", "urandom"}) {
    BindFile(std::string("/dev/") + dev, root + "/dev/" + dev);
  }
  // The runtime's files (hostNetwork, dnsPolicy: Default: the node's).
  MakeDirs(root + "/etc");
  for (const char* f : {"/etc/hosts", "/etc/resolv.conf"}) {
    if (access(f, R_OK) == 0) BindFile(f, root + f);
  }
  for (const auto& v : volumes) BindDir(v, root + v);
  // The socket's directory as the kubelet creates it (hostPath DirectoryOrCreate): root:root
  // 0755. Without CAP_DAC_OVERRIDE the broker, still root, can bind only where root may write.
  for (char* arg : broker_argv) {
    std::string a = arg != nullptr ? arg : "";
    if (a.rfind("--socket=", 0) != 0) continue;
    std::string dir = VolumeOf(a);
    if (!dir.empty() && (chown(dir.c_str(), 0, 0) != 0 || chmod(dir.c_str(), 0755) != 0)) {
      Fail("make " + dir + " root-owned");
    }
  }

  if (mount(nullptr, root.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
    Fail("remount " + root + " read-only");
  }
  if (chroot(root.c_str()) != 0 || chdir("/") != 0) Fail("chroot " + root);

  // The Pod's securityContext: allowPrivilegeEscalation: false, capabilities drop ALL, add
  // SETUID, SETGID, SETPCAP.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) Fail("PR_SET_NO_NEW_PRIVS");
  capng_clear(CAPNG_SELECT_BOTH);
  for (int cap : {CAP_SETUID, CAP_SETGID, CAP_SETPCAP}) {
    capng_update(CAPNG_ADD,
                 static_cast<capng_type_t>(CAPNG_EFFECTIVE | CAPNG_PERMITTED | CAPNG_BOUNDING_SET),
                 static_cast<unsigned>(cap));
  }
  if (capng_apply(CAPNG_SELECT_BOTH) != 0) Fail("cannot apply the capability sets");
  execve(broker_argv[0], broker_argv.data(), environ);
  Fail(std::string("execve ") + broker_argv[0]);
}
