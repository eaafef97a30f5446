// Engine: kvfs as a library. It owns the stores, the index (Namespace), the
// buffer pool and the I/O executor, and implements every file operation in
// terms of inode numbers and names, the way the FUSE low-level API asks for
// them, without depending on FUSE. Tests and benchmarks drive it directly.
//
// Contract (see docs/contract.md for the user-visible version):
//  - A created or O_TRUNC-opened file starts a new version in a Draft.
//    Writes go to the draft. The version is committed when the last writer
//    flushes (or at fsync): data and header are written with O_DIRECT to a
//    staging file, fdatasync'ed, then atomically renamed into place and the
//    index swapped. Until then other handles see the previous version, and a
//    new key is invisible (Lookup gives ENOENT, ReadDir skips it).
//  - Opening a file takes a Lease on its current version. Unlink or
//    replacement removes the name at once; leased bytes stay readable through
//    the handle until it is released, then their space is returned.
//  - Directories are persisted as header-only records, so empty directories
//    survive restarts. The index is rebuilt from the stores at Open.
//
// Thread-safety: every public method may be called from any thread at any
// time. Lock order: a Draft's lock, then publish_mu_ (namespace changes that
// touch a store, and the group-commit leader), then mu_ (the index), then a
// Version's lease mutex. A commit holds its draft's lock while it reserves
// space (which may evict under publish_mu_ and mu_), so no code may take a
// draft's lock while holding mu_, except on a draft nobody else can see yet.
// The group-commit leader may lock another committer's draft under
// publish_mu_: that committer is waiting for the leader and holds none.
// Store I/O for reads and draft write-out happens with no engine lock held;
// publish renames and syncs happen under publish_mu_ only, never under mu_
// (a rename of an object file also holds mu_ so no open sees the file move).
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <map>
#include <unordered_map>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "adapters/mutex.h"
#include "adapters/store.h"
#include "core/background_sync.h"
#include "core/buffer_pool.h"
#include "core/eviction_policy.h"
#include "core/io_ring.h"
#include "core/namespace.h"
#include "core/publish_queue.h"
#include "core/read_ahead.h"
#include "core/shared_tier.h"
#include "core/space_manager.h"

