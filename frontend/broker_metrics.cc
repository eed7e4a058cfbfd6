#include "frontend/broker_metrics.h"

#include <limits>
#include <string>

#include "shared/vault_metrics.h"

namespace vkms::frontend {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Family(const std::string& name, const std::string& help, MetricType type) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

ClientMetric Value(MetricType type, double v, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (type == MetricType::Counter) {
    m.counter.value = v;
  } else {
    m.gauge.value = v;
  }
  return m;
}

MetricFamily Single(const std::string& name, const std::string& help, MetricType type, double v) {
  MetricFamily f = Family(name, help, type);
  f.metric.push_back(Value(type, v));
  return f;
}

MetricFamily ByResult(const std::string& name, const std::string& help, uint64_t ok,
                      uint64_t failed) {
  MetricFamily f = Family(name, help, MetricType::Counter);
  f.metric.push_back(Value(MetricType::Counter, static_cast<double>(ok), {{"result", "success"}}));
  f.metric.push_back(
      Value(MetricType::Counter, static_cast<double>(failed), {{"result", "failure"}}));
  return f;
}

}  // namespace

MetricFamily BuildInfoFamily() {
  MetricFamily f =
      Family("vault_kms_build_info", "Build of vault-kms serving this endpoint", MetricType::Gauge);
  f.metric.push_back(Value(MetricType::Gauge, 1, {{"version", VKMS_VERSION}}));
  return f;
}

