// PowerLossStore: a test-only Store decorator that models what a power loss
// takes away from a journaling filesystem: every rename, removal and header
// overwrite made since the last flush. It keeps what it needs to undo each
// such change (a hard link to a replaced or removed file, the old header
// block) until a flush: SyncAll, or any operation asked to be durable (on
// ext4 that commits the whole journal, so it is a barrier here too).
// PowerLoss() undoes the un-flushed changes, newest first, and from then on
// every call fails with EIO, as on a machine that went dark; the test then
// opens a new engine over the same directory. Data written into staging
// files is not modelled: a staging file left behind is swept at the next
// mount, as after a real crash.
//
// Only for a LocalStore target (it works on the store's files by path).
// Thread-safety: every method locks one mutex around the target's call.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "adapters/store_wrapper.h"

namespace kvfs::testing {

class PowerLossStore : public StoreWrapper {
 public:
  explicit PowerLossStore(std::unique_ptr<Store> target) : StoreWrapper(std::move(target)) {
    std::filesystem::create_directories(root() + "/" + kBackupDir);
  }

  // Undoes every change not flushed yet; every later call fails with EIO.
  void PowerLoss() {
    std::lock_guard<std::mutex> g(mu_);
    for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) it->Revert(*this);
    undo_.clear();
    dark_ = true;
  }
  // Changes that a power loss would take away now.
  size_t unflushed() const {
    std::lock_guard<std::mutex> g(mu_);
    return undo_.size();
  }

  Status Publish(StagingFile& file, const std::string& location) override {
    std::lock_guard<std::mutex> g(mu_);
    if (dark_) return Dark();
    Status s = StoreWrapper::Publish(file, location);
    if (s.ok()) FlushedLocked();
    return s;
  }
  Status PublishUnsynced(StagingFile& file, const std::string& location) override {
    std::lock_guard<std::mutex> g(mu_);
    if (dark_) return Dark();
    Undo u{Undo::kUnlink, location, "", BackupLocked(location), {}};
    Status s = StoreWrapper::PublishUnsynced(file, location);
    if (s.ok()) undo_.push_back(u);
    return s;
  }
  Status SyncAll() override {
    std::lock_guard<std::mutex> g(mu_);
    if (dark_) return Dark();
    Status s = StoreWrapper::SyncAll();
    if (s.ok()) FlushedLocked();
    return s;
  }
  Status SyncPublished(StagingFile& file) override {
    // An fsync of one file commits the whole journal on ext4: a barrier too.
    std::lock_guard<std::mutex> g(mu_);
    if (dark_) return Dark();
    Status s = StoreWrapper::SyncPublished(file);
    if (s.ok()) FlushedLocked();
    return s;
  }
  Status WriteHeaderBlock(const std::string& location, const uint8_t* block, bool sync) override {
    std::lock_guard<std::mutex> g(mu_);
    if (dark_) return Dark();
    Undo u{Undo::kHeader, location, "", "", {}};
    u.header.resize(kHeaderSize);
    int fd = ::open(Path(location).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t n = ::pread(fd, u.header.data(), kHeaderSize, 0);
      ::close(fd);
      if (n != static_cast<ssize_t>(kHeaderSize)) u.header.clear();
    }
    Status s = StoreWrapper::WriteHeaderBlock(location, block, sync);
    if (s.ok()) Record(u, sync);
    return s;
  }
  Status Move(const std::string& from, const std::string& to, bool sync) override {
    std::lock_guard<std::mutex> g(mu_);
    if (dark_) return Dark();
    Undo u{Undo::kMoveBack, to, from, BackupLocked(to), {}};
    Status s = StoreWrapper::Move(from, to, sync);
    if (s.ok()) Record(u, sync);
    return s;
  }
  Status Remove(const std::string& location, bool sync) override {
    std::lock_guard<std::mutex> g(mu_);
    if (dark_) return Dark();
    Undo u{Undo::kRestore, location, "", BackupLocked(location), {}};
    Status s = StoreWrapper::Remove(location, sync);
    if (s.ok()) Record(u, sync);
    return s;
  }
  Result<std::unique_ptr<StagingFile>> CreateStaging(uint64_t final_bytes) override {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (dark_) return Dark();
    }
    return StoreWrapper::CreateStaging(final_bytes);
  }
  Result<int> OpenForRead(const std::string& location) override {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (dark_) return Dark();
    }
    return StoreWrapper::OpenForRead(location);
  }

 private:
  static constexpr const char* kBackupDir = "powerloss-backups";

  struct Undo {
    enum Kind { kUnlink, kHeader, kMoveBack, kRestore } kind;
    std::string location;  // the file the change touched
    std::string from;      // kMoveBack: where it came from
    std::string backup;    // a hard link to the file the change replaced or removed ("" if none)
    std::vector<uint8_t> header;  // kHeader: the block before the change

    void Revert(PowerLossStore& s) const {
      std::string path = s.Path(location);
      switch (kind) {
        case kUnlink:
          ::unlink(path.c_str());
          break;
        case kHeader:
          if (header.size() == kHeaderSize) {
            int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
            if (fd >= 0) {
              (void)!::pwrite(fd, header.data(), header.size(), 0);
              ::close(fd);
            }
          }
          break;
        case kMoveBack:
          (void)!::rename(path.c_str(), s.Path(from).c_str());
          break;
        case kRestore:
          break;
      }
      if (!backup.empty()) (void)!::rename(backup.c_str(), path.c_str());
    }
  };

  std::string Path(const std::string& location) const { return root() + "/" + location; }
  static Status Dark() { return Status::Error(EIO, "the power is off"); }

  // A hard link to the file at location, kept until the next flush.
  std::string BackupLocked(const std::string& location) {
    std::string backup = root() + "/" + kBackupDir + "/" + std::to_string(++backups_);
    if (::link(Path(location).c_str(), backup.c_str()) != 0) return "";
    return backup;
  }
  void Record(const Undo& u, bool sync) {
    undo_.push_back(u);
    if (sync) FlushedLocked();
  }
  void FlushedLocked() {
    for (const Undo& u : undo_) {
      if (!u.backup.empty()) ::unlink(u.backup.c_str());
    }
    undo_.clear();
  }

  mutable std::mutex mu_;
  std::vector<Undo> undo_;  // guarded by mu_, oldest first
  uint64_t backups_ = 0;    // guarded by mu_
  bool dark_ = false;       // guarded by mu_
};

}  // namespace kvfs::testing
