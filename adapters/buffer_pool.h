// BufferPool: a fixed set of equally sized, 4 KiB-aligned I/O buffers carved
// out of one memory region, so that io_uring can register them once per ring
// and read with IORING_OP_READ_FIXED (no per-I/O page pinning).
//
// Acquire never blocks: when every pool buffer is in use it hands out a
// temporary aligned heap buffer instead (counted as a miss; such a buffer has
// index() == -1 and is freed when released). A hit is a buffer served from the
// registered pool.
//
// Thread-safe. The pool must outlive every PooledBuffer it handed out and
// every IoRing that registered it.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace kvfs {

class BufferPool;

// A buffer on loan from a BufferPool; returned when destroyed. Move-only.
class PooledBuffer {
 public:
  PooledBuffer() = default;
  PooledBuffer(BufferPool* pool, uint8_t* data, int index) : pool_(pool), data_(data), index_(index) {}
  PooledBuffer(PooledBuffer&& o) noexcept { *this = std::move(o); }
  PooledBuffer& operator=(PooledBuffer&& o) noexcept;
  ~PooledBuffer() { Reset(); }

  uint8_t* data() const { return data_; }
  // Registration index for fixed-buffer I/O, or -1 for a temporary buffer.
  int index() const { return index_; }
  void Reset();

 private:
  BufferPool* pool_ = nullptr;
  uint8_t* data_ = nullptr;
  int index_ = -1;
};

class BufferPool {
 public:
  // buffer_size must be a multiple of 4096.
  BufferPool(size_t buffer_size, size_t count);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  PooledBuffer Acquire();
  size_t buffer_size() const { return buffer_size_; }
  size_t count() const { return iovecs_.size(); }
  // One iovec per pool buffer, in index order, for io_uring_register_buffers.
  const std::vector<iovec>& iovecs() const { return iovecs_; }

  uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  uint64_t misses() const { return misses_.load(std::memory_order_relaxed); }
  size_t in_use() const;

 private:
  friend class PooledBuffer;
  void Release(uint8_t* data, int index);

  size_t buffer_size_;
  uint8_t* region_ = nullptr;
  size_t region_bytes_ = 0;
  std::vector<iovec> iovecs_;
  mutable std::mutex mu_;
  std::vector<int> free_;  // guarded by mu_
  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
};

}  // namespace kvfs
