#include "tests/bench/loadgen.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "kms_v2.grpc.pb.h"

namespace vkms::bench {
namespace {

// xorshift64*: fast per-thread randomness for the mix, plaintexts and uids (not for secrets).
struct Rng {
  uint64_t s;
  uint64_t Next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 2685821657736338717ULL;
  }
};

// A version-4 UUID string into `out` (36 characters, no allocation once sized).
void FillUid(Rng& rng, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  uint64_t a = rng.Next(), b = rng.Next();
  unsigned char u[16];
  std::memcpy(u, &a, 8);
  std::memcpy(u + 8, &b, 8);
  u[6] = static_cast<unsigned char>((u[6] & 0x0f) | 0x40);
  u[8] = static_cast<unsigned char>((u[8] & 0x3f) | 0x80);
  out->resize(36);
  char* p = &(*out)[0];
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *p++ = '-';
    *p++ = kHex[u[i] >> 4];
    *p++ = kHex[u[i] & 15];
  }
}

void FillBytes(Rng& rng, std::string* out, size_t n) {
  out->resize(n);
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng.Next();
    std::memcpy(&(*out)[i], &v, std::min<size_t>(8, n - i));
  }
}

// The plugin over gRPC, with requests and responses reused across calls.
class GrpcClient : public Client {
 public:
  GrpcClient(const std::shared_ptr<grpc::Channel>& channel, std::chrono::milliseconds timeout)
      : stub_(v2::KeyManagementService::NewStub(channel)), timeout_(timeout) {}

  int Status() override {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    status_resp_.Clear();
    return stub_->Status(&ctx, status_req_, &status_resp_).error_code();
  }
  int Encrypt(const std::string& plaintext, const std::string& uid, std::string* ciphertext,
              std::string* key_id) override {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    enc_req_.set_plaintext(plaintext);
    enc_req_.set_uid(uid);
    enc_resp_.Clear();
    int code = stub_->Encrypt(&ctx, enc_req_, &enc_resp_).error_code();
    if (code == 0) {
      *ciphertext = enc_resp_.ciphertext();
      *key_id = enc_resp_.key_id();
    }
    return code;
  }
  int Decrypt(const std::string& ciphertext, const std::string& key_id, const std::string& uid,
              std::string* plaintext) override {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    dec_req_.set_ciphertext(ciphertext);
    dec_req_.set_key_id(key_id);
    dec_req_.set_uid(uid);
    dec_resp_.Clear();
    int code = stub_->Decrypt(&ctx, dec_req_, &dec_resp_).error_code();
    if (code == 0) *plaintext = dec_resp_.plaintext();
    return code;
  }

 private:
  void SetDeadline(grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + timeout_);
  }
  std::unique_ptr<v2::KeyManagementService::Stub> stub_;
  std::chrono::milliseconds timeout_;
  v2::StatusRequest status_req_;
  v2::StatusResponse status_resp_;
  v2::EncryptRequest enc_req_;
  v2::EncryptResponse enc_resp_;
  v2::DecryptRequest dec_req_;
  v2::DecryptResponse dec_resp_;
};

}  // namespace

const char* OpName(Op op) {
  switch (op) {
    case Op::kStatus:
      return "Status";
    case Op::kEncrypt:
      return "Encrypt";
    case Op::kDecrypt:
      return "Decrypt";
  }
  return "?";
}

const char* CodeName(int code) {
  static const char* const kNames[kNumCodes] = {"OK",
                                                "CANCELLED",
                                                "UNKNOWN",
                                                "INVALID_ARGUMENT",
                                                "DEADLINE_EXCEEDED",
                                                "NOT_FOUND",
                                                "ALREADY_EXISTS",
                                                "PERMISSION_DENIED",
                                                "RESOURCE_EXHAUSTED",
                                                "FAILED_PRECONDITION",
                                                "ABORTED",
                                                "OUT_OF_RANGE",
                                                "UNIMPLEMENTED",
                                                "INTERNAL",
                                                "UNAVAILABLE",
                                                "DATA_LOSS",
                                                "UNAUTHENTICATED"};
  if (code == kMismatchCode) return "PLAINTEXT_MISMATCH";
  return code >= 0 && code < kNumCodes ? kNames[code] : "?";
}

