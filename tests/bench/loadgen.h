// A reusable KMS v2 load generator for the soak run (`make soak`) and benchmarks: N worker
// threads call Status/Encrypt/Decrypt over the plugin's unix socket in a configurable mix, until a
// total-call bound or a time bound is reached. Every worker keeps its own statistics (latency
// histograms per operation, errors by gRPC code), merged once at the end: the hot path takes no
// lock and allocates nothing beyond what gRPC itself allocates (requests, responses, uids and
// plaintexts are reused per thread).
//
// Decrypt calls use ciphertexts the same worker produced earlier (a ring of recent Encrypt
// results) and check that the plaintext comes back unchanged; a worker that has no ciphertext yet
// encrypts instead.
#pragma once

#include <grpcpp/grpcpp.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace vkms::bench {

using Clock = std::chrono::steady_clock;

enum class Op : int { kStatus = 0, kEncrypt = 1, kDecrypt = 2 };
constexpr int kNumOps = 3;
const char* OpName(Op op);
// "OK", "UNAVAILABLE", ... for the 17 canonical gRPC codes.
const char* CodeName(int code);
constexpr int kNumCodes = 17;

// Log-linear latency histogram in microseconds: 16 linear sub-buckets per power of two, so a
// reported percentile is within 1/16 (6.25%) of the true value. Fixed size, no allocation.
class Histogram {
 public:
  void Record(uint64_t us);
  void Merge(const Histogram& other);
  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / count_ : 0; }
  // The upper bound of the bucket holding the p-th percentile (0 < p <= 100), capped at max().
  uint64_t Percentile(double p) const;

 private:
  static constexpr int kSub = 16;
  static constexpr int kBuckets = kSub + 40 * kSub;  // up to 2^44 us
  static int Index(uint64_t us);
  static uint64_t UpperBound(int index);

  std::array<uint64_t, kBuckets> buckets_{};
  uint64_t count_ = 0, sum_ = 0, max_ = 0;
};

// One failed call, reported through LoadOptions::on_error (from the worker thread).
struct ErrorEvent {
  Op op;
  int code;  // grpc::StatusCode; kMismatchCode for a Decrypt that returned the wrong plaintext
  Clock::time_point start, end;
};
// Reported for a Decrypt whose call succeeded but whose plaintext differs from what was encrypted.
constexpr int kMismatchCode = 100;

// What a worker calls: the plugin over gRPC (the default), or anything else speaking the same
// three operations (the benchmark's direct-to-Vault baseline). One instance per worker thread,
// never shared; each call returns a grpc::StatusCode value (0 = OK).
class Client {
 public:
  virtual ~Client() = default;
  virtual int Status() = 0;
  virtual int Encrypt(const std::string& plaintext, const std::string& uid, std::string* ciphertext,
                      std::string* key_id) = 0;
  virtual int Decrypt(const std::string& ciphertext, const std::string& key_id,
                      const std::string& uid, std::string* plaintext) = 0;
};
using ClientFactory = std::function<std::unique_ptr<Client>(int worker)>;

// A ciphertext made beforehand, with what it must decrypt to.
struct Sealed {
  std::string plaintext, ciphertext, key_id;
};

struct LoadOptions {
  std::string socket;  // a filesystem path, or "@name" for an abstract socket
  // Empty: gRPC clients on `socket` (see `channels`). Otherwise one client per worker from here.
  ClientFactory client;
  // When set, every call is a Decrypt of the next unused entry (call n decrypts entry n) and the
  // run ends when all are done: a "cold apiserver" storm of distinct DEKs. max_calls is ignored.
  std::shared_ptr<const std::vector<Sealed>> decrypt_inputs;
  int threads = 48;
  // gRPC channels (each its own connection) shared round-robin by the workers; 0 = one per
  // worker. A few shared channels are faster: 48 workers on 2 cores did ~4,000 calls/s with 1 or
  // 4 channels and ~2,800 with one channel per worker (more connections, more frontend polling).
  int channels = 4;
  // The mix in percent; Decrypt gets the rest.
  int status_pct = 10;
  int encrypt_pct = 30;
  size_t plaintext_bytes = 32;  // a DEK seed
  uint64_t max_calls = 1000000;
  std::chrono::milliseconds max_duration{std::chrono::minutes(15)};
  std::chrono::milliseconds call_timeout{std::chrono::seconds(3)};
  // Called on every failed call (rare outside faults); must be thread-safe. May be empty.
  std::function<void(const ErrorEvent&)> on_error;
};

struct LoadResult {
  uint64_t calls = 0;  // finished calls, successful or not
  uint64_t ok = 0;
  double seconds = 0;
  std::array<Histogram, kNumOps> latency;  // every finished call, by operation
  std::array<uint64_t, kNumOps> calls_by_op{};
  // errors[op][code]; code 0 is unused. Mismatched plaintexts are counted in `mismatches`.
  std::array<std::array<uint64_t, kNumCodes>, kNumOps> errors{};
  uint64_t mismatches = 0;
  uint64_t errors_total() const;
  double throughput() const { return seconds > 0 ? calls / seconds : 0; }
};

class LoadGenerator {
 public:
  explicit LoadGenerator(LoadOptions options);
  ~LoadGenerator();  // stops and joins the workers
  LoadGenerator(const LoadGenerator&) = delete;
  LoadGenerator& operator=(const LoadGenerator&) = delete;

  void Start();
  // Asks the workers to stop after their current call.
  void Stop() { stop_.store(true, std::memory_order_relaxed); }
  bool done() const { return running_.load(std::memory_order_acquire) == 0; }
  // Calls started so far (at most max_calls): a cheap progress indicator.
  uint64_t started() const;
  // Waits for the workers and merges their statistics.
  LoadResult Wait();

  // Convenience: Start() + Wait().
  LoadResult Run();

 private:
  struct Worker;
  void RunWorker(Worker* w);
  uint64_t CallLimit() const;

  LoadOptions options_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> next_call_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> running_{0};
  Clock::time_point start_;
};

}  // namespace vkms::bench