namespace kvfs {

struct EngineOptions {
  // Bytes the mount may use across all stores. Split evenly over the stores
  // unless `store_limits` gives each store its own figure.
  uint64_t capacity_bytes = 0;
  // One entry per store, or empty (then: capacity_bytes / n, no floor).
  std::vector<StoreLimits> store_limits;
  // "lru", "s3fifo" or "sieve" (see core/eviction_policy.h).
  std::string eviction_policy = "s3fifo";
  // The background evictor starts above high x capacity and stops below
  // low x capacity; it also restores the free-space floor.
  double high_watermark = 0.95;
  double low_watermark = 0.90;
  bool background_eviction = true;
  // Commits that meet at the publish step share one flush (SyncAll) instead
  // of an fdatasync and a directory fsync each. Needs a journaling store
  // filesystem (ext4, XFS); see docs/durability.md.
  bool group_commit = true;
  // When a commit (and a rename, unlink or mkdir) is made durable against
  // power loss. kBackground: it is published atomically at once and made
  // durable by a background flush within sync_interval (fsync makes it
  // durable before returning). kClose: before the call returns, as fsync.
  // Shared (DFS) stores always behave as kClose. See docs/durability.md.
  enum class Durability { kBackground, kClose };
  Durability durability = Durability::kBackground;
  std::chrono::milliseconds sync_interval{1000};
  // Let the kernel cache committed versions' pages (see docs/contract.md,
  // "Page cache"): read-only opens of the current version while no writer
  // has the key open, and the writers of a new key, are served through the
  // page cache; every other handle bypasses it. Stores shared with other
  // hosts never use it.
  bool page_cache = true;
  // Objects a writer may evict synchronously to make room for one commit.
  int max_sync_evictions = 256;
  // Read buffers: count x size bytes, registered with io_uring.
  size_t buffer_size = 1 << 20;
  size_t buffer_count = 64;
  // One large read is split into segments of this size, all in flight at once.
  size_t read_segment_bytes = 256 << 10;
  // A handle that reads sequentially and bypasses the page cache has the
  // next this many bytes read ahead on a background thread (0: off). The
  // page cache's readers get the kernel's read-ahead instead.
  uint64_t read_ahead_bytes = 2 << 20;
  bool use_io_uring = true;
  // Verify the checksum of one in N chunks read from the stores (1: every
  // chunk, the default; 0: never). A mismatch gives EIO and quarantines the
  // object.
  uint32_t verify_one_in = 1;
  int scan_threads = 16;  // header reads in flight per store at mount (I/O bound)
  // Largest single object (a write past it fails with EFBIG).
  uint64_t max_object_bytes = 64ULL << 30;
  // Shared stores (Store::Shared()): how often the reconciler lists the store
  // to pick up keys added, replaced or removed by other hosts, renews the
  // evictor lease and exchanges access counts. Must be well under the lease
  // ttl (a third or less).
  std::chrono::milliseconds shared_refresh{2000};
  // Called from the rebuild at mount with the number of objects scanned so
  // far, about every 100,000 objects (from scanning threads, serialised).
  std::function<void(uint64_t scanned)> on_scan_progress;
};

struct Attr {
  uint64_t ino = 0;
  uint32_t mode = 0;
  uint32_t nlink = 1;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  uint64_t blocks = 0;  // 512-byte units actually used on the store
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  // The key is being written: its size differs between the writers (their
  // draft) and everyone else (the committed version), so the kernel must
  // not cache these attributes.
  bool size_in_flux = false;
};

struct SetAttrRequest {
  std::optional<uint32_t> mode;  // permission bits only
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<uint64_t> size;
  std::optional<int64_t> atime_ns;
  std::optional<int64_t> mtime_ns;
};

class FileHandle;

struct OpenResult {
  FileHandle* handle = nullptr;  // owned by the engine until Release
  Attr attr;
  // True when the kernel may serve this handle through its page cache (no
  // FOPEN_DIRECT_IO); false: every read and write comes to the engine.
  bool page_cache = false;
  // True when the pages the kernel may already hold for this inode are this
  // handle's bytes (FOPEN_KEEP_CACHE); false: the kernel must drop them.
  bool keep_cache = false;
};

struct DirEntry {
  std::string name;
  Attr attr;
  uint64_t next_offset = 0;
};

// A verified, chunk-aligned range of an object's data in pool buffers.
struct ChunkSpan;

// Bytes of a read, ready to send: slices of pool buffers (or of an owned
// copy for reads of a draft). Keeps what the slices point into alive.
struct ReadReply {
  std::vector<iovec> iov;
  std::shared_ptr<const ChunkSpan> span;
  std::vector<uint8_t> owned;
  size_t bytes() const;
};

struct StoreStats {
  std::string name;
  uint64_t capacity_bytes = 0;
  uint64_t floor_bytes = 0;
  uint64_t objects = 0;
  uint64_t used_bytes = 0;
  uint64_t leased_bytes = 0;
  uint64_t pinned_bytes = 0;  // leased + reserved for commits in progress
  EvictionCounts evictions;
  uint64_t enospc = 0;
  uint64_t checksum_failures = 0;
  uint64_t quarantined = 0;
  uint64_t fs_total_bytes = 0;
  uint64_t fs_free_bytes = 0;
  bool direct_io = false;
  // Shared stores only.
  bool shared = false;
  std::string host_id;
  std::string evictor_holder;   // the host evicting from this store
  bool holds_evictor = false;   // this host is it
  uint64_t reconcile_passes = 0;
  uint64_t reconcile_failures = 0;
  uint64_t remote_added = 0;     // keys that appeared from other hosts
  uint64_t remote_replaced = 0;  // new versions committed by other hosts
  uint64_t remote_removed = 0;   // keys removed or evicted by other hosts
  uint64_t read_through = 0;     // lookups answered from the store, not the index
  StoreHealth health;
};

struct EngineStats {
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t leased_bytes = 0;
  uint64_t pinned_bytes = 0;
  EvictionCounts evictions;
  uint64_t enospc = 0;
  uint64_t checksum_failures = 0;
  uint64_t quarantined = 0;
  std::string eviction_policy;
  uint64_t objects = 0;
  uint64_t inodes = 0;  // files and directories in the index
  uint64_t open_handles = 0;
  uint64_t reads = 0;
  uint64_t read_bytes = 0;
  uint64_t writes = 0;
  uint64_t write_bytes = 0;
  uint64_t commits = 0;
  uint64_t commit_failures = 0;
  uint64_t group_commits = 0;       // publish groups (flushes shared by commits)
  uint64_t group_commit_jobs = 0;   // commits published through them
  std::string durability;           // "background" or "close"
  uint64_t background_syncs = 0;    // flushes made by the background sync
  uint64_t background_sync_failures = 0;
  uint32_t stores_not_durable = 0;  // stores with changes awaiting the background flush
  uint64_t lookups = 0;
  uint64_t negative_lookups = 0;
  uint64_t page_cache_opens = 0;   // handles served through the kernel's page cache
  uint64_t superseded_inodes = 0;  // keys moved to a fresh inode for an in-place writer
  uint64_t pool_hits = 0;
  uint64_t pool_misses = 0;
  uint64_t pool_buffers = 0;
  uint64_t pool_buffer_bytes = 0;
  uint64_t io_in_flight = 0;
  bool io_uring = false;
  std::vector<StoreStats> stores;
};

// What the engine knows about one inode, for the debugging surface
// (fuse/debug_xattrs.h renders it as user.kvfs.* attributes).
struct InodeInfo {
  std::string key;  // "" for the root
  bool is_dir = false;
  uint64_t open_handles = 0;
  bool writing = false;  // a draft holds writes not committed yet
  // The committed version, when there is one.
  bool has_version = false;
  std::string store;  // Store::Describe() of its store
  std::string location;
  uint64_t generation = 0;
  uint64_t size = 0;
  uint64_t footprint = 0;
  uint64_t leases = 0;
  uint64_t checksum = 0;  // XXH3 of the data
};

// Receives namespace changes the kernel cannot know about, so that the
// FUSE layer can invalidate its caches. Called with no engine lock held.
class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  // A key became visible for the first time (its first commit).
  // name_was_refused: the kernel may hold a "no such name" entry for it (a
  // lookup was answered ENOENT while it was pending, or another host made
  // it); otherwise the kernel's entry for the name, if any, already points
  // at the key's inode and must be kept (with its cached pages).
  virtual void EntryAppeared(uint64_t parent_ino, const std::string& name, bool name_was_refused) = 0;
  // A new version of a file was committed: cached attributes are stale.
  // Called before the commit is reported to the writer.
  virtual void VersionCommitted(uint64_t ino) = 0;
  // A key was evicted: its name is gone.
  virtual void EntryEvicted(uint64_t parent_ino, const std::string& name, uint64_t ino) = 0;
};

