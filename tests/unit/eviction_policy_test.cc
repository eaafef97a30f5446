// EvictionPolicy (core/eviction_policy.h): the behaviour every policy shares
// (insert/evict order, Remove of unknown ids, pinned ids, size()) and the
// property that sets S3-FIFO apart from LRU: a long scan of one-hit objects
// does not flush S3-FIFO's hot set, while it flushes LRU's.

#include "core/eviction_policy.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace kvfs {
namespace {

constexpr uint64_t kObjectBytes = 1 << 20;

std::unique_ptr<EvictionPolicy> Make(const std::string& name) {
  Result<std::unique_ptr<EvictionPolicy>> p = MakeEvictionPolicy(name);
  EXPECT_TRUE(p.ok()) << name << ": " << p.status().ToString();
  return p.ok() ? std::move(*p) : nullptr;
}

bool Any(uint64_t) { return true; }

// Evicts until the policy gives up; returns the ids in eviction order.
std::vector<uint64_t> DrainAll(EvictionPolicy& p) {
  std::vector<uint64_t> order;
  while (std::optional<uint64_t> id = p.Evict(Any)) order.push_back(*id);
  return order;
}

TEST(EvictionPolicyFactory, KnowsTheThreeNamesAndRejectsOthers) {
  EXPECT_EQ(EvictionPolicyNames(), (std::vector<std::string>{"lru", "s3fifo", "sieve"}));
  for (const std::string& name : EvictionPolicyNames()) {
    std::unique_ptr<EvictionPolicy> p = Make(name);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(std::string(p->name()), name);
    EXPECT_EQ(p->size(), 0u);
  }
  Result<std::unique_ptr<EvictionPolicy>> bad = MakeEvictionPolicy("arc");
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.err(), EINVAL);
  EXPECT_EQ(MakeEvictionPolicy("").err(), EINVAL);
  EXPECT_EQ(MakeEvictionPolicy("LRU").err(), EINVAL);
}

class EvictionPolicyTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    policy_ = Make(GetParam());
    ASSERT_NE(policy_, nullptr);
  }
  std::unique_ptr<EvictionPolicy> policy_;
};

TEST_P(EvictionPolicyTest, EmptyPolicyEvictsNothing) {
  EXPECT_EQ(policy_->size(), 0u);
  EXPECT_EQ(policy_->Evict(Any), std::nullopt);
}

