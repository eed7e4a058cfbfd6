// What the /metrics handler adds to the frontend's own registry, as Prometheus metric families:
// the broker's figures (from an ipc::Stats call made at scrape time) and the standard process_*
// metrics of both processes. Called by the /metrics handler only.
#pragma once

#include <prometheus/metric_family.h>

#include <vector>

#include "broker.pb.h"
#include "shared/process_metrics.h"

namespace vkms::frontend {

// stats == nullptr: the broker did not answer (vault_kms_broker_up 0, and only the frontend's
// process_* figures). The frontend's own figures are read here (shared/process_metrics.h), so
// they are present only once process_metrics::Open() succeeded in main().
std::vector<prometheus::MetricFamily> BrokerFamilies(const ipc::StatsReply* stats);

// process_* families with a `process` label: "frontend" for `frontend`, "broker" for `broker`;
// either may be null (no series for it). No family at all when both are.
std::vector<prometheus::MetricFamily> ProcessFamilies(const process_metrics::Sample* frontend,
                                                      const ipc::ProcessSample* broker);

// vault_kms_build_info{version} 1.
prometheus::MetricFamily BuildInfoFamily();

}  // namespace vkms::frontend
