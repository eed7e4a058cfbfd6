// `make soak`: a bounded soak run of the real plugin (vault-kms-broker + vault-kms-frontend)
// against the Vault simulator. Issue 6's last item: >= 1,000,000 mixed Status/Encrypt/Decrypt
// calls at 32-64 concurrent, a Vault fault injected periodically (seal, 503 burst, latency,
// revoked tokens, in turn), the RSS of both processes sampled every second. Not part of
// `make test`/CI.
//
// Exit status 0 only if
//  - every error during a fault window (plus a grace period after it clears) is UNAVAILABLE,
//    DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED, and no call failed outside those windows;
//  - no Decrypt returned a different plaintext, and the frontend was never restarted;
//  - neither process's RSS grew by more than --max-growth-kb (default 5120 kB) between the
//    warm-up sample (after the first 10% of calls) and the end. The bound is absolute, not a
//    percentage: both processes are small (tens of MB), so 10% would be a few MB and within
//    allocator noise from 48 concurrent gRPC streams, while 5 MB over >= 900,000 calls still
//    catches any per-call leak of more than ~6 bytes. --max-growth-pct adds a relative bound.
//
// Exit 1 on a failed check, 2 on a bad flag, 3 if the environment could not be set up.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/bench/bench_util.h"
#include "tests/bench/loadgen.h"
#include "tests/integration/plugin_process.h"
#include "tests/integration/vault_env.h"

namespace vkms::bench {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

struct Flags {
  uint64_t calls = 1000000;
  int concurrency = 48;
  int channels = 4;
  int max_seconds = 900;
  int fault_every = 30;  // 0: no faults
  int fault_seconds = 5;
  int grace_seconds = 3;
  long max_growth_kb = 5120;
  double max_growth_pct = 0;  // 0: no relative bound
};

void Usage() {
  std::fprintf(stderr,
               "usage: vault-kms-soak [--calls N] [--concurrency N] [--channels N (0: one per "
               "worker)]\n"
               "  [--max-seconds S] [--fault-every S (0: none)] [--fault-seconds S] "
               "[--grace-seconds S]\n"
               "  [--max-growth-kb KB] [--max-growth-pct P (0: off)]\n");
}

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    std::string a, v;
    if (!NextFlag("vault-kms-soak", argc, argv, &i, &a, &v)) return false;
    char* end = nullptr;
    double d = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || d < 0) {
      std::fprintf(stderr, "vault-kms-soak: bad value for %s: %s\n", a.c_str(), v.c_str());
      return false;
    }
    if (a == "--calls") {
      f->calls = static_cast<uint64_t>(d);
    } else if (a == "--concurrency") {
      f->concurrency = static_cast<int>(d);
    } else if (a == "--channels") {
      f->channels = static_cast<int>(d);
    } else if (a == "--max-seconds") {
      f->max_seconds = static_cast<int>(d);
    } else if (a == "--fault-every") {
      f->fault_every = static_cast<int>(d);
    } else if (a == "--fault-seconds") {
      f->fault_seconds = static_cast<int>(d);
    } else if (a == "--grace-seconds") {
      f->grace_seconds = static_cast<int>(d);
    } else if (a == "--max-growth-kb") {
      f->max_growth_kb = static_cast<long>(d);
    } else if (a == "--max-growth-pct") {
      f->max_growth_pct = d;
    } else {
      std::fprintf(stderr, "vault-kms-soak: unknown flag %s\n", a.c_str());
      return false;
    }
  }
  if (f->calls == 0 || f->concurrency < 1 || f->max_seconds < 1) {
    std::fprintf(stderr, "vault-kms-soak: --calls, --concurrency, --max-seconds must be > 0\n");
    return false;
  }
  return true;
}

struct RssSample {
  double t;  // seconds since the load started
  uint64_t calls;
  long broker_kb, frontend_kb;
};

struct FaultWindow {
  const char* name;
  Clock::time_point start, end;  // end: when the fault was cleared
};

// The fault cycle: seal→unseal, 503 burst, 200 ms latency, revoked tokens.
constexpr int kNumFaults = 4;
const char* const kFaultNames[kNumFaults] = {"seal", "503-burst", "latency-200ms", "revoke-tokens"};

