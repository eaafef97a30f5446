#include "fuse/handle_quota.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <string>

namespace kvfs {

HandleQuota::HandleQuota(uint64_t per_user, uint64_t total) : per_user_(per_user), total_(total) {}

Status HandleQuota::Reserve(uid_t uid) {
  std::lock_guard<std::mutex> g(mu_);
  uint64_t& mine = held_by_uid_[uid];
  if (mine >= per_user_) {
    ++refused_;
    if (mine == 0) held_by_uid_.erase(uid);
    return Status::Error(EMFILE, "uid " + std::to_string(uid) + " holds " + std::to_string(mine) +
                                     " open files on this mount, the most one user may (--max-handles-per-user)");
  }
  if (held_ >= total_) {
    ++refused_;
    if (mine == 0) held_by_uid_.erase(uid);
    return Status::Error(ENFILE, "all users together hold " + std::to_string(held_) +
                                     " open files on this mount, the most the daemon serves");
  }
  ++mine;
  ++held_;
  return Status::Ok();
}

void HandleQuota::DropLocked(uid_t uid) {
  auto it = held_by_uid_.find(uid);
  if (it == held_by_uid_.end() || it->second == 0) return;
  if (--it->second == 0) held_by_uid_.erase(it);
  --held_;
}

void HandleQuota::Unreserve(uid_t uid) {
  std::lock_guard<std::mutex> g(mu_);
  DropLocked(uid);
}

void HandleQuota::Bind(uint64_t fh, uid_t uid) {
  std::lock_guard<std::mutex> g(mu_);
  owner_of_fh_[fh] = uid;
}

void HandleQuota::Release(uint64_t fh) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = owner_of_fh_.find(fh);
  if (it == owner_of_fh_.end()) return;
  DropLocked(it->second);
  owner_of_fh_.erase(it);
}

uint64_t HandleQuota::HeldBy(uid_t uid) const {
  std::lock_guard<std::mutex> g(mu_);
  auto it = held_by_uid_.find(uid);
  return it == held_by_uid_.end() ? 0 : it->second;
}

uint64_t HandleQuota::Held() const {
  std::lock_guard<std::mutex> g(mu_);
  return held_;
}

uint64_t HandleQuota::refused() const {
  std::lock_guard<std::mutex> g(mu_);
  return refused_;
}

uint64_t RaiseDescriptorLimit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  if (rl.rlim_cur == RLIM_INFINITY) return uint64_t{1} << 20;
  return static_cast<uint64_t>(rl.rlim_cur);
}

uint64_t DefaultTotalHandles(uint64_t descriptors) {
  uint64_t reserve = std::clamp<uint64_t>(descriptors / 4, 64, 4096);
  return descriptors > reserve + 16 ? descriptors - reserve : 16;
}

uint64_t DefaultHandlesPerUser(uint64_t descriptors) { return std::max<uint64_t>(DefaultTotalHandles(descriptors) / 4, 16); }

}  // namespace kvfs