// ---- Histogram ----

int Histogram::Index(uint64_t us) {
  if (us < kSub) return static_cast<int>(us);
  int msb = 63 - __builtin_clzll(us);  // >= 4
  int sub = static_cast<int>((us >> (msb - 4)) & (kSub - 1));
  int idx = kSub + (msb - 4) * kSub + sub;
  return std::min(idx, kBuckets - 1);
}

uint64_t Histogram::UpperBound(int index) {
  if (index < kSub) return static_cast<uint64_t>(index);
  int msb = (index - kSub) / kSub + 4;
  uint64_t sub = static_cast<uint64_t>((index - kSub) % kSub);
  return ((kSub + sub + 1) << (msb - 4)) - 1;
}

void Histogram::Record(uint64_t us) {
  ++buckets_[Index(us)];
  ++count_;
  sum_ += us;
  if (us > max_) max_ = us;
}

void Histogram::Merge(const Histogram& o) {
  for (int i = 0; i < kBuckets; ++i) buckets_[i] += o.buckets_[i];
  count_ += o.count_;
  sum_ += o.sum_;
  max_ = std::max(max_, o.max_);
}

uint64_t Histogram::Percentile(double p) const {
  if (count_ == 0) return 0;
  auto rank = static_cast<uint64_t>(p / 100.0 * static_cast<double>(count_) + 0.999999);
  rank = std::max<uint64_t>(1, std::min(rank, count_));
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets_[i];
    if (seen >= rank) return std::min(UpperBound(i), max_);
  }
  return max_;
}

uint64_t LoadResult::errors_total() const {
  uint64_t n = mismatches;
  for (const auto& per_op : errors)
    for (int c = 1; c < kNumCodes; ++c) n += per_op[c];
  return n;
}

// ---- LoadGenerator ----

struct alignas(64) LoadGenerator::Worker {
  int id = 0;
  std::unique_ptr<Client> client;
  LoadResult stats;
  Clock::time_point finished;
};

LoadGenerator::LoadGenerator(LoadOptions options) : options_(std::move(options)) {}

