// StoreWrapper: a Store that forwards every call to another Store. Decorators
// (deadlines, fault injection) derive from it and override only what they
// change. The wrapper owns its target.
// Thread-safety: as the target's.
#pragma once

#include <memory>
#include <utility>

#include "adapters/store.h"

namespace kvfs {

class StoreWrapper : public Store {
 public:
  explicit StoreWrapper(std::unique_ptr<Store> target) : target_(std::move(target)) {}

  std::string Describe() const override { return target_->Describe(); }
  const std::string& root() const override { return target_->root(); }
  bool DirectIo() const override { return target_->DirectIo(); }
  std::string LocationFor(const KeyHash& h) const override { return target_->LocationFor(h); }
  Result<std::unique_ptr<StagingFile>> CreateStaging(uint64_t final_bytes) override { return target_->CreateStaging(final_bytes); }
  Status Publish(StagingFile& file, const std::string& location) override { return target_->Publish(file, location); }
  Status PublishUnsynced(StagingFile& file, const std::string& location) override { return target_->PublishUnsynced(file, location); }
  Status SyncAll() override { return target_->SyncAll(); }
  Status SyncPublished(StagingFile& file) override { return target_->SyncPublished(file); }
  Result<int> OpenForRead(const std::string& location) override { return target_->OpenForRead(location); }
  Status WriteHeaderBlock(const std::string& location, const uint8_t* block, bool sync) override {
    return target_->WriteHeaderBlock(location, block, sync);
  }
  Status Move(const std::string& from, const std::string& to, bool sync) override {
    return target_->Move(from, to, sync);
  }
  Status Remove(const std::string& location, bool sync) override { return target_->Remove(location, sync); }
  Status Quarantine(const std::string& location) override { return target_->Quarantine(location); }
  Status Scan(const std::function<void(const ScannedObject&)>& fn, int threads) override {
    return target_->Scan(fn, threads);
  }
  Result<StoreSpace> Space() const override { return target_->Space(); }
  void SettleRemovals(std::chrono::milliseconds timeout) override { target_->SettleRemovals(timeout); }
  uint64_t PendingRemovalBytes() const override { return target_->PendingRemovalBytes(); }
  void WaitForRemovals(uint64_t leave_at_most, std::chrono::milliseconds timeout) override {
    target_->WaitForRemovals(leave_at_most, timeout);
  }
  Result<std::vector<std::string>> ListStaging() const override { return target_->ListStaging(); }
  Status RemoveStaging(const std::string& name) override { return target_->RemoveStaging(name); }

  bool Shared() const override { return target_->Shared(); }
  Result<ListedObject> StatObject(const std::string& location) override { return target_->StatObject(location); }
  Result<ScannedObject> ReadObject(const std::string& location) override { return target_->ReadObject(location); }
  Status List(const std::function<void(const ListedObject&)>& fn, int threads) override {
    return target_->List(fn, threads);
  }
  ClusterCoordinator* cluster() override { return target_->cluster(); }
  StoreHealth Health() const override { return target_->Health(); }
  Status TransferData(IoExecutor& io, const std::shared_ptr<DataBatch>& batch) override {
    return target_->TransferData(io, batch);
  }
  Result<uint64_t> FileIdOf(int fd) override { return target_->FileIdOf(fd); }
  Status TruncateData(int fd, uint64_t length) override { return target_->TruncateData(fd, length); }

  Store* target() const { return target_.get(); }

 protected:
  // Gives up ownership of the target (it is not destroyed with the wrapper).
  Store* ReleaseTarget() { return target_.release(); }

 private:
  std::unique_ptr<Store> target_;
};

}  // namespace kvfs
