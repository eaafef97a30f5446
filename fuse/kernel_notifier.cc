#include "fuse/kernel_notifier.h"

#include <spdlog/spdlog.h>

#include <chrono>
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

void KernelNotifier::Invalidate(const Job& job) {
  if (!ctx_->session) return;
  const uint64_t parent_ino = job.parent_ino;
  int rc = 0;
  if (job.entry) {
    rc = fuse_lowlevel_notify_inval_entry(ctx_->session, parent_ino, job.name.c_str(), job.name.size());
    if (rc != 0 && rc != -ENOENT) spdlog::debug("inval_entry {}/{}: {}", parent_ino, job.name, std::strerror(-rc));
  }
  if (job.listing) {
    // Offset 0, length 0: the directory's whole page cache, where the kernel
    // keeps its cached listing.
    rc = fuse_lowlevel_notify_inval_inode(ctx_->session, parent_ino, 0, 0);
    if (rc != 0 && rc != -ENOENT) spdlog::debug("inval_inode (listing) {}: {}", parent_ino, std::strerror(-rc));
  }
}

namespace {
constexpr auto kAppearWait = std::chrono::milliseconds(200);
}  // namespace

bool KernelNotifier::ListingMayBeCached(uint64_t parent_ino) {
  if (!ctx_->readdir_cache) return false;
  return !ctx_->listings || ctx_->listings->TakeMarked(parent_ino);
}

void KernelNotifier::EntryAppeared(uint64_t parent_ino, const std::string& name, bool name_was_refused) {
  // Without a refused lookup, the kernel's entry (if any) is the creator's,
  // pointing at this inode: dropping it would drop the pages the writer
  // left in the page cache. Only the parent's listing is stale then.
  const bool listing = ListingMayBeCached(parent_ino);
  if (!name_was_refused && !listing) return;
  auto job = std::make_shared<Job>(Job{parent_ino, name, name_was_refused, listing});
  std::unique_lock<std::mutex> lk(mu_);
  if (stop_ || !thread_.joinable()) return;
  queue_.push_back(job);
  wake_.notify_one();
  sent_.wait_for(lk, kAppearWait, [&] { return job->sent || stop_; });
}

void KernelNotifier::VersionCommitted(uint64_t ino) {
  if (!ctx_->session) return;
  // Offset -1: attributes only, no page-cache work and no inode lock.
  int rc = fuse_lowlevel_notify_inval_inode(ctx_->session, ino, -1, 0);
  if (rc != 0 && rc != -ENOENT) spdlog::debug("inval_inode {}: {}", ino, std::strerror(-rc));
}

void KernelNotifier::EntryEvicted(uint64_t parent_ino, const std::string& name, uint64_t) {
  std::lock_guard<std::mutex> g(mu_);
  queue_.push_back(std::make_shared<Job>(Job{parent_ino, name, true, ListingMayBeCached(parent_ino)}));
  wake_.notify_one();
}

void KernelNotifier::ListingChanged(uint64_t dir_ino) {
  std::lock_guard<std::mutex> g(mu_);
  if (stop_ || !thread_.joinable() || !ListingMayBeCached(dir_ino)) return;
  queue_.push_back(std::make_shared<Job>(Job{dir_ino, std::string(), false, true}));
  wake_.notify_one();
}

void KernelNotifier::Loop() {
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    wake_.wait(lk, [&] { return stop_ || !queue_.empty(); });
    if (stop_) break;
    std::shared_ptr<Job> job = std::move(queue_.front());
    queue_.pop_front();
    lk.unlock();
    Invalidate(*job);
    lk.lock();
    job->sent = true;
    sent_.notify_all();
  }
  sent_.notify_all();
}

}  // namespace kvfs
