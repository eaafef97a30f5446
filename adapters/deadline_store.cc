#include "adapters/deadline_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "adapters/data_batch.h"
#include "adapters/io_ring.h"

namespace kvfs {
namespace {

// Completion of one call; shared with the worker so a late finish is harmless.
struct CallState {
  std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;
};

Status TimedOut(const std::string& what, std::chrono::milliseconds d) {
  return Status::Error(ETIMEDOUT, what + ": no answer from the store within " + std::to_string(d.count()) + " ms");
}

}  // namespace

DeadlineStore::DeadlineStore(std::unique_ptr<Store> target, std::chrono::milliseconds deadline, size_t max_workers)
    : StoreWrapper(std::move(target)), deadline_(deadline), max_workers_(max_workers), pool_(std::make_shared<Pool>()) {}

DeadlineStore::~DeadlineStore() {
  bool stuck;
  {
    std::unique_lock<std::mutex> lk(pool_->mu);
    pool_->stop = true;
    pool_->wake.notify_all();
    // A call that timed out may be about to finish: give it one deadline.
    stuck = !pool_->drained.wait_for(lk, deadline_, [&] { return pool_->running == 0; });
  }
  if (stuck) {
    // A worker is still inside the store and uses it: leave the store to it
    // (a deliberate leak at shutdown) rather than pull it from under it.
    (void)ReleaseTarget();
  }
}

void DeadlineStore::WorkerLoop(std::shared_ptr<Pool> pool) {
  std::unique_lock<std::mutex> lk(pool->mu);
  while (true) {
    ++pool->idle;
    pool->wake.wait(lk, [&] { return pool->stop || !pool->queue.empty(); });
    --pool->idle;
    if (pool->queue.empty()) {
      --pool->workers;
      return;  // stopping
    }
    std::function<void()> task = std::move(pool->queue.front());
    pool->queue.pop_front();
    lk.unlock();
    task();  // runs the call, drops `running`, then wakes the caller
    task = nullptr;
    lk.lock();
  }
}

bool DeadlineStore::RunWithDeadline(std::function<void()> call) const {
  auto state = std::make_shared<CallState>();
  {
    std::lock_guard<std::mutex> g(pool_->mu);
    if (pool_->idle == 0) {
      if (pool_->workers >= max_workers_) return false;  // every worker is stuck
      ++pool_->workers;
      std::thread([pool = pool_] { WorkerLoop(pool); }).detach();
    }
    ++pool_->running;
    pool_->queue.push_back([state, pool = pool_, call = std::move(call)]() mutable {
      call();
      call = nullptr;  // its captures (store pointers, files) go before the caller can see the end
      {
        std::lock_guard<std::mutex> g(pool->mu);
        if (--pool->running == 0) pool->drained.notify_all();
      }
      std::lock_guard<std::mutex> g(state->mu);
      state->done = true;
      state->done_cv.notify_all();
    });
  }
  pool_->wake.notify_one();
  std::unique_lock<std::mutex> lk(state->mu);
  return state->done_cv.wait_for(lk, deadline_, [&] { return state->done; });
}

Result<std::unique_ptr<StagingFile>> DeadlineStore::CreateStaging(uint64_t final_bytes) {
  auto out = std::make_shared<Result<std::unique_ptr<StagingFile>>>(Status::Error(EIO, "unset"));
  if (!RunWithDeadline([t = target(), out, final_bytes] { *out = t->CreateStaging(final_bytes); })) return CountTimeout(TimedOut("create staging", deadline_));
  return Counted(std::move(*out));
}

Result<std::unique_ptr<StagingFile>> DeadlineStore::CreateStagingWith(IoExecutor& io, std::shared_ptr<const uint8_t> image,
                                                                      size_t image_bytes) {
  if (image_bytes > kBufferedStagingMax) return Store::CreateStagingWith(io, std::move(image), image_bytes);
  auto out = std::make_shared<Result<std::unique_ptr<StagingFile>>>(Status::Error(EIO, "unset"));
  // The task keeps the image (and the pool its executor) past a deadline.
  if (!RunWithDeadline([t = target(), out, pool = pool_, image = std::move(image), image_bytes] {
        *out = t->CreateStagingWith(pool->syscall_io, image, image_bytes);
      })) {
    return CountTimeout(TimedOut("create staging", deadline_));
  }
  return Counted(std::move(*out));
}

Status DeadlineStore::LandStaging(StagingFile& file, const std::string& location, bool link) {
  // The worker lands its own handle on the same file, so the caller may drop
  // `file` after a timeout without pulling it from under the worker.
  int fd = ::dup(file.fd());
  if (fd < 0) return Status::FromErrno("dup staging descriptor");
  auto own = std::make_shared<StagingFile>(fd, file.path());
  auto out = std::make_shared<Status>();
  auto moved = std::make_shared<bool>(false);
  std::string loc = location;
  if (!RunWithDeadline([t = target(), own, out, moved, loc, link] {
        *out = link ? t->PublishUnsynced(*own, loc) : t->Publish(*own, loc);
        *moved = own->published();  // also when a flush after the rename failed
        if (!*moved) own->MarkPublished();  // the caller's handle owns cleanup
      })) {
    return CountTimeout(TimedOut((link ? "link " : "publish ") + location, deadline_));
  }
  if (*moved) file.MarkPublished();
  return Counted(*out);
}

Status DeadlineStore::Publish(StagingFile& file, const std::string& location) {
  return LandStaging(file, location, false);
}

Status DeadlineStore::PublishUnsynced(StagingFile& file, const std::string& location) { return LandStaging(file, location, true); }

Status DeadlineStore::SyncAll() {
  auto out = std::make_shared<Status>();
  if (!RunWithDeadline([t = target(), out] { *out = t->SyncAll(); })) return CountTimeout(TimedOut("syncfs", deadline_));
  return Counted(*out);
}

Status DeadlineStore::SyncPublished(StagingFile& file) {
  // As LandStaging: the worker flushes its own descriptor of the file.
  int fd = ::dup(file.fd());
  if (fd < 0) return Status::FromErrno("dup published descriptor");
  auto own = std::make_shared<StagingFile>(fd, file.path());
  own->MarkPublished();  // in place already: nothing to clean up
  auto out = std::make_shared<Status>();
  if (!RunWithDeadline([t = target(), own, out] { *out = t->SyncPublished(*own); })) {
    return CountTimeout(TimedOut("fsync " + file.path(), deadline_));
  }
  return Counted(*out);
}

Result<int> DeadlineStore::OpenForRead(const std::string& location) {
  struct Shared {
    std::mutex mu;
    bool abandoned = false;
    Result<int> fd = Status::Error(EIO, "unset");
  };
  auto sh = std::make_shared<Shared>();
  std::string loc = location;
  if (!RunWithDeadline([t = target(), sh, loc] {
        Result<int> r = t->OpenForRead(loc);
        std::lock_guard<std::mutex> g(sh->mu);
        if (sh->abandoned && r.ok()) ::close(*r);  // nobody will use it
        else sh->fd = std::move(r);
      })) {
    std::lock_guard<std::mutex> g(sh->mu);
    sh->abandoned = true;
    if (sh->fd.ok()) ::close(*sh->fd);  // finished just after the deadline
    return CountTimeout(TimedOut("open " + location, deadline_));
  }
  std::lock_guard<std::mutex> g(sh->mu);
  return Counted(sh->fd);
}

Status DeadlineStore::WriteHeaderBlock(const std::string& location, const uint8_t* block, bool sync) {
  auto copy = std::make_shared<std::vector<uint8_t>>(block, block + kHeaderSize);
  auto out = std::make_shared<Status>();
  std::string loc = location;
  if (!RunWithDeadline([t = target(), copy, out, loc, sync] { *out = t->WriteHeaderBlock(loc, copy->data(), sync); })) {
    return CountTimeout(TimedOut("write header " + location, deadline_));
  }
  return Counted(*out);
}

Status DeadlineStore::Move(const std::string& from, const std::string& to, bool sync) {
  auto out = std::make_shared<Status>();
  if (!RunWithDeadline([t = target(), out, from, to, sync] { *out = t->Move(from, to, sync); })) {
    return CountTimeout(TimedOut("move " + from, deadline_));
  }
  return Counted(*out);
}

Status DeadlineStore::Remove(const std::string& location, bool sync) {
  auto out = std::make_shared<Status>();
  if (!RunWithDeadline([t = target(), out, location, sync] { *out = t->Remove(location, sync); })) {
    return CountTimeout(TimedOut("remove " + location, deadline_));
  }
  return Counted(*out);
}

Status DeadlineStore::Quarantine(const std::string& location) {
  auto out = std::make_shared<Status>();
  if (!RunWithDeadline([t = target(), out, location] { *out = t->Quarantine(location); })) {
    return CountTimeout(TimedOut("quarantine " + location, deadline_));
  }
  return Counted(*out);
}

Result<StoreSpace> DeadlineStore::Space() const {
  auto out = std::make_shared<Result<StoreSpace>>(Status::Error(EIO, "unset"));
  if (!RunWithDeadline([t = target(), out] { *out = t->Space(); })) return CountTimeout(TimedOut("statvfs", deadline_));
  return Counted(*out);
}

Result<ListedObject> DeadlineStore::StatObject(const std::string& location) {
  auto out = std::make_shared<Result<ListedObject>>(Status::Error(EIO, "unset"));
  std::string loc = location;
  if (!RunWithDeadline([t = target(), out, loc] { *out = t->StatObject(loc); })) {
    return CountTimeout(TimedOut("stat " + location, deadline_));
  }
  return Counted(*out);
}

Result<ScannedObject> DeadlineStore::ReadObject(const std::string& location) {
  auto out = std::make_shared<Result<ScannedObject>>(Status::Error(EIO, "unset"));
  std::string loc = location;
  if (!RunWithDeadline([t = target(), out, loc] { *out = t->ReadObject(loc); })) {
    return CountTimeout(TimedOut("read header " + location, deadline_));
  }
  return Counted(*out);
}

Status DeadlineStore::TransferData(IoExecutor& io, const std::shared_ptr<DataBatch>& batch) {
  const DataBatch::Clock::time_point until = DataBatch::Clock::now() + deadline_;
  if (io.using_io_uring()) {
    // On this thread, with the deadline in the batch: no thread hop.
    std::optional<DataBatch::Clock::time_point> before = batch->deadline;
    if (!before || *before > until) batch->deadline = until;
    Status s = target()->TransferData(io, batch);
    if (s.err() != ENOTSUP || batch->abandoned()) {
      // An abandoned batch belongs to the I/O still running on it, which
      // may read its fields: leave it alone.
      if (!batch->abandoned()) batch->deadline = before;
      if (s.err() == ETIMEDOUT) {
        return CountTimeout(Status::Error(ETIMEDOUT, "data transfer: no answer from the store within " +
                                                         std::to_string(deadline_.count()) + " ms"));
      }
      return Counted(s);
    }
    batch->deadline = before;  // this thread has no ring after all: a worker runs it
  }
  if (!batch->PinDescriptors()) return Counted(Status::FromErrno("duplicate data descriptor"));
  auto out = std::make_shared<Status>();
  if (!RunWithDeadline([t = target(), &io, batch, out] { *out = t->TransferData(io, batch); })) {
    batch->MarkAbandoned();
    return CountTimeout(TimedOut("data transfer", deadline_));
  }
  return Counted(*out);
}

Result<uint64_t> DeadlineStore::FileIdOf(int fd) {
  // fstat of a descriptor open on a local filesystem is answered from the
  // in-memory inode and never waits for the device: no worker hop (it cost
  // one per open and per commit). A shared store's filesystem may have to
  // ask the network, so it keeps the deadline.
  if (!Shared()) return Counted(target()->FileIdOf(fd));
  // After a timeout the answer is dropped, so a reused descriptor number is harmless here.
  auto out = std::make_shared<Result<uint64_t>>(Status::Error(EIO, "unset"));
  if (!RunWithDeadline([t = target(), out, fd] { *out = t->FileIdOf(fd); })) {
    return CountTimeout(TimedOut("fstat", deadline_));
  }
  return Counted(*out);
}

Status DeadlineStore::TruncateData(int fd, uint64_t length) {
  int own = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return Counted(Status::FromErrno("duplicate staging descriptor"));
  auto out = std::make_shared<Status>();
  if (!RunWithDeadline([t = target(), out, own, length] {
        *out = t->TruncateData(own, length);
        ::close(own);
      })) {
    return CountTimeout(TimedOut("truncate", deadline_));
  }
  return Counted(*out);
}

StoreHealth DeadlineStore::Health() const {
  StoreHealth h = StoreWrapper::Health();
  h.calls += calls_.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> g(health_mu_);
  h.failures += health_.failures;
  h.timeouts += health_.timeouts;
  for (const auto& [err, n] : health_.errors_by_errno) h.errors_by_errno[err] += n;
  return h;
}

void DeadlineStore::Record(int err, bool timed_out) const {
  calls_.fetch_add(1, std::memory_order_relaxed);
  if (err == 0) return;
  std::lock_guard<std::mutex> g(health_mu_);
  ++health_.failures;
  if (timed_out) ++health_.timeouts;
  if (err != ENOENT) ++health_.errors_by_errno[err];
}

}  // namespace kvfs
