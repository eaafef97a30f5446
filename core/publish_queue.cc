#include "core/publish_queue.h"

#include <algorithm>

namespace kvfs {

Status PublishQueue::Run(PublishJob* job) {
  {
    MutexLock g(queue_mu_);
    queue_.push_back(job);
  }
  MutexLock publish(publish_mu_);
  if (!job->done_) LeadGroup();
  return job->result_;
}

void PublishQueue::LeadGroup() {
  std::vector<PublishJob*> group;
  {
    MutexLock g(queue_mu_);
    group.swap(queue_);
  }
  for (PublishJob* j : group) {
    j->result_ = j->Place();
    if (!j->result_.ok() && j->PlacedAnyway()) {
      // In place but maybe not durable: what is on the store wins.
      j->linked_ = true;
      j->result_ = Status::Error(EIO, j->result_.message());
    }
  }
  for (PublishJob* j : group) {
    if (j->result_.ok() && deferred_(j->store_index())) dirtied_(j->store_index());
  }
  if (group_commit_) {
    // One flush per store for the whole group: every file linked there, and
    // every earlier rename, is durable after it.
    std::vector<Store*> flushed;
    for (PublishJob* j : group) {
      if (!j->result_.ok() || deferred_(j->store_index()) ||
          std::find(flushed.begin(), flushed.end(), j->store()) != flushed.end()) {
        continue;
      }
      flushed.push_back(j->store());
      Status st = j->store()->SyncAll();
      if (st.ok()) continue;
      for (PublishJob* k : group) {
        if (k->store() == j->store() && k->result_.ok()) {
          k->linked_ = true;
          k->result_ = Status::Error(EIO, st.message());
        }
      }
    }
  }
  groups_.fetch_add(1, std::memory_order_relaxed);
  jobs_.fetch_add(group.size(), std::memory_order_relaxed);
  for (PublishJob* j : group) {
    if (j->result_.ok()) j->linked_ = true;
    if (j->linked_) j->Complete();
    j->done_ = true;
  }
}

}  // namespace kvfs
