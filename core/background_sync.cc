#include "core/background_sync.h"

#include <spdlog/spdlog.h>

namespace kvfs {

BackgroundSync::BackgroundSync(std::vector<Store*> stores, std::chrono::milliseconds interval)
    : interval_(interval.count() > 0 ? interval : std::chrono::milliseconds(1)) {
  for (Store* s : stores) {
    auto slot = std::make_unique<Slot>();
    slot->store = s;
    slots_.push_back(std::move(slot));
  }
  thread_ = std::thread([this] { Loop(); });
}

BackgroundSync::~BackgroundSync() {
  {
    MutexLock g(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  for (auto& slot : slots_) (void)SyncOne(slot.get());
}

void BackgroundSync::MarkDirty(uint32_t index) {
  Slot* slot = slots_.at(index).get();
  uint64_t before = slot->marked.fetch_add(1, std::memory_order_acq_rel);
  if (before == slot->synced.load(std::memory_order_acquire)) {
    // Clean until now: the thread may be waiting without a deadline.
    MutexLock g(mu_);
    wake_.notify_all();
  }
}

Status BackgroundSync::SyncOne(Slot* slot) {
  uint64_t marked = slot->marked.load(std::memory_order_acquire);
  if (marked == slot->synced.load(std::memory_order_acquire)) return Status::Ok();
  Status s = slot->store->SyncAll();
  if (!s.ok()) {
    failures_.fetch_add(1, std::memory_order_relaxed);
    return s;
  }
  syncs_.fetch_add(1, std::memory_order_relaxed);
  // Every change marked before the SyncAll began is durable now.
  uint64_t prev = slot->synced.load(std::memory_order_acquire);
  while (prev < marked && !slot->synced.compare_exchange_weak(prev, marked, std::memory_order_acq_rel)) {
  }
  return Status::Ok();
}

Status BackgroundSync::SyncDirty() {
  Status first;
  for (auto& slot : slots_) {
    Status s = SyncOne(slot.get());
    if (!s.ok() && first.ok()) first = Status::Error(EIO, s.message());
  }
  return first;
}

uint32_t BackgroundSync::dirty_stores() const {
  uint32_t n = 0;
  for (const auto& slot : slots_) {
    if (slot->marked.load(std::memory_order_acquire) != slot->synced.load(std::memory_order_acquire)) ++n;
  }
  return n;
}

bool BackgroundSync::WaitDurable(std::chrono::milliseconds timeout) {
  std::vector<uint64_t> wanted;
  for (auto& slot : slots_) wanted.push_back(slot->marked.load(std::memory_order_acquire));
  auto done = [&] {
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i]->synced.load(std::memory_order_acquire) < wanted[i]) return false;
    }
    return true;
  };
  UniqueLock lk(mu_);
  wake_.notify_all();
  return durable_.wait_for(lk, timeout, [&] {
    mu_.AssertHeld();
    return done() || stop_;
  }) && done();
}

void BackgroundSync::Loop() {
  UniqueLock lk(mu_);
  while (!stop_) {
    // Sleep until some store is dirty, then give it up to `interval` to
    // gather more changes into the same flush.
    wake_.wait(lk, [&] {
      mu_.AssertHeld();
      return stop_ || dirty_stores() > 0;
    });
    if (stop_) break;
    wake_.wait_for(lk, interval_, [&] {
      mu_.AssertHeld();
      return stop_;
    });
    if (stop_) break;
    lk.unlock();
    for (auto& slot : slots_) {
      Status s = SyncOne(slot.get());
      if (!s.ok()) spdlog::error("background sync of {} failed: {} (retrying)", slot->store->Describe(), s.message());
    }
    lk.lock();
    ++passes_;
    durable_.notify_all();
    if (dirty_stores() > 0 && !stop_) {
      // Failed (or dirtied again during the pass): wait a whole interval before retrying.
      continue;
    }
  }
  durable_.notify_all();
}

}  // namespace kvfs
