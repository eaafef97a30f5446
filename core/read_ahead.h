// ReadAhead: a few threads that fetch the next part of an object while the
// reader is busy with the part it just got, so that one sequential reader
// (an O_DIRECT reader, or a handle that bypasses the page cache) has a read
// in flight while its previous reply crosses into the kernel.
//
// A Prefetch is one range [start, end) being read; its result is a verified
// ChunkSpan or nothing (a failed prefetch is simply not used: the reader's
// own read then reports the error). The engine decides what to prefetch;
// this class only runs the reads.
//
// Thread-safety: Submit may be called from any thread; a Prefetch's Wait
// from any thread. The destructor stops the threads after the queued work
// (tasks hold what they read through, e.g. a lease; nothing else).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "adapters/mutex.h"

namespace kvfs {

struct ChunkSpan;

class Prefetch {
 public:
  Prefetch(uint64_t start, uint64_t end) : start_(start), end_(end) {}
  uint64_t start() const { return start_; }
  uint64_t end() const { return end_; }
  // Called once by the task: span, or null when the read failed.
  void Finish(std::shared_ptr<ChunkSpan> span);
  // Waits for Finish; the span or null.
  std::shared_ptr<ChunkSpan> Wait();

 private:
  const uint64_t start_, end_;
  Mutex mu_;
  CondVar cv_;  // with mu_: Finish was called
  bool done_ KVFS_GUARDED_BY(mu_) = false;
  std::shared_ptr<ChunkSpan> span_ KVFS_GUARDED_BY(mu_);
};

class ReadAhead {
 public:
  // threads > 0. Submit refuses work while every thread is busy: read-ahead
  // helps a reader that leaves the drive idle, and only costs a loaded one.
  explicit ReadAhead(int threads);
  ~ReadAhead();
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  // Queues task; false (and task dropped) when every thread is busy.
  bool Submit(std::function<void()> task);

 private:
  void Loop();

  Mutex mu_;
  size_t busy_ KVFS_GUARDED_BY(mu_) = 0;  // tasks queued or running
  CondVar wake_;  // with mu_: a task was queued, or stop
  std::deque<std::function<void()>> queue_ KVFS_GUARDED_BY(mu_);
  bool stop_ KVFS_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace kvfs
