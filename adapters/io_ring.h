// Block I/O for the engine: batches of positioned reads and writes carried
// out with io_uring, or with pread/pwrite where io_uring is unavailable.
//
// Each thread that does I/O gets its own ring (created on first use, never
// shared, so no locking on the submission path) with the engine's BufferPool
// registered as fixed buffers: a request whose buffer comes from the pool is
// issued as READ_FIXED/WRITE_FIXED. Run() returns when every request of the
// batch is complete; short transfers are resubmitted for the remainder,
// -EINTR and -EAGAIN are retried, a read that reaches end of file stops there
// (IoRequest::done tells how far it got).
//
// If io_uring cannot be set up (kernel, seccomp, memlock limits), the first
// failure is logged once as a warning and every later batch uses
// pread/pwrite. IoExecutor is thread-safe; it must outlive the threads that
// use it only in the sense that rings are torn down at thread exit.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

#include "adapters/status.h"
#include "adapters/buffer_pool.h"

namespace kvfs {

struct IoRequest {
  int fd = -1;
  uint8_t* buf = nullptr;
  size_t len = 0;
  uint64_t offset = 0;
  bool write = false;
  int buf_index = -1;  // BufferPool index for fixed-buffer I/O, or -1
  size_t done = 0;     // out: bytes transferred
};

class IoExecutor {
 public:
  // pool may be null (no fixed buffers). use_io_uring=false forces the
  // pread/pwrite path (tests, and hosts where io_uring is disallowed).
  IoExecutor(BufferPool* pool, bool use_io_uring, unsigned queue_depth = 64);

  // Runs every request to completion. Returns the first error (EIO for a
  // write that made no progress); requests after an error may be incomplete.
  Status Run(std::span<IoRequest> requests);

  bool using_io_uring() const { return use_io_uring_.load(std::memory_order_relaxed); }
  uint64_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }

 private:
  Status RunWithRing(std::span<IoRequest> requests, void* ring);
  Status RunWithSyscalls(std::span<IoRequest> requests);
  void* RingForThisThread();

  BufferPool* pool_;
  std::atomic<bool> use_io_uring_;
  unsigned queue_depth_;
  uint64_t id_;
  std::atomic<uint64_t> in_flight_{0};
};

}  // namespace kvfs