void InjectFault(testing::SimControl& sim, int kind, const std::string& transit) {
  switch (kind) {
    case 0:
      sim.Seal();
      break;
    case 1:
      sim.Fail(transit, 503, 200);
      break;
    case 2:
      sim.Latency(transit, 200);
      break;
    case 3:
      sim.RevokeTokens();
      break;
  }
}

void ClearFault(testing::SimControl& sim, int kind, const std::string& transit) {
  switch (kind) {
    case 0:
      sim.Unseal();
      break;
    case 1:
      sim.Fail(transit, 503, 0);  // withdraws what is left of the burst
      break;
    case 2:
      sim.Latency(transit, 0);
      break;
    default:
      break;
  }
}

bool Allowed(int code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED ||
         code == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

int Main(int argc, char** argv) {
  Flags f;
  if (!ParseFlags(argc, argv, &f)) {
    Usage();
    return 2;
  }

  testing::VaultEnv vault;
  std::string err;
  if (!vault.Start(&err)) {
    std::fprintf(stderr, "vault-kms-soak: starting Vault: %s\n", err.c_str());
    return 3;
  }
  if (f.fault_every > 0 && !vault.is_sim()) {
    std::fprintf(stderr,
                 "vault-kms-soak: faults need the simulator (unset VAULT_ADDR or "
                 "pass --fault-every 0)\n");
    return 3;
  }
  testing::PluginOptions popts = vault.DefaultPluginOptions();
  // "info", not "warning": PluginProcess::Start waits for the frontend's info-level "frontend
  // serving" line. Info logs only lifecycle events (logins, key versions), never per call.
  popts.log_level = "info";
  popts.key_refresh = "30s";  // the default: a soak should look like production
  testing::PluginProcess plugin(popts);
  if (!plugin.Start(&err) || !plugin.WaitHealthy(seconds(20), &err)) {
    std::fprintf(stderr, "vault-kms-soak: starting the plugin: %s\n%s\n", err.c_str(),
                 plugin.Logs().c_str());
    return 3;
  }
  const pid_t broker_pid = plugin.pid();
  const pid_t frontend_pid = plugin.FrontendPid();
  const std::string transit = vault.transit_mount() + "/";

  std::mutex events_mu;
  std::vector<ErrorEvent> events;  // capped: only the first kMaxEvents are classified
  constexpr size_t kMaxEvents = 4000000;
  uint64_t events_dropped = 0;

  LoadOptions lo;
  lo.socket = plugin.socket_path();
  lo.threads = f.concurrency;
  lo.channels = f.channels;
  lo.max_calls = f.calls;
  lo.max_duration = seconds(f.max_seconds);
  lo.on_error = [&](const ErrorEvent& e) {
    std::lock_guard<std::mutex> l(events_mu);
    if (events.size() < kMaxEvents)
      events.push_back(e);
    else
      ++events_dropped;
  };

  std::printf(
      "vault-kms-soak: %llu calls, %d concurrent, %s channels, max %d s, fault every "
      "%d s for %d s (grace %d s); broker pid %d, frontend pid %d\n",
      static_cast<unsigned long long>(f.calls), f.concurrency,
      f.channels ? std::to_string(f.channels).c_str() : "per-worker", f.max_seconds, f.fault_every,
      f.fault_seconds, f.grace_seconds, broker_pid, frontend_pid);
  std::fflush(stdout);

  LoadGenerator gen(lo);
  const Clock::time_point t0 = Clock::now();
  gen.Start();

  std::vector<RssSample> rss;
  std::vector<FaultWindow> windows;
  std::vector<std::string> problems;
  int warm_index = -1;  // the first sample at or after 10% of the calls
  int fault_kind = -1, next_fault = 0;
  Clock::time_point fault_started, next_fault_at = t0 + seconds(f.fault_every);
  Clock::time_point next_sample = t0;
  pid_t frontend_now = frontend_pid;

  auto sample = [&](Clock::time_point now) {
    uint64_t calls = gen.started();
    pid_t fp = plugin.FrontendPid();
    if (fp != frontend_now) {
      problems.push_back("frontend pid changed from " + std::to_string(frontend_now) + " to " +
                         std::to_string(fp) + " (restarted?)");
      frontend_now = fp;
    }
    rss.push_back(
        {std::chrono::duration<double>(now - t0).count(), calls, RssKb(broker_pid), RssKb(fp)});
    if (warm_index < 0 && calls >= f.calls / 10) warm_index = static_cast<int>(rss.size()) - 1;
  };

  try {
    while (!gen.done()) {
      std::this_thread::sleep_for(milliseconds(50));
      Clock::time_point now = Clock::now();
      if (now >= next_sample) {
        sample(now);
        next_sample += seconds(1);
      }
      if (f.fault_every <= 0) continue;
      if (fault_kind < 0 && now >= next_fault_at) {
        fault_kind = next_fault;
        next_fault = (next_fault + 1) % kNumFaults;
        fault_started = Clock::now();
        InjectFault(vault.sim(), fault_kind, transit);
        std::printf("  t=%5.1fs  calls=%-8llu fault %s on\n",
                    std::chrono::duration<double>(fault_started - t0).count(),
                    static_cast<unsigned long long>(gen.started()), kFaultNames[fault_kind]);
        std::fflush(stdout);
      } else if (fault_kind >= 0 && now >= fault_started + seconds(f.fault_seconds)) {
        ClearFault(vault.sim(), fault_kind, transit);
        windows.push_back({kFaultNames[fault_kind], fault_started, Clock::now()});
        fault_kind = -1;
        next_fault_at = fault_started + seconds(f.fault_every);
      }
    }
    if (fault_kind >= 0) {
      ClearFault(vault.sim(), fault_kind, transit);
      windows.push_back({kFaultNames[fault_kind], fault_started, Clock::now()});
    }
  } catch (const std::exception& e) {
    problems.push_back(std::string("fault injection failed: ") + e.what());
    gen.Stop();
  }
  LoadResult r = gen.Wait();
  sample(Clock::now());  // the end sample: load finished, no fault active

  // Classify every error against the fault windows (a call overlapping [start, end + grace]).
  const auto grace = seconds(f.grace_seconds);
  std::map<int, uint64_t> in_window, outside;
  for (const ErrorEvent& e : events) {
    bool in = false;
    for (const FaultWindow& w : windows) {
      if (e.end >= w.start && e.start <= w.end + grace) {
        in = true;
        break;
      }
    }
    ++(in ? in_window : outside)[e.code];
  }

  // ---- The table ----
  std::printf("\n=== vault-kms soak ===\n");
  std::printf("calls        %llu in %.1f s  (%.0f calls/s), ok %llu, errors %llu\n",
              static_cast<unsigned long long>(r.calls), r.seconds, r.throughput(),
              static_cast<unsigned long long>(r.ok),
              static_cast<unsigned long long>(r.errors_total()));
  std::printf("faults       %zu windows (%s)\n", windows.size(),
              f.fault_every > 0 ? "seal, 503-burst, latency-200ms, revoke-tokens in turn" : "off");
  std::printf("\n%-8s %10s %10s %10s %10s %10s %10s\n", "op", "calls", "errors", "p50", "p90",
              "p99", "max");
  for (int i = 0; i < kNumOps; ++i) {
    uint64_t errs = 0;
    for (int c = 1; c < kNumCodes; ++c) errs += r.errors[i][c];
    if (i == static_cast<int>(Op::kDecrypt)) errs += r.mismatches;
    const Histogram& h = r.latency[i];
    std::printf("%-8s %10llu %10llu %10s %10s %10s %10s\n", OpName(static_cast<Op>(i)),
                static_cast<unsigned long long>(r.calls_by_op[i]),
                static_cast<unsigned long long>(errs), FormatUs(h.Percentile(50)).c_str(),
                FormatUs(h.Percentile(90)).c_str(), FormatUs(h.Percentile(99)).c_str(),
                FormatUs(h.max()).c_str());
  }
  std::printf("\nerrors by code        in fault window (+%ds)   outside\n", f.grace_seconds);
  std::map<int, bool> codes;
  for (auto& [c, n] : in_window) codes[c] = true;
  for (auto& [c, n] : outside) codes[c] = true;
  if (codes.empty()) std::printf("  (none)\n");
  for (auto& [c, unused] : codes) {
    (void)unused;
    std::printf("  %-20s %12llu %18llu\n", CodeName(c),
                static_cast<unsigned long long>(in_window[c]),
                static_cast<unsigned long long>(outside[c]));
    if (outside[c] > 0)
      problems.push_back(std::to_string(outside[c]) + " " + CodeName(c) +
                         " error(s) outside fault windows");
    if (in_window[c] > 0 && !Allowed(c))
      problems.push_back(std::to_string(in_window[c]) + " " + CodeName(c) +
                         " error(s) in fault windows (only UNAVAILABLE, DEADLINE_EXCEEDED, "
                         "RESOURCE_EXHAUSTED are allowed)");
  }
  if (events_dropped > 0)
    problems.push_back(std::to_string(events_dropped) + " errors not classified (event cap)");

  // RSS: warm-up vs end.
  if (warm_index < 0) warm_index = 0;
  const RssSample& warm = rss[static_cast<size_t>(warm_index)];
  const RssSample& last = rss.back();
  std::printf("\nRSS (kB)      warm-up (t=%.0fs, %llu calls)   end (t=%.0fs)   growth\n", warm.t,
              static_cast<unsigned long long>(warm.calls), last.t);
  auto rss_row = [&](const char* name, long w, long e) {
    long g = e - w;
    double pct = w > 0 ? 100.0 * static_cast<double>(g) / static_cast<double>(w) : 0;
    std::printf("  %-10s %12ld %28ld %10ld kB (%+.1f%%)\n", name, w, e, g, pct);
    if (w < 0 || e < 0) {
      problems.push_back(std::string("could not read VmRSS of the ") + name);
    } else if (g > f.max_growth_kb) {
      problems.push_back(std::string(name) + " RSS grew " + std::to_string(g) + " kB > " +
                         std::to_string(f.max_growth_kb) + " kB after warm-up");
    } else if (f.max_growth_pct > 0 && pct > f.max_growth_pct) {
      problems.push_back(std::string(name) + " RSS grew " + std::to_string(pct) + "% > " +
                         std::to_string(f.max_growth_pct) + "% after warm-up");
    }
  };
  rss_row("broker", warm.broker_kb, last.broker_kb);
  rss_row("frontend", warm.frontend_kb, last.frontend_kb);
  std::printf(
      "  bound: growth <= %ld kB%s per process\n", f.max_growth_kb,
      f.max_growth_pct > 0 ? (" and <= " + std::to_string(f.max_growth_pct) + "%").c_str() : "");
  std::printf("\nRSS series (every 10th sample; kB)\n  %7s %10s %10s %10s\n", "t", "calls",
              "broker", "frontend");
  for (size_t i = 0; i < rss.size(); ++i) {
    if (i % 10 != 0 && i + 1 != rss.size()) continue;
    std::printf("  %6.0fs %10llu %10ld %10ld\n", rss[i].t,
                static_cast<unsigned long long>(rss[i].calls), rss[i].broker_kb,
                rss[i].frontend_kb);
  }
  if (r.mismatches > 0)
    problems.push_back(std::to_string(r.mismatches) + " Decrypt(s) returned a wrong plaintext");
  if (r.calls < f.calls)
    std::printf("\nnote: the time bound (%d s) stopped the run at %llu of %llu calls\n",
                f.max_seconds, static_cast<unsigned long long>(r.calls),
                static_cast<unsigned long long>(f.calls));

  if (vault.is_sim()) vault.sim().Reset();
  plugin.Stop();

  if (problems.empty()) {
    std::printf("\nRESULT: PASS\n");
    return 0;
  }
  std::printf("\nRESULT: FAIL\n");
  for (const auto& p : problems) std::printf("  - %s\n", p.c_str());
  return 1;
}

}  // namespace
}  // namespace vkms::bench

int main(int argc, char** argv) {
  return vkms::bench::Main(argc, argv);
}
