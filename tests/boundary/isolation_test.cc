// Proofs of the isolation boundary against the real thing: the running broker and frontend
// (their /proc status), and the real lockdown functions applied to a probe process that then
// does what a compromised frontend or broker would try.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "shared/hardening.h"
#include "shared/landlock.h"
#include "tests/integration/plugin_process.h"
#include "tests/integration/vault_env.h"

namespace vkms::testing {
namespace {

bool KilledBySigsys(const Captured& c) {
  return WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGSYS;
}

Captured RunProbe(std::vector<std::string> args) {
  args.insert(args.begin(), BuildDir() + "/confined-probe");
  return RunCaptured(args);
}

class IsolationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    ASSERT_TRUE(vault_.Start(&err)) << err;
    plugin_ = std::make_unique<PluginProcess>(vault_.DefaultPluginOptions());
    ASSERT_TRUE(plugin_->Start(&err)) << err;
    std::string last;
    ASSERT_TRUE(plugin_->WaitHealthy(std::chrono::seconds(10), &last)) << last;
  }

  // The flags the real broker was started with, pointing at this test's files.
  std::vector<std::string> BrokerFlags() {
    std::vector<std::string> f = {"--",
                                  "--socket=unix://" + plugin_->dir() + "/run/probe.sock",
                                  "--vault-addr=" + vault_.addr(),
                                  "--vault-ca-file=" + plugin_->dir() + "/creds/ca.pem",
                                  "--approle-role-id-file=" + plugin_->dir() + "/creds/role-id",
                                  "--approle-secret-id-file=" + plugin_->secret_id_path()};
    return f;
  }

  VaultEnv vault_;
  std::unique_ptr<PluginProcess> plugin_;
};

TEST_F(IsolationTest, BothRunningProcessesAreConfined) {
  pid_t broker = plugin_->pid(), frontend = plugin_->FrontendPid();
  ASSERT_GT(frontend, 0);
  for (pid_t pid : {broker, frontend}) {
    SCOPED_TRACE(pid == broker ? "broker" : "frontend");
    EXPECT_EQ(ProcStatusField(pid, "Seccomp"), "2") << "seccomp filter mode";
    EXPECT_EQ(ProcStatusField(pid, "NoNewPrivs"), "1");
    EXPECT_EQ(ProcStatusField(pid, "CapEff"), "0000000000000000");
    EXPECT_EQ(ProcStatusField(pid, "CapPrm"), "0000000000000000");
    EXPECT_EQ(ProcStatusField(pid, "CapInh"), "0000000000000000");
    EXPECT_EQ(ProcStatusField(pid, "CapAmb"), "0000000000000000");
    if (geteuid() == 0) {
      EXPECT_EQ(ProcStatusField(pid, "CapBnd"), "0000000000000000");
    }
    std::string limits = ReadFile("/proc/" + std::to_string(pid) + "/limits");
    EXPECT_NE(limits.find("Max core file size        0                    0"), std::string::npos)
        << limits;
    if (geteuid() == 0) {
      EXPECT_NE(limits.find("Max processes             256                  256"),
                std::string::npos)
          << limits;
    }
    if (pid == frontend) {
      // Its stderr is the broker's log pipe, never a file: no file may grow.
      EXPECT_NE(limits.find("Max file size             0                    0"), std::string::npos)
          << limits;
    }
  }
  if (geteuid() == 0) {
    EXPECT_NE(ProcStatusField(broker, "Uid"), ProcStatusField(frontend, "Uid"));
    EXPECT_EQ(ProcStatusField(broker, "Uid").substr(0, 5), std::to_string(kBrokerUid));
    EXPECT_EQ(ProcStatusField(frontend, "Uid").substr(0, 5), std::to_string(kFrontendUid));
  }
}

