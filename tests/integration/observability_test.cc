// What an operator's tools see of the real plugin: configuration from the environment alone,
// the JSON log lines per call, the /metrics exposition (checked by promtool) and the monitoring
// files of deploy/monitoring against that exposition.
#include <gtest/gtest.h>
#include <json/json.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "tests/integration/plugin_fixture.h"
#include "tests/integration/plugin_process.h"
#include "tests/kmsclient/kms_client.h"

namespace vkms::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class ObservabilityTest : public PluginFixture {};

// Every line both processes wrote, parsed; a line that is not one JSON object fails the test.
std::vector<Json::Value> LogLines(const std::string& logs) {
  std::vector<Json::Value> out;
  std::istringstream in(logs);
  std::string line;
  Json::CharReaderBuilder b;
  b["failIfExtra"] = true;
  std::unique_ptr<Json::CharReader> reader(b.newCharReader());
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    Json::Value v;
    std::string errs;
    EXPECT_TRUE(reader->parse(line.data(), line.data() + line.size(), &v, &errs) && v.isObject())
        << "not a JSON object: " << line;
    out.push_back(v);
  }
  return out;
}

std::vector<Json::Value> LinesWithUid(const std::vector<Json::Value>& lines,
                                      const std::string& uid) {
  std::vector<Json::Value> out;
  for (const auto& l : lines) {
    if (l["uid"].asString() == uid) out.push_back(l);
  }
  return out;
}

bool AtLeast(const Json::Value& line, const std::string& level) {
  static const std::map<std::string, int> rank = {
      {"debug", 0}, {"info", 1}, {"warning", 2}, {"error", 3}, {"fatal", 4}};
  auto it = rank.find(line["level"].asString());
  return it != rank.end() && it->second >= rank.at(level);
}

// The broker logs a call after sending its reply: wait until a line carries each uid.
std::vector<Json::Value> WaitForLines(PluginProcess* plugin, const std::vector<std::string>& uids) {
  auto until = std::chrono::steady_clock::now() + seconds(5);
  std::vector<Json::Value> lines;
  for (;;) {
    lines = LogLines(plugin->Logs());
    size_t seen = 0;
    for (const auto& uid : uids) seen += LinesWithUid(lines, uid).empty() ? 0 : 1;
    if (seen == uids.size() || std::chrono::steady_clock::now() > until) return lines;
    std::this_thread::sleep_for(milliseconds(20));
  }
}

// The plugin configured by VAULT_KMS_* variables alone: no flag on its command line.
TEST_F(ObservabilityTest, StartsConfiguredOnlyByTheEnvironment) {
  PluginOptions o = Options();
  o.configure_by_environment = true;
  auto plugin = StartPlugin(o);
  std::string cmdline = ReadFile("/proc/" + std::to_string(plugin->pid()) + "/cmdline");
  EXPECT_EQ(cmdline.find("--"), std::string::npos) << "flags on the command line: " << cmdline;

  KmsClient kms(plugin->socket_path());
  v2::EncryptResponse enc;
  std::string seed = RandomBytes(32);
  ASSERT_TRUE(kms.Encrypt(seed, RandomUid(), &enc).ok()) << plugin->Logs();
  v2::DecryptResponse dec;
  ASSERT_TRUE(kms.Decrypt(enc.ciphertext(), enc.key_id(), RandomUid(), &dec).ok());
  EXPECT_EQ(dec.plaintext(), seed);
  EXPECT_EQ(HttpGet(plugin->metrics_port(), "/readyz").first, 200);

  // The frontend still starts with an empty environment: nothing of the broker's is passed on.
  pid_t fe = plugin->FrontendPid();
  ASSERT_GT(fe, 0);
  std::ifstream environ("/proc/" + std::to_string(fe) + "/environ");
  if (environ.is_open()) {
    std::string env((std::istreambuf_iterator<char>(environ)), std::istreambuf_iterator<char>());
    EXPECT_TRUE(env.empty()) << "frontend environment: " << env;
  }
}

