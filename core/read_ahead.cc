#include "core/read_ahead.h"

namespace kvfs {

void Prefetch::Finish(std::shared_ptr<ChunkSpan> span) {
  {
    MutexLock g(mu_);
    span_ = std::move(span);
    done_ = true;
  }
  cv_.notify_all();
}

std::shared_ptr<ChunkSpan> Prefetch::Wait() {
  UniqueLock lk(mu_);
  cv_.wait(lk, [&] {
    mu_.AssertHeld();
    return done_;
  });
  return span_;
}

ReadAhead::ReadAhead(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

ReadAhead::~ReadAhead() {
  {
    MutexLock g(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
}

bool ReadAhead::Submit(std::function<void()> task) {
  {
    MutexLock g(mu_);
    if (stop_ || busy_ >= threads_.size()) return false;
    queue_.push_back(std::move(task));
    busy_++;
  }
  wake_.notify_one();
  return true;
}

void ReadAhead::Loop() {
  UniqueLock lk(mu_);
  while (true) {
    wake_.wait(lk, [&] {
      mu_.AssertHeld();
      return stop_ || !queue_.empty();
    });
    if (queue_.empty()) return;  // stopping, and nothing left
    std::function<void()> task = std::move(queue_.front());
    queue_.pop_front();
    lk.unlock();
    task();
    lk.lock();
    busy_--;
  }
}

}  // namespace kvfs
