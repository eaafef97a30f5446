// HandleQuota: how many open files each user (uid) may hold on the mount.
//
// Every open file handle costs the daemon memory and, for a version nobody
// else has open, one descriptor on a store. With `-o allow_other` the mount
// serves every local user, so one user holding handles without end would
// use up the daemon's descriptors and every other user's opens would fail.
// HandleQuota caps the handles of each uid (open and create; root included,
// which also bounds a leaking engine) and of all users together, so that
// the daemon keeps descriptors for its own work (commits, eviction, scans).
//
// Use: Reserve(uid) before the open; then Bind(fh, uid) once the handle
// exists, or Unreserve(uid) when the open failed; Release(fh) at RELEASE
// (the uid bound at open is charged back, whoever closes). Reserve fails
// with EMFILE when the uid holds per_user handles, ENFILE when all users
// together hold total.
//
// Thread-safe (one internal mutex, a leaf: no other lock is taken under it).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "adapters/status.h"

namespace kvfs {

class HandleQuota {
 public:
  HandleQuota(uint64_t per_user, uint64_t total);

  Status Reserve(uid_t uid);
  void Unreserve(uid_t uid);
  void Bind(uint64_t fh, uid_t uid);
  void Release(uint64_t fh);

  uint64_t per_user() const { return per_user_; }
  uint64_t total() const { return total_; }
  // Handles held (reserved or bound) by uid, and by everyone.
  uint64_t HeldBy(uid_t uid) const;
  uint64_t Held() const;
  // Opens refused so far.
  uint64_t refused() const;

 private:
  void DropLocked(uid_t uid);

  const uint64_t per_user_;
  const uint64_t total_;
  mutable std::mutex mu_;
  std::unordered_map<uid_t, uint64_t> held_by_uid_;  // guarded by mu_
  std::unordered_map<uint64_t, uid_t> owner_of_fh_;  // guarded by mu_
  uint64_t held_ = 0;                                // guarded by mu_
  uint64_t refused_ = 0;                             // guarded by mu_
};

// The daemon's descriptor limit: raises the soft RLIMIT_NOFILE to the hard
// one and returns the result (the soft limit in force when raising fails).
uint64_t RaiseDescriptorLimit();

// Default quota for a daemon with `descriptors` descriptors: all users
// together may hold all but a reserve of them (a quarter, at least 64 and at
// most 4096) for the daemon's own work; one user a quarter of that.
uint64_t DefaultTotalHandles(uint64_t descriptors);
uint64_t DefaultHandlesPerUser(uint64_t descriptors);

}  // namespace kvfs
