// KernelNotifier: tells the kernel about namespace changes it did not make
// itself, so that its dentry cache never shows a stale answer.
//
//  - Entry invalidations (a key's first commit when a lookup of it was
//    refused before, an eviction) are sent by the notifier's own thread,
//    never from a thread that is serving a request:
//    the kernel takes the parent directory's lock to process them, and that
//    lock may be held by a CREATE waiting for one of our worker threads.
//    EntryAppeared then waits (up to kAppearWait) for its invalidation to be
//    sent, so that a negative entry cached by another process's earlier stat
//    is gone when close() returns; the wait is bounded, so a busy directory
//    delays a close a little but never deadlocks it.
//  - With the kernel's readdir cache on, the same thread also drops the
//    parent directory's cached listing (an inode invalidation of the
//    directory's pages): the kernel marks a listing stale by itself only for
//    changes it made, or when the name was in its dentry cache. Only when
//    the directory was listed since its last invalidation (ListingTracker):
//    a commit into a directory nobody lists neither queues nor waits.
//  - ListingChanged (a name a lookup itself added, read through from a
//    shared store) drops only the directory's cached listing, also from the
//    notifier's thread, and never waits: the caller is that lookup.
//  - VersionCommitted (attributes only, no lock involved) is sent at once.
//
// Thread-safety: the observer methods may be called from any thread with no
// engine lock held. Start() after the session is mounted; Stop() before it is
// destroyed.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "fuse/fuse_ops.h"

namespace kvfs {

class KernelNotifier final : public EngineObserver {
 public:
  explicit KernelNotifier(FuseContext* ctx) : ctx_(ctx) {}
  ~KernelNotifier() override { Stop(); }

  void Start();
  void Stop();
  void EntryAppeared(uint64_t parent_ino, const std::string& name, bool name_was_refused) override;
  void EntryEvicted(uint64_t parent_ino, const std::string& name, uint64_t ino) override;
  // Sent at once: the kernel caches file attributes for entry_timeout, and a
  // stat after close() must show the committed version.
  void VersionCommitted(uint64_t ino) override;
  // Queued for the notifier's thread without waiting (the caller serves a
  // LOOKUP in that directory), and only when the listing may be cached.
  void ListingChanged(uint64_t dir_ino) override;

 private:
  void Loop();

  FuseContext* ctx_;
  std::mutex mu_;
  std::condition_variable wake_;
  struct Job {
    uint64_t parent_ino;
    std::string name;
    bool entry = true;     // invalidate the name itself
    bool listing = false;  // and the parent's cached listing
    bool sent = false;  // guarded by mu_
  };
  void Invalidate(const Job& job);
  // With the readdir cache on: whether parent's listing may be cached (see
  // ListingTracker), which then counts as invalidated.
  bool ListingMayBeCached(uint64_t parent_ino);
  std::deque<std::shared_ptr<Job>> queue_;  // guarded by mu_
  std::condition_variable sent_;            // a job was sent
  bool stop_ = false;                                    // guarded by mu_
  std::thread thread_;
};

}  // namespace kvfs
