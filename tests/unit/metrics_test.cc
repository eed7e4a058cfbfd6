// The broker's Vault request metrics and their rendering for /metrics.
#include <gtest/gtest.h>

#include <cmath>

#include "frontend/broker_metrics.h"
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

TEST(BrokerMetrics, BrokerDownIsOneGaugeOnly) {
  auto families = frontend::BrokerFamilies(nullptr);
  ASSERT_EQ(families.size(), 1u);
  EXPECT_EQ(families[0].name, "vault_kms_broker_up");
  EXPECT_EQ(families[0].metric[0].gauge.value, 0);
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

}  // namespace
}  // namespace vkms