// KMS v2 makes Encrypt and Decrypt rare (the apiserver caches DEK seeds), so each gets exactly
// one info line, from the broker, with typed fields; Status, polled all the time, none.
TEST_F(ObservabilityTest, OneInfoLinePerEncryptAndDecryptAndNoneForStatus) {
  PluginOptions o = Options();
  o.log_level = "info";
  auto plugin = StartPlugin(o);
  KmsClient kms(plugin->socket_path());
  std::vector<std::string> encrypt_uids, decrypt_uids;
  for (int i = 0; i < 3; ++i) {
    v2::StatusResponse st;
    ASSERT_TRUE(kms.Status(&st).ok());
    v2::EncryptResponse enc;
    encrypt_uids.push_back(RandomUid());
    ASSERT_TRUE(kms.Encrypt(RandomBytes(32), encrypt_uids.back(), &enc).ok());
    v2::DecryptResponse dec;
    decrypt_uids.push_back(RandomUid());
    ASSERT_TRUE(kms.Decrypt(enc.ciphertext(), enc.key_id(), decrypt_uids.back(), &dec).ok());
  }
  std::vector<std::string> uids = encrypt_uids;
  uids.insert(uids.end(), decrypt_uids.begin(), decrypt_uids.end());
  std::vector<Json::Value> lines = WaitForLines(plugin.get(), uids);

  for (const auto& uid : uids) {
    bool encrypt = std::find(encrypt_uids.begin(), encrypt_uids.end(), uid) != encrypt_uids.end();
    std::vector<Json::Value> mine = LinesWithUid(lines, uid);
    ASSERT_EQ(mine.size(), 1u) << "one line per call at info, for " << uid << "\n"
                               << plugin->Logs();
    const Json::Value& l = mine[0];
    EXPECT_EQ(l["level"].asString(), "info") << l;
    EXPECT_EQ(l["proc"].asString(), "vault-kms-broker") << l;
    EXPECT_EQ(l["op"].asString(), encrypt ? "Encrypt" : "Decrypt") << l;
    EXPECT_EQ(l["code"].asString(), "OK") << l;
    ASSERT_TRUE(l["key_version"].isUInt64()) << "a JSON number: " << l;
    EXPECT_EQ(l["key_version"].asUInt64(), 1u) << l;
    ASSERT_TRUE(l["duration_us"].isUInt64()) << "a JSON number: " << l;
    EXPECT_LT(l["duration_us"].asUInt64(), 3000000u) << l;
  }
  for (const auto& l : lines) {
    if (!AtLeast(l, "info")) continue;
    EXPECT_NE(l["rpc"].asString(), "Status") << l;
    EXPECT_NE(l["op"].asString(), "Status") << l;
    // Every number the plugin logs is a JSON number.
    for (const char* field :
         {"duration_us", "key_version", "metrics_port", "frontend_pid", "lease_s", "abi"}) {
      if (l.isMember(field)) {
        EXPECT_TRUE(l[field].isNumeric()) << field << " in " << l;
      }
    }
  }
}

// A failure is logged once, by the process that knows its cause: the broker for what Vault
// refused, the frontend for what it refused before asking the broker.
TEST_F(ObservabilityTest, AFailureIsLoggedOnceByTheProcessThatKnowsItsCause) {
  PluginOptions o = Options();
  o.log_level = "info";
  auto plugin = StartPlugin(o);
  KmsClient kms(plugin->socket_path());
  v2::EncryptResponse enc;
  ASSERT_TRUE(kms.Encrypt(RandomBytes(32), RandomUid(), &enc).ok());

  // Vault refuses a ciphertext whose payload was changed (the broker knows why).
  std::string tampered = enc.ciphertext();
  tampered[20] = tampered[20] == 'A' ? 'B' : 'A';
  const std::string vault_refused = RandomUid();
  v2::DecryptResponse dec;
  EXPECT_FALSE(kms.Decrypt(tampered, enc.key_id(), vault_refused, &dec).ok());
  // Not Vault ciphertext at all: the frontend refuses it before the broker sees it.
  const std::string frontend_refused = RandomUid();
  EXPECT_FALSE(kms.Decrypt("not-vault-ciphertext", enc.key_id(), frontend_refused, &dec).ok());

  std::vector<Json::Value> lines = WaitForLines(plugin.get(), {vault_refused, frontend_refused});
  std::this_thread::sleep_for(milliseconds(200));  // a second line would come right after
  lines = LogLines(plugin->Logs());
  struct Case {
    std::string uid, proc;
  };
  for (const Case& c :
       {Case{vault_refused, "vault-kms-broker"}, Case{frontend_refused, "vault-kms-frontend"}}) {
    std::vector<Json::Value> mine = LinesWithUid(lines, c.uid);
    ASSERT_EQ(mine.size(), 1u) << "one line for one failure (" << c.proc << ")\n" << plugin->Logs();
    EXPECT_EQ(mine[0]["level"].asString(), "warning") << mine[0];
    EXPECT_EQ(mine[0]["proc"].asString(), c.proc) << mine[0];
    EXPECT_EQ(mine[0]["code"].asString(), "INVALID_ARGUMENT") << mine[0];
    EXPECT_FALSE(mine[0]["error"].asString().empty()) << mine[0];
  }
}