class Engine : private SpaceHost, private SharedIndex {
 public:
  // Takes ownership of the stores (at least one), rebuilds the index from
  // them, and returns a ready engine.
  static Result<std::unique_ptr<Engine>> Open(const EngineOptions& options,
                                              std::vector<std::unique_ptr<Store>> stores);
  ~Engine();

  void SetObserver(EngineObserver* observer) { observer_.store(observer); }

  // Namespace. Lookup, Mkdir and Create add one kernel lookup reference to
  // the inode they return; Forget drops n of them.
  Result<Attr> Lookup(uint64_t parent, std::string_view name);
  void Forget(uint64_t ino, uint64_t n);
  // With a handle, attributes as that handle sees them (its draft or leased
  // version); without, the committed state.
  // `thread` identifies the asking thread (0: unknown; see Write): a thread
  // that opened or wrote the key's draft sees the draft's size even without
  // a handle (fstat reaches the engine without one).
  Result<Attr> GetAttr(uint64_t ino, FileHandle* handle, uint64_t thread = 0);
  Result<Attr> SetAttr(uint64_t ino, const SetAttrRequest& request, FileHandle* handle);
  Result<Attr> Mkdir(uint64_t parent, std::string_view name, uint32_t mode, uint32_t uid, uint32_t gid);
  Status Rmdir(uint64_t parent, std::string_view name);
  Status Unlink(uint64_t parent, std::string_view name);
  // flags: RENAME_NOREPLACE is honoured; RENAME_EXCHANGE gives EINVAL.
  Status Rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name,
                unsigned flags);

  // Files. flags are open(2) flags.
  // `thread` identifies the opening thread (0: unknown), see GetAttr.
  Result<OpenResult> Create(uint64_t parent, std::string_view name, uint32_t mode, int flags, uint32_t uid,
                            uint32_t gid, uint64_t thread = 0);
  Result<OpenResult> Open(uint64_t ino, int flags, uint64_t thread = 0);
  Status Read(FileHandle* handle, uint64_t offset, size_t size, ReadReply* out);
  // owner identifies the writing process (FUSE lock_owner: one value per
  // file table, shared by threads, different in a forked child); 0 = unknown.
  // thread identifies the writing thread (0: unknown), see GetAttr.
  Result<size_t> Write(FileHandle* handle, uint64_t offset, const void* data, size_t size, uint64_t owner = 0,
                       uint64_t thread = 0);
  // Commits the draft when this handle is its last writer. A flush from an
  // owner that never wrote through the handle (a forked child closing its
  // inherited copy) does not commit; a handle with no writes yet commits at
  // any flush (an empty or truncated version). other_owner is a second
  // identity of the flusher (0: none): writes that arrive without a lock
  // owner (the kernel's page-cache writes) are recorded under the writing
  // thread's identity, which the flush passes here.
  Status Flush(FileHandle* handle, uint64_t owner = 0, uint64_t other_owner = 0);
  // Commits the draft now (other writers keep writing into a new version).
  Status Fsync(FileHandle* handle);
  void Release(FileHandle* handle);
  // Releases a handle whose open never reached the caller (the kernel dropped
  // the reply): nothing it started is committed.
  void Abandon(FileHandle* handle);

  // Directories: calls emit for entries with offset > `offset` in listing
  // order until it returns false. With plus, each emitted entry gains a
  // lookup reference (only when emit returns true).
  Status ReadDir(uint64_t ino, uint64_t offset, bool plus, const std::function<bool(const DirEntry&)>& emit);

  // Debugging surface: what the index holds for an inode. ENOENT when the
  // inode is not known.
  Result<InodeInfo> Inspect(uint64_t ino) const;

  EngineStats Stats() const;
  const EngineOptions& options() const { return options_; }
  // Runs one pass of the background evictor now (tests use it instead of
  // waiting for the evictor thread). Returns the number of objects evicted.
  size_t EvictNow();
  size_t store_count() const { return stores_.size(); }
  // Shared stores: waits until the reconciler has completed a whole pass
  // that started after this call (tests use it instead of sleeping). False
  // on timeout or when there is no shared store.
  bool WaitForReconcile(std::chrono::milliseconds timeout);
  // Background durability: waits until every change made before this call
  // has been flushed by the background sync (tests use it instead of
  // sleeping). True at once in kClose mode; false on timeout.
  bool WaitForBackgroundSync(std::chrono::milliseconds timeout);

 private:
  Engine(const EngineOptions& options, std::vector<std::unique_ptr<Store>> stores);
  Status Rebuild();

  // Helpers below document which locks they expect.
  Attr AttrOfLocked(const Inode* inode, const FileHandle* handle, uint64_t thread = 0) const KVFS_REQUIRES(mu_);
  // Records a thread that opened or wrote a handle's draft (see GetAttr).
  static void NoteDraftThreadLocked(FileHandle* handle, uint64_t thread);              // mu_
  Result<Inode*> ChildForChangeLocked(uint64_t parent, std::string_view name) KVFS_REQUIRES(mu_);
  // With `lease` (taken by the caller without the lock) the handle reads that
  // version; otherwise the current one is leased here, under the lock.
  Result<OpenResult> OpenLocked(Inode* inode, int flags, Lease lease = Lease()) KVFS_REQUIRES(mu_);
  Result<std::shared_ptr<Draft>> DraftForWrite(FileHandle* handle) KVFS_EXCLUDES(publish_mu_, mu_);
  // A key is about to be written in place while page-cache readers have its
  // inode open. The kernel's file size belongs to the inode, so the writer
  // must not share it with them: the key moves to a fresh inode (same
  // version, same place in its directory) and the old one keeps serving only
  // its open handles, as if unlinked. Returns the fresh inode. The caller
  // then answers ESTALE (the kernel looks the name up again and opens the
  // fresh inode) or, for a CREATE, replies with the fresh inode.
  Inode* SupersedeLocked(Inode* old) KVFS_REQUIRES(publish_mu_, mu_);
  // Whether an open with these flags (or a truncate) writes the inode in
  // place while page-cache readers have it open.
  static bool WritesUnderCacheReaders(const Inode* inode, int flags);
  // For an open (or truncate) of ino that writes under page-cache readers:
  // moves the key to a fresh inode (takes publish_mu_ and mu_) and returns
  // ESTALE, so that the kernel looks the name up again and retries on the
  // fresh inode.
  Status SendWriterToFreshInode(uint64_t ino, int flags) KVFS_EXCLUDES(publish_mu_, mu_);
  // The common part: takes publish_mu_ and mu_, finds the inode again with
  // `find` (called under mu_; null: gone) and supersedes it if it is still
  // linked and still written under page-cache readers.
  void SupersedeUnderCacheReaders(int flags, const std::function<Inode*()>& find) KVFS_EXCLUDES(publish_mu_, mu_);
  // Decides how the kernel may cache a handle just opened on inode.
  void ChooseCachingLocked(Inode* inode, FileHandle* handle, int flags, OpenResult* r) KVFS_REQUIRES(mu_);
  uint32_t StoreIndexFor(const std::string& key) const;
  Status CommitDraft(Inode* inode, std::shared_ptr<Draft> draft) KVFS_EXCLUDES(publish_mu_, mu_);
  // The publish step of a commit (engine_commit.cc), run by PublishQueue.
  class CommitJob;
  // Puts a staging file in place at location: durably (Store::Publish), or
  // linked and left to the background sync when the store's syncs are deferred.
  Status PublishStaging(uint32_t store_index, StagingFile& staging, const std::string& location) KVFS_EXCLUDES(mu_);
  // Removes a version's object file (durably unless the store's syncs are deferred).
  Status RemoveObject(const Version& version) KVFS_EXCLUDES(mu_);
  // Lets a new draft of inode spill to a staging file on the key's store.
  void AttachSpillLocked(Inode* inode, Draft* draft) KVFS_REQUIRES(mu_);
  Status WriteObject(Store* store, const ObjectHeader& header, const Draft* draft,
                     std::unique_ptr<StagingFile>* out);
  Result<std::shared_ptr<Version>> PublishRecord(uint32_t store_index, ObjectHeader header) KVFS_REQUIRES(publish_mu_);
  Status RewriteHeader(const std::shared_ptr<Version>& version, ObjectHeader header) KVFS_REQUIRES(publish_mu_);
  // Writes header (generation already assigned) into the slot of the object's
  // header block that is not current, keeping the current one, then makes it
  // the version's header: a torn write leaves the old header valid. The
  // index keeps no key in a version's header: current_key is the current
  // header's key.
  Status WriteSpareHeaderSlot(Version* version, const std::string& current_key, ObjectHeader header) KVFS_REQUIRES(publish_mu_);
  Status LoadDraft(const std::shared_ptr<Version>& version, Draft* draft) KVFS_EXCLUDES(mu_);
  // Reads and verifies the chunks covering [offset, end) of a leased version.
  // EBADMSG when the object is damaged (checksum, short file), EIO when the
  // store failed.
  Result<std::shared_ptr<ChunkSpan>> ReadChunks(Version* version, uint64_t offset, uint64_t end) KVFS_EXCLUDES(publish_mu_, mu_);
  // After a read of [offset, end) through handle (served from span_end's
  // chunks): when the handle reads sequentially, starts reading the next
  // read_ahead_bytes in the background.
  void MaybeReadAhead(FileHandle* handle, const std::shared_ptr<Version>& v, uint64_t offset, uint64_t end,
                      uint64_t span_end) KVFS_EXCLUDES(publish_mu_, mu_);
  // Takes a corrupt version out of service: EIO was returned, now the name
  // goes and the file moves to the store's quarantine.
  void QuarantineVersion(Inode* inode, const std::shared_ptr<Version>& version, const std::string& why) KVFS_EXCLUDES(publish_mu_, mu_);
  Status MoveObject(Inode* inode, const std::string& new_key) KVFS_REQUIRES(publish_mu_);
  Status MoveTree(Inode* inode, const std::string& new_key) KVFS_REQUIRES(publish_mu_);
  Result<std::shared_ptr<Version>> CopyToStore(const std::shared_ptr<Version>& version, uint32_t store_index,
                                               ObjectHeader header) KVFS_REQUIRES(publish_mu_);
  // A version of header.key's object at location on store store_index.
  std::shared_ptr<Version> MakeVersion(uint32_t store_index, const std::string& location,
                                       const ObjectHeader& header, uint64_t file_id = 0);
  ObjectHeader HeaderFor(const Inode* inode, const std::string& key) const KVFS_REQUIRES(mu_);
  Status EnsureDirRecord(Inode* dir) KVFS_REQUIRES(publish_mu_);
  // SpaceHost: what the space manager asks of the engine.
  bool MayEvict(uint32_t store_index) const override;
  // Takes the object the policy gives up out of the index and off the store.
  bool EvictOne(uint32_t store_index, EvictionCause cause) override KVFS_EXCLUDES(publish_mu_, mu_);
  void AskForRoom(uint32_t store_index, int64_t delta) override;
  bool WaitForRoom(uint32_t store_index) override;
  uint64_t RoomAskedOfUs(uint32_t store_index) const override;
  void TrackCommitted(Inode* inode, const Version* old_version) KVFS_REQUIRES(mu_);
  // An open of the committed version: tells the policy (and, on a shared
  // store, the access counts this host publishes).
  void NoteAccessLocked(Inode* inode) KVFS_REQUIRES(mu_);
  void UntrackCommitted(Inode* inode) KVFS_REQUIRES(mu_);

  // --- Shared stores (engine_shared.cc). ---------------------------------
  // A change the kernel must hear of, sent once no lock is held.
  struct Notice {
    enum Kind { kAppeared, kReplaced, kRemoved } kind;
    uint64_t parent_ino;
    std::string name;
    uint64_t ino;
  };
  void SendNotices(const std::vector<Notice>& notices) KVFS_EXCLUDES(publish_mu_, mu_);
  // The directory that holds key's last component (created as implicit
  // directories where missing), and that component; null on a name clash.
  Inode* ParentForKeyLocked(const std::string& key, std::string* leaf) KVFS_REQUIRES(mu_);
  // Indexes an object another host published at its key's location (new
  // key, new version or directory record) if it is still the file there.
  void ApplyRemote(uint32_t store_index, const ScannedObject& obj, std::vector<Notice>* notices) KVFS_REQUIRES(publish_mu_);
  // Drops an indexed object that is gone from the store (if still indexed
  // with that identity and not being written here).
  void RemoveRemote(uint64_t ino, const std::string& location, uint64_t file_id,
                    std::vector<Notice>* notices) KVFS_REQUIRES(publish_mu_);
  // Looks key up on a shared store: OK when it was found and indexed,
  // ENOENT when the store has no such key, EIO when the store failed.
  Status ReadThrough(uint32_t store_index, const std::string& key) KVFS_EXCLUDES(publish_mu_, mu_);
  // Before an open: follows a replacement or removal of the object by
  // another host. EIO when the store does not answer.
  Status Revalidate(uint64_t ino) KVFS_EXCLUDES(publish_mu_, mu_);
  // SharedIndex: what the shared tier's reconciler asks of the index.
  bool ReconcileStore(uint32_t store_index, bool holder) override KVFS_EXCLUDES(publish_mu_, mu_);
  void ApplyRemoteAccesses(uint32_t store_index, const std::map<std::string, uint64_t>& counts) override KVFS_EXCLUDES(publish_mu_, mu_);
  std::unique_ptr<SharedTier> shared_;  // the reconciler and the evictor lease of shared stores
  // Per store, for the evictor lease holder: the inode indexed at each
  // location as of the last reconciliation.
  std::vector<std::unordered_map<std::string, uint64_t>> inode_by_location_ KVFS_GUARDED_BY(mu_);

  EngineOptions options_;
  std::vector<std::unique_ptr<Store>> stores_;
  std::vector<std::shared_ptr<SpaceAccount>> store_accounts_;
  std::shared_ptr<SpaceAccount> account_;
  std::vector<std::shared_ptr<const VersionHome>> homes_;  // per store: what its Versions share
  std::unique_ptr<SpaceManager> space_;  // set by Open, before the rebuild
  // Per-store integrity counters.
  struct IntegrityCounters {
    std::atomic<uint64_t> checksum_failures{0}, quarantined{0};
  };
  std::vector<std::unique_ptr<IntegrityCounters>> integrity_;
  std::atomic<uint64_t> verify_counter_{0};
  // Durability. Whether changes on a store are flushed later by
  // background_sync_ (kBackground on a local store) or before each call
  // returns; Deferred is set at construction and never changes.
  bool Deferred(uint32_t store_index) const { return background_sync_ && !stores_[store_index]->Shared(); }
  // Records an un-flushed change on a store whose syncs are deferred.
  void Dirtied(uint32_t store_index) {
    if (Deferred(store_index)) background_sync_->MarkDirty(store_index);
  }
  std::unique_ptr<BackgroundSync> background_sync_;  // null in kClose mode
  std::unique_ptr<BufferPool> pool_;
  std::unique_ptr<IoExecutor> io_;
  std::unique_ptr<ReadAhead> read_ahead_;  // null when read_ahead_bytes is 0
  std::atomic<EngineObserver*> observer_{nullptr};

  Mutex publish_mu_ KVFS_ACQUIRED_BEFORE(mu_);
  std::unique_ptr<PublishQueue> publisher_;  // group commit, under publish_mu_
  mutable Mutex mu_;
  CondVar commit_done_;  // with mu_: an inode's `committing` went false
  std::atomic<uint64_t> page_cache_opens_{0}, superseded_inodes_{0};
  Namespace ns_ KVFS_GUARDED_BY(mu_);
  uint64_t next_generation_ KVFS_GUARDED_BY(mu_) = 1;
  uint64_t open_handles_ KVFS_GUARDED_BY(mu_) = 0;

  std::atomic<uint64_t> reads_{0}, read_bytes_{0}, writes_{0}, write_bytes_{0};
  std::atomic<uint64_t> commits_{0}, commit_failures_{0}, lookups_{0}, negative_lookups_{0};
};

}  // namespace kvfs
