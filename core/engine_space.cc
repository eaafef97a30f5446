// Engine: space reservations, eviction and the background evictor.
#include "core/engine.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <sstream>
#include <thread>

#include "core/engine_internal.h"

namespace kvfs {
using namespace engine_detail;

// ---------------------------------------------------------------------------
// Space: reservations, eviction, the background evictor.

uint64_t Engine::FloorBytes(uint32_t si) const {
  const StoreRuntime& rt = *runtime_[si];
  auto by_fraction = static_cast<uint64_t>(rt.limits.min_free_fraction * static_cast<double>(rt.fs_total_bytes));
  return std::max(rt.limits.min_free_bytes, by_fraction);
}

std::optional<Engine::EvictionCause> Engine::TryReserve(uint32_t si, uint64_t bytes) {
  StoreRuntime& rt = *runtime_[si];
  uint64_t floor = FloorBytes(si);
  uint64_t fs_free = UINT64_MAX;
  if (floor > 0) {
    Result<StoreSpace> space = stores_[si]->Space();
    if (space.ok()) fs_free = space->free_bytes;
  }
  uint64_t reserved = rt.reserved.load();
  while (true) {
    uint64_t used = store_accounts_[si]->used_bytes.load();
    if (used + reserved + bytes > rt.limits.capacity_bytes) return EvictionCause::kCapacity;
    // Reserved bytes may already be on the disk; counting them again errs on the safe side.
    if (floor > 0 && (fs_free < floor || fs_free - floor < reserved + bytes)) return EvictionCause::kFloor;
    if (rt.reserved.compare_exchange_weak(reserved, reserved + bytes)) return std::nullopt;
  }
}

bool Engine::MayEvict(uint32_t si) const {
  if (!shared_[si]) return true;
  if (!shared_[si]->holds_evictor.load()) return false;
  ClusterCoordinator* cluster = stores_[si]->cluster();
  return !cluster || cluster->HoldsEvictorLease();  // not if a stalled pass let the lease age
}

Status Engine::ReserveSpace(uint32_t si, uint64_t bytes) {
  bool asked_for_room = false;
  auto withdraw = [&] {
    if (asked_for_room) shared_[si]->pending_room.fetch_sub(bytes);
  };
  for (int attempt = 0;; ++attempt) {
    std::optional<EvictionCause> why = TryReserve(si, bytes);
    if (!why) {
      withdraw();
      return Status::Ok();
    }
    if (!MayEvict(si)) {
      // Another host evicts from this shared store: ask it for room (the
      // lease thread writes the request), and give it (and our view of the
      // store) a few reconcile passes, then give up. A commit that could not
      // fit even with everything unpinned gone asks for nothing.
      const StoreRuntime& rt = *runtime_[si];
      if (*why == EvictionCause::kCapacity &&
          store_accounts_[si]->leased_bytes.load() + rt.reserved.load() + bytes > rt.limits.capacity_bytes) {
        withdraw();
        runtime_[si]->enospc.fetch_add(1, std::memory_order_relaxed);
        return Status::Error(ENOSPC, "no space: larger than what the shared store's capacity leaves free of pinned objects");
      }
      if (!asked_for_room) {
        asked_for_room = true;
        shared_[si]->pending_room.fetch_add(bytes);
      }
      if (attempt < 6 && WaitForReconcile(options_.shared_refresh * 3)) continue;
      withdraw();
      runtime_[si]->enospc.fetch_add(1, std::memory_order_relaxed);
      return Status::Error(ENOSPC, "no space: the shared store is at its capacity and another host evicts from it");
    }
    // Evict only when eviction can make room: what is leased or reserved
    // stays, so when it alone leaves no room the answer is ENOSPC now, with
    // nothing evicted for nothing.
    const StoreRuntime& rt = *runtime_[si];
    uint64_t pinned = store_accounts_[si]->leased_bytes.load() + rt.reserved.load();
    bool hopeless = *why == EvictionCause::kCapacity && pinned + bytes > rt.limits.capacity_bytes;
    if (*why == EvictionCause::kFloor) {
      uint64_t evictable = store_accounts_[si]->used_bytes.load() - std::min(store_accounts_[si]->used_bytes.load(),
                                                                              store_accounts_[si]->leased_bytes.load());
      Result<StoreSpace> space = stores_[si]->Space();
      hopeless = space.ok() && space->free_bytes + evictable < FloorBytes(si) + rt.reserved.load() + bytes;
    }
    if (hopeless || attempt >= options_.max_sync_evictions || !EvictOne(si, *why)) {
      runtime_[si]->enospc.fetch_add(1, std::memory_order_relaxed);
      return Status::Error(ENOSPC, *why == EvictionCause::kFloor
                                       ? "no space: the store's filesystem is at its free-space floor"
                                       : "no space: capacity reached and everything left is in use");
    }
  }
}

void Engine::ReleaseReservation(uint32_t si, uint64_t bytes) { runtime_[si]->reserved.fetch_sub(bytes); }

void Engine::TrackCommitted(Inode* inode, const Version* old_version) {
  if (old_version) runtime_[old_version->store_index()]->policy->Remove(inode->ino);
  if (inode->committed && !inode->is_dir) {
    runtime_[inode->committed->store_index()]->policy->Insert(inode->ino, inode->committed->footprint());
  }
}

void Engine::UntrackCommitted(Inode* inode) {
  if (inode->committed && !inode->is_dir) runtime_[inode->committed->store_index()]->policy->Remove(inode->ino);
}

bool Engine::EvictOne(uint32_t si, EvictionCause cause) {
  if (!MayEvict(si)) return false;
  uint64_t parent_ino = 0, ino = 0;
  std::string name;
  {
    // publish_mu_ keeps a new version of the same key from being renamed into
    // the location between our index update and the file removal.
    std::lock_guard<std::mutex> publish(publish_mu_);
    std::shared_ptr<Version> victim;
    {
      std::lock_guard<std::mutex> g(mu_);
      std::optional<uint64_t> id = runtime_[si]->policy->Evict([&](uint64_t candidate) {
        Inode* i = ns_.Get(candidate);
        return i && !i->is_dir && i->linked() && i->committed && i->committed->store_index() == si &&
               !i->committing && i->writers == 0 && i->committed->leases() == 0;
      });
      if (!id) return false;
      Inode* inode = ns_.Get(*id);
      parent_ino = inode->parent->ino;
      name = inode->name;
      ino = inode->ino;
      inode->evicted = true;
      ns_.Detach(inode);  // while it still has its version: Detach counts it as visible
      victim = std::move(inode->committed);
      ns_.Reap(inode);
    }
    // On a shared store another host may have put a new version there since
    // this index last looked: that one is not the victim.
    bool replaced = false;
    if (shared_[si]) {
      Result<ListedObject> now = victim->store()->StatObject(victim->location());
      replaced = !now.ok() || now->file_id != victim->file_id;
    }
    Status s = replaced ? Status::Ok() : victim->store()->Remove(victim->location(), /*sync=*/false);
    if (!s.ok() && s.err() != ENOENT) spdlog::warn("evict {}: {}", victim->location(), s.message());
    StoreRuntime& rt = *runtime_[si];
    rt.evicted_bytes.fetch_add(victim->footprint(), std::memory_order_relaxed);
    switch (cause) {
      case EvictionCause::kCapacity: rt.evicted_capacity.fetch_add(1, std::memory_order_relaxed); break;
      case EvictionCause::kWatermark: rt.evicted_watermark.fetch_add(1, std::memory_order_relaxed); break;
      case EvictionCause::kFloor: rt.evicted_floor.fetch_add(1, std::memory_order_relaxed); break;
    }
    victim.reset();  // the space is back once no lease refers to it (none does)
  }
  // The kernel hears of it with no engine lock held.
  if (EngineObserver* o = observer_.load()) o->EntryEvicted(parent_ino, name, ino);
  return true;
}

size_t Engine::BackgroundPass() {
  size_t evicted = 0;
  for (uint32_t si = 0; si < stores_.size(); ++si) {
    if (!MayEvict(si)) continue;
    StoreRuntime& rt = *runtime_[si];
    auto cap = static_cast<double>(rt.limits.capacity_bytes);
    auto used = [&] { return static_cast<double>(store_accounts_[si]->used_bytes.load() + rt.reserved.load()); };
    // Room other hosts of a shared store asked for, to commit what did not fit.
    auto asked = static_cast<double>(shared_[si] ? shared_[si]->room_requested.load() : 0);
    if (used() > cap * options_.high_watermark || used() + asked > cap) {
      for (int n = 0; n < 4096 && (used() > cap * options_.low_watermark || used() + asked > cap); ++n) {
        if (!EvictOne(si, EvictionCause::kWatermark)) break;
        ++evicted;
      }
    }
    uint64_t floor = FloorBytes(si);
    if (floor > 0) {
      for (int n = 0; n < 4096; ++n) {
        Result<StoreSpace> space = stores_[si]->Space();
        if (!space.ok() || space->free_bytes >= floor) break;
        if (!EvictOne(si, EvictionCause::kFloor)) break;
        ++evicted;
      }
    }
  }
  return evicted;
}

size_t Engine::EvictNow() { return BackgroundPass(); }

void Engine::EvictorLoop() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_evictor_) {
    evictor_wake_.wait_for(lk, std::chrono::milliseconds(100));
    if (stop_evictor_) break;
    lk.unlock();
    BackgroundPass();
    lk.lock();
  }
}

}  // namespace kvfs