// Seccomp (loaded with TSYNC) and no_new_privs hold for every thread of both processes, not
// only the one that confined itself; the frontend has several (gRPC, the HTTP server, the
// broker reader), so a thread left out would show here.
TEST_F(IsolationTest, EveryThreadOfBothProcessesIsConfined) {
  for (pid_t pid : {plugin_->pid(), plugin_->FrontendPid()}) {
    ASSERT_GT(pid, 0);
    const std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
    int threads = 0;
    for (const auto& entry : std::filesystem::directory_iterator(task_dir)) {
      ++threads;
      const std::string status = ReadFile(entry.path().string() + "/status");
      SCOPED_TRACE(entry.path().string());
      EXPECT_NE(status.find("\nSeccomp:\t2\n"), std::string::npos) << status;
      EXPECT_NE(status.find("\nNoNewPrivs:\t1\n"), std::string::npos) << status;
      EXPECT_NE(status.find("\nCapEff:\t0000000000000000\n"), std::string::npos) << status;
    }
    if (pid == plugin_->FrontendPid()) {
      EXPECT_GE(threads, 3) << "too few threads to prove much";
    }
  }
}

TEST_F(IsolationTest, FrontendCannotOpenTheSecretIdFileEvenKnowingItsPath) {
  Captured r = RunProbe({"frontend", "open", plugin_->secret_id_path()});
  EXPECT_TRUE(WIFEXITED(r.status)) << r.err;
  EXPECT_NE(r.out.find("\"result\":\"errno:EACCES\""), std::string::npos) << r.out << r.err;
}

TEST_F(IsolationTest, FrontendCannotConnectToVault) {
  Captured r = RunProbe({"frontend", "connect", std::to_string(vault_.port())});
  EXPECT_TRUE(KilledBySigsys(r)) << r.out << r.err;
  EXPECT_NE(r.err.find("seccomp violation: syscall 41 (socket)"), std::string::npos) << r.err;
}

TEST_F(IsolationTest, FrontendCannotPtraceOrReadTheBrokersMemory) {
  std::string broker = std::to_string(plugin_->pid());
  Captured t = RunProbe({"frontend", "ptrace", broker});
  EXPECT_TRUE(KilledBySigsys(t)) << t.out << t.err;
  EXPECT_NE(t.err.find("(ptrace)"), std::string::npos) << t.err;
  Captured m = RunProbe({"frontend", "readmem", broker});
  EXPECT_NE(m.out.find("\"result\":\"errno:EACCES\""), std::string::npos) << m.out << m.err;
}

// The same attempts without seccomp, from the frontend's uid (when root) or the shared uid:
// the broker being non-dumpable is enough on its own (defence in depth).
TEST_F(IsolationTest, NonDumpableBrokerResistsPtraceEvenWithoutSeccomp) {
  pid_t broker = plugin_->pid();
  pid_t child = fork();
  if (child == 0) {
    std::string err;
    if (geteuid() == 0 &&
        !hardening::SwitchUserAndClearCapabilities(kFrontendUid, kFrontendUid, &err))
      _exit(10);
    if (ptrace(PTRACE_ATTACH, broker, 0, 0) == 0) _exit(11);
    if (open(("/proc/" + std::to_string(broker) + "/mem").c_str(), O_RDONLY) >= 0) _exit(12);
    if (open(("/proc/" + std::to_string(broker) + "/environ").c_str(), O_RDONLY) >= 0) _exit(13);
    _exit(0);
  }
  int status;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "10: uid switch failed, 11: ptrace attached, 12: mem opened, "
         "13: environ opened";
}

TEST_F(IsolationTest, BrokerCannotExec) {
  auto args = BrokerFlags();
  args.insert(args.begin(), {"broker", "exec"});
  Captured r = RunProbe(args);
  EXPECT_TRUE(KilledBySigsys(r)) << r.out << r.err;
  EXPECT_NE(r.err.find("(execve)"), std::string::npos) << r.err;
}

TEST_F(IsolationTest, BrokerCannotWriteFiles) {
  auto args = BrokerFlags();
  args.insert(args.begin(), {"broker", "write", plugin_->dir() + "/creds/stolen"});
  Captured r = RunProbe(args);
  EXPECT_TRUE(KilledBySigsys(r)) << r.out << r.err;
  EXPECT_NE(r.err.find("(openat)"), std::string::npos) << r.err;
}

