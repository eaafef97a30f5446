// PublishQueue: the last step of a commit, in groups. A commit has written
// its version into a staging file; publishing puts that file in place at the
// key's location and makes it durable, then switches the index. Commits that
// reach this step together share one flush per store (group commit).
//
// A committer hands Run a PublishJob and waits. Run queues the job and takes
// the publish lock; if the job is not done by then, this committer leads a
// group: it takes every queued job, calls each one's Place (file in place),
// flushes each store of the group once with Store::SyncAll (only with group
// commit: not for stores whose flushes are deferred to the background sync;
// with `each` flushes every Place makes itself durable, with `file` flushes
// each committer flushes its own file after Run), then calls each linked
// job's Complete and marks it done. Jobs run on the leader's thread, so a
// job carries everything it needs in its own members.
//
// A flush that fails leaves its group's files in place but maybe not
// durable: those jobs are linked, completed, and their result is EIO (as a
// failed fsync would be). So is a job whose Place failed after its file
// was in place (PlacedAnyway: a store that flushes its own renames).
//
// Thread-safety: Run may be called from any thread. The publish lock (given
// at construction) is also the lock its owner takes for namespace changes
// that touch a store, so that no rename or removal interleaves with a
// group. The queue's own mutex is a leaf, taken only for the queue.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "adapters/mutex.h"
#include "adapters/status.h"
#include "adapters/store.h"

namespace kvfs {

class PublishJob {
 public:
  PublishJob(Store* store, uint32_t store_index) : store_(store), store_index_(store_index) {}
  virtual ~PublishJob() = default;
  PublishJob(const PublishJob&) = delete;
  PublishJob& operator=(const PublishJob&) = delete;

  // Puts the job's file in place (Store::PublishUnsynced with group commit or deferred
  // flushes, Store::Publish otherwise). Called under the publish lock.
  virtual Status Place() = 0;
  // Called under the publish lock after a successful Place (and the group's
  // flush, which may have failed: see result()), or after a Place that
  // failed once its file was in place (PlacedAnyway).
  virtual void Complete() = 0;
  // After a Place that failed: whether its file went into place all the
  // same (the rename happened, a flush after it failed). Such a job is
  // linked and completed, its result EIO, as when a group's flush fails.
  virtual bool PlacedAnyway() const { return false; }

  Store* store() const { return store_; }
  uint32_t store_index() const { return store_index_; }
  // After Run: the outcome, and whether the file was put in place (even if
  // its flush failed).
  const Status& result() const { return result_; }
  bool linked() const { return linked_; }

 private:
  friend class PublishQueue;
  Store* const store_;
  const uint32_t store_index_;
  Status result_;        // written by the leader under the publish lock
  bool linked_ = false;  // written by the leader under the publish lock
  bool done_ = false;    // guarded by the publish lock
};

class PublishQueue {
 public:
  // publish_mu: the publish lock (see above), owned by the caller.
  // deferred(store): whether that store's flushes are left to the background
  // sync. dirtied(store): a change was linked there without a flush.
  PublishQueue(Mutex& publish_mu, bool group_commit, std::function<bool(uint32_t)> deferred,
               std::function<void(uint32_t)> dirtied)
      : publish_mu_(publish_mu),
        group_commit_(group_commit),
        deferred_(std::move(deferred)),
        dirtied_(std::move(dirtied)) {}

  // Publishes job (see above) and returns its result. The caller holds no
  // lock that a job's Place or Complete takes, and not the publish lock.
  Status Run(PublishJob* job);

  // Jobs waiting for a leader now.
  size_t queued() const {
    MutexLock g(queue_mu_);
    return queue_.size();
  }
  uint64_t groups() const { return groups_.load(); }  // groups led (flushes shared)
  uint64_t jobs() const { return jobs_.load(); }      // jobs published through them

 private:
  void LeadGroup() KVFS_REQUIRES(publish_mu_);

  Mutex& publish_mu_;
  const bool group_commit_;
  const std::function<bool(uint32_t)> deferred_;
  const std::function<void(uint32_t)> dirtied_;
  mutable Mutex queue_mu_;
  std::vector<PublishJob*> queue_ KVFS_GUARDED_BY(queue_mu_);
  std::atomic<uint64_t> groups_{0}, jobs_{0};
};

}  // namespace kvfs
