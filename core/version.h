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
// Thread-safety: the lease count, the descriptor and the checksum table are
// guarded by the version's lease mutex (LeaseState::mu, allocated with the
// first lease; a leaf of the engine's lock order, core/engine.h: no other
// lock is taken while it is held). The header and location change only on
// rename or attribute updates, which the Engine does under its index mutex;
// readers take a copy under the same mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/io_ring.h"
#include "adapters/key_hash.h"
#include "adapters/mutex.h"
#include "adapters/object_header.h"
#include "adapters/store.h"

namespace kvfs {

// Bytes in use, shared by the engine and every Version it created.
struct SpaceAccount {
  std::atomic<uint64_t> used_bytes{0};
  std::atomic<uint64_t> objects{0};
  std::atomic<uint64_t> leased_bytes{0};
};

// What every Version on one store shares: the store, its index in the
// engine's list, and the accounts its footprint is charged to (the mount's
// and the store's). One per store, so that a Version carries one pointer
// for all of it.
struct VersionHome {
  Store* store = nullptr;
  uint32_t store_index = 0;
  std::shared_ptr<SpaceAccount> total;
  std::shared_ptr<SpaceAccount> store_account;
};

// Per-object memory matters here (the index keeps one Version per key):
// what only opened versions need (the lease count, the descriptor, the
// checksum table and their mutex) lives in a LeaseState allocated on the
// first lease, and the location is kept as the key hash it derives from.
class Version {
 public:
  // `location` is where the object sits on home->store; `key` the key it
  // was placed by (the location is usually home->store->LocationFor of the
  // key's hash, and is then stored as that hash).
  Version(std::shared_ptr<const VersionHome> home, const std::string& location, std::string_view key,
          const ObjectHeader& header);
  ~Version();
  Version(const Version&) = delete;
  Version& operator=(const Version&) = delete;

  Store* store() const { return home_->store; }
  uint32_t store_index() const { return home_->store_index; }
  uint64_t size() const { return size_; }
  uint64_t footprint() const { return ObjectFootprint(kind_ == ObjectKind::kDirectory ? 0 : size_); }
  ObjectKind kind() const { return kind_; }

  // Guarded by the Engine's index mutex (location and header).
  std::string location() const;
  void SetLocation(const std::string& location, std::string_view key);
  // The object's header as last written, except `key`, which is left empty:
  // the key is the path of the inode that holds this version, and `rdev`,
  // which is 0: a device record's number never changes and is kept in its
  // inode (the engine puts it into every header it writes). Kept packed;
  // set_header ignores the key, the size, the checksum and the format (a
  // version's data never changes, so neither do they).
  ObjectHeader header() const;
  void set_header(const ObjectHeader& h);
  uint64_t generation() const { return generation_; }
  // Fixed at construction: readable without the index mutex.
  uint64_t checksum() const { return checksum_; }
  // The object format its header was written in (how checksum() was made).
  uint32_t format() const { return format_; }
  int64_t mtime_ns() const { return mtime_ns_; }
  // Identity of the object file (adapters/file_identity.h) when known, else 0. A lease that
  // opens the location and finds another file fails with ESTALE.
  uint64_t file_id = 0;

  // Takes a lease: opens the store descriptor if this is the first one.
  Status AddLease();
  void DropLease();
  uint32_t leases() const;
  // The shared read descriptor; valid while the caller holds a lease. Read
  // without the lease mutex (see LeaseState::fd).
  int fd() const KVFS_NO_THREAD_SAFETY_ANALYSIS;
  // The per-chunk checksums of the data (ObjectHeader), read from the store
  // (its TransferData, on io) on first use and kept while leased. The caller
  // holds a lease. EBADMSG when the file is too short to hold the table, or
  // (format 2) when the table does not match the header's data checksum.
  Result<std::shared_ptr<const std::vector<uint64_t>>> ChunkChecksums(IoExecutor& io);
  // True the first time it is called: so a corruption is logged once.
  bool MarkCorrupt() { return !corrupt_.exchange(true); }
  // True the first time it is called: so a checksum mismatch is counted once
  // per version, however many reads (the kernel's read-ahead and its
  // retries) run into it.
  bool MarkChecksumFailure() { return !checksum_failed_.exchange(true); }

 private:
  struct LeaseState {
    Mutex mu;
    uint32_t leases KVFS_GUARDED_BY(mu) = 0;
    // Opened by the first lease and closed by the last, both under mu. A
    // lease holder reads it without mu (fd()): it cannot change while any
    // lease is held, and taking the lease ordered the read after the open.
    int fd KVFS_GUARDED_BY(mu) = -1;
    std::shared_ptr<const std::vector<uint64_t>> checksums KVFS_GUARDED_BY(mu);
  };
  // Created on first use and kept until the Version goes.
  LeaseState& State();

  std::shared_ptr<const VersionHome> home_;
  uint64_t size_;
  const uint64_t checksum_;  // never changes
  const uint8_t format_;     // never changes
  // The rest of the header, packed (see header()); guarded by the index mutex.
  uint64_t generation_ = 0;
  int64_t mtime_ns_ = 0;
  int64_t ctime_ns_ = 0;
  uint32_t mode_ = 0;
  uint32_t uid_ = 0;
  uint32_t gid_ = 0;
  uint8_t chunk_shift_ = 0;
  uint8_t slot_ = 0;
  KeyHash location_hash_;                       // when location_path_ is null
  std::unique_ptr<std::string> location_path_;  // a location not derived from a key hash
  std::atomic<LeaseState*> lease_state_{nullptr};
  ObjectKind kind_;  // never changes
  std::atomic<bool> corrupt_{false};
  std::atomic<bool> checksum_failed_{false};
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
