#include "core/eviction_policy.h"

#include <algorithm>
#include <list>
#include <unordered_map>
#include <unordered_set>

namespace kvfs {
namespace {

// How many entries one Evict call may look at before giving up.
constexpr size_t kScanBound = 4096;

class LruPolicy final : public EvictionPolicy {
 public:
  const char* name() const override { return "lru"; }
  void Insert(uint64_t id, uint64_t) override {
    Remove(id);
    order_.push_front(id);
    where_[id] = order_.begin();
  }
  void Access(uint64_t id) override {
    auto it = where_.find(id);
    if (it != where_.end()) order_.splice(order_.begin(), order_, it->second);
  }
  void Remove(uint64_t id) override {
    auto it = where_.find(id);
    if (it == where_.end()) return;
    order_.erase(it->second);
    where_.erase(it);
  }
  std::optional<uint64_t> Evict(const std::function<bool(uint64_t)>& can_evict) override {
    for (size_t n = 0; n < kScanBound && n < order_.size(); ++n) {
      uint64_t id = order_.back();
      if (can_evict(id)) {
        Remove(id);
        return id;
      }
      // In use: it is as good as recently used.
      order_.splice(order_.begin(), order_, std::prev(order_.end()));
    }
    return std::nullopt;
  }
  size_t size() const override { return where_.size(); }

 private:
  std::list<uint64_t> order_;  // front: most recent
  std::unordered_map<uint64_t, std::list<uint64_t>::iterator> where_;
};

class S3FifoPolicy final : public EvictionPolicy {
 public:
  const char* name() const override { return "s3fifo"; }

  void Insert(uint64_t id, uint64_t bytes) override {
    Remove(id);
    bool was_ghost = ghost_set_.erase(id) > 0;
    Queue q = was_ghost ? kMain : kSmall;
    List& l = q == kSmall ? small_ : main_;
    l.push_front(Entry{id, bytes, 0});
    where_[id] = Where{q, l.begin()};
    (q == kSmall ? small_bytes_ : main_bytes_) += bytes;
  }

  void Access(uint64_t id) override {
    auto it = where_.find(id);
    if (it != where_.end()) it->second.it->freq = std::min(it->second.it->freq + 1, 3);
  }

  void Remove(uint64_t id) override {
    auto it = where_.find(id);
    if (it == where_.end()) return;
    Where w = it->second;
    (w.queue == kSmall ? small_bytes_ : main_bytes_) -= w.it->bytes;
    (w.queue == kSmall ? small_ : main_).erase(w.it);
    where_.erase(it);
  }

  std::optional<uint64_t> Evict(const std::function<bool(uint64_t)>& can_evict) override {
    // Pinned entries passed over in a row, per queue: once a whole queue has
    // been passed over, the victim must come from the other one.
    size_t small_pinned = 0, main_pinned = 0;
    for (size_t n = 0; n < kScanBound && !where_.empty(); ++n) {
      bool small_done = small_.empty() || small_pinned >= small_.size();
      bool main_done = main_.empty() || main_pinned >= main_.size();
      if (small_done && main_done) break;
      uint64_t total = small_bytes_ + main_bytes_;
      bool from_small = !small_done && (small_bytes_ * 10 > total || main_done);
      if (from_small) {
        Entry e = small_.back();
        if (e.freq > 0) {
          // Touched again while probationary: promote to the main FIFO.
          Move(e.id, kMain, 0);
          continue;
        }
        if (!can_evict(e.id)) {
          Move(e.id, kSmall, e.freq);
          ++small_pinned;
          continue;
        }
        Remove(e.id);
        RememberGhost(e.id);
        return e.id;
      }
      Entry e = main_.back();
      if (e.freq > 0) {
        Move(e.id, kMain, e.freq - 1);
        continue;
      }
      if (!can_evict(e.id)) {
        Move(e.id, kMain, 0);
        ++main_pinned;
        continue;
      }
      Remove(e.id);
      return e.id;
    }
    return std::nullopt;
  }

