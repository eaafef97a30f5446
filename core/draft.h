// Draft: the bytes of a version being written, held in aligned staging memory
// until commit.
//
// libfuse hands WRITE payloads over at arbitrary addresses, so they are copied
// into 1 MiB, 4 KiB-aligned chunks; at commit the chunks go to the store with
// O_DIRECT writes unchanged. Chunks are allocated on first touch, from a
// small process-wide cache of zeroed chunks; a chunk never written reads as
// zeros (a hole). Writes at any offset and truncation are supported. A draft holds at most one object, so its size is bounded by
// the object size limit the engine enforces.
//
// Thread-safety: all methods lock the draft's mutex; Lock() lets the commit
// path hold it across the whole write-out so that no write slips in between.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "adapters/status.h"

namespace kvfs {

inline constexpr size_t kDraftChunkSize = 1 << 20;

class Draft {
 public:
  Draft() = default;
  ~Draft();
  Draft(const Draft&) = delete;
  Draft& operator=(const Draft&) = delete;

  // Copies len bytes at off; grows the size when writing past the end.
  Status Write(uint64_t off, const void* data, size_t len);
  // As Write, for a caller that already holds lock().
  Status WriteLocked(uint64_t off, const void* data, size_t len);
  // Sets the size, discarding bytes past it (and zeroing them for later growth).
  Status Truncate(uint64_t size);
  // Copies up to len bytes at off into out; returns the count (0 at or past end).
  size_t Read(uint64_t off, size_t len, uint8_t* out) const;
  // Lock-free: safe to call while another thread holds lock().
  uint64_t size() const { return size_.load(std::memory_order_acquire); }
  // Bytes of staging memory held.
  uint64_t memory_bytes() const;

  // Whether the draft holds changes not yet committed.
  // Lock-free, so the engine may ask while holding its index mutex (the
  // commit path holds lock() and then takes that mutex).
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
  // Threads that opened or wrote this draft (a few; see Engine::GetAttr).
  // Guarded by the Engine's index mutex.
  std::vector<uint64_t> writer_threads;

  // For the commit path, which must hold lock() while using these.
  std::unique_lock<std::mutex> lock() const { return std::unique_lock<std::mutex>(mu_); }
  size_t chunk_count_locked() const { return chunks_.size(); }
  // The chunk, or nullptr for a hole.
  const uint8_t* chunk_locked(size_t i) const { return chunks_[i]; }
  uint64_t size_locked() const { return size_.load(std::memory_order_relaxed); }

 private:
  uint8_t* ChunkFor(size_t index);  // allocates; caller holds mu_
  void FreeChunk(size_t index);     // returns it for reuse; caller holds mu_ (or destroys)

  mutable std::mutex mu_;
  std::vector<uint8_t*> chunks_;
  std::atomic<uint64_t> size_{0};
  uint64_t high_water_ = 0;  // guarded by mu_: no byte at or past it was ever written
  std::atomic<bool> dirty_{true};
};

// A 1 MiB aligned block of zeros, for writing holes with O_DIRECT.
const uint8_t* ZeroChunk();

}  // namespace kvfs