std::vector<MetricFamily> ProcessFamilies(const process_metrics::Sample* frontend,
                                          const ipc::ProcessSample* broker) {
  std::vector<MetricFamily> out;
  if (frontend == nullptr && broker == nullptr) return out;
  process_metrics::Sample b;
  if (broker != nullptr) {
    b.cpu_seconds = broker->cpu_seconds();
    b.resident_bytes = broker->resident_bytes();
    b.virtual_bytes = broker->virtual_bytes();
    b.open_fds = broker->open_fds();
    b.max_fds = broker->max_fds();
    b.start_time_seconds = broker->start_time_seconds();
  }
  // The names and meanings of the Prometheus client libraries' process collector; one series
  // per process, told apart by the `process` label.
  struct Row {
    const char* name;
    const char* help;
    MetricType type;
    double (*get)(const process_metrics::Sample&);
  };
  static const Row kRows[] = {
      {"process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
       MetricType::Counter, [](const process_metrics::Sample& p) { return p.cpu_seconds; }},
      {"process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge,
       [](const process_metrics::Sample& p) { return static_cast<double>(p.resident_bytes); }},
      {"process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge,
       [](const process_metrics::Sample& p) { return static_cast<double>(p.virtual_bytes); }},
      {"process_open_fds", "Number of open file descriptors.", MetricType::Gauge,
       [](const process_metrics::Sample& p) { return static_cast<double>(p.open_fds); }},
      {"process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge,
       [](const process_metrics::Sample& p) { return static_cast<double>(p.max_fds); }},
      {"process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
       MetricType::Gauge, [](const process_metrics::Sample& p) { return p.start_time_seconds; }},
  };
  for (const Row& row : kRows) {
    MetricFamily f = Family(row.name, row.help, row.type);
    if (frontend != nullptr) {
      f.metric.push_back(Value(row.type, row.get(*frontend), {{"process", "frontend"}}));
    }
    if (broker != nullptr) f.metric.push_back(Value(row.type, row.get(b), {{"process", "broker"}}));
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<MetricFamily> BrokerFamilies(const ipc::StatsReply* s) {
  std::vector<MetricFamily> out;
  out.push_back(Single("vault_kms_broker_up", "1 if the broker answered the scrape",
                       MetricType::Gauge, s != nullptr ? 1 : 0));
  process_metrics::Sample own;
  bool have_own = process_metrics::Read(&own);
  for (auto& f : ProcessFamilies(have_own ? &own : nullptr,
                                 s != nullptr && s->has_process() ? &s->process() : nullptr)) {
    out.push_back(std::move(f));
  }
  if (s == nullptr) return out;
  out.push_back(ByResult("vault_kms_vault_logins_total", "Vault logins by the broker",
                         s->logins_ok(), s->logins_failed()));
  out.push_back(ByResult("vault_kms_vault_token_renewals_total", "Vault token renewals",
                         s->renewals_ok(), s->renewals_failed()));
  out.push_back(ByResult("vault_kms_key_metadata_refreshes_total",
                         "Reads of the transit key's metadata", s->key_refreshes_ok(),
                         s->key_refreshes_failed()));
  out.push_back(Single("vault_kms_vault_token_ttl_seconds",
                       "Remaining TTL of the broker's Vault token (-1: none or no expiry)",
                       MetricType::Gauge, static_cast<double>(s->token_ttl_seconds())));
  out.push_back(Single("vault_kms_kek_version", "Transit key version Encrypt uses (0: unknown)",
                       MetricType::Gauge, static_cast<double>(s->key_version())));
  out.push_back(Single("vault_kms_seconds_since_last_vault_contact",
                       "Seconds since Vault last answered a request successfully (-1: never)",
                       MetricType::Gauge, static_cast<double>(s->seconds_since_vault_contact())));
  out.push_back(Single("vault_kms_broker_requests_total", "IPC requests the broker accepted",
                       MetricType::Counter, static_cast<double>(s->requests_total())));

  MetricFamily lat = Family("vault_kms_vault_request_duration_seconds",
                            "Duration of Vault requests made by the broker, retries included",
                            MetricType::Histogram);
  for (const auto& v : s->vault_requests()) {
    ClientMetric m;
    m.label = {{"operation", v.operation()}, {"code", v.code()}};
    m.histogram.sample_count = v.count();
    m.histogram.sample_sum = v.sum_seconds();
    uint64_t cumulative = 0;
    for (size_t i = 0; i < metrics::kLatencyBuckets.size(); ++i) {
      cumulative += i < static_cast<size_t>(v.buckets_size()) ? v.buckets(static_cast<int>(i)) : 0;
      m.histogram.bucket.push_back({cumulative, metrics::kLatencyBuckets[i]});
    }
    m.histogram.bucket.push_back({v.count(), std::numeric_limits<double>::infinity()});
    lat.metric.push_back(std::move(m));
  }
  out.push_back(std::move(lat));

  // When an old key version, or another plugin's DEKs, stop being needed (README: retiring a
  // key version; Migrating). Labels: at most 11 versions ("older" folds the rest).
  MetricFamily uses = Family("vault_kms_decrypt_key_version_total",
                             "Decrypts that succeeded, by the Transit key version their "
                             "ciphertext needed (the latest 10 versions, then \"older\")",
                             MetricType::Counter);
  MetricFamily last =
      Family("vault_kms_decrypt_key_version_last_used_timestamp_seconds",
             "When a Decrypt last needed the key version (unix seconds)", MetricType::Gauge);
  for (const auto& v : s->decrypt_key_versions()) {
    uses.metric.push_back(
        Value(MetricType::Counter, static_cast<double>(v.decrypts()), {{"version", v.version()}}));
    last.metric.push_back(
        Value(MetricType::Gauge, static_cast<double>(v.last_unix()), {{"version", v.version()}}));
  }
  out.push_back(std::move(uses));
  out.push_back(std::move(last));
  out.push_back(Single("vault_kms_decrypt_foreign_key_id_total",
                       "Decrypts that succeeded for a key_id vault-kms never issued (stored by "
                       "another KMS plugin before a migration)",
                       MetricType::Counter, static_cast<double>(s->decrypts_foreign_key_id())));
  out.push_back(Single("vault_kms_decrypt_foreign_key_id_last_used_timestamp_seconds",
                       "When a Decrypt last came with a foreign key_id (unix seconds; 0: never)",
                       MetricType::Gauge, static_cast<double>(s->foreign_key_id_last_unix())));
  return out;
}

}  // namespace vkms::frontend
