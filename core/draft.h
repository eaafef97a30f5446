// Draft: the bytes of a version being written.
//
// libfuse hands WRITE payloads over at arbitrary addresses, so they are copied
// into 1 MiB, 4 KiB-aligned chunks. Chunks are allocated on first touch, from
// a small process-wide cache of zeroed chunks; a chunk never written reads as
// zeros (a hole). Writes at any offset and truncation are supported.
//
// Bounded memory: a draft given a spill target (SetSpill) keeps at most
// kDraftResidentChunks chunks in memory (one, while all drafts together hold
// more than kDraftMemoryBudget); older chunks are written, whole and
// aligned, to the spill target (the version's staging file, at the chunk's
// place in the object) and read back only when written again or read. Each
// spilled chunk keeps the checksums of its 256 KiB pieces (the object's
// chunk checksums, from which its whole checksum derives), so a commit
// writes only what is still in memory and reads nothing back. Without a spill target, every chunk stays in
// memory (the object size limit bounds it).
//
// Holes: a chunk never written reads as zeros and takes no memory; a commit
// leaves its place in the object a hole on the store (HoleLocked), so a
// sparse file stays sparse.
//
// Thread-safety: the draft's mutex (mutex()) guards its chunks and spill
// state. The plain methods take it themselves (KVFS_EXCLUDES); the *Locked
// ones need it held (KVFS_REQUIRES), so the commit path can hold it across
// the whole write-out and no write slips in between. size(), dirty(),
// consumed() and `broken` are atomics, readable without it. It is the first
// lock of the engine's lock order (core/engine.h).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "adapters/mutex.h"
#include "adapters/status.h"

namespace kvfs {

inline constexpr size_t kDraftChunkSize = 1 << 20;
// Chunks a draft keeps in memory before it spills older ones.
inline constexpr size_t kDraftResidentChunks = 4;
// Bytes all drafts together may hold in memory before each spills down to
// one chunk.
inline constexpr uint64_t kDraftMemoryBudget = 256ULL << 20;
// The checksum unit of an object (see object_header.h): 4 per draft chunk.
inline constexpr size_t kDraftSumUnit = 256 << 10;
inline constexpr size_t kDraftSumsPerChunk = kDraftChunkSize / kDraftSumUnit;

// Where a draft's chunks go when they leave memory. Offsets are data
// offsets of the object (the header is not counted); lengths and buffers
// are 4 KiB aligned. Owned by its draft; used under the draft's lock.
//
// A transfer may fail while the I/O behind it still runs (a store deadline
// passed): the target is then in_doubt(), and memory that transfer was given
// must be handed to KeepUntilTransfersEnd instead of being freed or reused.
// The draft also marks itself `broken` then: a late write could still
// change the target's bytes, so that version may never be committed.
class DraftSpill {
 public:
  virtual ~DraftSpill() = default;
  virtual Status Write(uint64_t offset, const uint8_t* data, size_t len) = 0;
  virtual Status Read(uint64_t offset, uint8_t* data, size_t len) = 0;
  virtual bool in_doubt() const { return false; }
  virtual void KeepUntilTransfersEnd(std::shared_ptr<const void> memory) { (void)memory; }
};
// Makes the spill target the first time a chunk must leave memory.
using DraftSpillFactory = std::function<Result<std::unique_ptr<DraftSpill>>()>;

class Draft {
 public:
  Draft() = default;
  // A draft that may spill to the target the factory makes, set before any
  // other thread can see the draft (SetSpill takes the draft's lock, which
  // the engine may not take under its index mutex).
  explicit Draft(DraftSpillFactory spill) : spill_factory_(std::move(spill)) {}
  ~Draft();
  Draft(const Draft&) = delete;
  Draft& operator=(const Draft&) = delete;

