// DeferredUnlinker: unlinks files on a background thread, so that whoever
// removed an object does not wait while the filesystem frees its blocks.
//
// Why: on ext4 (the more so when mounted with `discard`) the unlink of a
// file that holds data costs 150-400 us here, the rename that moves it out
// of the way 10-20 us. A store removes (or replaces) an object by moving it
// into its staging area first; the name is gone at once, and this class
// unlinks the file later. A file still waiting when the process dies is a
// staging leftover, which the store's next open sweeps.
//
// Contract:
// - Add(path, bytes): path will be unlinked; `bytes` (what it occupies)
//   count in pending_bytes() until then. When `max_queued` files already
//   wait, Add unlinks path itself before returning (backpressure: the queue
//   never grows without bound).
// - A failed unlink is logged once per file and dropped.
// - The destructor unlinks everything still queued, then joins the thread.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "adapters/fs_client.h"

namespace kvfs {

class DeferredUnlinker {
 public:
  // fs must outlive this object.
  explicit DeferredUnlinker(FsClient* fs, size_t max_queued = 4096);
  ~DeferredUnlinker();
  DeferredUnlinker(const DeferredUnlinker&) = delete;
  DeferredUnlinker& operator=(const DeferredUnlinker&) = delete;

  void Add(std::string path, uint64_t bytes);
  // Bytes of the files queued and not yet unlinked.
  uint64_t pending_bytes() const;
  // Blocks until every file added before the call is unlinked (files added
  // meanwhile are not waited for), or `timeout` passed: false then.
  bool Drain(std::chrono::milliseconds timeout);
  // Blocks until pending_bytes() is at most `bytes`, or `timeout` passed:
  // false then.
  bool WaitPendingAtMost(uint64_t bytes, std::chrono::milliseconds timeout);

 private:
  void Run();
  void UnlinkOne(const std::string& path);

  FsClient* fs_;
  const size_t max_queued_;
  mutable std::mutex mu_;
  std::condition_variable work_;  // something queued, or stopping
  std::condition_variable idle_;  // a file was unlinked
  std::deque<std::pair<std::string, uint64_t>> queue_;
  uint64_t pending_bytes_ = 0;
  uint64_t queued_total_ = 0;  // files ever queued
  uint64_t done_total_ = 0;    // of those, unlinked (or given up on), in queue order
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kvfs
