// The broker's Vault request metrics and their rendering for /metrics.
#include <gtest/gtest.h>

#include <cmath>
#include <ctime>
#include <map>

#include "frontend/broker_metrics.h"
#include "shared/process_metrics.h"
#include "shared/vault_metrics.h"

namespace vkms {
namespace {

TEST(VaultMetrics, OperationsComeFromAFixedSet) {
  EXPECT_EQ(metrics::OperationOf("transit/encrypt/kms"), "encrypt");
  EXPECT_EQ(metrics::OperationOf("team/transit/decrypt/kms"), "decrypt");
  EXPECT_EQ(metrics::OperationOf("transit/keys/kms"), "key_read");
  EXPECT_EQ(metrics::OperationOf("auth/approle/login"), "login");
  EXPECT_EQ(metrics::OperationOf("auth/token/renew-self"), "token_renew");
  EXPECT_EQ(metrics::OperationOf("auth/token/lookup-self"), "token_lookup");
  EXPECT_EQ(metrics::OperationOf("sys/health"), "other");
  EXPECT_EQ(metrics::OperationOf("anything/the/caller/chose"), "other");
}

TEST(VaultMetrics, BucketsCountsAndSuccessfulContact) {
  metrics::VaultRequestMetrics m;
  EXPECT_EQ(m.SecondsSinceLastContact(), -1);
  m.Record("transit/encrypt/kms", 503, 0.0004);  // sealed: an answer, but not a success
  m.Record("transit/encrypt/kms", 0, 3.0);       // no answer at all
  EXPECT_EQ(m.SecondsSinceLastContact(), -1);
  m.Record("transit/encrypt/kms", 200, 0.0004);
  m.Record("transit/encrypt/kms", 200, 20.0);  // beyond the last bound: only in count/+Inf
  EXPECT_EQ(m.SecondsSinceLastContact(), 0);
  auto snap = m.Snapshot();
  ASSERT_EQ(snap.size(), 3u);
  const auto& ok = snap.at({"encrypt", "200"});
  EXPECT_EQ(ok.count, 2u);
  EXPECT_DOUBLE_EQ(ok.sum_seconds, 20.0004);
  EXPECT_EQ(ok.buckets[2], 1u);  // 0.0004 <= 0.0005
  uint64_t in_buckets = 0;
  for (uint64_t b : ok.buckets) in_buckets += b;
  EXPECT_EQ(in_buckets, 1u);
  EXPECT_EQ(snap.at({"encrypt", "error"}).count, 1u);
  EXPECT_EQ(snap.at({"encrypt", "503"}).count, 1u);
}

// Broker down: vault_kms_broker_up 0, and nothing else but the frontend's own process_*
// figures (present once process_metrics::Open() ran in this process).
TEST(BrokerMetrics, BrokerDownIsOneGaugeAndTheFrontendsOwnFigures) {
  auto families = frontend::BrokerFamilies(nullptr);
  ASSERT_GE(families.size(), 1u);
  EXPECT_EQ(families[0].name, "vault_kms_broker_up");
  EXPECT_EQ(families[0].metric[0].gauge.value, 0);
  for (size_t i = 1; i < families.size(); ++i) {
    EXPECT_EQ(families[i].name.rfind("process_", 0), 0u) << families[i].name;
    for (const auto& m : families[i].metric) EXPECT_EQ(m.label[0].value, "frontend");
  }
}

TEST(BrokerMetrics, HistogramBucketsAreCumulativeWithInf) {
  ipc::StatsReply s;
  auto* h = s.add_vault_requests();
  h->set_operation("decrypt");
  h->set_code("200");
  for (size_t i = 0; i < metrics::kLatencyBuckets.size(); ++i) h->add_buckets(i == 3 ? 2 : 1);
  h->set_count(metrics::kLatencyBuckets.size() + 1 + 4);  // 4 beyond the last bound
  h->set_sum_seconds(1.5);
  const prometheus::MetricFamily* lat = nullptr;
  auto families = frontend::BrokerFamilies(&s);
  for (const auto& f : families) {
    if (f.name == "vault_kms_vault_request_duration_seconds") lat = &f;
  }
  ASSERT_NE(lat, nullptr);
  ASSERT_EQ(lat->metric.size(), 1u);
  const auto& buckets = lat->metric[0].histogram.bucket;
  ASSERT_EQ(buckets.size(), metrics::kLatencyBuckets.size() + 1);
  EXPECT_EQ(buckets[0].cumulative_count, 1u);
  EXPECT_EQ(buckets[3].cumulative_count, 5u);
  EXPECT_EQ(buckets[metrics::kLatencyBuckets.size() - 1].cumulative_count,
            metrics::kLatencyBuckets.size() + 1);
  EXPECT_TRUE(std::isinf(buckets.back().upper_bound));
  EXPECT_EQ(buckets.back().cumulative_count, h->count());
}

TEST(ProcessMetrics, ParsesProcStatWhateverTheCommandName) {
  // proc(5): the command name is in parentheses and may itself hold spaces and ')'.
  const std::string stat =
      "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 900 0 0 0 150 50 0 0 20 0 9 0 12345 "
      "171032576 4652 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
  process_metrics::Sample s;
  ASSERT_TRUE(process_metrics::ParseStat(stat, 1700000000, 100, 4096, &s));
  EXPECT_DOUBLE_EQ(s.cpu_seconds, 2.0);  // (150 + 50) ticks at 100 a second
  EXPECT_DOUBLE_EQ(s.start_time_seconds, 1700000000 + 123.45);
  EXPECT_EQ(s.virtual_bytes, 171032576u);
  EXPECT_EQ(s.resident_bytes, 4652u * 4096u);
  EXPECT_FALSE(process_metrics::ParseStat("4242 (a) S 1 2", 0, 100, 4096, &s)) << "truncated";
  EXPECT_FALSE(process_metrics::ParseStat("no parenthesis", 0, 100, 4096, &s));
}

TEST(ProcessMetrics, ReadsThisProcessThroughTheFdsOpenedFirst) {
  std::string error;
  ASSERT_TRUE(process_metrics::Open(&error)) << error;
  process_metrics::Sample s;
  ASSERT_TRUE(process_metrics::Read(&s));
  EXPECT_GT(s.resident_bytes, 100000u);
  EXPECT_GT(s.virtual_bytes, s.resident_bytes);
  EXPECT_GE(s.open_fds, 5u) << "stdio and the two /proc fds at least";
  EXPECT_GT(s.max_fds, s.open_fds);
  const double now = static_cast<double>(time(nullptr));
  EXPECT_LE(s.start_time_seconds, now + 1);
  EXPECT_GT(s.start_time_seconds, now - 3600);
}

TEST(BrokerMetrics, ProcessFamiliesLabelEachProcess) {
  process_metrics::Sample frontend;
  frontend.resident_bytes = 1000;
  frontend.cpu_seconds = 1.5;
  ipc::ProcessSample broker;
  broker.set_resident_bytes(2000);
  broker.set_open_fds(9);
  auto families = frontend::ProcessFamilies(&frontend, &broker);
  ASSERT_EQ(families.size(), 6u);
  std::map<std::string, const prometheus::MetricFamily*> by_name;
  for (const auto& f : families) by_name[f.name] = &f;
  const auto* rss = by_name.at("process_resident_memory_bytes");
  ASSERT_EQ(rss->metric.size(), 2u);
  EXPECT_EQ(rss->metric[0].label[0].name, "process");
  EXPECT_EQ(rss->metric[0].label[0].value, "frontend");
  EXPECT_EQ(rss->metric[0].gauge.value, 1000);
  EXPECT_EQ(rss->metric[1].label[0].value, "broker");
  EXPECT_EQ(rss->metric[1].gauge.value, 2000);
  EXPECT_EQ(by_name.at("process_cpu_seconds_total")->type, prometheus::MetricType::Counter);
  EXPECT_EQ(by_name.at("process_cpu_seconds_total")->metric[0].counter.value, 1.5);
  EXPECT_EQ(by_name.at("process_open_fds")->metric[1].gauge.value, 9);
  // The broker did not answer: the frontend's series only; neither: no family at all.
  EXPECT_EQ(frontend::ProcessFamilies(&frontend, nullptr)[0].metric.size(), 1u);
  EXPECT_TRUE(frontend::ProcessFamilies(nullptr, nullptr).empty());
}

}  // namespace
}  // namespace vkms
