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
// Data I/O is not done here: the store hands out file descriptors, and the
// engine moves bytes with io_uring or pread/pwrite. DirectIo() tells whether
// those descriptors are O_DIRECT (then offsets, lengths and buffers must be
// 4 KiB aligned).
//
// Thread-safety: every method may be called concurrently from any thread.
// Two concurrent Publish/Move/Remove calls on one location race like the
// syscalls they wrap; the engine serialises them.
#pragma once

#include <cstdint>
#include <functional>
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

 private:
  int fd_;
  std::string path_;
  bool published_ = false;
};

struct StoreSpace {
  uint64_t total_bytes = 0;  // size of the filesystem holding the store
  uint64_t free_bytes = 0;   // bytes available to kvfs on that filesystem
};

struct ScannedObject {
  std::string location;
  uint64_t file_bytes = 0;     // st_size of the object file
  uint64_t file_id = 0;        // st_ino of the object file
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

  // Creates an empty staging file open for writing.
  virtual Result<std::unique_ptr<StagingFile>> CreateStaging() = 0;
  // Makes the staging file's bytes durable (fdatasync) and atomically renames
  // it to location, replacing any object there; the rename is durable when
  // this returns. On failure the staging file is left for its owner to drop.
  virtual Status Publish(StagingFile& file, const std::string& location) = 0;

  // Group commit, in two steps: Link renames the staging file to location
  // (replacing) without making anything durable; SyncAll then makes every
  // write and rename done on the store so far durable (syncfs). Together they
  // amount to Publish for any number of files, with one flush. Safe on
  // journaling filesystems (ext4, XFS), where data written with O_DIRECT
  // before a rename is on stable storage whenever the rename is.
  virtual Status Link(StagingFile& file, const std::string& location) = 0;
  virtual Status SyncAll() = 0;

  // Opens an object for reading. ENOENT when it does not exist.
  virtual Result<int> OpenForRead(const std::string& location) = 0;
  // Durably overwrites the 4 KiB header block of an existing object.
  virtual Status WriteHeaderBlock(const std::string& location, const uint8_t* block) = 0;
  // Atomically and durably renames an object to a new location (replacing).
  virtual Status Move(const std::string& from, const std::string& to) = 0;
  // Removes an object; with sync, durably (the directory is fsync'ed).
  // ENOENT when it does not exist.
  virtual Status Remove(const std::string& location, bool sync = true) = 0;
  // Moves a damaged object out of the namespace into the store's quarantine
  // area, where fsck and operators can look at it; it is never served again.
  virtual Status Quarantine(const std::string& location) = 0;

  // Calls fn for every object file, from up to `threads` threads at once
  // (fn must be thread-safe). Unreadable headers are reported through
  // ScannedObject::header, never skipped silently.
  virtual Status Scan(const std::function<void(const ScannedObject&)>& fn, int threads) = 0;

  virtual Result<StoreSpace> Space() const = 0;

  // Staging files present now (names relative to the staging area), and their
  // removal; for offline checks.
  virtual Result<std::vector<std::string>> ListStaging() const = 0;
  virtual Status RemoveStaging(const std::string& name) = 0;
};

}  // namespace kvfs
