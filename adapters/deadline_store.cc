#include "adapters/deadline_store.h"

#include <unistd.h>

#include <cstring>

namespace kvfs {
namespace {

// What a call leaves for its caller; shared so a late finish is harmless.
template <typename T>
struct CallState {
  std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;
  bool abandoned = false;
  T result;
};

Status TimedOut(const std::string& what, std::chrono::milliseconds d) {
  return Status::Error(ETIMEDOUT, what + ": no answer from the store within " + std::to_string(d.count()) + " ms");
}

}  // namespace

DeadlineStore::DeadlineStore(std::unique_ptr<Store> target, std::chrono::milliseconds deadline, size_t max_workers)
    : StoreWrapper(std::move(target)), deadline_(deadline), max_workers_(max_workers) {}

DeadlineStore::~DeadlineStore() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) {
    // A worker stuck in the store cannot be joined; let it finish on its own.
    if (t.joinable()) t.detach();
  }
}

void DeadlineStore::WorkerLoop() const {
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    ++idle_;
    wake_.wait(lk, [&] { return stop_ || !queue_.empty(); });
    --idle_;
    if (stop_ && queue_.empty()) return;
    std::function<void()> task = std::move(queue_.front());
    queue_.pop_front();
    lk.unlock();
    task();
    lk.lock();
  }
}

bool DeadlineStore::RunWithDeadline(std::function<void()> task) const {
  auto state = std::make_shared<CallState<bool>>();
  {
    std::lock_guard<std::mutex> g(mu_);
    if (idle_ == 0) {
      if (workers_.size() >= max_workers_) return false;  // every worker is stuck
      workers_.emplace_back([this] { WorkerLoop(); });
    }
    queue_.push_back([state, task = std::move(task)] {
      task();
      std::lock_guard<std::mutex> g(state->mu);
      state->done = true;
      state->done_cv.notify_all();
    });
  }
  wake_.notify_one();
  std::unique_lock<std::mutex> lk(state->mu);
  if (!state->done_cv.wait_for(lk, deadline_, [&] { return state->done; })) {
    state->abandoned = true;
    timeouts_.fetch_add(1);
    return false;
  }
  return true;
}

Result<std::unique_ptr<StagingFile>> DeadlineStore::CreateStaging() {
  auto out = std::make_shared<Result<std::unique_ptr<StagingFile>>>(Status::Error(EIO, "unset"));
  if (!RunWithDeadline([this, out] { *out = StoreWrapper::CreateStaging(); })) return TimedOut("create staging", deadline_);
  return std::move(*out);
}

Status DeadlineStore::Publish(StagingFile& file, const std::string& location) {
  // The worker publishes its own handle on the same file, so the caller may
  // drop `file` after a timeout without pulling it from under the worker.
  int fd = ::dup(file.fd());
  if (fd < 0) return Status::FromErrno("dup staging descriptor");
  auto own = std::make_shared<StagingFile>(fd, file.path());
  auto out = std::make_shared<Status>();
  std::string loc = location;
  if (!RunWithDeadline([this, own, out, loc] {
        *out = StoreWrapper::Publish(*own, loc);
        if (!out->ok()) own->MarkPublished();  // the caller's handle owns cleanup
      })) {
    return TimedOut("publish " + location, deadline_);
  }
  if (out->ok()) file.MarkPublished();
  return *out;
}

Result<int> DeadlineStore::OpenForRead(const std::string& location) {
  struct Shared {
    std::mutex mu;
    bool abandoned = false;
    Result<int> fd = Status::Error(EIO, "unset");
  };
  auto sh = std::make_shared<Shared>();
  std::string loc = location;
  if (!RunWithDeadline([this, sh, loc] {
        Result<int> r = StoreWrapper::OpenForRead(loc);
        std::lock_guard<std::mutex> g(sh->mu);
        if (sh->abandoned && r.ok()) ::close(*r);  // nobody will use it
        else sh->fd = std::move(r);
      })) {
    std::lock_guard<std::mutex> g(sh->mu);
    sh->abandoned = true;
    if (sh->fd.ok()) ::close(*sh->fd);  // finished just after the deadline
    return TimedOut("open " + location, deadline_);
  }
  std::lock_guard<std::mutex> g(sh->mu);
  return sh->fd;
}

Status DeadlineStore::WriteHeaderBlock(const std::string& location, const uint8_t* block) {
  auto copy = std::make_shared<std::vector<uint8_t>>(block, block + kHeaderSize);
  auto out = std::make_shared<Status>();
  std::string loc = location;
  if (!RunWithDeadline([this, copy, out, loc] { *out = StoreWrapper::WriteHeaderBlock(loc, copy->data()); })) {
    return TimedOut("write header " + location, deadline_);
  }
  return *out;
}

Status DeadlineStore::Move(const std::string& from, const std::string& to) {
  auto out = std::make_shared<Status>();
  if (!RunWithDeadline([this, out, from, to] { *out = StoreWrapper::Move(from, to); })) {
    return TimedOut("move " + from, deadline_);
  }
  return *out;
}

Status DeadlineStore::Remove(const std::string& location, bool sync) {
  auto out = std::make_shared<Status>();
  if (!RunWithDeadline([this, out, location, sync] { *out = StoreWrapper::Remove(location, sync); })) {
    return TimedOut("remove " + location, deadline_);
  }
  return *out;
}

Status DeadlineStore::Quarantine(const std::string& location) {
  auto out = std::make_shared<Status>();
  if (!RunWithDeadline([this, out, location] { *out = StoreWrapper::Quarantine(location); })) {
    return TimedOut("quarantine " + location, deadline_);
  }
  return *out;
}

Result<StoreSpace> DeadlineStore::Space() const {
  auto out = std::make_shared<Result<StoreSpace>>(Status::Error(EIO, "unset"));
  if (!RunWithDeadline([this, out] { *out = StoreWrapper::Space(); })) return TimedOut("statvfs", deadline_);
  return *out;
}

}  // namespace kvfs
