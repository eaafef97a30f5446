#include "core/shared_tier.h"

#include <spdlog/spdlog.h>

namespace kvfs {

SharedTier::SharedTier(std::vector<Store*> stores, std::chrono::milliseconds refresh, SharedIndex* index)
    : refresh_(refresh), index_(index) {
  for (Store* s : stores) {
    PerStore p;
    p.store = s;
    if (s->Shared()) p.shared = std::make_unique<Shared>();
    any_ |= s->Shared();
    stores_.push_back(std::move(p));
  }
}

SharedTier::~SharedTier() { Stop(); }

void SharedTier::Start() {
  if (!any_ || reconciler_.joinable()) return;
  lease_thread_ = std::thread([this] { LeaseLoop(); });
  reconciler_ = std::thread([this] { ReconcileLoop(); });
}

void SharedTier::Stop() {
  {
    MutexLock g(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  pass_done_.notify_all();
  if (reconciler_.joinable()) reconciler_.join();
  if (lease_thread_.joinable()) lease_thread_.join();
}

bool SharedTier::MayEvict(uint32_t si) const {
  const Shared* sh = stores_[si].shared.get();
  if (!sh) return true;
  if (!sh->holds_evictor.load()) return false;
  ClusterCoordinator* cluster = stores_[si].store->cluster();
  return !cluster || cluster->HoldsEvictorLease();  // not if a stalled pass let the lease age
}

void SharedTier::AskForRoom(uint32_t si, int64_t delta) {
  if (Shared* sh = stores_[si].shared.get()) sh->pending_room.fetch_add(static_cast<uint64_t>(delta));
}

uint64_t SharedTier::RoomAskedOfUs(uint32_t si) const {
  const Shared* sh = stores_[si].shared.get();
  return sh ? sh->room_requested.load() : 0;
}

void SharedTier::NoteAccess(uint32_t si, const std::string& location) {
  Shared* sh = stores_[si].shared.get();
  if (!sh) return;
  MutexLock g(access_mu_);
  sh->accesses[location]++;
}

void SharedTier::Count(uint32_t si, Remote what) {
  Shared* sh = stores_[si].shared.get();
  if (!sh) return;
  switch (what) {
    case Remote::kAdded: sh->remote_added.fetch_add(1, std::memory_order_relaxed); break;
    case Remote::kReplaced: sh->remote_replaced.fetch_add(1, std::memory_order_relaxed); break;
    case Remote::kRemoved: sh->remote_removed.fetch_add(1, std::memory_order_relaxed); break;
    case Remote::kReadThrough: sh->read_through.fetch_add(1, std::memory_order_relaxed); break;
  }
}

SharedTier::StoreState SharedTier::State(uint32_t si) const {
  StoreState st;
  const Shared* sh = stores_[si].shared.get();
  if (!sh) return st;
  if (ClusterCoordinator* cluster = stores_[si].store->cluster()) {
    st.host_id = cluster->host_id();
    st.evictor_holder = cluster->EvictorHolder();
  }
  st.holds_evictor = MayEvict(si);
  st.reconcile_passes = sh->reconcile_passes.load();
  st.reconcile_failures = sh->reconcile_failures.load();
  st.remote_added = sh->remote_added.load();
  st.remote_replaced = sh->remote_replaced.load();
  st.remote_removed = sh->remote_removed.load();
  st.read_through = sh->read_through.load();
  return st;
}

void SharedTier::ShareAccesses(uint32_t si, bool holder) {
  ClusterCoordinator* cluster = stores_[si].store->cluster();
  if (!cluster) return;
  std::map<std::string, uint64_t> mine;
  {
    MutexLock g(access_mu_);
    mine.swap(stores_[si].shared->accesses);
  }
  if (!holder) {
    // The holder's own opens already reached its policy; others publish theirs.
    Status p = cluster->PublishAccesses(mine);
    if (!p.ok()) spdlog::debug("{}: cannot publish access counts: {}", stores_[si].store->Describe(), p.message());
    return;
  }
  Result<std::map<std::string, uint64_t>> theirs = cluster->CollectAccesses();
  if (theirs.ok()) index_->ApplyRemoteAccesses(si, *theirs);
}

void SharedTier::ReconcileLoop() {
  uint64_t pass = 0;
  UniqueLock lk(mu_);
  while (!stop_) {
    ++passes_started_;
    lk.unlock();
    for (uint32_t si = 0; si < stores_.size(); ++si) {
      Shared* sh = stores_[si].shared.get();
      if (!sh) continue;
      ClusterCoordinator* cluster = stores_[si].store->cluster();
      bool holder = sh->holds_evictor.load();
      if (index_->ReconcileStore(si, holder)) {
        sh->reconcile_passes.fetch_add(1, std::memory_order_relaxed);
      } else {
        sh->reconcile_failures.fetch_add(1, std::memory_order_relaxed);
      }
      ShareAccesses(si, holder);
      if (holder && cluster && pass % 100 == 99) {
        uint64_t n = cluster->SweepAbandoned();
        if (n > 0) spdlog::info("{}: removed {} files abandoned by stopped hosts", stores_[si].store->Describe(), n);
      }
    }
    ++pass;
    lk.lock();
    ++passes_done_;
    pass_done_.notify_all();
    wake_.wait_for(lk, refresh_, [&] {
      mu_.AssertHeld();
      return stop_;
    });
  }
}

void SharedTier::LeaseLoop() {
  UniqueLock lk(mu_);
  while (!stop_) {
    lk.unlock();
    for (uint32_t si = 0; si < stores_.size(); ++si) {
      Shared* sh = stores_[si].shared.get();
      if (!sh) continue;
      ClusterCoordinator* cluster = stores_[si].store->cluster();
      bool holder = cluster ? cluster->RenewEvictorLease() : true;
      bool was = sh->holds_evictor.exchange(holder);
      if (holder != was) {
        spdlog::info("{}: this host {} the evictor lease", stores_[si].store->Describe(),
                     holder ? "now holds" : "gave up");
      }
      sh->room_requested.store(holder && cluster ? cluster->RoomRequested() : 0);
      // Blocked commits' room requests reach the DFS from here, not from the
      // committing threads.
      uint64_t pending = sh->pending_room.load();
      if (cluster && pending != sh->room_published && cluster->RequestRoom(pending).ok()) sh->room_published = pending;
    }
    lk.lock();
    wake_.wait_for(lk, refresh_, [&] {
      mu_.AssertHeld();
      return stop_;
    });
  }
}

bool SharedTier::WaitForPass(std::chrono::milliseconds timeout) {
  if (!any_) return false;
  UniqueLock lk(mu_);
  // Passes run one after the other: the first to start after this call is
  // number started + 1, and it is done when that many passes are.
  uint64_t target = passes_started_ + 1;
  return pass_done_.wait_for(lk, timeout, [&] {
      mu_.AssertHeld();
      return stop_ || passes_done_ >= target;
    });
}

}  // namespace kvfs
