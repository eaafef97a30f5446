// FaultyStore: a StoreWrapper that makes chosen operations fail or stall, so
// tests can show what kvfs does when a drive or a network filesystem
// misbehaves.
//
// A Fault applies to one operation kind. It lets `skip` calls pass, then
// affects the next `count` calls (or all of them when count < 0):
//  - err != 0:   the call fails with that errno without reaching the store;
//  - delay > 0:  the call sleeps that long first (to exceed a deadline);
//  - torn:       Publish only: the staging file is cut to half its length
//                just before it is published, as a lying disk would do; the
//                call reports success.
//  - bad_fd:     CreateStaging only: the staging file is handed out read-only,
//                so the data writes into it fail (EBADF) like a failing disk.
// Data I/O (TransferData) has two kinds: kReadData (a batch of reads) and
// kWriteData (a batch with a write). For them a delay models a device that
// answers late, asynchronously as a drive under io_uring does: the batch runs
// on a thread of its own after the delay, and the caller waits for it only
// until batch->deadline (when set; then ETIMEDOUT, the batch marked
// abandoned). That thread counts as a call inside the store and lets go of
// the batch (and so of its buffers) before it stops counting.
// Thread-safe. Destroy it (and the IoExecutor its calls used) only after
// WaitForCallsToReturn.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "adapters/store_wrapper.h"

namespace kvfs {

enum class StoreOp {
  kCreateStaging,
  kPublish,
  kOpenForRead,
  kWriteHeaderBlock,
  kMove,
  kRemove,
  kScan,
  kSpace,
  kReadData,
  kWriteData
};

struct Fault {
  int err = 0;
  std::chrono::milliseconds delay{0};
  bool torn = false;
  bool bad_fd = false;
  int skip = 0;
  int count = -1;
};

class FaultyStore final : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;

  void Inject(StoreOp op, const Fault& fault);
  void Clear();
  // Calls affected by a fault so far.
  uint64_t hits() const { return hits_.load(); }
  // Blocks until no call is inside this store (a stalled one included), so a
  // test can wait for a call it made time out to really end.
  void WaitForCallsToReturn() const;

  Result<std::unique_ptr<StagingFile>> CreateStaging(uint64_t final_bytes) override;
  Status Publish(StagingFile& file, const std::string& location) override;
  // Publish faults apply to PublishUnsynced too (both are how a commit lands).
  Status PublishUnsynced(StagingFile& file, const std::string& location) override;
  Result<int> OpenForRead(const std::string& location) override;
  Status WriteHeaderBlock(const std::string& location, const uint8_t* block, bool sync) override;
  Status Move(const std::string& from, const std::string& to, bool sync) override;
  Status Remove(const std::string& location, bool sync) override;
  Status Scan(const std::function<void(const ScannedObject&)>& fn, int threads) override;
  Result<StoreSpace> Space() const override;
  Status TransferData(IoExecutor& io, const std::shared_ptr<DataBatch>& batch) override;

 private:
  // A kReadData/kWriteData delay: see the top.
  Status StalledTransfer(IoExecutor& io, const std::shared_ptr<DataBatch>& batch, std::chrono::milliseconds delay);
  // Applies a kPublish fault (error or tear) to a staging file about to land.
  Status BeforePublish(StagingFile& file);
  // The fault to apply to this call of op, if any (after its delay, unless
  // sleep is false).
  std::optional<Fault> Take(StoreOp op, bool sleep = true) const;

  // Counts a call as inside the store for its lifetime.
  class CallScope {
   public:
    explicit CallScope(const FaultyStore& s);
    ~CallScope();

   private:
    const FaultyStore& s_;
  };

  mutable std::mutex mu_;
  mutable std::map<StoreOp, Fault> faults_;  // guarded by mu_
  mutable int in_flight_ = 0;                // guarded by mu_
  mutable std::condition_variable returned_;  // signalled when in_flight_ drops to 0
  mutable std::atomic<uint64_t> hits_{0};
};

}  // namespace kvfs
