#include "core/eviction_policy.h"

#include <algorithm>
#include <list>
#include <unordered_map>
#include <unordered_set>

namespace kvfs {
namespace {

// How many entries one Evict call may look at before giving up.
constexpr size_t kScanBound = 4096;

// The policies' bookkeeping, one allocation per id: a hash map from id to a
// Node that also carries the node's place in a doubly linked queue (a
// policy with millions of objects pays for one map node per object, not a
// map node plus a list node).
struct Node {
  uint64_t id = 0;
  uint64_t bytes = 0;
  Node* prev = nullptr;  // towards the front (newer)
  Node* next = nullptr;  // towards the back (older)
  uint8_t queue = 0;     // which Queue holds it (S3-FIFO: small or main)
  uint8_t freq = 0;      // S3-FIFO: touches, capped; SIEVE: the visited bit
};

// An intrusive FIFO/LRU queue of Nodes: front is newest, back is oldest.
class Queue {
 public:
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  Node* back() const { return back_; }
  Node* front() const { return front_; }
  void PushFront(Node* n) {
    n->prev = nullptr;
    n->next = front_;
    if (front_) front_->prev = n;
    front_ = n;
    if (!back_) back_ = n;
    ++size_;
  }
  void Unlink(Node* n) {
    (n->prev ? n->prev->next : front_) = n->next;
    (n->next ? n->next->prev : back_) = n->prev;
    n->prev = n->next = nullptr;
    --size_;
  }
  void MoveToFront(Node* n) {
    Unlink(n);
    PushFront(n);
  }

 private:
  Node* front_ = nullptr;
  Node* back_ = nullptr;
  size_t size_ = 0;
};

using NodeMap = std::unordered_map<uint64_t, Node>;

class LruPolicy final : public EvictionPolicy {
 public:
  const char* name() const override { return "lru"; }
  void Insert(uint64_t id, uint64_t bytes) override {
    Remove(id);
    Node& n = nodes_[id];
    n.id = id;
    n.bytes = bytes;
    order_.PushFront(&n);
  }
  void Access(uint64_t id) override {
    auto it = nodes_.find(id);
    if (it != nodes_.end()) order_.MoveToFront(&it->second);
  }
  void Remove(uint64_t id) override {
    auto it = nodes_.find(id);
    if (it == nodes_.end()) return;
    order_.Unlink(&it->second);
    nodes_.erase(it);
  }
  std::optional<uint64_t> Evict(const std::function<bool(uint64_t)>& can_evict) override {
    for (size_t n = 0; n < kScanBound && n < order_.size(); ++n) {
      Node* victim = order_.back();
      uint64_t id = victim->id;
      if (can_evict(id)) {
        Remove(id);
        return id;
      }
      // In use: it is as good as recently used.
      order_.MoveToFront(victim);
    }
    return std::nullopt;
  }
  size_t size() const override { return nodes_.size(); }

 private:
  NodeMap nodes_;
  Queue order_;  // front: most recent
};

class S3FifoPolicy final : public EvictionPolicy {
 public:
  const char* name() const override { return "s3fifo"; }

  void Insert(uint64_t id, uint64_t bytes) override {
    Remove(id);
    bool was_ghost = ghost_set_.erase(id) > 0;
    Node& n = nodes_[id];
    n.id = id;
    n.bytes = bytes;
    n.freq = 0;
    Push(&n, was_ghost ? kMain : kSmall);
  }

  void Access(uint64_t id) override {
    auto it = nodes_.find(id);
    if (it != nodes_.end()) it->second.freq = static_cast<uint8_t>(std::min(it->second.freq + 1, 3));
  }

  void Remove(uint64_t id) override {
    auto it = nodes_.find(id);
    if (it == nodes_.end()) return;
    Pull(&it->second);
    nodes_.erase(it);
  }

