// SpaceManager: how many bytes each store may hold, and what gives way when
// a store is full. It owns, per store: the limits (capacity, free-space
// floor), the bytes reserved for commits in flight, the eviction policy that
// ranks the committed objects, the eviction counters, and the background
// evictor thread that keeps each store between its watermarks and above its
// floor.
//
// It does not own the objects. Evicting one (taking it out of the index and
// off the store) is its host's job (the Engine, through SpaceHost), which
// asks PickVictim for the object the policy gives up. What is used and
// leased on a store is read from the store's SpaceAccount, which the
// committed versions keep current.
//
// Contract:
//  - Reserve(store, bytes) succeeds when used + reserved + bytes fits the
//    store's capacity and leaves its filesystem above the floor. Otherwise
//    it evicts synchronously through the host (at most max_sync_evictions
//    objects) and tries again; ENOSPC when even that cannot make room, at
//    once (evicting nothing) when what is pinned (leased + reserved) alone
//    leaves no room. On a store where another host evicts (SpaceHost::MayEvict
//    false) it asks that host for room and waits a few of its passes.
//    Removed objects a store still frees in the background
//    (Store::PendingRemovalBytes) count against the capacity too: a Reserve
//    that would take used + reserved + pending over it waits until the
//    store has freed enough of them (Store::WaitForRemovals, at most 5 s)
//    before it returns, so the store's
//    bytes on its filesystem stay within the capacity plus what is in
//    flight.
//  - Every successful Reserve is matched by one Release of the same bytes.
//  - Eviction batches: each background pass over a store that evicted
//    something, and each Reserve that evicted synchronously, records the
//    number of objects it evicted in one histogram (EvictionBatches()).
//
// Thread-safety: every method may be called from any thread. The policies
// are guarded by policy_mu_, a leaf lock: PickVictim calls its predicate
// under it, so the predicate may read state its caller already holds locks
// on (the engine's index) but must take no lock itself. The evictor thread
// calls SpaceHost with no SpaceManager lock held. Reserve calls SpaceHost
// with no SpaceManager lock held; its caller must hold no lock that
// SpaceHost::EvictOne takes.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "adapters/mutex.h"
#include "adapters/status.h"
#include "adapters/store.h"
#include "core/eviction_policy.h"
#include "core/histogram.h"
#include "core/version.h"

namespace kvfs {

// Space rules for one store.
struct StoreLimits {
  // Bytes kvfs may use on this store (object footprints, see ObjectFootprint).
  uint64_t capacity_bytes = 0;
  // Free-space floor on the store's filesystem: kvfs never lets the free
  // space drop below max(min_free_bytes, min_free_fraction x filesystem size)
  // by writing, and evicts its own objects when something else pushes the
  // free space below it.
  uint64_t min_free_bytes = 0;
  double min_free_fraction = 0.0;
};

struct EvictionCounts {
  uint64_t capacity = 0;   // synchronous, to make room for a commit
  uint64_t watermark = 0;  // background, above the high watermark
  uint64_t floor = 0;      // the filesystem's free space fell below the floor
  uint64_t bytes = 0;      // footprint evicted, all causes
  uint64_t total() const { return capacity + watermark + floor; }
};

enum class EvictionCause { kCapacity, kWatermark, kFloor };

// What the SpaceManager needs from its host. Called with no SpaceManager
// lock held.
class SpaceHost {
 public:
  virtual ~SpaceHost() = default;
  // Whether this host may evict from the store now (false on a shared store
  // whose evictor is another host).
  virtual bool MayEvict(uint32_t store) const = 0;
  // Evicts one unpinned object of the store (one PickVictim) and counts it
  // with CountEviction. False when none can go.
  virtual bool EvictOne(uint32_t store, EvictionCause cause) = 0;
  // A store another host evicts from: this host's blocked commits want
  // `delta` more (or, negative, fewer) bytes of room.
  virtual void AskForRoom(uint32_t store, int64_t delta) = 0;
  // Waits for the other host to make room (a few of its passes); false when
  // waiting is pointless (nothing will change).
  virtual bool WaitForRoom(uint32_t store) = 0;
  // Bytes other hosts asked this host, their evictor, to free on the store.
  virtual uint64_t RoomAskedOfUs(uint32_t store) const = 0;
};

class SpaceManager {
 public:
  // The space rules of a mount (EngineOptions::space holds them).
  struct Options {
    // Bytes kvfs may use across all stores. Split evenly over the stores
    // unless `store_limits` gives each store its own figure.
    uint64_t capacity_bytes = 0;
    // One entry per store, or empty (then: capacity_bytes / n, no floor).
    std::vector<StoreLimits> store_limits;
    // "lru", "s3fifo" or "sieve" (see core/eviction_policy.h).
    std::string eviction_policy = "s3fifo";
    // The background evictor starts above high x capacity and stops below
    // low x capacity; it also restores the free-space floor.
    double high_watermark = 0.95;
    double low_watermark = 0.90;
    // Objects a writer may evict synchronously to make room for one commit.
    int max_sync_evictions = 256;
    // How often the evictor thread looks (it also restores the floor).
    std::chrono::milliseconds evictor_period{100};
  };

