#include "adapters/dfs_cluster.h"

#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sstream>

namespace kvfs {
namespace {

constexpr const char* kLeasePrefix = "evictor.";
constexpr const char* kAccessPrefix = "access.";
constexpr const char* kRoomPrefix = "room.";

bool StartsWith(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

int64_t WallNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

}  // namespace

DfsCluster::DfsCluster(FsClient* fs, std::string cluster_dir, std::string staging_dir, std::string host_id,
                       std::chrono::milliseconds lease_ttl, std::chrono::seconds abandoned_after)
    : fs_(fs),
      dir_(std::move(cluster_dir)),
      staging_dir_(std::move(staging_dir)),
      host_id_(std::move(host_id)),
      ttl_(lease_ttl),
      abandoned_after_(abandoned_after) {}

std::string DfsCluster::LeasePath(uint64_t epoch) const {
  char name[48];
  std::snprintf(name, sizeof name, "%s%020" PRIu64, kLeasePrefix, epoch);
  return dir_ + "/" + name;
}

std::string DfsCluster::LeaseText(uint64_t renewals) const {
  return "holder " + host_id_ + "\npid " + std::to_string(::getpid()) + "\nrenewals " + std::to_string(renewals) + "\n";
}

Result<DfsCluster::LeaseFile> DfsCluster::ReadCurrentLease(std::vector<std::string>* older) {
  Result<std::vector<std::string>> names = fs_->ListDir(dir_);
  if (!names.ok()) return names.status();
  LeaseFile cur;
  std::vector<uint64_t> epochs;
  for (const std::string& n : *names) {
    if (!StartsWith(n, kLeasePrefix)) continue;
    std::string digits = n.substr(std::string(kLeasePrefix).size());
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    epochs.push_back(std::stoull(digits));
  }
  for (uint64_t e : epochs) cur.epoch = std::max(cur.epoch, e);
  for (uint64_t e : epochs) {
    if (e != cur.epoch && older) older->push_back(LeasePath(e));
  }
  if (cur.epoch == 0) return cur;
  Result<std::string> text = ReadSmallFile(*fs_, LeasePath(cur.epoch), 4096);
  if (!text.ok()) return cur;  // being replaced right now: unreadable counts as a change
  std::istringstream in(*text);
  std::string field;
  bool have_holder = false, have_renewals = false;
  while (in >> field) {
    if (field == "holder" && (in >> cur.holder)) have_holder = true;
    else if (field == "renewals" && (in >> cur.renewals)) have_renewals = true;
    else if (field == "pid") in >> field;
  }
  cur.readable = have_holder && have_renewals;
  return cur;
}

std::string DfsCluster::TmpPath() {
  return dir_ + "/tmp." + host_id_ + "." + std::to_string(::getpid()) + "." + std::to_string(tmp_counter_++);
}

void DfsCluster::PublishSnapshot() {
  std::lock_guard<std::mutex> g(snap_mu_);
  snap_mine_ = my_epoch_ != 0;
  snap_holder_ = snap_mine_ ? host_id_ : seen_holder_;
  snap_renewed_ = my_last_renewal_;
}

bool DfsCluster::TryCreateLease(uint64_t epoch) {
  // Under the cluster lock, so that exactly one host creates each epoch
  // (link() alone is not enough on every DFS, see WithExclusiveLock).
  Status created = WithExclusiveLock(*fs_, dir_ + "/lock", std::chrono::milliseconds(2000), [&]() -> Status {
    Result<LeaseFile> cur = ReadCurrentLease(nullptr);
    if (!cur.ok()) return cur.status();
    if (cur->epoch >= epoch) return Status::Error(EEXIST, "another host took the lease first");
    std::string tmp = TmpPath();
    Status s = WriteSmallFile(*fs_, tmp, LeaseText(0));
    if (s.ok()) s = fs_->Link(tmp, LeasePath(epoch));
    (void)fs_->Unlink(tmp);
    return s;
  });
  if (!created.ok()) return false;
  auto now = Clock::now();
  my_epoch_ = epoch;
  my_renewals_ = 0;
  my_last_renewal_ = now;
  seen_epoch_ = epoch;
  seen_renewals_ = 0;
  seen_holder_ = host_id_;
  seen_changed_ = now;
  seen_any_ = true;
  return true;
}

bool DfsCluster::RenewEvictorLease() {
  std::lock_guard<std::mutex> g(mu_);
  bool holds = RenewLocked();
  PublishSnapshot();
  return holds;
}

bool DfsCluster::RenewLocked() {
  auto now = Clock::now();
  std::vector<std::string> older;
  Result<LeaseFile> cur = ReadCurrentLease(&older);
  if (!cur.ok()) {
    // Cannot see the lease: keep holding only while our last renewal is fresh.
    if (my_epoch_ != 0 && now - my_last_renewal_ >= ttl_) my_epoch_ = 0;
    return my_epoch_ != 0;
  }
  if (my_epoch_ != 0) {
    if (cur->epoch == my_epoch_ && (!cur->readable || cur->holder == host_id_)) {
      if (ReplaceSmallFile(*fs_, LeasePath(my_epoch_), TmpPath(), LeaseText(my_renewals_ + 1)).ok()) {
        ++my_renewals_;
        my_last_renewal_ = now;
        seen_epoch_ = my_epoch_;
        seen_renewals_ = my_renewals_;
        seen_holder_ = host_id_;
        seen_changed_ = now;
        for (const std::string& path : older) (void)fs_->Unlink(path);
        return true;
      }
      if (now - my_last_renewal_ < ttl_) return true;
    }
    my_epoch_ = 0;  // someone took over, or we could not renew in time
  }
  if (cur->epoch == 0) return TryCreateLease(1);
  if (!seen_any_ || cur->epoch != seen_epoch_ || cur->renewals != seen_renewals_ || !cur->readable) {
    seen_any_ = true;
    seen_epoch_ = cur->epoch;
    seen_renewals_ = cur->renewals;
    if (cur->readable) seen_holder_ = cur->holder;
    seen_changed_ = now;
    return false;
  }
  if (now - seen_changed_ < ttl_) return false;
  // The holder has not renewed for a whole ttl: take over with the next epoch.
  if (!TryCreateLease(cur->epoch + 1)) return false;
  (void)fs_->Unlink(LeasePath(cur->epoch));
  for (const std::string& path : older) (void)fs_->Unlink(path);
  return true;
}

bool DfsCluster::HoldsEvictorLease() const {
  std::lock_guard<std::mutex> g(snap_mu_);
  // Watchers take over after a whole ttl without a change; stop two thirds
  // of the way there, so two hosts never evict at once.
  return snap_mine_ && Clock::now() - snap_renewed_ < ttl_ * 2 / 3;
}

Status DfsCluster::RequestRoom(uint64_t bytes) {
  std::string path = dir_ + "/" + kRoomPrefix + host_id_;
  if (bytes == 0) {
    Status s = fs_->Unlink(path);
    return s.ok() || s.err() == ENOENT ? Status::Ok() : s;
  }
  return ReplaceSmallFile(*fs_, path, TmpPath(), std::to_string(bytes) + "\n");
}

uint64_t DfsCluster::RoomRequested() {
  Result<std::vector<std::string>> names = fs_->ListDir(dir_);
  if (!names.ok()) return 0;
  int64_t recent = WallNs() - 60LL * 1000000000LL;  // older requests are from hosts that went away
  uint64_t total = 0;
  for (const std::string& name : *names) {
    if (!StartsWith(name, kRoomPrefix)) continue;
    Result<FsStat> st = fs_->Stat(dir_ + "/" + name);
    if (!st.ok() || st->mtime_ns < recent) continue;
    Result<std::string> text = ReadSmallFile(*fs_, dir_ + "/" + name, 64);
    if (!text.ok()) continue;
    total += std::strtoull(text->c_str(), nullptr, 10);
  }
  return total;
}

std::string DfsCluster::EvictorHolder() const {
  std::lock_guard<std::mutex> g(snap_mu_);
  return snap_holder_;
}

uint64_t DfsCluster::epoch() const {
  std::lock_guard<std::mutex> g(mu_);
  return seen_epoch_;
}

Status DfsCluster::PublishAccesses(const std::map<std::string, uint64_t>& counts) {
  if (counts.empty()) return Status::Ok();
  std::string text;
  for (const auto& [location, n] : counts) text += std::to_string(n) + " " + location + "\n";
  std::lock_guard<std::mutex> g(access_mu_);
  return ReplaceSmallFile(*fs_, dir_ + "/" + kAccessPrefix + host_id_, TmpPath(), text);
}

Result<std::map<std::string, uint64_t>> DfsCluster::CollectAccesses() {
  std::lock_guard<std::mutex> g(access_mu_);
  Result<std::vector<std::string>> names = fs_->ListDir(dir_);
  if (!names.ok()) return names.status();
  std::map<std::string, uint64_t> merged;
  for (const std::string& name : *names) {
    if (!StartsWith(name, kAccessPrefix) || name == std::string(kAccessPrefix) + host_id_) continue;
    Result<FsStat> st = fs_->Stat(dir_ + "/" + name);
    if (!st.ok()) continue;
    auto it = read_access_.find(name);
    if (it != read_access_.end() && it->second.file_id() == st->file_id() && it->second.size == st->size &&
        it->second.mtime_ns == st->mtime_ns) {
      continue;  // nothing new since the last read
    }
    Result<std::string> text = ReadSmallFile(*fs_, dir_ + "/" + name, 64 << 20);
    if (!text.ok()) continue;
    read_access_[name] = *st;
    std::istringstream in(*text);
    uint64_t n;
    std::string location;
    while (in >> n >> location) merged[location] += n;
  }
  return merged;
}

uint64_t DfsCluster::SweepAbandoned() {
  int64_t cutoff = WallNs() - static_cast<int64_t>(abandoned_after_.count()) * 1000000000LL;
  uint64_t removed = 0;
  auto sweep = [&](const std::string& dir, const std::function<bool(const std::string&)>& eligible) {
    Result<std::vector<std::string>> names = fs_->ListDir(dir);
    if (!names.ok()) return;
    for (const std::string& name : *names) {
      if (!eligible(name)) continue;
      Result<FsStat> st = fs_->Stat(dir + "/" + name);
      if (st.ok() && st->mtime_ns < cutoff && fs_->Unlink(dir + "/" + name).ok()) ++removed;
    }
  };
  // Other hosts' staging files (this host sweeps its own at mount).
  sweep(staging_dir_, [&](const std::string& n) { return !StartsWith(n, (host_id_ + "~").c_str()); });
  // Access logs of hosts that stopped publishing, and temporaries of crashed writers.
  sweep(dir_, [&](const std::string& n) { return StartsWith(n, kAccessPrefix) || StartsWith(n, "tmp."); });
  return removed;
}

}  // namespace kvfs
