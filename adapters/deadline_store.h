// DeadlineStore: a StoreWrapper that gives every store operation a deadline.
// A call that has not finished when its deadline passes returns ETIMEDOUT to
// the caller; the stuck call keeps its worker thread until the store answers
// (its result is then dropped; a descriptor it returns is closed). So a store
// that stops answering (a dead drive, a hung network filesystem) gives errors
// instead of hanging the mount, and works again once it answers.
//
// Calls run on a small pool of worker threads that grows while workers are
// stuck (up to max_workers; beyond that calls fail with ETIMEDOUT at once).
// Every call made through it is counted (Health). Scan and List are not
// given a deadline (their length grows with the store).
//
// Data I/O (TransferData) gets the same deadline, without a thread hop where
// it can: when the executor uses io_uring, the caller's own thread submits
// the batch with the deadline set and waits for completions until then (see
// IoExecutor::Run); on timeout the kernel is asked to cancel, the caller gets
// ETIMEDOUT and the batch (with every buffer it keeps) stays with the
// thread's ring until its requests have really completed. Without io_uring
// (pread/pwrite cannot be walked away from) the batch runs on a worker like
// the other calls, with its descriptors duplicated first (a number the caller
// closes and reuses meanwhile is never written by mistake); the worker holds
// the batch until the syscalls return, so its buffers go back (pooled ones
// to the BufferPool) only then. Workers do plain pread/pwrite in that case:
// they never set up rings of their own. TruncateData runs on a worker (on a
// duplicated descriptor); so does FileIdOf on a shared store, while on a
// local one it is called directly (fstat of an open descriptor is answered
// from memory, and a hop there cost one per open and per commit).
// The no-hop path relies on the wrapped store's TransferData handing the
// batch to the executor (as Store's default does): a store whose
// TransferData could block otherwise must honour batch->deadline itself.
// Caveat: a Publish that times out may still complete later; the engine then
// holds no record of that version, and the next mount indexes it.
// Destruction waits up to one deadline for calls still inside the store;
// a call stuck longer keeps the wrapped store (deliberately leaked, with any
// lock it holds) rather than have it destroyed under it.
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "adapters/io_ring.h"
#include "adapters/store_wrapper.h"

namespace kvfs {

class DeadlineStore final : public StoreWrapper {
 public:
  DeadlineStore(std::unique_ptr<Store> target, std::chrono::milliseconds deadline, size_t max_workers = 64);
  ~DeadlineStore() override;

  Result<std::unique_ptr<StagingFile>> CreateStaging(uint64_t final_bytes) override;
  // Up to kBufferedStagingMax: the creation and the write as one call on
  // one worker (which writes with pwrite: workers set up no rings of their
  // own). Larger: CreateStaging, then TransferData, as Store's default.
  Result<std::unique_ptr<StagingFile>> CreateStagingWith(IoExecutor& io, std::shared_ptr<const uint8_t> image,
                                                         size_t image_bytes) override;
  Status Publish(StagingFile& file, const std::string& location) override;
  Status PublishUnsynced(StagingFile& file, const std::string& location) override;
  Status SyncAll() override;
  Status SyncPublished(StagingFile& file) override;
  Result<int> OpenForRead(const std::string& location) override;
  Status WriteHeaderBlock(const std::string& location, const uint8_t* block, bool sync) override;
  Status Move(const std::string& from, const std::string& to, bool sync) override;
  Status Remove(const std::string& location, bool sync) override;
  Status Quarantine(const std::string& location) override;
  Result<StoreSpace> Space() const override;
  Result<ListedObject> StatObject(const std::string& location) override;
  Result<ScannedObject> ReadObject(const std::string& location) override;
  Status TransferData(IoExecutor& io, const std::shared_ptr<DataBatch>& batch) override;
  Result<uint64_t> FileIdOf(int fd) override;
  Status TruncateData(int fd, uint64_t length) override;
  // Counts every call made through this wrapper: failures by errno (ENOENT,
  // an expected answer, is counted as a failure but not listed), timeouts.
  StoreHealth Health() const override;

  std::chrono::milliseconds deadline() const { return deadline_; }

 private:
  // Worker threads and their queue. Shared with the (detached) workers, so a
  // worker stuck in the store outlives this object safely; tasks call the
  // target store directly, never through `this`.
  struct Pool {
    std::mutex mu;
    std::condition_variable wake;
    std::condition_variable drained;          // signalled when running drops to 0
    std::deque<std::function<void()>> queue;  // guarded by mu
    size_t workers = 0;                       // guarded by mu
    size_t idle = 0;                          // guarded by mu
    // Calls taken by a worker whose caller has not yet been told they ended
    // (stuck ones included). Dropped before the caller is woken, so a caller
    // that saw its call end never finds it counted here.
    size_t running = 0;  // guarded by mu
    bool stop = false;   // guarded by mu
    // For the workers' own data writes (CreateStagingWith): pread/pwrite.
    IoExecutor syscall_io{nullptr, false};
  };
  // Publish (link=false) or Link (link=true) under the deadline.
  Status LandStaging(StagingFile& file, const std::string& location, bool link);
  // Runs task on a worker; false when the deadline passed first.
  bool RunWithDeadline(std::function<void()> task) const;
  static void WorkerLoop(std::shared_ptr<Pool> pool);
  void Record(int err, bool timed_out) const;
  template <typename R>
  R Counted(R r) const {
    Record(r.ok() ? 0 : r.err(), false);
    return r;
  }
  Status CountTimeout(Status s) const {
    Record(ETIMEDOUT, true);
    return s;
  }

  std::chrono::milliseconds deadline_;
  size_t max_workers_;
  std::shared_ptr<Pool> pool_;
  mutable std::atomic<uint64_t> calls_{0};  // every call (the hot path counts without the lock)
  mutable std::mutex health_mu_;
  mutable StoreHealth health_;  // guarded by health_mu_ (failures only)
};

}  // namespace kvfs
