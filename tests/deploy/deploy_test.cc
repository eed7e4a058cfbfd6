// deploy/ against the real binaries: the shipped Vault policy is all the plugin needs, and the
// plugin works inside the confinement deploy/vault-kms.service asks systemd for.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "tests/integration/plugin_process.h"
#include "tests/integration/vault_env.h"
#include "tests/kmsclient/kms_client.h"

namespace vkms::testing {
namespace {

using std::chrono::seconds;

std::vector<std::string> Words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// The value of `key=` in a systemd unit (continuation lines joined), "" if absent.
std::string UnitValue(const std::string& unit, const std::string& key) {
  std::istringstream in(unit);
  std::string logical;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\\') {
      logical += line.substr(0, line.size() - 1) + " ";
      continue;
    }
    logical += line;
    if (logical.rfind(key + "=", 0) == 0) return logical.substr(key.size() + 1);
    logical.clear();
  }
  return "";
}

// `names` with every @group expanded: by systemd-analyze where it is installed, otherwise from
// the systemd 252 (Debian 12) snapshot next to this file, which holds @system-service only.
bool ExpandSyscallFilter(const std::vector<std::string>& names, std::set<std::string>* out,
                         std::string* source, std::string* error) {
  std::map<std::string, std::vector<std::string>> groups;
  std::string tool;
  for (const char* p : {"/usr/bin/systemd-analyze", "/bin/systemd-analyze"}) {
    if (access(p, X_OK) == 0) {
      tool = p;
      break;
    }
  }
  if (!tool.empty()) {
    Captured c = RunCaptured({tool, "syscall-filter", "--no-pager"}, seconds(30));
    if (!WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0) {
      *error = "systemd-analyze syscall-filter failed: " + c.err;
      return false;
    }
    std::istringstream in(c.out);
    std::string current;
    for (std::string line; std::getline(in, line);) {
      std::vector<std::string> w = Words(line);
      if (w.empty() || w[0][0] == '#') continue;
      if (line[0] == '@') {
        current = w[0];
      } else if (!current.empty()) {
        groups[current].push_back(w[0]);
      }
    }
    *source = tool;
  } else {
    std::istringstream in(ReadFile(VKMS_SYSTEMD_SNAPSHOT));
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line[0] != '#') groups["@system-service"].push_back(line);
    }
    *source = VKMS_SYSTEMD_SNAPSHOT;
  }
  std::vector<std::string> todo = names;
  std::set<std::string> seen;
  while (!todo.empty()) {
    std::string n = todo.back();
    todo.pop_back();
    if (!seen.insert(n).second) continue;
    if (n[0] != '@') {
      out->insert(n);
    } else if (groups.count(n) != 0) {
      todo.insert(todo.end(), groups[n].begin(), groups[n].end());
    } else {
      *error = "unknown syscall group " + n + " (" + *source + ")";
      return false;
    }
  }
  return true;
}

bool KernelHasLandlock() {
  return syscall(444 /* landlock_create_ruleset */, nullptr, 0, 1U /* VERSION */) >= 1;
}

