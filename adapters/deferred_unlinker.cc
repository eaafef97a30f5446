#include "adapters/deferred_unlinker.h"

#include <spdlog/spdlog.h>

namespace kvfs {

DeferredUnlinker::DeferredUnlinker(FsClient* fs, size_t max_queued)
    : fs_(fs), max_queued_(max_queued), thread_([this] { Run(); }) {}

DeferredUnlinker::~DeferredUnlinker() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  work_.notify_all();
  thread_.join();
}

void DeferredUnlinker::Add(std::string path, uint64_t bytes) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (queue_.size() < max_queued_) {
      queue_.emplace_back(std::move(path), bytes);
      pending_bytes_ += bytes;
      ++queued_total_;
      work_.notify_one();
      return;
    }
  }
  UnlinkOne(path);
}

uint64_t DeferredUnlinker::pending_bytes() const {
  std::lock_guard<std::mutex> g(mu_);
  return pending_bytes_;
}

bool DeferredUnlinker::Drain(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  // The queue is FIFO: once as many files as were queued by now are done,
  // every one of them is, whatever was queued after this call.
  const uint64_t target = queued_total_;
  return idle_.wait_for(lk, timeout, [&] { return done_total_ >= target; });
}

bool DeferredUnlinker::WaitPendingAtMost(uint64_t bytes, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  return idle_.wait_for(lk, timeout, [&] { return pending_bytes_ <= bytes; });
}

void DeferredUnlinker::Run() {
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    work_.wait(lk, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and nothing left
    auto [path, bytes] = std::move(queue_.front());
    queue_.pop_front();
    lk.unlock();
    UnlinkOne(path);
    lk.lock();
    pending_bytes_ -= bytes;
    ++done_total_;
    idle_.notify_all();
  }
}

void DeferredUnlinker::UnlinkOne(const std::string& path) {
  Status s = fs_->Unlink(path);
  if (!s.ok() && s.err() != ENOENT) spdlog::warn("deferred unlink of {} failed: {}", path, s.message());
}

}  // namespace kvfs
