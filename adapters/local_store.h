// LocalStore: a Store in a directory on a local drive (typically NVMe).
//
// Layout under the root:
//   kvfs-manifest.toml      format, hash algorithm, seed, layout
//   .lock                   flock()ed by the one process using the store
//   objects/xx/yy/<hash>    published objects; xx, yy = first hex digits of
//                           the key hash (65,536 leaf directories at most, so
//                           no directory holds millions of entries)
//   staging/<pid>-<n>.tmp   versions being written; swept at open
//   quarantine/<hash>.<t>   objects that failed a checksum or header check
//
// Files are opened with O_DIRECT where the filesystem supports it (checked
// once at open; otherwise buffered I/O with one logged warning).
// Thread-safe, see Store.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "adapters/store.h"

namespace kvfs {

struct LocalStoreOptions {
  // Create the directory (and its parents) and a fresh manifest if missing.
  bool create_if_missing = true;
  // Use O_DIRECT when the filesystem supports it.
  bool direct_io = true;
  // Remove leftover staging files at open (a mount does; fsck reports them).
  bool sweep_staging = true;
};

class LocalStore final : public Store {
 public:
  // Opens (or creates) a store at root: checks the manifest, takes the store
  // lock, removes leftover staging files. Errors: ENOENT (missing root and
  // !create_if_missing), ENOTDIR, EACCES, EBUSY (locked by another process),
  // EPROTO (manifest from an incompatible kvfs).
  static Result<std::unique_ptr<LocalStore>> Open(const std::string& root, const LocalStoreOptions& options);
  ~LocalStore() override;

  std::string Describe() const override { return "local:" + root_; }
  const std::string& root() const override { return root_; }
  bool DirectIo() const override { return direct_io_; }
  std::string LocationFor(const KeyHash& h) const override;
  Result<std::unique_ptr<StagingFile>> CreateStaging() override;
  Status Publish(StagingFile& file, const std::string& location) override;
  Status Link(StagingFile& file, const std::string& location) override;
  Status SyncAll() override;
  Result<int> OpenForRead(const std::string& location) override;
  Status WriteHeaderBlock(const std::string& location, const uint8_t* block, bool sync) override;
  Status Move(const std::string& from, const std::string& to, bool sync) override;
  Status Remove(const std::string& location, bool sync = true) override;
  Status Quarantine(const std::string& location) override;
  Status Scan(const std::function<void(const ScannedObject&)>& fn, int threads) override;
  Result<StoreSpace> Space() const override;
  Result<std::vector<std::string>> ListStaging() const override;
  Status RemoveStaging(const std::string& name) override;

  // Number of staging files removed when the store was opened.
  uint64_t swept_staging_files() const { return swept_; }

 private:
  LocalStore(std::string root, int lock_fd, bool direct_io) : root_(std::move(root)), lock_fd_(lock_fd), direct_io_(direct_io) {}
  std::string Abs(const std::string& location) const { return root_ + "/" + location; }
  // Creates the fan-out directories of location; with sync, durably.
  Status EnsureParentDirs(const std::string& location, bool sync = true);

  std::string root_;
  int lock_fd_;
  bool direct_io_;
  uint64_t swept_ = 0;
  std::atomic<uint64_t> staging_counter_{0};
};

// fsync()s a directory so that entries created or removed in it are durable.
Status SyncDirectory(const std::string& dir);

}  // namespace kvfs
