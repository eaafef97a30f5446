// DfsStore: a Store in a directory of a distributed filesystem that several
// hosts use at once (CephFS, GlusterFS, JuiceFS, Lustre, 3FS), reached
// through an FsClient. Selected explicitly with `--store dfs:/mnt/dfs/kv`.
//
// Layout under the root (the same on every host; objects/, staging/ and
// quarantine/ are kept by an ObjectDirectory, shared with LocalStore, so
// nothing there is followed as a symlink and new directories are 0700):
//   kvfs-manifest.toml             format, hash, seed, layout; created once by
//                                  whichever host comes first (under the
//                                  cluster lock) and checked by every mount
//   objects/xx/<hash>              published objects, as in LocalStore
//   staging/<host>~<pid>~<nonce>-<n>.tmp  versions being written: unique per
//                                  host and process (the random nonce covers
//                                  a pid reused after a restart)
//   quarantine/<hash>.<host>.<t>   damaged objects
//   cluster/evictor.<epoch>        the evictor lease (see DfsCluster)
//   cluster/lock                   flock()ed for a moment by a host deciding
//                                  alone (manifest creation, lease takeover)
//   cluster/access.<host>          access counts each host publishes
//   probe/                         the startup probe's scratch files
//
// Differences from LocalStore: no exclusive lock (many hosts mount the store
// at once); at open only this host's staging files of processes that are gone
// are removed (other hosts' are theirs; the evicting host removes staging
// files abandoned for a long time); PublishUnsynced makes the file and its
// rename durable itself (fdatasync before the rename, an fsync of the
// directory after it) because syncfs does not reach a DFS's servers and a
// file's fsync need not carry its rename there, so SyncAll and
// SyncPublished have nothing left to do; a startup probe writes, reads
// back and deletes a uniquely named file, and a store that fails it is not
// mounted. Publishing is an atomic rename over the object's location, so two
// hosts writing one key end with one complete version, never a mix.
//
// Thread-safe, see Store.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "adapters/dfs_cluster.h"
#include "adapters/fs_client.h"
#include "adapters/object_directory.h"
#include "adapters/store.h"

namespace kvfs {

struct DfsStoreOptions {
  // This host's name in staging files, the lease and access logs: letters,
  // digits, '.', '-' and '_' only. Must differ between hosts.
  std::string host_id;
  // Create the store (manifest and layout) in an empty directory.
  bool create_if_missing = true;
  // Also create the root directory itself when it is missing. Mounts leave
  // this off: a missing root usually means the DFS is not mounted yet, and a
  // directory created on the local disk would be a private store that only
  // looks shared.
  bool create_root = true;
  bool direct_io = true;
  bool sweep_staging = true;
  // A lease holder that has not renewed for this long is replaced.
  std::chrono::milliseconds lease_ttl{10000};
  // Staging files and access logs untouched for this long are abandoned.
  std::chrono::seconds abandoned_after{3600};
};

class DfsStore final : public Store {
 public:
  // Opens (or creates) the store: checks or creates the manifest, creates
  // the layout, runs the startup probe, sweeps this host's dead staging files.
  // Errors: EINVAL (bad host id), ENOENT/ENOTDIR/EACCES (root), EPROTO
  // (manifest from an incompatible kvfs), EIO (probe failed).
  static Result<std::unique_ptr<DfsStore>> Open(const std::string& root, const DfsStoreOptions& options,
                                                std::unique_ptr<FsClient> fs = nullptr);

  std::string Describe() const override { return "dfs:" + root_; }
  const std::string& root() const override { return root_; }
  bool DirectIo() const override { return direct_io_; }
  std::string LocationFor(const KeyHash& h) const override;
  Result<std::unique_ptr<StagingFile>> CreateStaging(uint64_t final_bytes) override;
  Status Publish(StagingFile& file, const std::string& location) override;
  Status PublishUnsynced(StagingFile& file, const std::string& location) override;
  Status SyncAll() override { return Status::Ok(); }
  Result<int> OpenForRead(const std::string& location) override;
  Status WriteHeaderBlock(const std::string& location, const uint8_t* block, bool sync) override;
  Status Move(const std::string& from, const std::string& to, bool sync) override;
  Status Remove(const std::string& location, bool sync = true) override;
  Status Quarantine(const std::string& location) override;
  Status Scan(const std::function<void(const ScannedObject&)>& fn, int threads) override;
  Result<StoreSpace> Space() const override { return fs_->StatFs(root_); }
  Result<std::vector<std::string>> ListStaging() const override;
  Status RemoveStaging(const std::string& name) override;

  bool Shared() const override { return true; }
  Result<ListedObject> StatObject(const std::string& location) override;
  Status List(const std::function<void(const ListedObject&)>& fn, int threads) override;
  ClusterCoordinator* cluster() override { return cluster_.get(); }

  const std::string& host_id() const { return host_id_; }
  uint64_t swept_staging_files() const { return swept_; }

 private:
  DfsStore(std::string root, std::string host_id, std::unique_ptr<FsClient> fs)
      : root_(std::move(root)), host_id_(std::move(host_id)), fs_(std::move(fs)), dir_(root_, fs_.get()) {}
  // Reads (or, for a new store, writes) the manifest; returns its number of
  // fan-out levels.
  Result<int> SetUpManifest(bool create_if_missing);
  Status Probe(bool want_direct);
  void SweepOwnStaging();

  std::string root_;
  std::string host_id_;
  std::unique_ptr<FsClient> fs_;
  ObjectDirectory dir_;  // objects/, staging/, quarantine/
  bool direct_io_ = false;
  uint64_t swept_ = 0;
  std::atomic<uint64_t> staging_counter_{0};
  std::string nonce_;  // per process: staging names never repeat a predecessor's
  std::unique_ptr<DfsCluster> cluster_;
};

// True for a usable host id (see DfsStoreOptions::host_id).
bool ValidHostId(const std::string& id);

}  // namespace kvfs
