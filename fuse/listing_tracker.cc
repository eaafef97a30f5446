#include "fuse/listing_tracker.h"

namespace kvfs {

void ListingTracker::ServeBegin(uint64_t dir) {
  std::lock_guard<std::mutex> g(mu_);
  State& s = dirs_[dir];
  s.marked = true;
  s.in_flight++;
}

void ListingTracker::ServeEnd(uint64_t dir) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = dirs_.find(dir);
  if (it == dirs_.end()) return;
  it->second.in_flight--;
}

bool ListingTracker::TakeMarked(uint64_t dir) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = dirs_.find(dir);
  if (it == dirs_.end()) return false;
  const bool marked = it->second.marked || it->second.in_flight > 0;
  if (it->second.in_flight > 0) return marked;  // stays marked: a reply may still be cached
  dirs_.erase(it);
  return marked;
}

}  // namespace kvfs
