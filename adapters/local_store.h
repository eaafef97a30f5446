// LocalStore: a Store in a directory on a local drive (typically NVMe).
//
// Layout under the root (objects/, staging/ and quarantine/ are kept by an
// ObjectDirectory, shared with DfsStore):
//   kvfs-manifest.toml      format, hash algorithm, seed, layout
//   .lock                   flock()ed by the one process using the store
//   objects/xx/<hash>       published objects; xx = first two hex digits of
//                           the key hash (256 directories, made with the
//                           store; stores made by earlier builds keep their
//                           objects/xx/yy/<hash>, see ObjectDirectory)
//   staging/<pid>-<n>.tmp   versions being written; swept at open
//   staging/<pid>-<n>.gone  removed or replaced objects waiting for their
//                           unlink (see below); swept at open
//   quarantine/<hash>.<t>   objects that failed a checksum or header check
//
// Nothing in the store is followed as a symlink (see ObjectDirectory); the
// directories kvfs creates are 0700 and the lock file 0600. Opening a store
// for writing runs a probe: a staging file is written, synced, renamed, read
// back and removed, and a store on a kvfs mount is refused (its commits
// would go through another kvfs daemon, or through this one).
//
// Files are opened with O_DIRECT where the filesystem supports it (checked
// once at open; otherwise buffered I/O with one logged warning).
//
// Removing an object does not wait for the filesystem to free its blocks
// (on ext4 the unlink of a file that holds data costs 10-30 times the
// rename): Remove renames the object into staging/ and a background thread
// unlinks it; a publish or move over an existing object first gives the old one a
// second name in staging/, so the rename over it frees nothing, and queues
// that name the same way. Space() counts the queued files as free. The
// queue is drained when the store closes; after a crash its files are
// staging leftovers, swept at the next open.
// Thread-safe, see Store.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "adapters/deferred_unlinker.h"
#include "adapters/fs_client.h"
#include "adapters/io_ring.h"
#include "adapters/object_directory.h"
#include "adapters/store.h"

namespace kvfs {

struct LocalStoreOptions {
  // Create the directory (and its parents) and a fresh manifest if missing.
  bool create_if_missing = true;
  // Use O_DIRECT when the filesystem supports it.
  bool direct_io = true;
  // Remove leftover staging files at open (a mount does; fsck reports them).
  bool sweep_staging = true;
  // Open for checking only (fsck without repair): nothing on the store is
  // created or written, so a read-only store (a read-only mount, a directory
  // without write permission) can be checked. The store must exist with its
  // manifest; the lock is taken when the lock file exists. The mutating
  // methods then fail (EROFS or EACCES, as the filesystem says).
  bool read_only = false;
};

class LocalStore final : public Store {
 public:
  // Opens (or creates) a store at root: checks the manifest, takes the store
  // lock, runs the write probe, removes leftover staging files. Errors:
  // ENOENT (missing root and !create_if_missing), ENOTDIR, EACCES, EBUSY
  // (locked by another process), EPROTO (manifest from an incompatible
  // kvfs), ELOOP (a store directory is a symlink), EXDEV (the store is on a
  // kvfs mount), EIO (the probe failed).
  static Result<std::unique_ptr<LocalStore>> Open(const std::string& root, const LocalStoreOptions& options);
  ~LocalStore() override;

  std::string Describe() const override { return "local:" + root_; }
  const std::string& root() const override { return root_; }
  bool DirectIo() const override { return direct_io_; }
  std::string LocationFor(const KeyHash& h) const override;
  Result<std::unique_ptr<StagingFile>> CreateStaging(uint64_t final_bytes) override;
  // A file of at most kBufferedStagingMax goes through the page cache, with
  // pwrite on the calling thread; a larger one through io, as Store's default.
  Result<std::unique_ptr<StagingFile>> CreateStagingWith(IoExecutor& io, std::shared_ptr<const uint8_t> image,
                                                         size_t image_bytes) override;
  Status Publish(StagingFile& file, const std::string& location) override;
  Status PublishUnsynced(StagingFile& file, const std::string& location) override;
  Status SyncAll() override;
  Status SyncPublished(StagingFile& file) override;
  Result<int> OpenForRead(const std::string& location) override;
  Status WriteHeaderBlock(const std::string& location, const uint8_t* block, bool sync) override;
  Status Move(const std::string& from, const std::string& to, bool sync) override;
  Status Remove(const std::string& location, bool sync = true) override;
  Status Quarantine(const std::string& location) override;
  Status Scan(const std::function<void(const ScannedObject&)>& fn, int threads) override;
  Result<StoreSpace> Space() const override;
  void SettleRemovals(std::chrono::milliseconds timeout) override;
  uint64_t PendingRemovalBytes() const override;
  void WaitForRemovals(uint64_t leave_at_most, std::chrono::milliseconds timeout) override;
  Result<std::vector<std::string>> ListStaging() const override;
  Status RemoveStaging(const std::string& name) override;

  // Number of staging files removed when the store was opened.
  uint64_t swept_staging_files() const { return swept_; }

 private:
  LocalStore(std::string root, int lock_fd, std::unique_ptr<FsClient> fs)
      : root_(std::move(root)), lock_fd_(lock_fd), fs_(std::move(fs)), dir_(root_, fs_.get()) {}
  // Writes, syncs, renames, reads back and removes a file in staging/;
  // decides direct_io_ (O_DIRECT when wanted and accepted).
  Status Probe(bool want_direct);
  // A fresh name in staging/ (<pid>-<n><suffix>).
  std::string NextStagingName(const char* suffix);
  // Runs `rename`, which puts something at location, replacing what is
  // there. With an unlinker, the object there first gets a second name in
  // staging/ (so the rename frees nothing), queued for unlinking when the
  // rename succeeded and removed at once when it failed.
  Status RenameOver(const std::string& location, const std::function<Status()>& rename);

  std::string root_;
  int lock_fd_;
  std::unique_ptr<FsClient> fs_;
  ObjectDirectory dir_;
  bool direct_io_ = false;
  uint64_t swept_ = 0;
  std::atomic<uint64_t> staging_counter_{0};
  IoExecutor syscall_io_{nullptr, false};  // pread/pwrite: CreateStagingWith's small files
  // Unlinks removed objects in the background; null for a read-only store.
  // Declared last: it is drained before anything else goes.
  std::unique_ptr<DeferredUnlinker> unlinker_;
};

// fsync()s a directory so that entries created or removed in it are durable.
Status SyncDirectory(const std::string& dir);

// The mount point of the kvfs mount that holds path (after resolving it), or
// "" when path is on no kvfs mount (read from /proc/self/mountinfo).
std::string EnclosingKvfsMount(const std::string& path);

}  // namespace kvfs