  // Copies len bytes at off; grows the size when writing past the end.
  Status Write(uint64_t off, const void* data, size_t len) KVFS_EXCLUDES(mu_);
  // As Write, for a caller that already holds mutex().
  Status WriteLocked(uint64_t off, const void* data, size_t len) KVFS_REQUIRES(mu_);
  // Sets the size, discarding bytes past it (and zeroing them for later growth).
  Status Truncate(uint64_t size) KVFS_EXCLUDES(mu_);
  // Grows the size to `size` (no-op when it is not larger); the new bytes
  // read as zeros and take no memory.
  void ExtendLocked(uint64_t size) KVFS_REQUIRES(mu_);
  // Copies up to len bytes at off into out; returns the count (0 at or past end).
  size_t Read(uint64_t off, size_t len, uint8_t* out) const KVFS_EXCLUDES(mu_);
  // Lock-free: safe to call while another thread holds mutex().
  uint64_t size() const { return size_.load(std::memory_order_acquire); }
  // Bytes of staging memory held.
  uint64_t memory_bytes() const KVFS_EXCLUDES(mu_);
  // Bytes of chunk memory held by all drafts of the process.
  static uint64_t total_memory_bytes();

  // Lets the draft spill chunks to the target the factory makes (once).
  void SetSpill(DraftSpillFactory factory) KVFS_EXCLUDES(mu_);

  // Whether the draft holds changes not yet committed.
  // Lock-free, so the engine may ask while holding its index mutex (the
  // commit path holds mutex() and then takes that mutex).
  bool dirty() const { return dirty_.load(); }
  void set_dirty(bool d) { dirty_.store(d); }

  // Open handles writing this version, and those of them not flushed since
  // their last write; guarded by the Engine's index mutex. The version is
  // committed when the last unflushed writer flushes (or, failing that, when
  // the last writer is released).
  uint32_t writers = 0;
  uint32_t unflushed = 0;
  // Set when loading the base of a copy-on-write draft failed: the bytes are
  // incomplete and must never be committed; writers joined to it get EIO.
  std::atomic<bool> broken{false};
  // Every byte of this draft was written through the kernel's page cache of
  // one inode (a new key's writers): once committed, those cached pages are
  // the version's bytes. Guarded by the Engine's index mutex.
  bool page_cached = false;
  // Its last commit failed (ENOSPC, EIO) and nothing was written since: the
  // creator's own lookups no longer find a new key by this draft, whose
  // close() already reported the failure. Guarded by the Engine's index mutex.
  bool commit_failed = false;
  // Threads that opened or wrote this draft (a few; see Engine::GetAttr).
  // Guarded by the Engine's index mutex.
  std::vector<uint64_t> writer_threads;

  // The draft's lock, for the commit path, which holds it (UniqueLock or
  // MutexLock) while using the *Locked members below.
  Mutex& mutex() const KVFS_RETURN_CAPABILITY(mu_) { return mu_; }
  size_t chunk_count_locked() const KVFS_REQUIRES(mu_) { return chunks_.size(); }
  // The chunk, or nullptr for a hole or a spilled chunk.
  const uint8_t* chunk_locked(size_t i) const KVFS_REQUIRES(mu_) { return chunks_[i]; }
  bool spilled_locked(size_t i) const KVFS_REQUIRES(mu_) { return i < spilled_.size() && spilled_[i]; }
  // Chunk i reads as zeros and nothing was ever written at its place in the
  // spill target (a chunk spilled and then truncated away left its bytes
  // there): a commit need not write it, and leaves a hole.
  bool HoleLocked(size_t i) const KVFS_REQUIRES(mu_) {
    return ReadsAsZerosLocked(i) && !(i < on_target_.size() && on_target_[i]);
  }
  // Chunk i is neither in memory nor spilled: it reads as zeros.
  bool ReadsAsZerosLocked(size_t i) const KVFS_REQUIRES(mu_) {
    return (i >= chunks_.size() || !chunks_[i]) && !spilled_locked(i);
  }
  uint64_t size_locked() const KVFS_REQUIRES(mu_) { return size_.load(std::memory_order_relaxed); }
  // The spill target, or null when nothing spilled.
  DraftSpill* spill_locked() const KVFS_REQUIRES(mu_) { return spill_.get(); }
  // The bytes of chunk i: its memory, a spilled chunk read back into
  // `scratch` (kDraftChunkSize, aligned), or zeros for a hole.
  Result<const uint8_t*> ChunkBytesLocked(size_t i, uint8_t* scratch) const KVFS_REQUIRES(mu_);
  // XXH3-64 of the 256 KiB unit u of the data, of len bytes (len < the unit
  // only for the last one): from memory, from the sums kept at spill, or
  // read back.
  Result<uint64_t> UnitChecksumLocked(uint64_t u, size_t len, uint8_t* scratch) const KVFS_REQUIRES(mu_);
  // The sums of every unit of the first size_locked() bytes, 8 bytes each
  // into table (the object's chunk checksum table; UnitChecksumLocked).
  Status UnitChecksumsLocked(uint8_t* table, uint8_t* scratch) const KVFS_REQUIRES(mu_);
  // For a write of the chunks that was given up on while it may still read
  // them: replaces every chunk in memory with a copy and returns the
  // originals, which go back to the chunk cache when the last owner lets go.
  std::vector<std::shared_ptr<const void>> DetachChunksLocked() KVFS_REQUIRES(mu_);
  // A commit is publishing the spill target as the object: the draft's
  // spilled bytes now live there (still readable through the draft), and
  // nothing may be written into it any more, so a further write needs a new
  // draft (see Engine::DraftForWrite). Undone when that commit fails.
  void set_consumed(bool c) { consumed_.store(c); }
  bool consumed() const { return consumed_.load(); }

