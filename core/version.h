// Version: one committed, immutable state of an object (a file's bytes or a
// directory's record) as it sits on a store, plus the leases held on it.
//
// The index points at the current Version of each key; every open file
// handle holds a Lease on the Version it opened. A Version stays alive (and
// its bytes on the store stay readable, through the descriptor the leases
// share) while the index or any lease refers to it. When the last reference
// goes, its footprint is returned to the SpaceAccount.
//
// The descriptor is opened when the first lease is taken and closed when the
// last lease ends, so unleased objects cost no file descriptor.
//
// Thread-safety: lease counting and the descriptor are guarded by an internal
// mutex. `header` and `location` change only on rename or attribute updates,
// which the Engine does under its index mutex; readers take a copy under the
// same mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "adapters/object_header.h"
#include "adapters/store.h"

namespace kvfs {

// Bytes in use, shared by the engine and every Version it created.
struct SpaceAccount {
  std::atomic<uint64_t> used_bytes{0};
  std::atomic<uint64_t> objects{0};
  std::atomic<uint64_t> leased_bytes{0};
};

class Version {
 public:
  Version(Store* store, uint32_t store_index, std::string location, ObjectHeader header,
          std::shared_ptr<SpaceAccount> account, std::shared_ptr<SpaceAccount> store_account);
  ~Version();
  Version(const Version&) = delete;
  Version& operator=(const Version&) = delete;

  Store* store() const { return store_; }
  uint32_t store_index() const { return store_index_; }
  uint64_t size() const { return size_; }
  uint64_t footprint() const { return footprint_; }

  // Guarded by the Engine's index mutex.
  std::string location;
  ObjectHeader header;
  // Identity of the object file (st_ino) when known, else 0. A lease that
  // opens `location` and finds another file fails with ESTALE.
  uint64_t file_id = 0;

  // Takes a lease: opens the store descriptor if this is the first one.
  Status AddLease();
  void DropLease();
  uint32_t leases() const;
  // The shared read descriptor; valid while the caller holds a lease.
  int fd() const { return fd_; }
  // The per-chunk checksums of the data (ObjectHeader), read from the store
  // on first use and kept while leased. The caller holds a lease.
  Result<std::shared_ptr<const std::vector<uint64_t>>> ChunkChecksums();
  // True the first time it is called: so a corruption is logged once.
  bool MarkCorrupt() { return !corrupt_.exchange(true); }

 private:
  Store* store_;
  uint32_t store_index_;
  uint64_t size_;
  uint64_t footprint_;
  std::shared_ptr<SpaceAccount> account_;
  std::shared_ptr<SpaceAccount> store_account_;
  mutable std::mutex mu_;
  uint32_t leases_ = 0;  // guarded by mu_
  int fd_ = -1;          // guarded by mu_ for open/close
  std::shared_ptr<const std::vector<uint64_t>> checksums_;  // guarded by mu_
  std::atomic<bool> corrupt_{false};
};

// A lease on a Version: RAII, move-only. Holding one guarantees the bytes
// stay readable through version()->fd().
class Lease {
 public:
  Lease() = default;
  static Result<Lease> Take(std::shared_ptr<Version> v);
  Lease(Lease&& o) noexcept = default;
  Lease& operator=(Lease&& o) noexcept;
  ~Lease() { Reset(); }
  void Reset();
  const std::shared_ptr<Version>& version() const { return version_; }
  explicit operator bool() const { return version_ != nullptr; }

 private:
  std::shared_ptr<Version> version_;
};

}  // namespace kvfs
