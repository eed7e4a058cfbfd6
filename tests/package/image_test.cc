// The image `make image` builds, run: its root filesystem (unpacked by umoci, ctest fixture
// vkms_image_rootfs) holds everything the broker and the frontend need to serve, and nothing
// they do not load. image-root-exec starts the broker from it as the static Pod would.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "tests/integration/plugin_process.h"
#include "tests/integration/vault_env.h"
#include "tests/kmsclient/kms_client.h"

namespace vkms::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

const std::string kRoot = VKMS_IMAGE_ROOTFS;

std::string Link(const std::string& path) {
  std::error_code ec;
  fs::path target = fs::read_symlink(path, ec);
  return ec ? "" : target.string();
}

// The files (not anonymous mappings) a process has mapped, as this process sees their paths.
std::set<std::string> MappedFiles(pid_t pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::set<std::string> out;
  for (std::string line; std::getline(maps, line);) {
    size_t slash = line.find('/');
    if (slash != std::string::npos) out.insert(line.substr(slash));
  }
  return out;
}

// Every shared library in the image, by its real path.
std::set<std::string> ImageLibraries() {
  std::set<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(kRoot)) {
    if (e.is_regular_file() && !e.is_symlink() &&
        e.path().filename().string().find(".so") != std::string::npos) {
      out.insert(e.path().string());
    }
  }
  return out;
}

bool Root() {
  return geteuid() == 0;
}

TEST(ImageRunTest, BrokerVersionRunsInTheImageRoot) {
  if (!Root()) GTEST_SKIP() << "chroot and mount namespaces need root (CI runs as root)";
  ASSERT_TRUE(fs::is_regular_file(kRoot + "/usr/local/bin/vault-kms-broker")) << kRoot;
  Captured c = RunCaptured({VKMS_IMAGE_ROOT_EXEC, "--image-root=" + kRoot, "--version"});
  ASSERT_TRUE(WIFEXITED(c.status)) << c.err;
  EXPECT_EQ(WEXITSTATUS(c.status), 0) << c.err;
  EXPECT_EQ(c.out, "vault-kms " VKMS_TEST_VERSION "\n") << c.err;
}

// The static Pod's run, from the image's files only: Status, Encrypt and Decrypt served, Vault
// reached by name (the image's nsswitch.conf, the node's /etc/hosts), its TLS verified with the
// image's OpenSSL, each process under its own uid from the image's /etc/passwd; and every
// library in the image is one of them loads (the image holds nothing they do not need).
TEST(ImageRunTest, PluginServesFromTheImageRootAndLoadsEveryLibraryInIt) {
  if (!Root()) GTEST_SKIP() << "chroot and mount namespaces need root (CI runs as root)";
  VaultEnv vault;
  std::string err;
  ASSERT_TRUE(vault.Start(&err)) << err;
  if (!vault.is_sim()) GTEST_SKIP() << "runs against the simulator (https://localhost:PORT)";
  PluginOptions o = vault.DefaultPluginOptions();
  o.vault_addrs = {"https://localhost:" + std::to_string(vault.port())};
  o.broker_path = VKMS_IMAGE_ROOT_EXEC;
  o.extra_flags.push_back("--image-root=" + kRoot);
  o.extra_flags.push_back("--socket-group=0");
  o.extra_flags.push_back("--allowed-peer-uids=0");
  PluginProcess plugin(o);
  ASSERT_TRUE(plugin.Start(&err)) << err << "\n" << plugin.Logs();
  std::string last;
  ASSERT_TRUE(plugin.WaitHealthy(seconds(10), &last)) << last << "\n" << plugin.Logs();

  KmsClient kms(plugin.socket_path());
  v2::StatusResponse st;
  ASSERT_TRUE(kms.Status(&st).ok());
  EXPECT_EQ(st.healthz(), "ok");
  const std::string seed = RandomBytes(32);
  v2::EncryptResponse enc;
  grpc::Status s = kms.Encrypt(seed, RandomUid(), &enc);
  ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << plugin.Logs();
  v2::DecryptResponse dec;
  s = kms.Decrypt(enc.ciphertext(), enc.key_id(), RandomUid(), &dec);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(dec.plaintext(), seed);

  const pid_t broker = plugin.pid(), frontend = plugin.FrontendPid();
  ASSERT_GT(frontend, 0) << plugin.Logs();
  // Both run from the image: their root is the image's, the frontend was found next to the
  // broker inside it.
  const std::string real_root = fs::canonical(kRoot).string();
  EXPECT_EQ(Link("/proc/" + std::to_string(broker) + "/root"), real_root);
  EXPECT_EQ(Link("/proc/" + std::to_string(frontend) + "/root"), real_root);
  EXPECT_EQ(Link("/proc/" + std::to_string(frontend) + "/exe"),
            real_root + "/usr/local/bin/vault-kms-frontend");
  EXPECT_EQ(ProcStatusField(broker, "Uid").substr(0, 5), "65532");
  EXPECT_EQ(ProcStatusField(frontend, "Uid").substr(0, 5), "65533");

  std::set<std::string> mapped = MappedFiles(broker);
  for (const auto& f : MappedFiles(frontend)) mapped.insert(f);
  for (const auto& lib : ImageLibraries()) {
    EXPECT_TRUE(mapped.count(fs::canonical(lib).string()) != 0)
        << lib.substr(kRoot.size()) << " is in the image but neither process loads it";
  }
  for (const auto& f : mapped) {
    EXPECT_EQ(f.rfind(real_root + "/", 0), 0u) << f << " mapped from outside the image";
  }

  int status = plugin.Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status << "\n"
                                                             << plugin.Logs();
  EXPECT_EQ(plugin.Logs().find("seccomp violation"), std::string::npos) << plugin.Logs();
  EXPECT_EQ(plugin.Logs().find("Read-only file system"), std::string::npos) << plugin.Logs();
}

}  // namespace
}  // namespace vkms::testing
