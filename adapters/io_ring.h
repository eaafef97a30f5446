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
// Deadlines (Run of a DataBatch with a deadline, io_uring only): the caller
// waits for completions until the deadline, then asks the kernel to cancel
// what is still in flight and returns ETIMEDOUT without waiting for it. The
// batch is marked abandoned and the thread's ring keeps a reference to it
// until the completion of each of its requests has arrived (reaped by the
// ring's next batches); so its buffers are neither freed nor reused while
// the kernel may still touch them. A thread that exits with such requests
// still in flight leaves its ring and their batches allocated (a leak of a
// hung device's memory, never a use after free). The deadline bounds the
// wait, not the submission: a filesystem that blocks inside io_uring_submit
// itself is not cut short (local filesystems and block devices queue the
// request and return).
//
// If io_uring cannot be set up (kernel, seccomp, memlock limits), the first
// failure is logged once as a warning and every later batch uses
// pread/pwrite. IoExecutor is thread-safe. A thread's rings are torn down at
// its exit; a ring whose executor was destroyed goes earlier, when the
// thread sets up its next ring (so a long-lived thread that uses executor
// after executor holds one stale ring, not one per executor). A ring torn
// down with abandoned requests still in flight stays open, as above.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>

#include <memory>

#include "adapters/buffer_pool.h"
#include "adapters/data_batch.h"
#include "adapters/status.h"

namespace kvfs {

class IoExecutor {
 public:
  // pool may be null (no fixed buffers). use_io_uring=false forces the
  // pread/pwrite path (tests, and hosts where io_uring is disallowed).
  IoExecutor(BufferPool* pool, bool use_io_uring, unsigned queue_depth = 64);

  // Runs every request to completion. Returns the first error (EIO for a
  // write that made no progress); requests after an error may be incomplete.
  Status Run(std::span<IoRequest> requests);
  // Runs batch->requests as above. With batch->deadline set: on io_uring,
  // gives up at the deadline as described at the top (ETIMEDOUT, the batch
  // marked abandoned and kept alive by this thread's ring); without a ring
  // it does no I/O and returns ENOTSUP (a deadline cannot be kept there:
  // the caller must run the batch where it can walk away from it).
  Status Run(const std::shared_ptr<DataBatch>& batch);

  // Reaps the completions of batches this thread abandoned at a deadline,
  // waiting up to `wait` for them; returns how many such batches still have
  // requests in flight. (Later batches on the thread reap them anyway; this
  // is for callers that want them gone now, such as tests.)
  size_t ReapAbandoned(std::chrono::milliseconds wait);

  bool using_io_uring() const { return use_io_uring_.load(std::memory_order_relaxed); }
  // The rings the calling thread holds, of any executor (for tests and
  // diagnostics).
  static size_t RingsOfThisThread();
  uint64_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }

 private:
  Status RunWithRing(std::span<IoRequest> requests, void* ring, const std::shared_ptr<DataBatch>* batch);
  Status RunWithSyscalls(std::span<IoRequest> requests);
  void* RingForThisThread();  // a ThreadRing, or null when io_uring is unavailable

  BufferPool* pool_;
  std::atomic<bool> use_io_uring_;
  unsigned queue_depth_;
  uint64_t id_;
  std::shared_ptr<const void> alive_;  // the threads' rings hold weak references
  std::atomic<uint64_t> in_flight_{0};
};

}  // namespace kvfs
