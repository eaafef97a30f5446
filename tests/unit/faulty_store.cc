#include "tests/unit/faulty_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "adapters/data_batch.h"

namespace kvfs {

void FaultyStore::Inject(StoreOp op, const Fault& fault) {
  std::lock_guard<std::mutex> g(mu_);
  faults_[op] = fault;
}

FaultyStore::CallScope::CallScope(const FaultyStore& s) : s_(s) {
  std::lock_guard<std::mutex> g(s_.mu_);
  ++s_.in_flight_;
}

FaultyStore::CallScope::~CallScope() {
  std::lock_guard<std::mutex> g(s_.mu_);
  if (--s_.in_flight_ == 0) s_.returned_.notify_all();
}

void FaultyStore::WaitForCallsToReturn() const {
  std::unique_lock<std::mutex> lk(mu_);
  returned_.wait(lk, [&] { return in_flight_ == 0; });
}

void FaultyStore::Clear() {
  std::lock_guard<std::mutex> g(mu_);
  faults_.clear();
}

std::optional<Fault> FaultyStore::Take(StoreOp op, bool sleep) const {
  Fault f;
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = faults_.find(op);
    if (it == faults_.end()) return std::nullopt;
    if (it->second.skip > 0) {
      it->second.skip--;
      return std::nullopt;
    }
    if (it->second.count == 0) return std::nullopt;
    if (it->second.count > 0) it->second.count--;
    f = it->second;
  }
  hits_.fetch_add(1);
  if (sleep && f.delay.count() > 0) std::this_thread::sleep_for(f.delay);
  return f;
}

Result<std::unique_ptr<StagingFile>> FaultyStore::CreateStaging(uint64_t final_bytes) {
  CallScope in_store(*this);
  std::optional<Fault> f = Take(StoreOp::kCreateStaging);
  if (f && f->err) return Status::Error(f->err, "injected fault: create staging");
  Result<std::unique_ptr<StagingFile>> s = StoreWrapper::CreateStaging(final_bytes);
  if (!s.ok() || !f || !f->bad_fd) return s;
  // Hand out a read-only descriptor of the same file: every write fails.
  int ro = ::open((*s)->path().c_str(), O_RDONLY | O_CLOEXEC);
  if (ro < 0) return Status::FromErrno("injected fault: reopen staging");
  ::dup2(ro, (*s)->fd());
  ::close(ro);
  return s;
}

Status FaultyStore::BeforePublish(StagingFile& file) {
  std::optional<Fault> f = Take(StoreOp::kPublish);
  if (f && f->err) return Status::Error(f->err, "injected fault: publish");
  if (f && f->torn) {
    struct stat st;
    if (::fstat(file.fd(), &st) == 0) {
      // Keep a multiple of 4 KiB so the cut is invisible to O_DIRECT readers.
      off_t cut = st.st_size / 2 / 4096 * 4096;
      if (::truncate(file.path().c_str(), cut) != 0) return Status::FromErrno("injected fault: tear");
    }
  }
  return Status::Ok();
}

Status FaultyStore::Publish(StagingFile& file, const std::string& location) {
  CallScope in_store(*this);
  KVFS_RETURN_IF_ERROR(BeforePublish(file));
  return StoreWrapper::Publish(file, location);
}

Status FaultyStore::PublishUnsynced(StagingFile& file, const std::string& location) {
  CallScope in_store(*this);
  KVFS_RETURN_IF_ERROR(BeforePublish(file));
  return StoreWrapper::PublishUnsynced(file, location);
}

Result<int> FaultyStore::OpenForRead(const std::string& location) {
  CallScope in_store(*this);
  std::optional<Fault> f = Take(StoreOp::kOpenForRead);
  if (f && f->err) return Status::Error(f->err, "injected fault: open");
  return StoreWrapper::OpenForRead(location);
}

Status FaultyStore::WriteHeaderBlock(const std::string& location, const uint8_t* block, bool sync) {
  CallScope in_store(*this);
  std::optional<Fault> f = Take(StoreOp::kWriteHeaderBlock);
  if (f && f->err) return Status::Error(f->err, "injected fault: write header");
  return StoreWrapper::WriteHeaderBlock(location, block, sync);
}

Status FaultyStore::Move(const std::string& from, const std::string& to, bool sync) {
  CallScope in_store(*this);
  std::optional<Fault> f = Take(StoreOp::kMove);
  if (f && f->err) return Status::Error(f->err, "injected fault: move");
  return StoreWrapper::Move(from, to, sync);
}

Status FaultyStore::Remove(const std::string& location, bool sync) {
  CallScope in_store(*this);
  std::optional<Fault> f = Take(StoreOp::kRemove);
  if (f && f->err) return Status::Error(f->err, "injected fault: remove");
  return StoreWrapper::Remove(location, sync);
}

Status FaultyStore::Scan(const std::function<void(const ScannedObject&)>& fn, int threads) {
  CallScope in_store(*this);
  std::optional<Fault> f = Take(StoreOp::kScan);
  if (f && f->err) return Status::Error(f->err, "injected fault: scan");
  return StoreWrapper::Scan(fn, threads);
}

Result<StoreSpace> FaultyStore::Space() const {
  CallScope in_store(*this);
  std::optional<Fault> f = Take(StoreOp::kSpace);
  if (f && f->err) return Status::Error(f->err, "injected fault: space");
  return StoreWrapper::Space();
}

Status FaultyStore::TransferData(IoExecutor& io, const std::shared_ptr<DataBatch>& batch) {
  CallScope in_store(*this);
  const bool write = batch->writes();
  std::optional<Fault> f = Take(write ? StoreOp::kWriteData : StoreOp::kReadData, false);
  if (f && f->err) return Status::Error(f->err, write ? "injected fault: data write" : "injected fault: data read");
  if (f && f->delay.count() > 0) return StalledTransfer(io, batch, f->delay);
  return StoreWrapper::TransferData(io, batch);
}

Status FaultyStore::StalledTransfer(IoExecutor& io, const std::shared_ptr<DataBatch>& batch,
                                    std::chrono::milliseconds delay) {
  struct Completion {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    Status status;
  };
  const std::optional<DataBatch::Clock::time_point> until = batch->deadline;
  batch->deadline.reset();  // the late device runs the batch to its end
  if (!batch->PinDescriptors()) return Status::FromErrno("injected fault: duplicate descriptors");
  auto done = std::make_shared<Completion>();
  {
    std::lock_guard<std::mutex> g(mu_);
    ++in_flight_;  // the device thread's call; dropped by it
  }
  std::thread([this, &io, held = batch, done, delay]() mutable {
    std::this_thread::sleep_for(delay);
    Status s = StoreWrapper::TransferData(io, held);
    held.reset();  // the batch (and its buffers) go before the call counts as returned
    {
      std::lock_guard<std::mutex> g(done->mu);
      done->done = true;
      done->status = s;
      done->cv.notify_all();
    }
    std::lock_guard<std::mutex> g(mu_);
    if (--in_flight_ == 0) returned_.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lk(done->mu);
  if (until) {
    if (!done->cv.wait_until(lk, *until, [&] { return done->done; })) {
      batch->MarkAbandoned();
      return Status::Error(ETIMEDOUT, "injected fault: the device did not answer in time");
    }
  } else {
    done->cv.wait(lk, [&] { return done->done; });
  }
  return done->status;
}

}  // namespace kvfs