TEST_P(EvictionPolicyTest, UntouchedObjectsLeaveInInsertionOrder) {
  for (uint64_t id = 1; id <= 8; ++id) policy_->Insert(id, kObjectBytes);
  EXPECT_EQ(policy_->size(), 8u);
  std::vector<uint64_t> order = DrainAll(*policy_);
  EXPECT_EQ(order, (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(policy_->size(), 0u);
  EXPECT_EQ(policy_->Evict(Any), std::nullopt);
}

TEST_P(EvictionPolicyTest, EvictedIdIsForgotten) {
  policy_->Insert(10, kObjectBytes);
  policy_->Insert(11, kObjectBytes);
  std::optional<uint64_t> first = policy_->Evict(Any);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(policy_->size(), 1u);
  // Touching or removing the evicted id again changes nothing.
  policy_->Access(*first);
  policy_->Remove(*first);
  EXPECT_EQ(policy_->size(), 1u);
  std::optional<uint64_t> second = policy_->Evict(Any);
  ASSERT_TRUE(second.has_value());
  EXPECT_NE(*first, *second);
  EXPECT_EQ(policy_->Evict(Any), std::nullopt);
}

TEST_P(EvictionPolicyTest, AnUntouchedObjectGoesBeforeTouchedOnes) {
  for (uint64_t id = 1; id <= 5; ++id) policy_->Insert(id, kObjectBytes);
  for (uint64_t id = 1; id <= 4; ++id) policy_->Access(id);
  EXPECT_EQ(policy_->Evict(Any), std::optional<uint64_t>(5));
  EXPECT_EQ(policy_->size(), 4u);
  // The rest still leave, each exactly once.
  std::vector<uint64_t> rest = DrainAll(*policy_);
  EXPECT_EQ(std::set<uint64_t>(rest.begin(), rest.end()), (std::set<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(rest.size(), 4u);
}

TEST_P(EvictionPolicyTest, RecentlyTouchedOldestObjectSurvivesTheNextEviction) {
  for (uint64_t id = 1; id <= 5; ++id) policy_->Insert(id, kObjectBytes);
  policy_->Access(1);
  std::optional<uint64_t> victim = policy_->Evict(Any);
  ASSERT_TRUE(victim.has_value());
  EXPECT_EQ(*victim, 2u) << "the oldest object was touched; the next oldest should go";
}

TEST_P(EvictionPolicyTest, RemoveOfUnknownIdsIsHarmless) {
  policy_->Remove(42);  // empty policy
  EXPECT_EQ(policy_->size(), 0u);
  for (uint64_t id = 1; id <= 4; ++id) policy_->Insert(id, kObjectBytes);
  policy_->Remove(999);
  policy_->Remove(0);
  policy_->Remove(UINT64_MAX);
  policy_->Access(12345);  // unknown ids are ignored by Access too
  EXPECT_EQ(policy_->size(), 4u);
  policy_->Remove(2);
  policy_->Remove(2);  // twice
  EXPECT_EQ(policy_->size(), 3u);
  std::vector<uint64_t> order = DrainAll(*policy_);
  EXPECT_EQ(order, (std::vector<uint64_t>{1, 3, 4})) << "a removed id must never come back from Evict";
}

TEST_P(EvictionPolicyTest, ReinsertingAnIdDoesNotDuplicateIt) {
  policy_->Insert(1, kObjectBytes);
  policy_->Insert(2, kObjectBytes);
  policy_->Insert(1, 2 * kObjectBytes);  // a new version of 1
  EXPECT_EQ(policy_->size(), 2u);
  std::vector<uint64_t> order = DrainAll(*policy_);
  EXPECT_EQ(std::multiset<uint64_t>(order.begin(), order.end()), (std::multiset<uint64_t>{1, 2}));
}

TEST_P(EvictionPolicyTest, RemoveOfTheNextVictimIsHarmless) {
  // SIEVE keeps a hand on an entry; removing that entry must not confuse it.
  for (uint64_t id = 1; id <= 6; ++id) policy_->Insert(id, kObjectBytes);
  policy_->Access(1);
  policy_->Access(2);
  std::optional<uint64_t> v = policy_->Evict(Any);  // moves past 1 and 2
  ASSERT_TRUE(v.has_value());
  for (uint64_t id = 1; id <= 6; ++id) {
    if (id != *v) policy_->Remove(id);
  }
  EXPECT_EQ(policy_->size(), 0u);
  EXPECT_EQ(policy_->Evict(Any), std::nullopt);
  policy_->Insert(7, kObjectBytes);
  EXPECT_EQ(policy_->Evict(Any), std::optional<uint64_t>(7));
}

TEST_P(EvictionPolicyTest, PinnedIdsAreNeverReturned) {
  constexpr uint64_t kN = 200;
  for (uint64_t id = 1; id <= kN; ++id) policy_->Insert(id, kObjectBytes);
  for (uint64_t id = 1; id <= kN; id += 3) policy_->Access(id);
  auto pinned = [](uint64_t id) { return id % 4 == 0; };
  std::unordered_set<uint64_t> seen;
  while (std::optional<uint64_t> id = policy_->Evict([&](uint64_t c) { return !pinned(c); })) {
    EXPECT_FALSE(pinned(*id)) << "pinned id " << *id << " was evicted";
    EXPECT_TRUE(seen.insert(*id).second) << "id " << *id << " evicted twice";
  }
  EXPECT_EQ(seen.size() + policy_->size(), kN) << "evicted + tracked must account for every id";
  // Once unpinned, everything left can go, each id once.
  std::vector<uint64_t> rest = DrainAll(*policy_);
  for (uint64_t id : rest) EXPECT_TRUE(seen.insert(id).second) << "id " << id << " evicted twice";
  EXPECT_EQ(seen.size(), kN);
  EXPECT_EQ(policy_->size(), 0u);
}

// Pinned ids are passed over, not in the way: while any tracked id may go,
// Evict finds one (these policies are far smaller than the scan bound).
TEST_P(EvictionPolicyTest, UnpinnedIdsStayEvictableWhileOthersArePinned) {
  constexpr uint64_t kN = 200;
  for (uint64_t id = 1; id <= kN; ++id) policy_->Insert(id, kObjectBytes);
  for (uint64_t id = 1; id <= kN; id += 3) policy_->Access(id);
  auto pinned = [](uint64_t id) { return id % 4 == 0; };
  size_t evicted = 0;
  while (policy_->Evict([&](uint64_t c) { return !pinned(c); })) ++evicted;
  EXPECT_EQ(evicted, kN - kN / 4) << "Evict gave up while unpinned ids were still tracked";
  EXPECT_EQ(policy_->size(), kN / 4) << "only the pinned ids should be left";
}

// The smallest case of the above: two objects read once (S3-FIFO promotes
// them to its main queue at the first eviction), every other object pinned
// and never read. One of the two must be chosen.
TEST_P(EvictionPolicyTest, ReadObjectsAreEvictableWhenAllUnreadOnesArePinned) {
  for (uint64_t id = 1; id <= 10; ++id) policy_->Insert(id, kObjectBytes);
  policy_->Access(1);
  policy_->Access(2);
  std::optional<uint64_t> first = policy_->Evict(Any);
  ASSERT_EQ(first, std::optional<uint64_t>(3));
  std::optional<uint64_t> next = policy_->Evict([](uint64_t c) { return c == 1 || c == 2; });
  EXPECT_TRUE(next == std::optional<uint64_t>(1) || next == std::optional<uint64_t>(2))
      << "got " << (next ? std::to_string(*next) : std::string("nullopt")) << " with ids 1 and 2 evictable";
}

TEST_P(EvictionPolicyTest, AllPinnedGivesNulloptQuickly) {
  constexpr uint64_t kN = 200000;  // far more than one Evict call may look at
  for (uint64_t id = 1; id <= kN; ++id) policy_->Insert(id, 4096 + (id % 7) * 4096);
  for (uint64_t id = 1; id <= kN; id += 2) policy_->Access(id);
  size_t asked = 0;
  auto start = std::chrono::steady_clock::now();
  for (int round = 0; round < 20; ++round) {
    std::optional<uint64_t> id = policy_->Evict([&](uint64_t) {
      ++asked;
      return false;
    });
    EXPECT_EQ(id, std::nullopt);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(secs, 2.0) << "20 Evict calls on an all-pinned policy took " << secs << " s";
  EXPECT_LT(asked, 20 * kN) << "Evict should look at a bounded number of entries";
  EXPECT_EQ(policy_->size(), kN);
  // Nothing was lost: once free, everything comes out exactly once.
  std::vector<uint64_t> all = DrainAll(*policy_);
  EXPECT_EQ(all.size(), kN);
  EXPECT_EQ(std::unordered_set<uint64_t>(all.begin(), all.end()).size(), kN);
}

TEST_P(EvictionPolicyTest, OnlyOnePinnedObjectLeftGivesNullopt) {
  policy_->Insert(1, kObjectBytes);
  EXPECT_EQ(policy_->Evict([](uint64_t) { return false; }), std::nullopt);
  EXPECT_EQ(policy_->size(), 1u);
  EXPECT_EQ(policy_->Evict(Any), std::optional<uint64_t>(1));
}

TEST_P(EvictionPolicyTest, SizeFollowsInsertRemoveEvict) {
  for (uint64_t id = 0; id < 100; ++id) policy_->Insert(id, kObjectBytes * (1 + id % 3));
  EXPECT_EQ(policy_->size(), 100u);
  for (uint64_t id = 0; id < 100; id += 2) policy_->Remove(id);
  EXPECT_EQ(policy_->size(), 50u);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(policy_->Evict(Any).has_value());
  EXPECT_EQ(policy_->size(), 40u);
  for (uint64_t id = 1000; id < 1010; ++id) policy_->Insert(id, kObjectBytes);
  EXPECT_EQ(policy_->size(), 50u);
  EXPECT_EQ(DrainAll(*policy_).size(), 50u);
  EXPECT_EQ(policy_->size(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Policies, EvictionPolicyTest, ::testing::Values("lru", "s3fifo", "sieve"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// ---------------------------------------------------------------------------
// Scan resistance, measured with a simulated cache of fixed capacity.

// A cache of `capacity` bytes that asks the policy for victims when full and
// tracks which ids are resident, in the order they were inserted.
class SimulatedCache {
 public:
  SimulatedCache(EvictionPolicy* policy, uint64_t capacity) : policy_(policy), capacity_(capacity) {}

  // Inserts id (a miss) after making room.
  void Insert(uint64_t id, uint64_t bytes) {
    while (used_ + bytes > capacity_) {
      std::optional<uint64_t> victim = policy_->Evict(Any);
      ASSERT_TRUE(victim.has_value()) << "policy found no victim in a full cache";
      auto it = resident_.find(*victim);
      ASSERT_NE(it, resident_.end()) << "policy evicted id " << *victim << " that is not resident";
      last_victim_seq_ = it->second.seq;
      Forget(it);
    }
    policy_->Insert(id, bytes);
    resident_[id] = Entry{bytes, next_seq_};
    by_seq_[next_seq_++] = id;
    used_ += bytes;
  }
  // A request: a hit touches the object, a miss inserts it. Returns hit.
  bool Request(uint64_t id, uint64_t bytes) {
    if (resident_.count(id)) {
      policy_->Access(id);
      return true;
    }
    Insert(id, bytes);
    return false;
  }
  // The object is gone (an unlink): the policy is told, as the engine does.
  void Remove(uint64_t id) {
    policy_->Remove(id);
    auto it = resident_.find(id);
    if (it != resident_.end()) Forget(it);
  }
  bool Resident(uint64_t id) const { return resident_.count(id) > 0; }
  uint64_t used() const { return used_; }
  size_t objects() const { return resident_.size(); }
  std::set<uint64_t> ResidentIds() const {
    std::set<uint64_t> ids;
    for (const auto& [id, entry] : resident_) ids.insert(id);
    return ids;
  }
  // The resident id inserted first, and the first one inserted after the
  // last victim (nullopt when there is none).
  std::optional<uint64_t> Oldest() const {
    return by_seq_.empty() ? std::nullopt : std::optional<uint64_t>(by_seq_.begin()->second);
  }
  std::optional<uint64_t> FirstAfterLastVictim() const {
    if (!last_victim_seq_) return std::nullopt;
    auto it = by_seq_.upper_bound(*last_victim_seq_);
    return it == by_seq_.end() ? std::nullopt : std::optional<uint64_t>(it->second);
  }

 private:
  struct Entry {
    uint64_t bytes = 0;
    uint64_t seq = 0;  // insertion order
  };
  void Forget(std::unordered_map<uint64_t, Entry>::iterator it) {
    used_ -= it->second.bytes;
    by_seq_.erase(it->second.seq);
    resident_.erase(it);
  }

  EvictionPolicy* policy_;
  uint64_t capacity_;
  uint64_t used_ = 0;
  uint64_t next_seq_ = 0;
  std::optional<uint64_t> last_victim_seq_;
  std::unordered_map<uint64_t, Entry> resident_;
  std::map<uint64_t, uint64_t> by_seq_;           // insertion order -> id, residents only
};

struct ScanOutcome {
  size_t hot_resident = 0;
  size_t hot_total = 0;
};

// A cache of 1000 objects is first filled with cold one-hit objects, then a
// hot set of 100 objects arrives and each is read 4 times, then a scan of
// 20,000 one-hit objects (20x the cache) goes through.
ScanOutcome RunScan(const std::string& policy_name) {
  constexpr uint64_t kCacheObjects = 1000;
  constexpr uint64_t kHot = 100;
  constexpr uint64_t kScan = 20000;
  std::unique_ptr<EvictionPolicy> policy = Make(policy_name);
  SimulatedCache cache(policy.get(), kCacheObjects * kObjectBytes);
  ScanOutcome out;
  out.hot_total = kHot;
  uint64_t next_cold = 1000000;
  for (uint64_t i = 0; i < kCacheObjects; ++i) cache.Request(next_cold++, kObjectBytes);
  for (uint64_t h = 1; h <= kHot; ++h) {
    cache.Request(h, kObjectBytes);
    for (int r = 0; r < 4; ++r) EXPECT_TRUE(cache.Request(h, kObjectBytes)) << "hot object " << h << " read " << r;
  }
  for (uint64_t h = 1; h <= kHot; ++h) EXPECT_TRUE(cache.Resident(h)) << policy_name << ": hot " << h << " before scan";
  for (uint64_t i = 0; i < kScan; ++i) {
    EXPECT_FALSE(cache.Request(next_cold++, kObjectBytes));
    EXPECT_LE(cache.used(), kCacheObjects * kObjectBytes);
  }
  for (uint64_t h = 1; h <= kHot; ++h) out.hot_resident += cache.Resident(h) ? 1 : 0;
  EXPECT_EQ(policy->size(), cache.objects()) << policy_name << ": policy and cache disagree on what is resident";
  return out;
}

TEST(EvictionPolicyScan, ScanDoesNotFlushS3FifoHotSet) {
  ScanOutcome o = RunScan("s3fifo");
  EXPECT_GE(o.hot_resident * 100, o.hot_total * 90)
      << "S3-FIFO kept only " << o.hot_resident << " of " << o.hot_total << " hot objects through a one-hit scan";
}

TEST(EvictionPolicyScan, ScanFlushesLruHotSet) {
  ScanOutcome o = RunScan("lru");
  EXPECT_LE(o.hot_resident * 100, o.hot_total * 10)
      << "LRU kept " << o.hot_resident << " of " << o.hot_total << " hot objects through a scan 20x its size";
}

// SIEVE gives no scan guarantee without re-accesses, so what this checks is
// its bookkeeping through a long scan of objects of mixed sizes, some of them
// read again and some unlinked. SIEVE never reorders its queue, so after an
// eviction its hand rests on the resident inserted right after the victim;
// that object is unlinked again and again, so a hand left on a removed entry
// would show. Throughout, size() agrees with the resident set and every
// victim is resident (never an unlinked id); at the end, evicting everything
// gives each resident id exactly once.
TEST(EvictionPolicyScan, SieveStaysConsistentThroughAScan) {
  std::unique_ptr<EvictionPolicy> policy = Make("sieve");
  ASSERT_NE(policy, nullptr);
  constexpr uint64_t kCacheObjects = 1000;
  SimulatedCache cache(policy.get(), kCacheObjects * kObjectBytes);
  size_t hand_removals = 0, other_removals = 0, rereads = 0;
  uint64_t next = 1;
  for (uint64_t i = 0; i < 20000; ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    // 1 to 3 MiB: one insert may need several victims.
    ASSERT_NO_FATAL_FAILURE(cache.Request(next++, kObjectBytes * (1 + i % 3)));
    // Read a recent object again: its visited bit makes the hand pass it.
    uint64_t recent = next - 1 - i % 40;
    if (i % 3 == 0 && cache.Resident(recent)) {
      EXPECT_TRUE(cache.Request(recent, kObjectBytes));
      ++rereads;
    }
    if (i % 7 == 0) {
      if (std::optional<uint64_t> at_hand = cache.FirstAfterLastVictim()) {
        cache.Remove(*at_hand);
        ++hand_removals;
      }
    }
    if (i % 11 == 0) {
      if (std::optional<uint64_t> oldest = cache.Oldest()) {
        cache.Remove(*oldest);
        ++other_removals;
      }
    }
    ASSERT_EQ(policy->size(), cache.objects()) << "policy and cache disagree on what is resident";
  }
  EXPECT_GT(hand_removals, 1000u);
  EXPECT_GT(other_removals, 1000u);
  EXPECT_GT(rereads, 1000u);

  std::set<uint64_t> resident = cache.ResidentIds();
  std::vector<uint64_t> drained = DrainAll(*policy);
  std::set<uint64_t> drained_set(drained.begin(), drained.end());
  EXPECT_EQ(drained_set.size(), drained.size()) << "an id was evicted twice";
  EXPECT_EQ(drained_set, resident) << "the ids left in the policy are not the resident ones";
  EXPECT_EQ(policy->size(), 0u);
  EXPECT_EQ(policy->Evict(Any), std::nullopt);
}

// A hot set that keeps being read during the scan (once per 200 scan
// objects, well inside the cache's reach) stays resident under every policy.
TEST(EvictionPolicyScan, HotSetReadDuringScanStaysResidentUnderEveryPolicy) {
  for (const std::string& name : EvictionPolicyNames()) {
    std::unique_ptr<EvictionPolicy> policy = Make(name);
    SimulatedCache cache(policy.get(), 1000 * kObjectBytes);
    constexpr uint64_t kHot = 100;
    for (uint64_t h = 1; h <= kHot; ++h) {
      cache.Request(h, kObjectBytes);
      cache.Request(h, kObjectBytes);
    }
    uint64_t next = 1000000;
    size_t hot_hits = 0, hot_reads = 0;
    for (int round = 0; round < 50; ++round) {
      for (int i = 0; i < 200; ++i) cache.Request(next++, kObjectBytes);
      for (uint64_t h = 1; h <= kHot; ++h) {
        ++hot_reads;
        hot_hits += cache.Request(h, kObjectBytes) ? 1 : 0;
      }
    }
    EXPECT_GE(hot_hits * 100, hot_reads * 90) << name << ": " << hot_hits << " hits of " << hot_reads;
  }
}

}  // namespace
}  // namespace kvfs