// Status, then Encrypt and Decrypt of a seed, as kube-apiserver calls them.
void RoundTrip(const std::string& socket, v2::StatusResponse* status,
               v2::EncryptResponse* encrypted, std::string* seed) {
  KmsClient kms(socket);
  grpc::Status s = kms.Status(status);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(status->version(), "v2");
  EXPECT_EQ(status->healthz(), "ok");
  ASSERT_FALSE(status->key_id().empty());
  *seed = RandomBytes(32);
  s = kms.Encrypt(*seed, RandomUid(), encrypted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(encrypted->key_id(), status->key_id());
  v2::DecryptResponse dec;
  s = kms.Decrypt(encrypted->ciphertext(), encrypted->key_id(), RandomUid(), &dec);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(dec.plaintext(), *seed);
}

// The first value given to `--flag=` in `text` (a manifest, a unit, a --help line), "" if none.
std::string FlagValue(const std::string& text, const std::string& flag) {
  size_t at = text.find(flag + "=");
  if (at == std::string::npos) return "";
  at += flag.size() + 1;
  return text.substr(at, text.find_first_of(" \t\n\\", at) - at);
}

// Issue 14 item 10: the broker's compiled default --socket, the path both deploy/ manifests give
// it and the one kube-apiserver's EncryptionConfiguration (and the README) name are one path.
TEST(DeploySocketTest, DefaultSocketIsThePathDeployUses) {
  Captured help = RunCaptured({BuildDir() + "/vault-kms-broker", "--help"});
  const std::string line = help.out.substr(help.out.find("  --socket=VALUE"));
  const std::string key = "(default ";
  ASSERT_NE(line.find(key), std::string::npos) << help.out;
  const std::string compiled = line.substr(
      line.find(key) + key.size(), line.find(')', line.find(key)) - line.find(key) - key.size());
  EXPECT_EQ(compiled, "unix:///var/run/kmsplugin/vault-kms.sock");
  EXPECT_EQ(FlagValue(ReadFile(VKMS_DEPLOY_DIR "/static-pod.yaml"), "--socket"), compiled);
  EXPECT_EQ(
      FlagValue(UnitValue(ReadFile(VKMS_DEPLOY_DIR "/vault-kms.service"), "ExecStart"), "--socket"),
      compiled);
  const std::string enc = ReadFile(VKMS_DEPLOY_DIR "/encryption-config.yaml");
  const std::string endpoint = "endpoint: ";
  ASSERT_NE(enc.find(endpoint), std::string::npos);
  EXPECT_EQ(enc.substr(enc.find(endpoint) + endpoint.size(),
                       enc.find('\n', enc.find(endpoint)) - enc.find(endpoint) - endpoint.size()),
            compiled);
  EXPECT_NE(ReadFile(VKMS_DEPLOY_DIR "/../README.md")
                .find("| `--socket` | `VAULT_KMS_SOCKET` | `" + compiled + "` |"),
            std::string::npos)
      << "README's flag table shows another default";
}

// deploy/vault/kms-policy.hcl, byte for byte, is the only policy of the plugin's token, and it
// is enough for everything kube-apiserver asks: Status, Encrypt, Decrypt, and following a key
// rotation (key metadata read, token looked up and renewed by the broker on its own).
TEST(DeployPolicyTest, ShippedPolicyAloneServesStatusEncryptDecryptAndRotation) {
  VaultEnv vault;
  std::string err;
  ASSERT_TRUE(vault.Start(&err)) << err;
  if (!vault.is_sim()) {
    GTEST_SKIP() << "the shipped policy names the mount transit and the key kms; against a real "
                    "Vault this test would write to those, so it runs against the simulator only";
  }
  // The file names transit/kms (and the token paths); VaultEnv uses exactly these names with
  // the simulator, so nothing in the file is substituted.
  ASSERT_EQ(vault.transit_mount(), "transit");
  ASSERT_EQ(vault.key(), "kms");
  ASSERT_EQ(vault.approle_mount(), "approle");
  const std::string hcl = ReadFile(VKMS_DEPLOY_DIR "/vault/kms-policy.hcl");
  ASSERT_NE(hcl.find("path \"transit/encrypt/kms\""), std::string::npos) << hcl;

  const std::string name = "vault-kms-deploy";
  VaultSetup& setup = vault.setup();
  setup.WritePolicy(name, hcl);
  EXPECT_EQ(setup.Expect("GET", "sys/policies/acl/" + name).json["data"]["policy"].asString(), hcl);
  // The role deploy/vault/setup.sh creates.
  Json::Value role(Json::objectValue);
  role["token_policies"].append(name);
  role["token_no_default_policy"] = true;
  role["token_type"] = "service";
  role["token_ttl"] = "1h";
  role["token_max_ttl"] = "24h";
  role["secret_id_ttl"] = "720h";
  role["secret_id_num_uses"] = 0;
  setup.CreateRole("approle", name, role);
  const std::string role_id = setup.ReadRoleId("approle", name);

  // Its token holds that policy and nothing else, and the policy is enforced: no rotation, no
  // other key, no key created through encrypt.
  const std::string token = setup.Login("approle", role_id, setup.NewSecretId("approle", name));
  HttpResult self = vault.http().Call("GET", "auth/token/lookup-self", Json::Value(), token);
  ASSERT_EQ(self.status, 200) << self.body;
  ASSERT_EQ(self.json["data"]["policies"].size(), 1u) << self.body;
  EXPECT_EQ(self.json["data"]["policies"][0].asString(), name);
  Json::Value plaintext(Json::objectValue);
  plaintext["plaintext"] = "aGVsbG8=";
  EXPECT_EQ(vault.http().Call("POST", "transit/keys/kms/rotate", Json::Value(), token).status, 403);
  EXPECT_EQ(vault.http().Call("POST", "transit/encrypt/kms2", plaintext, token).status, 403);
  EXPECT_EQ(vault.http().Call("GET", "transit/keys/other", Json::Value(), token).status, 403);

  PluginOptions o;
  o.vault_addrs = {vault.addr()};
  o.ca_file = vault.ca_file();
  o.role_id = role_id;
  o.secret_id = setup.NewSecretId("approle", name);
  // No --transit-mount, --transit-key or --approle-mount: the broker's defaults, which are the
  // names in the policy and in deploy/'s manifests.
  PluginProcess plugin(o);
  ASSERT_TRUE(plugin.Start(&err)) << err;
  std::string last;
  ASSERT_TRUE(plugin.WaitHealthy(seconds(10), &last)) << last << "\n" << plugin.Logs();

  v2::StatusResponse st;
  v2::EncryptResponse old_enc;
  std::string old_seed;
  RoundTrip(plugin.socket_path(), &st, &old_enc, &old_seed);
  if (HasFatalFailure()) return;
  EXPECT_EQ(old_enc.ciphertext().rfind("vault:v1:", 0), 0u);

  setup.Expect("POST", "transit/keys/kms/rotate");  // the operator, with their own token
  std::string new_key_id;
  ASSERT_TRUE(plugin.WaitKeyIdChange(st.key_id(), seconds(5), &new_key_id)) << plugin.Logs();
  KmsClient kms(plugin.socket_path());
  v2::EncryptResponse enc;
  ASSERT_TRUE(kms.Encrypt(RandomBytes(32), RandomUid(), &enc).ok());
  EXPECT_EQ(enc.key_id(), new_key_id);
  EXPECT_EQ(enc.ciphertext().rfind("vault:v2:", 0), 0u);
  v2::DecryptResponse dec;
  ASSERT_TRUE(kms.Decrypt(old_enc.ciphertext(), old_enc.key_id(), RandomUid(), &dec).ok());
  EXPECT_EQ(dec.plaintext(), old_seed) << "data written before the rotation still decrypts";
  EXPECT_EQ(plugin.Logs().find("permission denied"), std::string::npos) << plugin.Logs();
}

// The broker and the frontend start, serve and stop cleanly under deploy/vault-kms.service's
// SystemCallFilter= (stricter here: kill instead of EPERM), RestrictAddressFamilies=,
// MemoryDenyWriteExecute=, CapabilityBoundingSet= and NoNewPrivileges= (deploy-sandbox-exec).
TEST(DeployUnitSandboxTest, PluginServesUnderTheUnitsFiltersAndCapabilities) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "the sanitizer runtime makes calls of its own; the unit runs Release builds";
#endif
  const std::string unit = ReadFile(VKMS_DEPLOY_DIR "/vault-kms.service");
  const std::string filter = UnitValue(unit, "SystemCallFilter");
  const std::string bounding = UnitValue(unit, "CapabilityBoundingSet");
  ASSERT_FALSE(filter.empty());
  ASSERT_FALSE(bounding.empty());
  std::set<std::string> syscalls;
  std::string source, err;
  ASSERT_TRUE(ExpandSyscallFilter(Words(filter), &syscalls, &source, &err)) << err;
  ASSERT_GT(syscalls.size(), 100u) << source;

  char tmpl[] = "/tmp/vkms-deploy-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  struct RemoveDir {
    std::string path;
    ~RemoveDir() { std::filesystem::remove_all(path); }
  } remove_dir{dir};
  const std::string list = dir + "/syscalls";
  {
    std::ofstream out(list);
    for (const auto& s : syscalls) out << s << "\n";
  }
  chmod(dir.c_str(), 0755);
  chmod(list.c_str(), 0644);
  std::string caps;
  for (std::string cap : Words(bounding)) {
    ASSERT_EQ(cap.rfind("CAP_", 0), 0u) << cap;
    cap = cap.substr(4);
    std::transform(cap.begin(), cap.end(), cap.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    caps += (caps.empty() ? "" : ",") + cap;
  }

  VaultEnv vault;
  ASSERT_TRUE(vault.Start(&err)) << err;
  PluginOptions o = vault.DefaultPluginOptions();
  o.broker_path = VKMS_SANDBOX_EXEC;
  o.extra_flags.push_back("--sandbox-syscalls=" + list);
  o.extra_flags.push_back("--sandbox-caps=" + caps);
  if (geteuid() == 0) {
    // As in the unit: the socket's group set with chown (no CAP_CHOWN needed for group 0), and
    // only root may call (this test runs as root).
    o.extra_flags.push_back("--socket-group=0");
    o.extra_flags.push_back("--allowed-peer-uids=0");
  }
  PluginProcess plugin(o);
  ASSERT_TRUE(plugin.Start(&err)) << err;
  std::string last;
  ASSERT_TRUE(plugin.WaitHealthy(seconds(10), &last)) << last << "\n" << plugin.Logs();

  v2::StatusResponse st;
  v2::EncryptResponse enc;
  std::string seed;
  RoundTrip(plugin.socket_path(), &st, &enc, &seed);
  if (HasFatalFailure()) return;

  // The emulated filters are really in force in the running broker: three of them, plus its own.
  const std::string filters = ProcStatusField(plugin.pid(), "Seccomp_filters");
  if (!filters.empty()) {
    EXPECT_GE(atoi(filters.c_str()), 4) << "Seccomp_filters: " << filters;
  }
  EXPECT_EQ(ProcStatusField(plugin.pid(), "NoNewPrivs"), "1");
  if (KernelHasLandlock()) {
    EXPECT_NE(plugin.Logs().find("landlock applied"), std::string::npos) << plugin.Logs();
  }

  int status = plugin.Stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status << "\n"
                                                             << plugin.Logs();
  EXPECT_EQ(plugin.Logs().find("seccomp violation"), std::string::npos) << plugin.Logs();
}

}  // namespace
}  // namespace vkms::testing