TEST_F(IsolationTest, BrokerReadsOnlyItsOwnFiles) {
  if (landlock::Abi() < 1) GTEST_SKIP() << "kernel without Landlock";
  auto ok = BrokerFlags();
  ok.insert(ok.begin(), {"broker", "open", plugin_->secret_id_path()});
  Captured r = RunProbe(ok);
  EXPECT_NE(r.out.find("\"result\":\"ok\""), std::string::npos) << r.out << r.err;
  auto denied = BrokerFlags();
  denied.insert(denied.begin(), {"broker", "open", "/etc/hostname"});
  r = RunProbe(denied);
  EXPECT_NE(r.out.find("\"result\":\"errno:EACCES\""), std::string::npos) << r.out << r.err;
}

TEST_F(IsolationTest, BrokerConnectsOnlyToVaultPorts) {
  if (landlock::Abi() < 4) GTEST_SKIP() << "kernel without Landlock TCP rules (ABI 4)";
  SimProcess other;  // a listener on another port
  std::string err;
  ASSERT_TRUE(other.Start({}, &err)) << err;
  auto denied = BrokerFlags();
  denied.insert(denied.begin(), {"broker", "connect", std::to_string(other.port())});
  Captured r = RunProbe(denied);
  EXPECT_NE(r.out.find("\"result\":\"errno:EACCES\""), std::string::npos) << r.out << r.err;
  auto allowed = BrokerFlags();
  allowed.insert(allowed.begin(), {"broker", "connect", std::to_string(vault_.port())});
  r = RunProbe(allowed);
  EXPECT_NE(r.out.find("\"result\":\"ok\""), std::string::npos) << r.out << r.err;
}

// Non-dumpable keeps ptrace and /proc/PID/mem away from peers of the same uid: the kernel then
// gives /proc/PID/* to root instead of the process's uid. Started as root, the uid change
// alone would also clear the flag, so a non-root start is checked too: there only the explicit
// PR_SET_DUMPABLE can. Both processes, each mode.
TEST(NonDumpable, BothProcessesWhetherStartedAsRootOrNot) {
  VaultEnv vault;
  std::string err;
  ASSERT_TRUE(vault.Start(&err)) << err;
  std::vector<uid_t> modes = {0};
  if (geteuid() == 0) modes.push_back(65534);  // nobody: a non-root start, run from a root test
  for (uid_t run_as : modes) {
    SCOPED_TRACE(run_as == 0 ? "started as the test's user" : "started as uid 65534");
    PluginOptions o = vault.DefaultPluginOptions();
    o.run_as_uid = run_as;
    PluginProcess plugin(o);
    ASSERT_TRUE(plugin.Start(&err)) << err;
    for (pid_t pid : {plugin.pid(), plugin.FrontendPid()}) {
      ASSERT_GT(pid, 0);
      SCOPED_TRACE(pid == plugin.pid() ? "broker" : "frontend");
      const std::string uid = ProcStatusField(pid, "Uid");
      ASSERT_FALSE(uid.empty());
      EXPECT_NE(uid.rfind("0\t", 0), 0u) << "runs as root: " << uid;
      struct stat st;
      ASSERT_EQ(stat(("/proc/" + std::to_string(pid) + "/mem").c_str(), &st), 0);
      EXPECT_EQ(st.st_uid, 0u) << "/proc/PID/mem belongs to uid " << st.st_uid
                               << ": the process is dumpable";
    }
    plugin.Stop();
  }
}

