// Store: where and how object bytes sit. The engine (core/) talks only to
// this interface; a local NVMe directory is one implementation, a directory
// on a distributed filesystem can be another.
//
// Model. A store holds object files, each addressed by a `location` string
// relative to the store root, derived from the key's hash (LocationFor). An
// object file is [4 KiB ObjectHeader][data padded to 4 KiB]. New versions are
// written into a StagingFile, then Publish makes them durable and atomically
// visible at their location, replacing whatever was there. Open file
// descriptors keep the bytes of a replaced or removed object readable until
// they are closed (POSIX unlink semantics).
//
// Data I/O goes through the store too: the store hands out file descriptors
// (OpenForRead, StagingFile), and every read or write of object and staging
// bytes on them, every identity check (FileIdOf) and every truncation
// (TruncateData) is a store call. The engine builds a DataBatch (buffers it
// owns, see data_batch.h) and calls TransferData, which by default runs it on
// the engine's IoExecutor (io_uring, or pread/pwrite); wrappers see every
// transfer, so a deadline (DeadlineStore) or an injected fault covers data
// I/O like any other store call. DirectIo() tells whether the descriptors are
// O_DIRECT (then offsets, lengths and buffers must be 4 KiB aligned).
// (fsck, an offline tool, reads object files directly.)
//
// Thread-safety: every method may be called concurrently from any thread.
// Two concurrent Publish/Move/Remove calls on one location race like the
// syscalls they wrap; the engine serialises them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "adapters/key_hash.h"
#include "adapters/object_header.h"
#include "adapters/status.h"

namespace kvfs {

// A file being written for a new version. Owned by its writer; if destroyed
// without a successful Publish, the file is closed and removed.
class StagingFile {
 public:
  StagingFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~StagingFile();
  StagingFile(const StagingFile&) = delete;
  StagingFile& operator=(const StagingFile&) = delete;

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  // Called by the store once the file has been renamed into place.
  void MarkPublished() { published_ = true; }
  // Whether it was: true also when a flush after the rename then failed.
  bool published() const { return published_; }

 private:
  int fd_;
  std::string path_;
  bool published_ = false;
};

struct StoreSpace {
  uint64_t total_bytes = 0;  // size of the filesystem holding the store
  uint64_t free_bytes = 0;   // bytes available to kvfs on that filesystem
};

// What a listing says about one object file, without reading it.
struct ListedObject {
  std::string location;
  uint64_t file_id = 0;     // adapters/file_identity.h (changes when the file is replaced)
  uint64_t file_bytes = 0;  // st_size
};

// Outcome counters of a store's operations, for stats: what failed, with
// which errno, and how many calls ran past their deadline.
struct StoreHealth {
  uint64_t calls = 0;
  uint64_t failures = 0;  // every failed call, timeouts included
  uint64_t timeouts = 0;
  std::map<int, uint64_t> errors_by_errno;  // failures other than ENOENT, by errno
};

class ClusterCoordinator;
class DataBatch;
class IoExecutor;

// statvfs(2) of the filesystem holding path, as a StoreSpace.
Result<StoreSpace> FilesystemSpace(const std::string& path);

struct ScannedObject {
  std::string location;
  uint64_t file_bytes = 0;     // st_size of the object file
  uint64_t file_id = 0;        // identity of the object file (adapters/file_identity.h)
  Result<ObjectHeader> header = Status::Error(EINVAL, "unread");
};

class Store {
 public:
  virtual ~Store() = default;

  // "local:/path" or similar, for logs, stats and xattrs.
  virtual std::string Describe() const = 0;
  virtual const std::string& root() const = 0;
  virtual bool DirectIo() const = 0;

  // The location of the object for a key with hash h (same on every host).
  virtual std::string LocationFor(const KeyHash& h) const = 0;

