#include "core/space_manager.h"

#include <algorithm>

namespace kvfs {

Result<std::unique_ptr<SpaceManager>> SpaceManager::Create(const Options& options, std::vector<Store*> stores,
                                                           std::vector<std::shared_ptr<SpaceAccount>> accounts,
                                                           SpaceHost* host) {
  if (stores.empty() || stores.size() != accounts.size()) return Status::Error(EINVAL, "one account per store");
  if (!(options.low_watermark > 0 && options.low_watermark <= options.high_watermark && options.high_watermark <= 1)) {
    return Status::Error(EINVAL, "watermarks must satisfy 0 < low <= high <= 1");
  }
  std::unique_ptr<SpaceManager> m(new SpaceManager(options, host));
  for (size_t i = 0; i < stores.size(); ++i) {
    Result<std::unique_ptr<EvictionPolicy>> policy = MakeEvictionPolicy(options.eviction_policy);
    if (!policy.ok()) return policy.status();
    auto s = std::make_unique<PerStore>();
    s->store = stores[i];
    s->account = std::move(accounts[i]);
    if (options.store_limits.size() == stores.size()) {
      s->limits = options.store_limits[i];
    } else {
      s->limits.capacity_bytes = options.capacity_bytes / stores.size();
    }
    Result<StoreSpace> space = stores[i]->Space();
    if (space.ok()) s->fs_total_bytes = space->total_bytes;
    s->policy = std::move(*policy);
    m->capacity_bytes_ += s->limits.capacity_bytes;
    m->stores_.push_back(std::move(s));
  }
  return m;
}

SpaceManager::~SpaceManager() { StopEvictor(); }

void SpaceManager::StopEvictor() {
  {
    MutexLock g(evictor_mu_);
    stop_evictor_ = true;
  }
  evictor_wake_.notify_all();
  if (evictor_.joinable()) evictor_.join();
}

void SpaceManager::StartEvictor() {
  if (!evictor_.joinable()) evictor_ = std::thread([this] { EvictorLoop(); });
}

uint64_t SpaceManager::FloorBytes(uint32_t si) const {
  const PerStore& s = *stores_[si];
  auto by_fraction = static_cast<uint64_t>(s.limits.min_free_fraction * static_cast<double>(s.fs_total_bytes));
  return std::max(s.limits.min_free_bytes, by_fraction);
}

std::optional<EvictionCause> SpaceManager::TryReserve(uint32_t si, uint64_t bytes) {
  PerStore& s = *stores_[si];
  uint64_t floor = FloorBytes(si);
  uint64_t reserved = s.reserved.load();
  const uint64_t fs_free = floor > 0 ? FreeBytes(s, floor + reserved + bytes) : UINT64_MAX;
  while (true) {
    uint64_t used = s.account->used_bytes.load();
    if (used + reserved + bytes > s.limits.capacity_bytes) return EvictionCause::kCapacity;
    // Reserved bytes may already be on the disk; counting them again errs on the safe side.
    if (floor > 0 && (fs_free < floor || fs_free - floor < reserved + bytes)) return EvictionCause::kFloor;
    if (s.reserved.compare_exchange_weak(reserved, reserved + bytes)) return std::nullopt;
  }
}

uint64_t SpaceManager::FreeBytes(PerStore& s, uint64_t need) {
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch()).count();
  const int64_t at = s.fs_free_sampled_ns.load(std::memory_order_acquire);
  const uint64_t sample = s.fs_free_sample.load(std::memory_order_relaxed);
  if (at != 0 && now - at < kFreeSampleMaxAge && sample > need && sample - need > kFreeSampleMargin) return sample;
  Result<StoreSpace> space = s.store->Space();
  if (!space.ok()) return UINT64_MAX;  // as before: an unknown free space does not refuse
  s.fs_free_sample.store(space->free_bytes, std::memory_order_relaxed);
  s.fs_free_sampled_ns.store(now, std::memory_order_release);
  return space->free_bytes;
}