  // stores and accounts: one per store, outliving the manager. EINVAL for
  // an unknown policy or watermarks outside 0 < low <= high <= 1.
  static Result<std::unique_ptr<SpaceManager>> Create(const Options& options, std::vector<Store*> stores,
                                                      std::vector<std::shared_ptr<SpaceAccount>> accounts,
                                                      SpaceHost* host);
  ~SpaceManager();  // stops the evictor thread
  SpaceManager(const SpaceManager&) = delete;
  SpaceManager& operator=(const SpaceManager&) = delete;

  // Starts the background evictor thread (once); StopEvictor ends it
  // (idempotent; the destructor does it too).
  void StartEvictor();
  void StopEvictor();

  Status Reserve(uint32_t store, uint64_t bytes);
  void Release(uint32_t store, uint64_t bytes);

  // The policy's view of the committed objects.
  void Track(uint32_t store, uint64_t id, uint64_t footprint);
  void Untrack(uint32_t store, uint64_t id);
  void Access(uint32_t store, uint64_t id, uint32_t times = 1);
  // The object the store's policy gives up: one for which evictable(id)
  // holds, forgotten by the policy. nullopt when none was found.
  std::optional<uint64_t> PickVictim(uint32_t store, const std::function<bool(uint64_t)>& evictable);
  void CountEviction(uint32_t store, EvictionCause cause, uint64_t footprint);

  // One pass of the background evictor over every store, on the calling
  // thread. Returns the number of objects evicted.
  size_t EvictionPass();

  uint64_t capacity_bytes() const { return capacity_bytes_; }  // all stores
  uint64_t FloorBytes(uint32_t store) const;

  struct StoreCounters {
    StoreLimits limits;
    uint64_t floor_bytes = 0;
    uint64_t reserved_bytes = 0;
    EvictionCounts evictions;
    uint64_t enospc = 0;
  };
  StoreCounters Counters(uint32_t store) const;
  // Objects evicted per eviction batch, all stores and causes.
  HistogramSnapshot EvictionBatches() const { return eviction_batches_.Snapshot(); }

 private:
  struct PerStore {
    Store* store = nullptr;
    std::shared_ptr<SpaceAccount> account;
    StoreLimits limits;
    uint64_t fs_total_bytes = 0;
    std::atomic<uint64_t> reserved{0};
    std::unique_ptr<EvictionPolicy> policy;  // used under policy_mu_ only (the analysis cannot name it here)
    std::atomic<uint64_t> evicted_capacity{0}, evicted_watermark{0}, evicted_floor{0}, evicted_bytes{0};
    std::atomic<uint64_t> enospc{0};
    // The filesystem's free bytes at the last statvfs, and when (steady
    // clock ns; 0: never). See FreeBytes.
    std::atomic<uint64_t> fs_free_sample{0};
    std::atomic<int64_t> fs_free_sampled_ns{0};
  };
  SpaceManager(const Options& options, SpaceHost* host) : options_(options), host_(host) {}
  // Why bytes do not fit now (nothing reserved), or nullopt: reserved.
  std::optional<EvictionCause> TryReserve(uint32_t store, uint64_t bytes);
  // The store's filesystem free bytes for a reservation that needs `need`
  // of them: the last sample while it is younger than kFreeSampleMaxAge and
  // exceeds need by kFreeSampleMargin (writes since then cannot have used
  // that much), else a fresh statvfs. A commit then costs no statvfs while
  // the filesystem is far from the floor.
  uint64_t FreeBytes(PerStore& s, uint64_t need);
  static constexpr int64_t kFreeSampleMaxAge = 100'000'000;  // ns
  static constexpr uint64_t kFreeSampleMargin = 1ULL << 30;
  // How long a Reserve or an eviction pass waits for a store to free what
  // was removed from it (Store::SettleRemovals, Store::WaitForRemovals).
  static constexpr std::chrono::milliseconds kSettleRemovalsTimeout{5000};
  Status NoSpace(uint32_t store, const char* why);
  void EvictorLoop();

  const Options options_;
  SpaceHost* const host_;
  std::vector<std::unique_ptr<PerStore>> stores_;  // fixed after Create
  uint64_t capacity_bytes_ = 0;                    // fixed after Create
  Mutex policy_mu_;  // leaf: guards every PerStore::policy
  Histogram eviction_batches_{Histogram::BatchBounds()};  // lock-free

  Mutex evictor_mu_;
  CondVar evictor_wake_;  // with evictor_mu_
  bool stop_evictor_ KVFS_GUARDED_BY(evictor_mu_) = false;
  std::thread evictor_;
};

}  // namespace kvfs
