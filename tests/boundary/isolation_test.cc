// Proofs of the isolation boundary against the real thing: the running broker and frontend
// (their /proc status), and the real lockdown functions applied to a probe process that then
// does what a compromised frontend or broker would try.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

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
  }
  if (geteuid() == 0) {
    EXPECT_NE(ProcStatusField(broker, "Uid"), ProcStatusField(frontend, "Uid"));
    EXPECT_EQ(ProcStatusField(broker, "Uid").substr(0, 5), std::to_string(kBrokerUid));
    EXPECT_EQ(ProcStatusField(frontend, "Uid").substr(0, 5), std::to_string(kFrontendUid));
  }
  // Non-dumpable: /proc/PID/mem and friends belong to root, not to the process's uid.
  struct stat st;
  ASSERT_EQ(stat(("/proc/" + std::to_string(broker) + "/mem").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
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

}  // namespace
}  // namespace vkms::testing