Status SpaceManager::NoSpace(uint32_t si, const char* why) {
  stores_[si]->enospc.fetch_add(1, std::memory_order_relaxed);
  return Status::Error(ENOSPC, why);
}

Status SpaceManager::Reserve(uint32_t si, uint64_t bytes) {
  PerStore& s = *stores_[si];
  // Objects this reservation evicted: one batch, recorded however it ends.
  struct BatchRecorder {
    Histogram& batches;
    uint64_t evicted = 0;
    ~BatchRecorder() {
      if (evicted > 0) batches.Record(evicted);
    }
  } batch{eviction_batches_};
  bool asked_for_room = false;
  bool floor_evicted = false;
  auto withdraw = [&] {
    if (asked_for_room) host_->AskForRoom(si, -static_cast<int64_t>(bytes));
  };
  for (int attempt = 0;; ++attempt) {
    std::optional<EvictionCause> why = TryReserve(si, bytes);
    if (!why) {
      withdraw();
      // The floor is about the filesystem as other programs see it: the
      // space of what was evicted for it comes back before the commit
      // writes (a store may free it in the background; its Space() counts
      // it as free already).
      if (floor_evicted) s.store->SettleRemovals(kSettleRemovalsTimeout);
      // The capacity is about the store's bytes too: what was removed and is
      // still being freed in the background counts until it is gone. Wait
      // until enough of it is (not for the whole queue).
      const uint64_t committed = s.account->used_bytes.load() + s.reserved.load();
      const uint64_t pending = s.store->PendingRemovalBytes();
      if (pending > 0 && committed + pending > s.limits.capacity_bytes) {
        const uint64_t room = s.limits.capacity_bytes > committed ? s.limits.capacity_bytes - committed : 0;
        s.store->WaitForRemovals(room, kSettleRemovalsTimeout);
      }
      return Status::Ok();
    }
    if (!host_->MayEvict(si)) {
      // Another host evicts from this store: ask it for room and give it a
      // few of its passes, then give up. A commit that could not fit even
      // with everything unpinned gone asks for nothing.
      if (*why == EvictionCause::kCapacity &&
          s.account->leased_bytes.load() + s.reserved.load() + bytes > s.limits.capacity_bytes) {
        withdraw();
        return NoSpace(si, "no space: larger than what the shared store's capacity leaves free of pinned objects");
      }
      if (!asked_for_room) {
        asked_for_room = true;
        host_->AskForRoom(si, static_cast<int64_t>(bytes));
      }
      if (attempt < 6 && host_->WaitForRoom(si)) continue;
      withdraw();
      return NoSpace(si, "no space: the shared store is at its capacity and another host evicts from it");
    }
    // Evict only when eviction can make room: what is leased or reserved
    // stays, so when it alone leaves no room the answer is ENOSPC now, with
    // nothing evicted for nothing.
    uint64_t pinned = s.account->leased_bytes.load() + s.reserved.load();
    bool hopeless = *why == EvictionCause::kCapacity && pinned + bytes > s.limits.capacity_bytes;
    if (*why == EvictionCause::kFloor) {
      uint64_t used = s.account->used_bytes.load();
      uint64_t evictable = used - std::min(used, s.account->leased_bytes.load());
      Result<StoreSpace> space = s.store->Space();
      hopeless = space.ok() && space->free_bytes + evictable < FloorBytes(si) + s.reserved.load() + bytes;
    }
    if (hopeless || attempt >= options_.max_sync_evictions || !host_->EvictOne(si, *why)) {
      return NoSpace(si, *why == EvictionCause::kFloor ? "no space: the store's filesystem is at its free-space floor"
                                                       : "no space: capacity reached and everything left is in use");
    }
    ++batch.evicted;
    floor_evicted = floor_evicted || *why == EvictionCause::kFloor;
  }
}

void SpaceManager::Release(uint32_t si, uint64_t bytes) { stores_[si]->reserved.fetch_sub(bytes); }

