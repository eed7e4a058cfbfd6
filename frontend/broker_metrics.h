// The broker's figures (from an ipc::Stats call made at scrape time) as Prometheus metric
// families, next to the frontend's own registry. Called by the /metrics handler only.
#pragma once

#include <prometheus/metric_family.h>

#include <vector>

#include "broker.pb.h"

namespace vkms::frontend {

// stats == nullptr: the broker did not answer (vault_kms_broker_up 0, nothing else).
std::vector<prometheus::MetricFamily> BrokerFamilies(const ipc::StatsReply* stats);

// vault_kms_build_info{version} 1.
prometheus::MetricFamily BuildInfoFamily();

}  // namespace vkms::frontend