  // Creates an empty staging file open for writing. final_bytes is the
  // file's size once written, when the caller knows it and will write every
  // block of it (kUnknownSize otherwise: a draft spilling as it grows, or an
  // object that keeps holes). A store may write files of at most
  // kBufferedStagingMax bytes through the page cache instead of with
  // O_DIRECT (a small object then costs no device write before its commit;
  // Publish and SyncAll flush them like any other), and may allocate a
  // larger file's blocks up front.
  static constexpr uint64_t kUnknownSize = UINT64_MAX;
  static constexpr uint64_t kBufferedStagingMax = 64 << 10;
  virtual Result<std::unique_ptr<StagingFile>> CreateStaging(uint64_t final_bytes) = 0;
  // A small object's whole staging file in one call: creates a staging file
  // of image_bytes (final_bytes as above: every block is written) and writes
  // `image` (4 KiB aligned, image_bytes a multiple of 4 KiB) at its start.
  // The store keeps `image` alive until its write is over, also past a
  // deadline. The default is CreateStaging, then TransferData on io; a store
  // may do both at once (LocalStore writes a page-cache staging file with
  // pwrite; DeadlineStore runs the pair as one call on one worker), which
  // for a small object saves a thread hop and an io_uring round trip.
  virtual Result<std::unique_ptr<StagingFile>> CreateStagingWith(IoExecutor& io, std::shared_ptr<const uint8_t> image,
                                                                 size_t image_bytes);
  // Makes the staging file's bytes durable (fdatasync) and atomically renames
  // it to location, replacing any object there; the rename is durable when
  // this returns. On failure the staging file is left for its owner to drop.
  virtual Status Publish(StagingFile& file, const std::string& location) = 0;

  // Group commit, in two steps: PublishUnsynced renames the staging file to location
  // (replacing) without making anything durable; SyncAll then makes every
  // write and rename done on the store so far durable (syncfs). Together they
  // amount to Publish for any number of files, with one flush. Safe on
  // journaling filesystems (ext4, XFS), where data written with O_DIRECT
  // before a rename is on stable storage whenever the rename is; a small
  // staging file written through the page cache (see CreateStaging) is, at
  // a power loss before the flush, either whole (its blocks were written
  // before the rename's journal commit: ordered data) or empty (its blocks
  // were never allocated), which the index rebuild skips.
  virtual Status PublishUnsynced(StagingFile& file, const std::string& location) = 0;
  virtual Status SyncAll() = 0;
  // Makes a file that PublishUnsynced put in place durable, with the rename
  // that put it there (and every change made on the store before that
  // rename): on ext4 and XFS an fsync of the file commits the journal
  // transaction that holds its rename, since the rename changed the file's
  // inode too. A staging file written through the page cache is written
  // back by the same fsync; at a power loss before it, the file at location
  // is empty or shorter than its header says (or, when it replaced an
  // object, ext4 writes it before the rename: auto_da_alloc), which the
  // index rebuild skips. The default is SyncAll.
  virtual Status SyncPublished(StagingFile& file) {
    (void)file;
    return SyncAll();
  }

  // Opens an object for reading. ENOENT when it does not exist.
  virtual Result<int> OpenForRead(const std::string& location) = 0;
  // Overwrites the 4 KiB header block of an existing object; with sync,
  // durably (fdatasync), otherwise at the next SyncAll.
  virtual Status WriteHeaderBlock(const std::string& location, const uint8_t* block, bool sync) = 0;
  // Atomically renames an object to a new location (replacing); with sync,
  // durably (the directories are fsync'ed), otherwise at the next SyncAll.
  virtual Status Move(const std::string& from, const std::string& to, bool sync) = 0;
  // Removes an object; with sync, durably (the directory is fsync'ed),
  // otherwise at the next SyncAll. ENOENT when it does not exist.
  virtual Status Remove(const std::string& location, bool sync = true) = 0;
  // Moves a damaged object out of the namespace into the store's quarantine
  // area, where fsck and operators can look at it; it is never served again.
  virtual Status Quarantine(const std::string& location) = 0;

  // Calls fn for every object file, from up to `threads` threads at once
  // (fn must be thread-safe). Unreadable headers are reported through
  // ScannedObject::header, never skipped silently.
  virtual Status Scan(const std::function<void(const ScannedObject&)>& fn, int threads) = 0;