void SpaceManager::Track(uint32_t si, uint64_t id, uint64_t footprint) {
  MutexLock g(policy_mu_);
  stores_[si]->policy->Insert(id, footprint);
}

void SpaceManager::Untrack(uint32_t si, uint64_t id) {
  MutexLock g(policy_mu_);
  stores_[si]->policy->Remove(id);
}

void SpaceManager::Access(uint32_t si, uint64_t id, uint32_t times) {
  MutexLock g(policy_mu_);
  for (uint32_t i = 0; i < times; ++i) stores_[si]->policy->Access(id);
}

std::optional<uint64_t> SpaceManager::PickVictim(uint32_t si, const std::function<bool(uint64_t)>& evictable) {
  MutexLock g(policy_mu_);
  return stores_[si]->policy->Evict(evictable);
}

void SpaceManager::CountEviction(uint32_t si, EvictionCause cause, uint64_t footprint) {
  PerStore& s = *stores_[si];
  s.evicted_bytes.fetch_add(footprint, std::memory_order_relaxed);
  switch (cause) {
    case EvictionCause::kCapacity: s.evicted_capacity.fetch_add(1, std::memory_order_relaxed); break;
    case EvictionCause::kWatermark: s.evicted_watermark.fetch_add(1, std::memory_order_relaxed); break;
    case EvictionCause::kFloor: s.evicted_floor.fetch_add(1, std::memory_order_relaxed); break;
  }
}

size_t SpaceManager::EvictionPass() {
  size_t evicted = 0;
  for (uint32_t si = 0; si < stores_.size(); ++si) {
    if (!host_->MayEvict(si)) continue;
    PerStore& s = *stores_[si];
    const size_t evicted_before = evicted;
    auto cap = static_cast<double>(s.limits.capacity_bytes);
    auto used = [&] { return static_cast<double>(s.account->used_bytes.load() + s.reserved.load()); };
    // Room other hosts of a shared store asked for, to commit what did not fit.
    auto asked = static_cast<double>(host_->RoomAskedOfUs(si));
    if (used() > cap * options_.high_watermark || used() + asked > cap) {
      for (int n = 0; n < 4096 && (used() > cap * options_.low_watermark || used() + asked > cap); ++n) {
        if (!host_->EvictOne(si, EvictionCause::kWatermark)) break;
        ++evicted;
      }
    }
    uint64_t floor = FloorBytes(si);
    if (floor > 0) {
      int floor_evictions = 0;
      for (; floor_evictions < 4096; ++floor_evictions) {
        Result<StoreSpace> space = s.store->Space();
        if (!space.ok() || space->free_bytes >= floor) break;
        if (!host_->EvictOne(si, EvictionCause::kFloor)) break;
        ++evicted;
      }
      // The floor is about the filesystem as other programs see it.
      if (floor_evictions > 0) s.store->SettleRemovals(kSettleRemovalsTimeout);
    }
    if (evicted > evicted_before) eviction_batches_.Record(evicted - evicted_before);
  }
  return evicted;
}

void SpaceManager::EvictorLoop() {
  UniqueLock lk(evictor_mu_);
  while (!stop_evictor_) {
    evictor_wake_.wait_for(lk, options_.evictor_period, [&] {
      evictor_mu_.AssertHeld();
      return stop_evictor_;
    });
    if (stop_evictor_) break;
    lk.unlock();
    EvictionPass();
    lk.lock();
  }
}

SpaceManager::StoreCounters SpaceManager::Counters(uint32_t si) const {
  const PerStore& s = *stores_[si];
  StoreCounters c;
  c.limits = s.limits;
  c.floor_bytes = FloorBytes(si);
  c.reserved_bytes = s.reserved.load();
  c.evictions.capacity = s.evicted_capacity.load();
  c.evictions.watermark = s.evicted_watermark.load();
  c.evictions.floor = s.evicted_floor.load();
  c.evictions.bytes = s.evicted_bytes.load();
  c.enospc = s.enospc.load();
  return c;
}

}  // namespace kvfs
