// DataBatch: one batch of data transfers (positioned reads and writes of
// object and staging bytes) as handed to Store::TransferData, together with
// everything its requests point into.
//
// Why it owns memory: a caller may stop waiting for a batch before its I/O
// has ended (a store deadline passed). The kernel, or a worker thread, may
// then still write into (or read from) the batch's buffers. So a batch is
// always held by std::shared_ptr, and whoever walks away from it first marks
// it abandoned() and leaves a reference with whatever still runs its I/O (an
// io_uring ring's list of abandoned batches, a worker thread). Memory that the
// requests use must therefore be either
//  - owned by the batch: Keep() a shared_ptr to its owner (a ChunkSpan with
//    its pool buffers, an aligned block); it is released when the last
//    holder lets go, i.e. not before every request has really ended; or
//  - owned by a caller that checks abandoned() after a failed transfer and,
//    when it is set, hands that memory to the batch (Keep) instead of
//    freeing or reusing it.
// Descriptors: requests name file descriptors. Code that runs a batch after
// its caller may have returned (a worker thread, a stalled test device)
// calls PinDescriptors() first, so a descriptor the caller closes meanwhile,
// and whose number is reused, is never read or written by mistake. (A request
// submitted to io_uring holds its own reference to the file.)
//
// Thread-safety: filled by one thread, then run by one thread at a time;
// abandoned() may be read from any thread. Keep() is called only by a holder
// of a reference, never concurrently with another Keep().
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

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

class DataBatch {
 public:
  using Clock = std::chrono::steady_clock;

  DataBatch() = default;
  ~DataBatch();
  DataBatch(const DataBatch&) = delete;
  DataBatch& operator=(const DataBatch&) = delete;

  void Read(int fd, uint8_t* buf, size_t len, uint64_t offset, int buf_index = -1) {
    requests.push_back(IoRequest{fd, buf, len, offset, false, buf_index});
  }
  void Write(int fd, const uint8_t* buf, size_t len, uint64_t offset, int buf_index = -1) {
    requests.push_back(IoRequest{fd, const_cast<uint8_t*>(buf), len, offset, true, buf_index});
  }
  // Keeps owner alive as long as the batch (see above).
  void Keep(std::shared_ptr<const void> owner) { keep_.push_back(std::move(owner)); }

  // True when any request writes.
  bool writes() const;

  // Set once a caller stopped waiting before the I/O ended; never cleared.
  bool abandoned() const { return abandoned_.load(std::memory_order_acquire); }
  void MarkAbandoned() { abandoned_.store(true, std::memory_order_release); }

  // Replaces each request's descriptor with a duplicate the batch owns (and
  // closes when it goes). Returns false (errno set) when dup fails.
  bool PinDescriptors();

  std::vector<IoRequest> requests;
  // When set, an executor that can (io_uring) gives up at this time: it then
  // returns ETIMEDOUT, marks the batch abandoned and keeps it alive until its
  // requests complete. See IoExecutor::Run.
  std::optional<Clock::time_point> deadline;

 private:
  std::vector<std::shared_ptr<const void>> keep_;
  std::vector<int> pinned_fds_;
  std::atomic<bool> abandoned_{false};
};

}  // namespace kvfs
