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
  return idle_.wait_for(lk, timeout, [this] { return queue_.empty() && !busy_; });
}

void DeferredUnlinker::Run() {
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    work_.wait(lk, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and nothing left
    auto [path, bytes] = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lk.unlock();
    UnlinkOne(path);
    lk.lock();
    busy_ = false;
    pending_bytes_ -= bytes;
    if (queue_.empty()) idle_.notify_all();
  }
}

void DeferredUnlinker::UnlinkOne(const std::string& path) {
  Status s = fs_->Unlink(path);
  if (!s.ok() && s.err() != ENOENT) spdlog::warn("deferred unlink of {} failed: {}", path, s.message());
}

}  // namespace kvfs
