// The Engine's value types: its options, the attributes and handles its
// file operations return, its statistics, and the observer it tells of
// changes the kernel cannot see. Plain data (except EngineObserver, an
// interface); no locks.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "adapters/store.h"
#include "adapters/buffer_pool.h"
#include "core/histogram.h"
#include "core/space_manager.h"

namespace kvfs {

struct EngineOptions {
  // Capacity, per-store limits and floors, the eviction policy, its
  // watermarks and synchronous eviction: handed to the SpaceManager as they
  // are (see SpaceManager::Options). space.capacity_bytes is the bytes the
  // mount may use across all stores; once started, the engine's copy holds
  // the total the SpaceManager settled on (the sum of store_limits when
  // those are given).
  SpaceManager::Options space;
  // Whether the background evictor thread runs (see SpaceManager::Options
  // for when it starts and stops).
  bool background_eviction = true;
  // How a commit that must be durable before it returns (kClose below, or
  // an fsync) is flushed. kFile: the staging file is renamed into place and
  // then fsync'ed, which on a journaling filesystem (ext4, XFS) commits the
  // rename with it (Store::SyncPublished); concurrent commits' fsyncs meet
  // in the filesystem's own journal commit. kGroup: commits that meet at
  // the publish step share one SyncAll (syncfs). kEach: fdatasync of the
  // staging file, rename, fsync of the directory: any POSIX filesystem.
  // See docs/durability.md.
  enum class CommitFlush { kFile, kGroup, kEach };
  CommitFlush commit_flush = CommitFlush::kFile;
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
  // Read buffers: count x size bytes, registered with io_uring.
  size_t buffer_size = 1 << 20;
  size_t buffer_count = 64;
  // One large read is split into segments of this size, all in flight at once.
  size_t read_segment_bytes = 256 << 10;
  // A handle that reads sequentially has the next this many bytes read
  // ahead on a background thread (0: off): an O_DIRECT reader, and a page
  // cache reader whose misses (the kernel's read-ahead requests) reach the
  // daemon one after another.
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
  uint32_t rdev = 0;  // device records: the kernel's 32-bit device number
  uint64_t size = 0;  // a symbolic link's: its target's length
  uint64_t blocks = 0;  // 512-byte units actually used on the store
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  // The key is being written: its size differs between the writers (their
  // draft) and everyone else (the committed version), so the kernel must
  // not cache these attributes.
  bool size_in_flux = false;
  // A key still being written, answered to the process that created it
  // (Engine::Lookup): the kernel must not keep the name for anyone else.
  bool pending = false;
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
  // Create only: the key was made by this call (not an existing key opened).
  bool created = false;
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
  uint64_t pool_in_use = 0;  // pool buffers on loan now (reads, and I/O still running past a deadline)
  uint64_t pool_buffer_bytes = 0;
  uint64_t io_in_flight = 0;
  bool io_uring = false;
  // Histograms (see core/histogram.h): nanoseconds per engine read (each
  // Read call, one FUSE read), nanoseconds per successful commit (close or
  // flush), and objects evicted per eviction batch (a background pass over
  // one store, or the synchronous evictions of one commit).
  HistogramSnapshot read_latency_ns;
  HistogramSnapshot commit_latency_ns;
  HistogramSnapshot eviction_batch_objects;
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
  uint64_t checksum = 0;  // of the data (adapters/object_header.h)
  // checksum is XXH3-64 of the chunk checksum table (object format 2, a
  // file), not of the data bytes.
  bool checksum_of_table = false;
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
  // A name was added to directory dir_ino while the kernel was looking that
  // very name up (a lookup read another host's key through from a shared
  // store): the kernel's entry will come from that lookup, but a listing of
  // the directory it cached earlier lacks the name. Called from the thread
  // serving that LOOKUP, which holds the directory's lock in the kernel: it
  // must not wait for the kernel.
  virtual void ListingChanged(uint64_t dir_ino) = 0;
};

}  // namespace kvfs
