// SharedTier: this host's part in the stores it shares with other hosts
// (Store::Shared(), a directory on a distributed filesystem). It runs two
// threads:
//  - the lease thread renews the evictor lease of each shared store every
//    `refresh` (only the holder evicts), and carries this host's requests
//    for room to the holder and the other hosts' requests back;
//  - the reconciler runs a pass every `refresh`: for each shared store it
//    asks its SharedIndex to reconcile the index with a listing of the
//    store, then exchanges access counts (non-holders publish the opens
//    they saw; the holder feeds the others' counts to its policy).
// The index side (what a listing, a read-through or a revalidation changes
// in the index) is the SharedIndex's: the Engine, in engine_shared.cc.
//
// Thread-safety: every method may be called from any thread. mu_ guards the
// pass counters and the stop flag; access_mu_ guards the access counts.
// Both are leaves: SharedIndex is called with neither held.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "adapters/mutex.h"
#include "adapters/store.h"

namespace kvfs {

// What the shared tier asks of the index. Called from the reconciler thread
// with no SharedTier lock held.
class SharedIndex {
 public:
  virtual ~SharedIndex() = default;
  // Lists the store and applies what other hosts added, replaced or removed.
  // holder: this host holds the store's evictor lease (it then keeps what it
  // needs to apply other hosts' access counts). False when the listing failed.
  virtual bool ReconcileStore(uint32_t store, bool holder) = 0;
  // The evictor lease holder: other hosts' opens (location -> count) since
  // they last published them.
  virtual void ApplyRemoteAccesses(uint32_t store, const std::map<std::string, uint64_t>& counts) = 0;
};

class SharedTier {
 public:
  // stores: every store of the engine (those not Shared() are ignored),
  // outliving the tier. refresh: must be positive.
  SharedTier(std::vector<Store*> stores, std::chrono::milliseconds refresh, SharedIndex* index);
  ~SharedTier();  // Stop()
  SharedTier(const SharedTier&) = delete;
  SharedTier& operator=(const SharedTier&) = delete;

  // Starts the two threads (when there is a shared store). Stop ends them
  // and wakes every waiter; both are idempotent.
  void Start();
  void Stop();

  bool any() const { return any_; }
  bool shared(uint32_t store) const { return stores_[store].shared != nullptr; }

  // True when this host may evict from the store now: it is not shared, or
  // this host holds its evictor lease and renewed it recently enough.
  bool MayEvict(uint32_t store) const;
  // This host's blocked commits want `delta` more (negative: fewer) bytes of
  // room on a store another host evicts from; the lease thread tells it.
  void AskForRoom(uint32_t store, int64_t delta);
  // As the holder: the room other hosts asked for, as of the last renewal.
  uint64_t RoomAskedOfUs(uint32_t store) const;
  // An open of the object at location on a shared store, for the holder's
  // policy (published at the next pass).
  void NoteAccess(uint32_t store, const std::string& location);
  // Waits until a whole reconciler pass that started after this call has
  // completed. False on timeout or when no store is shared; true at once
  // after Stop.
  bool WaitForPass(std::chrono::milliseconds timeout);

  // What other hosts' changes did to the index (counted by the index side).
  enum class Remote { kAdded, kReplaced, kRemoved, kReadThrough };
  void Count(uint32_t store, Remote what);

  struct StoreState {
    std::string host_id;
    std::string evictor_holder;
    bool holds_evictor = false;
    uint64_t reconcile_passes = 0, reconcile_failures = 0;
    uint64_t remote_added = 0, remote_replaced = 0, remote_removed = 0, read_through = 0;
  };
  StoreState State(uint32_t store) const;

 private:
  struct Shared {
    std::atomic<bool> holds_evictor{false};   // as of the last lease renewal
    std::atomic<uint64_t> pending_room{0};     // bytes this host's blocked commits ask for
    uint64_t room_published = 0;               // lease thread only: pending_room as last written
    std::atomic<uint64_t> room_requested{0};   // holder: bytes other hosts asked for
    std::atomic<uint64_t> remote_added{0}, remote_replaced{0}, remote_removed{0}, read_through{0};
    std::atomic<uint64_t> reconcile_passes{0}, reconcile_failures{0};
    std::map<std::string, uint64_t> accesses;  // under access_mu_: opens since last published
  };
  struct PerStore {
    Store* store = nullptr;
    std::unique_ptr<Shared> shared;  // null when the store is not shared
  };
  void ShareAccesses(uint32_t store, bool holder);
  void ReconcileLoop();
  void LeaseLoop();

  std::vector<PerStore> stores_;  // fixed at construction
  bool any_ = false;
  const std::chrono::milliseconds refresh_;
  SharedIndex* const index_;

  Mutex access_mu_;
  mutable Mutex mu_;
  CondVar wake_;       // with mu_: stop
  CondVar pass_done_;  // with mu_
  bool stop_ KVFS_GUARDED_BY(mu_) = false;
  uint64_t passes_started_ KVFS_GUARDED_BY(mu_) = 0;
  uint64_t passes_done_ KVFS_GUARDED_BY(mu_) = 0;
  std::thread reconciler_;
  std::thread lease_thread_;
};

}  // namespace kvfs