// The series names of a Prometheus text exposition: the name of every sample line, with the
// histograms' _bucket, _count and _sum suffixes kept.
std::set<std::string> SeriesNames(const std::string& exposition) {
  std::set<std::string> names;
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    names.insert(line.substr(0, line.find_first_of("{ ")));
  }
  return names;
}

// One sample's value: `series` is the name with its labels as the exposition prints them.
double Sample(const std::string& exposition, const std::string& series) {
  size_t at = exposition.find("\n" + series + " ");
  return at == std::string::npos ? -1 : atof(exposition.c_str() + at + series.size() + 2);
}

std::string ScrapeAfterSomeCalls(PluginProcess* plugin) {
  KmsClient kms(plugin->socket_path());
  v2::StatusResponse st;
  EXPECT_TRUE(kms.Status(&st).ok());
  v2::EncryptResponse enc;
  EXPECT_TRUE(kms.Encrypt(RandomBytes(32), RandomUid(), &enc).ok());
  v2::DecryptResponse dec;
  EXPECT_TRUE(kms.Decrypt(enc.ciphertext(), enc.key_id(), RandomUid(), &dec).ok());
  EXPECT_FALSE(kms.Decrypt("not-vault-ciphertext", enc.key_id(), RandomUid(), &dec).ok());
  auto [status, body] = HttpGet(plugin->metrics_port(), "/metrics");
  EXPECT_EQ(status, 200);
  return body;
}

// promtool lints the exposition (names, units, HELP, TYPE, counters' _total): it must pass with
// nothing to say.
TEST_F(ObservabilityTest, MetricsPassPromtoolAndCarryBothProcesses) {
  ASSERT_STRNE(VKMS_PROMTOOL, "") << "promtool not found: install the prometheus package";
  auto plugin = StartPlugin(Options());
  const std::string body = ScrapeAfterSomeCalls(plugin.get());

  char path[] = "/tmp/vkms-metrics-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
  close(fd);
  Captured lint = RunCaptured(
      {"/bin/sh", "-c", std::string("exec ") + VKMS_PROMTOOL + " check metrics < " + path});
  unlink(path);
  EXPECT_TRUE(WIFEXITED(lint.status) && WEXITSTATUS(lint.status) == 0)
      << lint.out << lint.err << "\n"
      << body;
  EXPECT_EQ(lint.out + lint.err, "") << body;

  // HashiCorp's labels for its plugin's rpc_server_duration_milliseconds, in seconds.
  EXPECT_EQ(Sample(body,
                   "rpc_server_call_duration_seconds_count{rpc_grpc_status_code=\"0\",rpc_method="
                   "\"Encrypt\",rpc_service=\"v2.KeyManagementService\"}"),
            1);
  EXPECT_EQ(Sample(body,
                   "rpc_server_call_duration_seconds_count{rpc_grpc_status_code=\"3\",rpc_method="
                   "\"Decrypt\",rpc_service=\"v2.KeyManagementService\"}"),
            1);

  // Both processes' standard process_* figures, read after lockdown through the fds opened
  // before it.
  const double now = static_cast<double>(time(nullptr));
  for (const std::string proc : {"frontend", "broker"}) {
    SCOPED_TRACE(proc);
    const std::string label = "{process=\"" + proc + "\"}";
    EXPECT_GT(Sample(body, "process_resident_memory_bytes" + label), 1e6) << body;
    EXPECT_GT(Sample(body, "process_virtual_memory_bytes" + label),
              Sample(body, "process_resident_memory_bytes" + label));
    EXPECT_GE(Sample(body, "process_cpu_seconds_total" + label), 0);
    EXPECT_GE(Sample(body, "process_open_fds" + label), 4);  // stdio, and at least the socket
    EXPECT_GT(Sample(body, "process_max_fds" + label), 4);
    double started = Sample(body, "process_start_time_seconds" + label);
    EXPECT_GT(started, now - 300) << "started within the test";
    EXPECT_LE(started, now + 2);
  }
}

