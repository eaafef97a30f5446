// kvfs_policy_bench: replays synthetic, skewed traces against every eviction
// policy (core/eviction_policy.h) in a simulated cache of fixed capacity, and
// prints the hit ratio, the byte hit ratio and the replay speed.
//
// Traces (all deterministic, fixed seeds):
//  - zipf-0.9, zipf-1.1: Zipf-distributed requests over 100,000 keys whose
//    sizes range from 64 KiB to 4 MiB.
//  - zipf+scan: Zipf(1.0) requests with large scans of one-hit keys mixed in
//    (50,000 new keys after every 100,000 requests).
//  - kv-prefix: a KV-cache-like trace. Prompts share prefixes: every prompt
//    starts with the chunks of one of 64 system prompts (Zipf popularity),
//    followed by its own conversation chunks. A request reads the chunks of
//    its prefix in order (chunk 0, 1, 2, ...) until the first miss; from there
//    on the chunks are recomputed and stored. Conversations are resumed with
//    Zipf popularity by recency (and grow by a turn), and new ones keep
//    arriving.
//
// The simulation: a request for a resident object is a hit (Access); a miss
// evicts until the object fits and inserts it. Not a test; prints a table.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/eviction_policy.h"

namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;

// One read of a cached object. `stop_on_miss_group`: a run of requests with
// the same group id is a prefix read that stops at its first miss (the rest is
// recomputed and stored, not read); 0 means an independent request.
struct Request {
  uint64_t id;
  uint64_t bytes;
  uint64_t group;
};

struct Trace {
  std::string name;
  std::vector<Request> requests;
  uint64_t capacity_bytes;
};

uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Samples ranks 0..n-1 with P(rank k) proportional to 1 / (k+1)^alpha.
class Zipf {
 public:
  Zipf(size_t n, double alpha) : cdf_(n) {
    double sum = 0;
    for (size_t k = 0; k < n; ++k) {
      sum += 1.0 / std::pow(static_cast<double>(k + 1), alpha);
      cdf_[k] = sum;
    }
    for (double& c : cdf_) c /= sum;
  }
  size_t operator()(std::mt19937_64& rng) const {
    double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    size_t k = static_cast<size_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
    return std::min(k, cdf_.size() - 1);
  }

 private:
  std::vector<double> cdf_;
};

// 64 KiB .. 4 MiB, log-uniform-ish, fixed per key.
uint64_t KeySize(uint64_t id) {
  uint64_t h = Mix(id);
  return (64 * kKiB << (h % 7)) + (h >> 32) % (64 * kKiB);
}

constexpr uint64_t kKeys = 100000;

uint64_t UniverseBytes() {
  uint64_t total = 0;
  for (uint64_t id = 0; id < kKeys; ++id) total += KeySize(id);
  return total;
}

Trace ZipfTrace(double alpha, size_t n_requests, uint64_t seed) {
  Trace t;
  char name[32];
  std::snprintf(name, sizeof(name), "zipf-%.1f", alpha);
  t.name = name;
  t.capacity_bytes = UniverseBytes() / 10;
  std::mt19937_64 rng(seed);
  Zipf zipf(kKeys, alpha);
  t.requests.reserve(n_requests);
  for (size_t i = 0; i < n_requests; ++i) {
    uint64_t id = zipf(rng);
    t.requests.push_back(Request{id, KeySize(id), 0});
  }
  return t;
}

Trace ZipfScanTrace(size_t n_zipf, uint64_t seed) {
  Trace t;
  t.name = "zipf+scan";
  t.capacity_bytes = UniverseBytes() / 10;
  std::mt19937_64 rng(seed);
  Zipf zipf(kKeys, 1.0);
  uint64_t next_scan_id = 1ULL << 40;
  for (size_t i = 0; i < n_zipf; ++i) {
    uint64_t id = zipf(rng);
    t.requests.push_back(Request{id, KeySize(id), 0});
    if ((i + 1) % 100000 == 0) {
      for (int s = 0; s < 50000; ++s, ++next_scan_id) t.requests.push_back(Request{next_scan_id, KeySize(next_scan_id), 0});
    }
  }
  return t;
}

