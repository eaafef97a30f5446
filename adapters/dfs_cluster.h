// DfsCluster: how the hosts sharing one DfsStore coordinate, through files in
// the store's cluster/ directory. No host talks to another directly.
//
// Evictor lease. Exactly one host evicts from the shared store at a time. The
// lease is the file cluster/evictor.<epoch> with the highest epoch (20
// digits); its holder replaces it (a temporary file renamed over it, so other
// clients never read a stale cached copy) with a growing renewal count every
// call of RenewEvictorLease. Other hosts watch that file: when its (epoch, renewals)
// has not changed for lease_ttl on the watcher's own monotonic clock, the
// holder is taken to be dead and the watcher creates evictor.<epoch+1> while
// holding the exclusive lock on cluster/lock, after checking that no host
// created that epoch first; so exactly one host wins each epoch, and no
// synchronised clocks are needed. (The lock is held only for that moment: a
// hung holder cannot block a takeover.) A holder steps down when a higher epoch appears, when a renewal
// fails, or when it has not managed to renew for lease_ttl (then others may
// already have taken over). Old epoch files are removed by the new holder.
//
// Room requests. A host whose commit does not fit writes the bytes it needs
// to cluster/room.<host> (and removes the file once it is done); the holder
// adds up the requests written in the last minute and evicts until they fit.
//
// Access counts. Each host publishes its recent opens per object location to
// cluster/access.<host> (written to a temporary name, then renamed); the
// holder reads the files that changed and feeds the counts to its eviction
// policy, so the objects hot on any host stay.
//
// Thread-safety: every method is thread-safe. Renewals serialise on one
// internal mutex and access-count exchanges on another, both held across DFS
// I/O; room requests take none; HoldsEvictorLease and EvictorHolder read a
// snapshot under a third and never wait for the DFS.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>

#include "adapters/fs_client.h"
#include "adapters/store.h"

namespace kvfs {

class DfsCluster final : public ClusterCoordinator {
 public:
  DfsCluster(FsClient* fs, std::string cluster_dir, std::string staging_dir, std::string host_id,
             std::chrono::milliseconds lease_ttl, std::chrono::seconds abandoned_after);

  const std::string& host_id() const override { return host_id_; }
  bool RenewEvictorLease() override;
  bool HoldsEvictorLease() const override;
  std::string EvictorHolder() const override;
  Status RequestRoom(uint64_t bytes) override;
  uint64_t RoomRequested() override;
  Status PublishAccesses(const std::map<std::string, uint64_t>& counts) override;
  Result<std::map<std::string, uint64_t>> CollectAccesses() override;
  uint64_t SweepAbandoned() override;

  uint64_t epoch() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct LeaseFile {
    uint64_t epoch = 0;
    std::string holder;
    uint64_t renewals = 0;
    bool readable = false;
  };
  // The lease file with the highest epoch (epoch 0: none), and the older ones.
  Result<LeaseFile> ReadCurrentLease(std::vector<std::string>* older);
  std::string LeasePath(uint64_t epoch) const;
  // Creates evictor.<epoch> for this host with link(); false if another won.
  bool TryCreateLease(uint64_t epoch);
  bool RenewLocked();
  std::string LeaseText(uint64_t renewals) const;
  std::string TmpPath();  // a fresh temporary name in the cluster directory
  // Copies the lease state to the snapshot that the fast accessors read (mu_).
  void PublishSnapshot();

  FsClient* fs_;
  const std::string dir_;
  const std::string staging_dir_;
  const std::string host_id_;
  const std::chrono::milliseconds ttl_;
  const std::chrono::seconds abandoned_after_;

  mutable std::mutex mu_;
  // Held lease (epoch 0: not holding).
  uint64_t my_epoch_ = 0;       // guarded by mu_
  uint64_t my_renewals_ = 0;    // guarded by mu_
  Clock::time_point my_last_renewal_;  // guarded by mu_
  // Watched lease.
  uint64_t seen_epoch_ = 0;       // guarded by mu_
  uint64_t seen_renewals_ = 0;    // guarded by mu_
  std::string seen_holder_;       // guarded by mu_
  Clock::time_point seen_changed_;  // guarded by mu_
  bool seen_any_ = false;         // guarded by mu_
  // What HoldsEvictorLease and EvictorHolder read, so that they never wait
  // for a renewal stuck in DFS I/O under mu_.
  mutable std::mutex snap_mu_;
  std::string snap_holder_;            // guarded by snap_mu_
  bool snap_mine_ = false;             // guarded by snap_mu_
  Clock::time_point snap_renewed_;     // guarded by snap_mu_
  // Access files already read: name -> (ino, size, mtime). Its own mutex,
  // so that publishing access counts never delays a lease renewal.
  std::mutex access_mu_;
  std::map<std::string, FsStat> read_access_;  // guarded by access_mu_
  std::atomic<uint64_t> tmp_counter_{0};
};

}  // namespace kvfs
