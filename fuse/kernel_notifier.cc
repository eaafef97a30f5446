#include "fuse/kernel_notifier.h"

#include <spdlog/spdlog.h>

#include <cstring>

namespace kvfs {

void KernelNotifier::Start() {
  std::lock_guard<std::mutex> g(mu_);
  stop_ = false;
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
}

void KernelNotifier::Stop() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void KernelNotifier::InvalidateEntry(uint64_t parent_ino, const std::string& name) {
  if (!ctx_->session) return;
  int rc = fuse_lowlevel_notify_inval_entry(ctx_->session, parent_ino, name.c_str(), name.size());
  if (rc != 0 && rc != -ENOENT) spdlog::debug("inval_entry {}/{}: {}", parent_ino, name, std::strerror(-rc));
}

void KernelNotifier::EntryAppeared(uint64_t parent_ino, const std::string& name) { InvalidateEntry(parent_ino, name); }

void KernelNotifier::VersionCommitted(uint64_t ino) {
  if (!ctx_->session) return;
  // Offset -1: attributes only, no page-cache work (safe from FSYNC's context).
  int rc = fuse_lowlevel_notify_inval_inode(ctx_->session, ino, -1, 0);
  if (rc != 0 && rc != -ENOENT) spdlog::debug("inval_inode {}: {}", ino, std::strerror(-rc));
}

void KernelNotifier::EntryEvicted(uint64_t parent_ino, const std::string& name, uint64_t) {
  {
    std::lock_guard<std::mutex> g(mu_);
    queue_.emplace_back(parent_ino, name);
  }
  wake_.notify_one();
}

void KernelNotifier::Loop() {
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    wake_.wait(lk, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    auto [parent, name] = std::move(queue_.front());
    queue_.pop_front();
    lk.unlock();
    InvalidateEntry(parent, name);
    lk.lock();
  }
}

}  // namespace kvfs