  std::optional<uint64_t> Evict(const std::function<bool(uint64_t)>& can_evict) override {
    // Pinned entries passed over in a row, per queue: once a whole queue has
    // been passed over, the victim must come from the other one.
    size_t small_pinned = 0, main_pinned = 0;
    for (size_t n = 0; n < kScanBound && !nodes_.empty(); ++n) {
      bool small_done = small_.empty() || small_pinned >= small_.size();
      bool main_done = main_.empty() || main_pinned >= main_.size();
      if (small_done && main_done) break;
      uint64_t total = small_bytes_ + main_bytes_;
      bool from_small = !small_done && (small_bytes_ * 10 > total || main_done);
      if (from_small) {
        Node* e = small_.back();
        if (e->freq > 0) {
          // Touched again while probationary: promote to the main FIFO.
          Move(e, kMain, 0);
          continue;
        }
        if (!can_evict(e->id)) {
          Move(e, kSmall, e->freq);
          ++small_pinned;
          continue;
        }
        uint64_t id = e->id;
        Remove(id);
        RememberGhost(id);
        return id;
      }
      Node* e = main_.back();
      if (e->freq > 0) {
        Move(e, kMain, e->freq - 1);
        continue;
      }
      if (!can_evict(e->id)) {
        Move(e, kMain, 0);
        ++main_pinned;
        continue;
      }
      uint64_t id = e->id;
      Remove(id);
      return id;
    }
    return std::nullopt;
  }

  size_t size() const override { return nodes_.size(); }

 private:
  enum Which : uint8_t { kSmall, kMain };

  void Push(Node* n, Which q) {
    n->queue = q;
    (q == kSmall ? small_ : main_).PushFront(n);
    (q == kSmall ? small_bytes_ : main_bytes_) += n->bytes;
  }
  void Pull(Node* n) {
    (n->queue == kSmall ? small_ : main_).Unlink(n);
    (n->queue == kSmall ? small_bytes_ : main_bytes_) -= n->bytes;
  }
  // Moves n to the front of queue q with frequency freq.
  void Move(Node* n, Which q, int freq) {
    Pull(n);
    n->freq = static_cast<uint8_t>(freq);
    Push(n, q);
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

  NodeMap nodes_;
  Queue small_, main_;  // front: newest; evict from the back
  uint64_t small_bytes_ = 0, main_bytes_ = 0;
  std::list<uint64_t> ghost_;
  std::unordered_set<uint64_t> ghost_set_;
};

class SievePolicy final : public EvictionPolicy {
 public:
  const char* name() const override { return "sieve"; }
  void Insert(uint64_t id, uint64_t bytes) override {
    Remove(id);
    Node& n = nodes_[id];
    n.id = id;
    n.bytes = bytes;
    n.freq = 0;
    order_.PushFront(&n);
  }
  void Access(uint64_t id) override {
    auto it = nodes_.find(id);
    if (it != nodes_.end()) it->second.freq = 1;
  }
  void Remove(uint64_t id) override {
    auto it = nodes_.find(id);
    if (it == nodes_.end()) return;
    if (hand_ == &it->second) Retreat();
    order_.Unlink(&it->second);
    nodes_.erase(it);
  }
  std::optional<uint64_t> Evict(const std::function<bool(uint64_t)>& can_evict) override {
    for (size_t n = 0; n < kScanBound && !order_.empty(); ++n) {
      if (!hand_) hand_ = order_.back();
      Node* e = hand_;
      if (e->freq || !can_evict(e->id)) {
        e->freq = 0;
        Retreat();
        continue;
      }
      uint64_t id = e->id;
      Remove(id);
      return id;
    }
    return std::nullopt;
  }
  size_t size() const override { return nodes_.size(); }

 private:
  // Moves the hand one step towards the newest entry (past the newest: none,
  // and the next Evict starts again from the oldest).
  void Retreat() { hand_ = hand_->prev; }
  NodeMap nodes_;
  Queue order_;  // front: newest
  Node* hand_ = nullptr;
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