  size_t size() const override { return where_.size(); }

 private:
  enum Queue { kSmall, kMain };
  struct Entry {
    uint64_t id;
    uint64_t bytes;
    int freq;
  };
  using List = std::list<Entry>;  // front: newest; evict from the back
  struct Where {
    Queue queue;
    List::iterator it;
  };

  // Moves id to the front of queue q with frequency freq.
  void Move(uint64_t id, Queue q, int freq) {
    Where& w = where_[id];
    uint64_t bytes = w.it->bytes;
    (w.queue == kSmall ? small_bytes_ : main_bytes_) -= bytes;
    (w.queue == kSmall ? small_ : main_).erase(w.it);
    List& l = q == kSmall ? small_ : main_;
    l.push_front(Entry{id, bytes, freq});
    w = Where{q, l.begin()};
    (q == kSmall ? small_bytes_ : main_bytes_) += bytes;
  }

  void RememberGhost(uint64_t id) {
    ghost_.push_front(id);
    ghost_set_.insert(id);
    size_t limit = std::max<size_t>(main_.size(), 64);
    while (ghost_.size() > limit) {
      ghost_set_.erase(ghost_.back());
      ghost_.pop_back();
    }
  }

  List small_, main_;
  uint64_t small_bytes_ = 0, main_bytes_ = 0;
  std::unordered_map<uint64_t, Where> where_;
  std::list<uint64_t> ghost_;
  std::unordered_set<uint64_t> ghost_set_;
};

class SievePolicy final : public EvictionPolicy {
 public:
  const char* name() const override { return "sieve"; }
  void Insert(uint64_t id, uint64_t) override {
    Remove(id);
    order_.push_front(Entry{id, false});
    where_[id] = order_.begin();
  }
  void Access(uint64_t id) override {
    auto it = where_.find(id);
    if (it != where_.end()) it->second->visited = true;
  }
  void Remove(uint64_t id) override {
    auto it = where_.find(id);
    if (it == where_.end()) return;
    if (hand_valid_ && hand_ == it->second) Retreat();
    order_.erase(it->second);
    where_.erase(it);
  }
  std::optional<uint64_t> Evict(const std::function<bool(uint64_t)>& can_evict) override {
    for (size_t n = 0; n < kScanBound && !order_.empty(); ++n) {
      if (!hand_valid_) {
        hand_ = std::prev(order_.end());
        hand_valid_ = true;
      }
      Entry& e = *hand_;
      if (e.visited || !can_evict(e.id)) {
        e.visited = false;
        Retreat();
        continue;
      }
      uint64_t id = e.id;
      Remove(id);
      return id;
    }
    return std::nullopt;
  }
  size_t size() const override { return where_.size(); }

 private:
  struct Entry {
    uint64_t id;
    bool visited;
  };
  // Moves the hand one step towards the newest entry (wrapping to the oldest).
  void Retreat() {
    if (hand_ == order_.begin()) hand_valid_ = false;
    else --hand_;
  }
  std::list<Entry> order_;  // front: newest
  std::unordered_map<uint64_t, std::list<Entry>::iterator> where_;
  std::list<Entry>::iterator hand_;
  bool hand_valid_ = false;
};

}  // namespace

Result<std::unique_ptr<EvictionPolicy>> MakeEvictionPolicy(const std::string& name) {
  if (name == "lru") return std::unique_ptr<EvictionPolicy>(new LruPolicy());
  if (name == "s3fifo") return std::unique_ptr<EvictionPolicy>(new S3FifoPolicy());
  if (name == "sieve") return std::unique_ptr<EvictionPolicy>(new SievePolicy());
  return Status::Error(EINVAL, "unknown eviction policy '" + name + "' (lru, s3fifo, sieve)");
}

std::vector<std::string> EvictionPolicyNames() { return {"lru", "s3fifo", "sieve"}; }

}  // namespace kvfs