// Landlock binds the calling thread and the threads it creates later, never those that exist
// already; so the frontend must confine itself before it creates any. Here the real frontend
// runs with its seccomp filter stubbed out (thread_probe_shim.cc, LD_PRELOAD) so that only
// Landlock can deny, and every thread it creates tries to open a file and connect over TCP as
// it starts (a file for reading, one for writing): all must be refused (EACCES).
TEST(FrontendThreads, EveryThreadItCreatesIsBornInsideLandlock) {
  if (landlock::Abi() < 4) GTEST_SKIP() << "needs Landlock ABI 4 (files and TCP)";
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  int kms = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un ua = {};
  ua.sun_family = AF_UNIX;  // autobind: an abstract name
  ASSERT_EQ(bind(kms, reinterpret_cast<struct sockaddr*>(&ua), sizeof(sa_family_t)), 0);
  ASSERT_EQ(listen(kms, 4), 0);
  int metrics = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in ia = {};
  ia.sin_family = AF_INET;
  ia.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(metrics, reinterpret_cast<struct sockaddr*>(&ia), sizeof ia), 0);
  ASSERT_EQ(listen(metrics, 4), 0);
  socklen_t len = sizeof ia;
  ASSERT_EQ(getsockname(metrics, reinterpret_cast<struct sockaddr*>(&ia), &len), 0);
  const std::string port = std::to_string(ntohs(ia.sin_port));  // the TCP target of the probes
  int out[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);

  const std::string frontend = BuildDir() + "/vault-kms-frontend";
  const std::string preload = "LD_PRELOAD=" + BuildDir() + "/libthread-probe-shim.so";
  const std::string probe_port = "VKMS_PROBE_PORT=" + port;
  struct sockaddr_un bound = {};
  socklen_t bound_len = sizeof bound;
  ASSERT_EQ(getsockname(kms, reinterpret_cast<struct sockaddr*>(&bound), &bound_len), 0);
  ASSERT_GT(bound_len, offsetof(struct sockaddr_un, sun_path) + 1);
  const std::string probe_abstract =
      "VKMS_PROBE_ABSTRACT=" +
      std::string(bound.sun_path + 1, bound_len - offsetof(struct sockaddr_un, sun_path) - 1);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    if (dup2(devnull, 0) < 0 || dup2(out[1], 1) < 0 || dup2(out[1], 2) < 0 ||
        dup2(pair[1], 3) < 0 || dup2(kms, 4) < 0 || dup2(metrics, 5) < 0) {
      _exit(126);
    }
    const char* argv[] = {frontend.c_str(), "--log-level=info", nullptr};
    // The shim is built without sanitizers; an instrumented frontend must accept it first.
    const char* envp[] = {preload.c_str(), probe_port.c_str(), probe_abstract.c_str(),
                          "ASAN_OPTIONS=verify_asan_link_order=0", nullptr};
    execve(argv[0], const_cast<char**>(argv), const_cast<char**>(envp));
    _exit(127);
  }
  close(out[1]);
  close(pair[1]);
  std::string output;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (output.find("frontend serving") == std::string::npos &&
         std::chrono::steady_clock::now() < until) {
    struct pollfd p = {out[0], POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    char buf[4096];
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    output.append(buf, static_cast<size_t>(n));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // late threads' probe lines
  struct pollfd p = {out[0], POLLIN, 0};
  while (poll(&p, 1, 0) > 0) {
    char buf[4096];
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    output.append(buf, static_cast<size_t>(n));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  close(out[0]);
  close(pair[0]);
  close(kms);
  close(metrics);

  ASSERT_NE(output.find("frontend serving"), std::string::npos) << output;
  ASSERT_NE(output.find("seccomp_load_skipped"), std::string::npos)
      << "the shim was not loaded: nothing below would be Landlock's doing\n"
      << output;
  int threads = 0;
  std::istringstream in(output);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("\"probe\":\"thread\"") == std::string::npos) continue;
    ++threads;
    EXPECT_NE(line.find("\"open\":\"EACCES\""), std::string::npos)
        << "a frontend thread can open files: it was created outside Landlock\n"
        << line;
    EXPECT_NE(line.find("\"open_write\":\"EACCES\""), std::string::npos)
        << "a frontend thread can open files for writing: Landlock does not handle writes\n"
        << line;
    EXPECT_NE(line.find("\"connect\":\"EACCES\""), std::string::npos)
        << "a frontend thread can connect over TCP: it was created outside Landlock\n"
        << line;
    if (landlock::Abi() >= 6) {
      EXPECT_NE(line.find("\"abstract\":\"EPERM\""), std::string::npos)
          << "a frontend thread can reach an abstract unix socket made outside its Landlock "
             "domain (scopes, ABI 6)\n"
          << line;
    }
  }
  EXPECT_GE(threads, 3) << "gRPC, the HTTP server and the broker reader each create threads\n"
                        << output;
}

}  // namespace
}  // namespace vkms::testing