// Every metric the alerting rules and the Grafana dashboard name is one the plugin exposes, and
// the dashboard shows every metric family the plugin exposes.
TEST_F(ObservabilityTest, MonitoringMatchesTheExposition) {
  auto plugin = StartPlugin(Options());
  const std::string body = ScrapeAfterSomeCalls(plugin.get());
  const std::set<std::string> exposed = SeriesNames(body);
  ASSERT_GT(exposed.size(), 10u) << body;

  // Families as the exposition declares them (# TYPE name type).
  std::set<std::string> families;
  std::regex type_line("^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) ");
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_search(line, m, type_line)) families.insert(m[1]);
  }

  // Any word shaped like one of the plugin's metric names (`up` is Prometheus' own).
  std::regex metric("\\b((?:rpc_server|vault_kms|process)_[a-z0-9_]+)");
  auto names_in = [&](const std::string& file) {
    std::set<std::string> names;
    std::string text = ReadFile(std::string(VKMS_MONITORING_DIR) + "/" + file);
    EXPECT_FALSE(text.empty()) << file;
    for (std::sregex_iterator it(text.begin(), text.end(), metric), end; it != end; ++it) {
      names.insert((*it)[1]);
    }
    return names;
  };
  std::set<std::string> dashboard = names_in("vault-kms-dashboard.json");
  for (const char* file : {"vault-kms-alerts.yaml", "vault-kms-dashboard.json"}) {
    for (const auto& name : names_in(file)) {
      EXPECT_EQ(exposed.count(name), 1u) << file << " uses " << name << ", not exposed";
    }
  }
  for (const auto& family : families) {
    bool shown = false;
    for (const char* suffix : {"", "_bucket", "_count", "_sum"}) {
      shown = shown || dashboard.count(family + suffix) > 0;
    }
    EXPECT_TRUE(shown) << "the dashboard does not show " << family;
  }

  // The dashboard is valid JSON.
  Json::Value dash;
  Json::CharReaderBuilder b;
  b["failIfExtra"] = true;
  std::string errs, text = ReadFile(std::string(VKMS_MONITORING_DIR) + "/vault-kms-dashboard.json");
  std::unique_ptr<Json::CharReader> reader(b.newCharReader());
  EXPECT_TRUE(reader->parse(text.data(), text.data() + text.size(), &dash, &errs)) << errs;
}

// The README's metric table is the reference: every family exposed is there with its type and
// labels, and nothing else is.
TEST_F(ObservabilityTest, ReadmeDocumentsEveryMetric) {
  auto plugin = StartPlugin(Options());
  const std::string body = ScrapeAfterSomeCalls(plugin.get());

  std::map<std::string, std::string> types;             // family -> type
  std::map<std::string, std::set<std::string>> labels;  // family -> label names
  std::regex type_line("^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) ([a-z]+)");
  std::regex label("([a-zA-Z_][a-zA-Z0-9_]*)=\"");
  // The text format groups a family's samples under its # TYPE line.
  std::istringstream in(body);
  std::string family;
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_search(line, m, type_line)) {
      family = m[1];
      types[family] = m[2];
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    std::string series = line.substr(0, line.rfind(' '));
    for (std::sregex_iterator it(series.begin(), series.end(), label), end; it != end; ++it) {
      if ((*it)[1] != "le") labels[family].insert((*it)[1]);
    }
  }
  ASSERT_GT(types.size(), 10u) << body;

  std::string readme = ReadFile(VKMS_README);
  size_t from = readme.find("\n### Metrics\n"), to = readme.find("\n### ", from + 1);
  ASSERT_NE(from, std::string::npos);
  std::istringstream table(readme.substr(from, to - from));
  std::map<std::string, std::pair<std::string, std::string>> documented;  // type, labels cells
  for (std::string line; std::getline(table, line);) {
    if (line.rfind("| `", 0) != 0) continue;
    std::vector<std::string> cells;
    std::istringstream row(line.substr(1));
    for (std::string cell; std::getline(row, cell, '|');) cells.push_back(cell);
    if (cells.size() != 4) continue;  // the metric table has four columns, the mapping two
    std::string name = cells[0].substr(cells[0].find('`') + 1);
    name.resize(name.find('`'));
    documented[name] = {cells[1], cells[2]};
  }
  for (const auto& [family, type] : types) {
    SCOPED_TRACE(family);
    ASSERT_EQ(documented.count(family), 1u) << "not in the README's metric table";
    EXPECT_EQ(documented[family].first.find(" " + type), 0u) << documented[family].first;
    for (const auto& l : labels[family]) {
      EXPECT_NE(documented[family].second.find("`" + l + "`"), std::string::npos)
          << "label " << l << " not documented";
    }
  }
  for (const auto& [name, cells] : documented) {
    EXPECT_EQ(types.count(name), 1u) << "the README documents " << name << ", not exposed";
  }
}

}  // namespace
}  // namespace vkms::testing