 private:
  // Allocates (reading a spilled chunk back).
  Result<uint8_t*> ChunkFor(size_t index) KVFS_REQUIRES(mu_);
  // Returns it for reuse (the destructor calls it without the lock: nobody
  // else can reach the draft then).
  void FreeChunk(size_t index) KVFS_REQUIRES(mu_);
  // Spills chunks other than `keep` while over the resident limit.
  Status SpillLocked(size_t keep) KVFS_REQUIRES(mu_);
  Status SpillChunkLocked(size_t index) KVFS_REQUIRES(mu_);
  // After a failed spill transfer: when the spill target is in doubt, hands
  // chunk memory c to it (see DraftSpill) and marks the draft broken; else
  // returns c to the cache. Returns whether c was handed over.
  bool HandOverIfInDoubt(uint8_t* c) const KVFS_REQUIRES(mu_);

  mutable Mutex mu_;
  std::vector<uint8_t*> chunks_ KVFS_GUARDED_BY(mu_);
  size_t resident_ KVFS_GUARDED_BY(mu_) = 0;    // non-null chunks_
  std::vector<bool> spilled_ KVFS_GUARDED_BY(mu_);  // chunk i is in the spill target (and not in memory)
  std::vector<bool> on_target_ KVFS_GUARDED_BY(mu_);  // chunk i's place in the spill target was ever written
  // Of spilled chunks, whole units.
  std::vector<std::array<uint64_t, kDraftSumsPerChunk>> sums_ KVFS_GUARDED_BY(mu_);
  DraftSpillFactory spill_factory_ KVFS_GUARDED_BY(mu_);
  std::unique_ptr<DraftSpill> spill_ KVFS_GUARDED_BY(mu_);
  std::atomic<bool> consumed_{false};
  size_t first_resident_hint_ KVFS_GUARDED_BY(mu_) = 0;  // no chunk below it is in memory
  // Written under mu_ (stored with release), read lock-free by size().
  std::atomic<uint64_t> size_{0};
  uint64_t high_water_ KVFS_GUARDED_BY(mu_) = 0;  // no byte at or past it was ever written
  std::atomic<bool> dirty_{true};
};

// A 1 MiB aligned block of zeros, for writing holes with O_DIRECT.
const uint8_t* ZeroChunk();
// XXH3-64 of len zero bytes (len at most kDraftChunkSize); the checksum unit's
// is computed once.
uint64_t ZeroChecksum(size_t len);

}  // namespace kvfs