LoadGenerator::~LoadGenerator() {
  Stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

uint64_t LoadGenerator::CallLimit() const {
  return options_.decrypt_inputs ? options_.decrypt_inputs->size() : options_.max_calls;
}

uint64_t LoadGenerator::started() const {
  return std::min(next_call_.load(std::memory_order_relaxed), CallLimit());
}

void LoadGenerator::Start() {
  const std::string& s = options_.socket;
  std::string target = !s.empty() && s[0] == '@' ? "unix-abstract:" + s.substr(1) : "unix://" + s;
  int threads = std::max(1, options_.threads);
  int nchannels = options_.channels > 0 ? std::min(options_.channels, threads) : threads;
  if (options_.client) nchannels = 0;
  for (int i = 0; i < nchannels; ++i) {
    grpc::ChannelArguments args;
    args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, "localhost");
    // Distinct channels must not share one subchannel (and so one HTTP/2 connection).
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("vkms.loadgen.channel", i);
    channels_.push_back(
        grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
  }
  start_ = Clock::now();
  running_.store(threads, std::memory_order_release);
  for (int i = 0; i < threads; ++i) {
    auto w = std::make_unique<Worker>();
    w->id = i;
    w->client = options_.client
                    ? options_.client(i)
                    : std::make_unique<GrpcClient>(channels_[i % nchannels], options_.call_timeout);
    workers_.push_back(std::move(w));
  }
  for (auto& w : workers_) threads_.emplace_back([this, p = w.get()] { RunWorker(p); });
}

void LoadGenerator::RunWorker(Worker* w) {
  Rng rng{0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(w->id + 1) ^
          static_cast<uint64_t>(Clock::now().time_since_epoch().count())};
  if (rng.s == 0) rng.s = 1;
  LoadResult& st = w->stats;
  const Clock::time_point deadline = start_ + options_.max_duration;

  // Recent Encrypt results of this worker, reused in place.
  constexpr size_t kRing = 64;
  std::vector<Sealed> ring(kRing);
  size_t ring_filled = 0, ring_next = 0;
  const std::vector<Sealed>* inputs = options_.decrypt_inputs.get();
  const uint64_t limit = CallLimit();

  std::string uid, plaintext, ciphertext, key_id, decrypted;
  uid.reserve(36);
  plaintext.reserve(options_.plaintext_bytes + 8);
  Client& client = *w->client;

  while (!stop_.load(std::memory_order_relaxed)) {
    const uint64_t n = next_call_.fetch_add(1, std::memory_order_relaxed);
    if (n >= limit) break;
    auto roll = static_cast<int>(rng.Next() % 100);
    Op op = inputs != nullptr                                   ? Op::kDecrypt
            : roll < options_.status_pct                        ? Op::kStatus
            : roll < options_.status_pct + options_.encrypt_pct ? Op::kEncrypt
                                                                : Op::kDecrypt;
    if (op == Op::kDecrypt && inputs == nullptr && ring_filled == 0) op = Op::kEncrypt;

    const Sealed* used = nullptr;
    if (op == Op::kDecrypt) used = inputs ? &(*inputs)[n] : &ring[rng.Next() % ring_filled];
    if (op == Op::kEncrypt) FillBytes(rng, &plaintext, options_.plaintext_bytes);
    if (op != Op::kStatus) FillUid(rng, &uid);

    Clock::time_point t0 = Clock::now();
    int code = 0;
    switch (op) {
      case Op::kStatus:
        code = client.Status();
        break;
      case Op::kEncrypt:
        code = client.Encrypt(plaintext, uid, &ciphertext, &key_id);
        break;
      case Op::kDecrypt:
        code = client.Decrypt(used->ciphertext, used->key_id, uid, &decrypted);
        break;
    }
    Clock::time_point t1 = Clock::now();
    int i = static_cast<int>(op);
    st.latency[i].Record(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count()));
    ++st.calls;
    ++st.calls_by_op[i];

    if (code == 0) {
      if (op == Op::kEncrypt) {
        Sealed& slot = ring[ring_next];
        slot.plaintext = plaintext;
        slot.ciphertext.swap(ciphertext);
        slot.key_id.swap(key_id);
        ring_next = (ring_next + 1) % kRing;
        ring_filled = std::min(ring_filled + 1, kRing);
      } else if (op == Op::kDecrypt && decrypted != used->plaintext) {
        code = kMismatchCode;
        ++st.mismatches;
      }
    } else {
      ++st.errors[i][code >= 0 && code < kNumCodes ? code : 2];
    }
    if (code == 0) {
      ++st.ok;
    } else if (options_.on_error) {
      options_.on_error(ErrorEvent{op, code, t0, t1});
    }
    if (t1 >= deadline) break;
  }
  w->finished = Clock::now();
  running_.fetch_sub(1, std::memory_order_acq_rel);
}

LoadResult LoadGenerator::Wait() {
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  LoadResult r;
  Clock::time_point last = start_;
  for (auto& w : workers_) {
    const LoadResult& s = w->stats;
    r.calls += s.calls;
    r.ok += s.ok;
    r.mismatches += s.mismatches;
    for (int i = 0; i < kNumOps; ++i) {
      r.latency[i].Merge(s.latency[i]);
      r.calls_by_op[i] += s.calls_by_op[i];
      for (int c = 0; c < kNumCodes; ++c) r.errors[i][c] += s.errors[i][c];
    }
    last = std::max(last, w->finished);
  }
  r.seconds = std::chrono::duration<double>(last - start_).count();
  return r;
}

LoadResult LoadGenerator::Run() {
  Start();
  return Wait();
}

}  // namespace vkms::bench
