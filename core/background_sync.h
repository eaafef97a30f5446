// BackgroundSync: makes the changes that commits, renames and removals left
// un-flushed on the stores durable within a bounded delay.
//
// With the default durability (docs/durability.md), a commit publishes its
// version with an atomic rename but no flush: it is visible at once and
// survives a daemon kill (the bytes are in the kernel), and it becomes
// durable against power loss at the store's next SyncAll. Whoever leaves a
// store un-flushed calls MarkDirty; a thread of this class calls SyncAll on
// every dirty store at most `interval` after it became dirty, and SyncDirty
// does the same at once (fsync). A change marked dirty before a SyncAll
// started is durable when that SyncAll succeeds.
//
// A failed SyncAll is logged and counted, and the store stays dirty, so the
// next pass tries again.
//
// Thread-safety: every method may be called from any thread. The stores are
// not owned and must outlive this object; SyncAll may run concurrently on one
// store (from the thread and from SyncDirty), which Store allows. The
// destructor stops the thread and flushes what is still dirty.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "adapters/mutex.h"
#include "adapters/status.h"
#include "adapters/store.h"

namespace kvfs {

class BackgroundSync {
 public:
  // interval must be positive. The thread starts at once.
  BackgroundSync(std::vector<Store*> stores, std::chrono::milliseconds interval);
  ~BackgroundSync();
  BackgroundSync(const BackgroundSync&) = delete;
  BackgroundSync& operator=(const BackgroundSync&) = delete;

  // Store `index` has changes that are not durable yet. Lock-free except for
  // waking the thread on a clean-to-dirty transition.
  void MarkDirty(uint32_t index);
  // Makes every change marked dirty before this call durable now, on every
  // store. EIO (with the store's message) when a SyncAll fails.
  Status SyncDirty();
  // Waits until every change marked dirty before this call is durable (by
  // the thread, not by this call). False on timeout. For tests.
  bool WaitDurable(std::chrono::milliseconds timeout);

  uint64_t syncs() const { return syncs_.load(std::memory_order_relaxed); }
  uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }
  // Stores with changes not yet durable.
  uint32_t dirty_stores() const;

 private:
  struct Slot {
    Store* store = nullptr;
    std::atomic<uint64_t> marked{0};  // MarkDirty calls so far
    std::atomic<uint64_t> synced{0};  // `marked` as of the last successful SyncAll's start
  };
  // Syncs one store if dirty; returns its status.
  Status SyncOne(Slot* slot);
  void Loop();

  std::vector<std::unique_ptr<Slot>> slots_;
  const std::chrono::milliseconds interval_;
  std::atomic<uint64_t> syncs_{0}, failures_{0};

  Mutex mu_;
  CondVar wake_;     // with mu_: a store became dirty, or stop
  CondVar durable_;  // with mu_: a pass of the thread ended
  bool stop_ KVFS_GUARDED_BY(mu_) = false;
  uint64_t passes_ KVFS_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace kvfs