  virtual Result<StoreSpace> Space() const = 0;
  // Waits (at most `timeout`) until the space of the objects removed so far
  // is free on the store's filesystem, for a store that frees it in the
  // background (LocalStore: see there); Space() counts such space as free
  // already. Called after evictions for the free-space floor, which is about
  // the filesystem as other programs see it.
  virtual void SettleRemovals(std::chrono::milliseconds timeout) { (void)timeout; }
  // Bytes of removed objects that the store still holds on its filesystem
  // (freed in the background); 0 for a store that frees them at once. The
  // space manager counts them against the capacity: a commit that would
  // take the store's bytes over it waits (WaitForRemovals) until enough of
  // them are freed.
  virtual uint64_t PendingRemovalBytes() const { return 0; }
  // Waits (at most `timeout`) until PendingRemovalBytes() is at most
  // `leave_at_most`.
  virtual void WaitForRemovals(uint64_t leave_at_most, std::chrono::milliseconds timeout) {
    (void)leave_at_most;
    (void)timeout;
  }

  // Staging files present now (names relative to the staging area), and their
  // removal; for offline checks.
  virtual Result<std::vector<std::string>> ListStaging() const = 0;
  virtual Status RemoveStaging(const std::string& name) = 0;

  // --- Shared stores (a directory on a distributed filesystem). -------------
  // True when other hosts change this store behind the engine's back: the
  // engine then looks up missing keys on the store, revalidates objects at
  // open and reconciles its index with List() periodically.
  virtual bool Shared() const { return false; }
  // The identity of the object file at location now; ENOENT when none.
  virtual Result<ListedObject> StatObject(const std::string& location);
  // Reads the header of the object at location (with its identity and
  // size); ENOENT when none. The header is decoded but not checked against
  // any key.
  virtual Result<ScannedObject> ReadObject(const std::string& location);
  // Calls fn for every object file with its identity, reading no headers
  // (cheaper than Scan). The default implementation uses Scan.
  virtual Status List(const std::function<void(const ListedObject&)>& fn, int threads);
  // Cluster-wide coordination (evictor lease, shared access counts) for a
  // shared store; null for stores used by one host.
  virtual ClusterCoordinator* cluster() { return nullptr; }

  // Outcome counters, for stats (stores that do not count report zeros).
  virtual StoreHealth Health() const { return {}; }

  // --- Data I/O on descriptors this store handed out. -----------------------
  // Runs the batch's reads and writes (on io; see IoExecutor::Run for what
  // `done` and the status mean). A caller that gets an error checks
  // batch->abandoned(): when set, the I/O may still be running and the
  // batch's memory must outlive it (see data_batch.h). The default runs it
  // on io, honouring batch->deadline where io can.
  virtual Status TransferData(IoExecutor& io, const std::shared_ptr<DataBatch>& batch);
  // The identity (adapters/file_identity.h) of the file open as fd: what ListedObject::file_id
  // and Version::file_id compare against.
  virtual Result<uint64_t> FileIdOf(int fd);
  // Sets the length of the staging file open as fd.
  virtual Status TruncateData(int fd, uint64_t length);
};

// Coordination between the hosts that share one store. Implemented by shared
// stores; the engine calls it from its reconciler thread only.
class ClusterCoordinator {
 public:
  virtual ~ClusterCoordinator() = default;
  // This host's name, as used in staging names, the lease and access logs.
  virtual const std::string& host_id() const = 0;
  // Takes, renews or keeps watching the evictor lease; true while this host
  // holds it (and may evict). Call at least every lease_ttl / 3.
  virtual bool RenewEvictorLease() = 0;
  // True while this host holds the lease and renewed it recently enough
  // that no other host can have taken it over (within two thirds of the
  // ttl); checked before every eviction.
  virtual bool HoldsEvictorLease() const = 0;
  // The holder of the evictor lease as last seen ("" when none).
  virtual std::string EvictorHolder() const = 0;
  // A host that cannot commit asks the evicting host for `bytes` of room
  // (0 withdraws the request).
  virtual Status RequestRoom(uint64_t bytes) = 0;
  // For the evicting host: room other hosts asked for recently, in total.
  virtual uint64_t RoomRequested() = 0;
  // Publishes this host's access counts since the last call (location ->
  // number of opens), for the evicting host.
  virtual Status PublishAccesses(const std::map<std::string, uint64_t>& counts) = 0;
  // Access counts other hosts published since the last call (only files
  // that changed are read again).
  virtual Result<std::map<std::string, uint64_t>> CollectAccesses() = 0;
  // Housekeeping for the evicting host: removes staging files and access
  // logs that hosts which stopped long ago left behind. Returns how many.
  virtual uint64_t SweepAbandoned() = 0;
};

}  // namespace kvfs