Trace KvPrefixTrace(size_t n_prompts, uint64_t seed) {
  constexpr uint64_t kChunk = 2 * kMiB;
  constexpr size_t kFamilies = 64;
  constexpr size_t kRecent = 20000;  // conversations that may still be resumed
  Trace t;
  t.name = "kv-prefix";
  t.capacity_bytes = 3000 * kChunk;  // ~6 GiB
  std::mt19937_64 rng(seed);
  Zipf family_pick(kFamilies, 1.0);
  Zipf resume_pick(kRecent, 1.0);
  std::vector<uint32_t> family_chunks(kFamilies);
  for (size_t f = 0; f < kFamilies; ++f) family_chunks[f] = 2 + Mix(f) % 7;  // 2..8 chunks
  struct Conversation {
    uint32_t family;
    uint32_t chunks;
  };
  std::vector<Conversation> conversations;  // by arrival
  uint64_t group = 0;
  for (size_t p = 0; p < n_prompts; ++p) {
    uint64_t conv;
    bool fresh = conversations.empty() || (rng() % 100) < 30;
    if (fresh) {
      conversations.push_back(Conversation{static_cast<uint32_t>(family_pick(rng)), 1 + static_cast<uint32_t>(rng() % 12)});
      conv = conversations.size() - 1;
    } else {
      size_t rank = resume_pick(rng) % std::min(conversations.size(), kRecent);
      conv = conversations.size() - 1 - rank;  // rank 0: the newest conversation
      Conversation& c = conversations[conv];
      c.chunks = std::min<uint32_t>(c.chunks + static_cast<uint32_t>(rng() % 3), 200);  // another turn
    }
    const Conversation& c = conversations[conv];
    ++group;
    for (uint32_t i = 0; i < family_chunks[c.family]; ++i) {
      t.requests.push_back(Request{(1ULL << 62) | (uint64_t{c.family} << 8) | i, kChunk, group});
    }
    for (uint32_t i = 0; i < c.chunks; ++i) {
      t.requests.push_back(Request{(conv << 8) | i, kChunk, group});
    }
  }
  return t;
}

struct Outcome {
  uint64_t requests = 0, hits = 0;
  uint64_t bytes = 0, hit_bytes = 0;
  double seconds = 0;
};

Outcome Replay(const Trace& trace, kvfs::EvictionPolicy& policy) {
  std::unordered_map<uint64_t, uint64_t> resident;  // id -> bytes
  resident.reserve(1 << 20);
  uint64_t used = 0;
  Outcome o;
  auto any = [](uint64_t) { return true; };
  uint64_t missed_group = 0;
  auto start = std::chrono::steady_clock::now();
  for (const Request& r : trace.requests) {
    ++o.requests;
    o.bytes += r.bytes;
    auto it = resident.find(r.id);
    bool past_miss = r.group != 0 && r.group == missed_group;
    if (it != resident.end()) {
      if (!past_miss) {
        ++o.hits;
        o.hit_bytes += r.bytes;
        policy.Access(r.id);
      }
      continue;  // past the first miss: recomputed, already stored
    }
    if (r.group != 0) missed_group = r.group;
    if (r.bytes > trace.capacity_bytes) continue;
    while (used + r.bytes > trace.capacity_bytes) {
      std::optional<uint64_t> victim = policy.Evict(any);
      if (!victim) break;
      auto v = resident.find(*victim);
      if (v == resident.end()) {
        std::fprintf(stderr, "%s evicted %llu, which is not resident\n", policy.name(),
                     static_cast<unsigned long long>(*victim));
        std::exit(1);
      }
      used -= v->second;
      resident.erase(v);
    }
    policy.Insert(r.id, r.bytes);
    resident.emplace(r.id, r.bytes);
    used += r.bytes;
  }
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return o;
}

}  // namespace

int main() {
  auto build_start = std::chrono::steady_clock::now();
  std::vector<Trace> traces;
  traces.push_back(ZipfTrace(0.9, 2000000, 1));
  traces.push_back(ZipfTrace(1.1, 2000000, 2));
  traces.push_back(ZipfScanTrace(1500000, 3));
  traces.push_back(KvPrefixTrace(120000, 4));
  double build_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - build_start).count();
  std::printf("kvfs_policy_bench: %zu traces generated in %.2f s\n\n", traces.size(), build_s);

  std::printf("%-10s  %-7s  %10s  %10s  %10s  %9s  %12s\n", "trace", "policy", "requests", "capacity", "hit ratio",
              "byte hit", "ops/s");
  for (const Trace& t : traces) {
    for (const std::string& name : kvfs::EvictionPolicyNames()) {
      kvfs::Result<std::unique_ptr<kvfs::EvictionPolicy>> policy = kvfs::MakeEvictionPolicy(name);
      if (!policy.ok()) {
        std::fprintf(stderr, "%s: %s\n", name.c_str(), policy.status().ToString().c_str());
        return 1;
      }
      Outcome o = Replay(t, **policy);
      char cap[32];
      std::snprintf(cap, sizeof(cap), "%.1f GiB", static_cast<double>(t.capacity_bytes) / (1024.0 * kMiB));
      std::printf("%-10s  %-7s  %10llu  %10s  %9.2f%%  %8.2f%%  %12.0f\n", t.name.c_str(), name.c_str(),
                  static_cast<unsigned long long>(o.requests), cap, 100.0 * o.hits / o.requests,
                  100.0 * static_cast<double>(o.hit_bytes) / static_cast<double>(o.bytes), o.requests / o.seconds);
    }
  }
  return 0;
}
