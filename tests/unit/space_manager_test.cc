// Unit tests of SpaceManager (core/space_manager.h) with a fake host that
// owns the objects: reservations against capacity and the free-space floor,
// synchronous eviction of the policy's victims, ENOSPC without pointless
// evictions when pinned bytes alone leave no room, the watermarks of the
// background pass, the evictor thread, and a store another host evicts from.
#include "core/space_manager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "adapters/local_store.h"
#include "adapters/store_wrapper.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

constexpr uint64_t kMiB = 1 << 20;

// A store whose filesystem has the size and free space a test sets.
class FixedSpaceStore final : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  Result<StoreSpace> Space() const override {
    space_calls++;
    return StoreSpace{total.load(), free.load()};
  }
  // Removed objects it frees in the background: WaitForRemovals frees what
  // is asked (and records what it was asked to leave).
  uint64_t PendingRemovalBytes() const override { return pending.load(); }
  void WaitForRemovals(uint64_t leave_at_most, std::chrono::milliseconds) override {
    settles++;
    left_at_most = leave_at_most;
    uint64_t now = pending.load();
    if (now > leave_at_most) {
      free += now - leave_at_most;
      pending = leave_at_most;
    }
  }
  mutable std::atomic<uint64_t> space_calls{0};
  std::atomic<uint64_t> total{1000 * kMiB};
  std::atomic<uint64_t> free{1000 * kMiB};
  std::atomic<uint64_t> pending{0};
  std::atomic<int> settles{0};
  std::atomic<uint64_t> left_at_most{0};
};

// Owns the objects of store 0: each has an id and a footprint; evicting one
// frees its bytes in the account and on the fake filesystem.
class FakeHost final : public SpaceHost {
 public:
  bool MayEvict(uint32_t) const override { return may_evict.load(); }
  bool EvictOne(uint32_t si, EvictionCause cause) override {
    std::optional<uint64_t> id = manager->PickVictim(si, [&](uint64_t i) { return pinned.count(i) == 0; });
    if (!id) return false;
    uint64_t bytes = objects.at(*id);
    objects.erase(*id);
    account->used_bytes -= bytes;
    store->free += bytes;
    manager->CountEviction(si, cause, bytes);
    std::lock_guard<std::mutex> g(mu);
    evicted.push_back(*id);
    causes.push_back(cause);
    return true;
  }
  void AskForRoom(uint32_t, int64_t delta) override { asked += delta; }
  bool WaitForRoom(uint32_t) override {
    ++waits;
    if (on_wait) on_wait();
    return true;
  }
  uint64_t RoomAskedOfUs(uint32_t) const override { return 0; }

  // Adds a committed object of `bytes` to the store and the policy.
  void Add(uint64_t id, uint64_t bytes) {
    objects[id] = bytes;
    account->used_bytes += bytes;
    store->free -= bytes;
    manager->Track(0, id, bytes);
  }

  SpaceManager* manager = nullptr;
  SpaceAccount* account = nullptr;
  FixedSpaceStore* store = nullptr;
  std::atomic<bool> may_evict{true};
  std::map<uint64_t, uint64_t> objects;
  std::set<uint64_t> pinned;
  std::mutex mu;
  std::vector<uint64_t> evicted;        // guarded by mu
  std::vector<EvictionCause> causes;    // guarded by mu
  int64_t asked = 0;
  int waits = 0;
  std::function<void()> on_wait;
};

class SpaceManagerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }

  Status Make(SpaceManager::Options options) {
    manager_.reset();
    store_.reset();  // one LocalStore per directory at a time
    Result<std::unique_ptr<LocalStore>> local = LocalStore::Open(dir_.Sub("store"), LocalStoreOptions{});
    if (!local.ok()) return local.status();
    store_ = std::make_unique<FixedSpaceStore>(std::move(*local));
    if (options.eviction_policy.empty()) options.eviction_policy = "lru";
    Result<std::unique_ptr<SpaceManager>> m = SpaceManager::Create(options, {store_.get()}, {account_}, &host_);
    if (!m.ok()) return m.status();
    manager_ = std::move(*m);
    host_.manager = manager_.get();
    host_.account = account_.get();
    host_.store = store_.get();
    return Status::Ok();
  }
  static SpaceManager::Options WithCapacity(uint64_t bytes) {
    SpaceManager::Options o;
    o.capacity_bytes = bytes;
    o.eviction_policy = "lru";
    return o;
  }

  testing::TempDir dir_;
  std::shared_ptr<SpaceAccount> account_ = std::make_shared<SpaceAccount>();
  std::unique_ptr<FixedSpaceStore> store_;
  FakeHost host_;
  std::unique_ptr<SpaceManager> manager_;  // destroyed first: stops the evictor
};

TEST_F(SpaceManagerTest, ReservesWithinCapacityAndReleases) {
  ASSERT_TRUE(Make(WithCapacity(10 * kMiB)).ok());
  EXPECT_TRUE(manager_->Reserve(0, 4 * kMiB).ok());
  EXPECT_TRUE(manager_->Reserve(0, 4 * kMiB).ok());
  EXPECT_EQ(manager_->Counters(0).reserved_bytes, 8 * kMiB);
  Status s = manager_->Reserve(0, 4 * kMiB);
  EXPECT_EQ(s.err(), ENOSPC) << "reserved bytes count against the capacity";
  EXPECT_EQ(manager_->Counters(0).enospc, 1u);
  manager_->Release(0, 4 * kMiB);
  EXPECT_TRUE(manager_->Reserve(0, 4 * kMiB).ok());
  EXPECT_TRUE(host_.evicted.empty());
}

TEST_F(SpaceManagerTest, EvictsThePolicysVictimsToMakeRoom) {
  ASSERT_TRUE(Make(WithCapacity(10 * kMiB)).ok());
  for (uint64_t id = 1; id <= 5; ++id) host_.Add(id, 2 * kMiB);
  manager_->Access(0, 1);  // 1 is the most recently used now: 2 and 3 go first
  ASSERT_TRUE(manager_->Reserve(0, 3 * kMiB).ok());
  EXPECT_EQ(host_.evicted, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(host_.causes, (std::vector<EvictionCause>{EvictionCause::kCapacity, EvictionCause::kCapacity}));
  SpaceManager::StoreCounters c = manager_->Counters(0);
  EXPECT_EQ(c.evictions.capacity, 2u);
  EXPECT_EQ(c.evictions.bytes, 4 * kMiB);
  EXPECT_EQ(c.evictions.total(), 2u);
  // Untracked objects are never victims.
  manager_->Untrack(0, 1);
  manager_->Untrack(0, 4);
  manager_->Untrack(0, 5);
  EXPECT_EQ(manager_->PickVictim(0, [](uint64_t) { return true; }), std::nullopt);
}

TEST_F(SpaceManagerTest, RemovalsStillBeingFreedCountAgainstTheCapacity) {
  ASSERT_TRUE(Make(WithCapacity(100 * kMiB)).ok());
  host_.Add(1, 60 * kMiB);
  store_->pending = 30 * kMiB;  // removed, still on the store's filesystem
  ASSERT_TRUE(manager_->Reserve(0, 5 * kMiB).ok());
  EXPECT_EQ(store_->settles.load(), 0) << "60 + 5 + 30 MiB pending fit in 100: no wait";
  EXPECT_EQ(store_->pending.load(), 30 * kMiB);
  ASSERT_TRUE(manager_->Reserve(0, 10 * kMiB).ok());
  EXPECT_EQ(store_->settles.load(), 1) << "60 + 15 + 30 MiB pending exceed 100: waits for the removals";
  EXPECT_EQ(store_->left_at_most.load(), 25 * kMiB) << "only until what is pending fits: 100 - 60 - 15";
  EXPECT_EQ(store_->pending.load(), 25 * kMiB);
  EXPECT_TRUE(host_.evicted.empty()) << "the logical account had room: nothing evicted";
  store_->pending = 0;
  ASSERT_TRUE(manager_->Reserve(0, 20 * kMiB).ok());
  EXPECT_EQ(store_->settles.load(), 1) << "nothing pending: no wait";
}

TEST_F(SpaceManagerTest, PinnedBytesAloneMeanEnospcWithNothingEvicted) {
  ASSERT_TRUE(Make(WithCapacity(10 * kMiB)).ok());
  for (uint64_t id = 1; id <= 5; ++id) host_.Add(id, 2 * kMiB);
  account_->leased_bytes = 9 * kMiB;
  Status s = manager_->Reserve(0, 2 * kMiB);
  EXPECT_EQ(s.err(), ENOSPC);
  EXPECT_TRUE(host_.evicted.empty()) << "evicting cannot make room past what is leased";
  // Everything pinned by the host: eviction is tried and finds nothing.
  account_->leased_bytes = 0;
  host_.pinned = {1, 2, 3, 4, 5};
  EXPECT_EQ(manager_->Reserve(0, 2 * kMiB).err(), ENOSPC);
  EXPECT_EQ(manager_->Counters(0).enospc, 2u);
}

TEST_F(SpaceManagerTest, FreeSpaceFloorEvictsOrRefuses) {
  SpaceManager::Options o = WithCapacity(1000 * kMiB);
  o.store_limits = {StoreLimits{1000 * kMiB, 90 * kMiB, 0.0}};
  ASSERT_TRUE(Make(o).ok());
  EXPECT_EQ(manager_->FloorBytes(0), 90 * kMiB);
  store_->free = 100 * kMiB;
  for (uint64_t id = 1; id <= 4; ++id) host_.Add(id, 2 * kMiB);  // free: 92 MiB
  ASSERT_TRUE(manager_->Reserve(0, 3 * kMiB).ok());
  EXPECT_EQ(host_.causes, (std::vector<EvictionCause>{EvictionCause::kFloor}));
  EXPECT_EQ(manager_->Counters(0).evictions.floor, 1u);
  manager_->Release(0, 3 * kMiB);
  // More than evicting everything could free: refused at once.
  Status s = manager_->Reserve(0, 50 * kMiB);
  EXPECT_EQ(s.err(), ENOSPC);
  EXPECT_NE(s.message().find("floor"), std::string::npos) << s.message();
  EXPECT_EQ(host_.evicted.size(), 1u);
  // Filesystem size x fraction, when larger.
  o.store_limits = {StoreLimits{1000 * kMiB, 1 * kMiB, 0.5}};
  manager_.reset();
  ASSERT_TRUE(Make(o).ok());
  EXPECT_EQ(manager_->FloorBytes(0), 500 * kMiB);
}

// Far above the floor a reservation reuses a recent statvfs; within
// SpaceManager's margin of the floor every reservation asks the filesystem.
TEST_F(SpaceManagerTest, FreeSpaceIsAskedOnlyNearTheFloor) {
  constexpr uint64_t kGiB = 1024 * kMiB;
  SpaceManager::Options o = WithCapacity(100 * kGiB);
  o.store_limits = {StoreLimits{100 * kGiB, 90 * kMiB, 0.0}};
  ASSERT_TRUE(Make(o).ok());
  store_->total = 200 * kGiB;
  store_->free = 100 * kGiB;
  store_->space_calls = 0;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(manager_->Reserve(0, kMiB).ok());
    manager_->Release(0, kMiB);
  }
  EXPECT_GE(store_->space_calls.load(), 1u);
  EXPECT_LT(store_->space_calls.load(), 100u) << "every reservation asked the filesystem";

  // A filesystem within the margin of the floor (a new manager: no sample).
  manager_.reset();
  ASSERT_TRUE(Make(o).ok());
  store_->free = 90 * kMiB + 500 * kMiB;
  store_->space_calls = 0;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(manager_->Reserve(0, kMiB).ok());
    manager_->Release(0, kMiB);
  }
  EXPECT_EQ(store_->space_calls.load(), 10u);
  store_->free = 90 * kMiB + kMiB / 2;
  EXPECT_EQ(manager_->Reserve(0, kMiB).err(), ENOSPC) << "a fresh statvfs sees the floor";
}

TEST_F(SpaceManagerTest, EvictionPassKeepsUsageBetweenTheWatermarks) {
  SpaceManager::Options o = WithCapacity(100 * kMiB);
  o.high_watermark = 0.9;
  o.low_watermark = 0.8;
  ASSERT_TRUE(Make(o).ok());
  for (uint64_t id = 1; id <= 45; ++id) host_.Add(id, 2 * kMiB);  // 90 MiB: at, not above, high
  EXPECT_EQ(manager_->EvictionPass(), 0u);
  host_.Add(46, 2 * kMiB);  // 92 MiB
  EXPECT_EQ(manager_->EvictionPass(), 6u) << "down to 80 MiB";
  EXPECT_EQ(account_->used_bytes.load(), 80 * kMiB);
  EXPECT_EQ(manager_->Counters(0).evictions.watermark, 6u);
  // The pass is one batch of 6 objects: in the bucket (4, 8].
  HistogramSnapshot batches = manager_->EvictionBatches();
  EXPECT_EQ(batches.count, 1u);
  EXPECT_EQ(batches.sum, 6u);
  ASSERT_EQ(batches.bounds, Histogram::BatchBounds());
  EXPECT_EQ(batches.counts[3], 1u);
  EXPECT_EQ(batches.bounds[3], 8u);
  host_.may_evict = false;
  host_.Add(47, 20 * kMiB);
  EXPECT_EQ(manager_->EvictionPass(), 0u) << "a store another host evicts from is left alone";
  EXPECT_EQ(manager_->EvictionBatches().count, 1u) << "a pass that evicted nothing is no batch";
}

TEST_F(SpaceManagerTest, EvictorThreadRunsPassesUntilDestroyed) {
  SpaceManager::Options o = WithCapacity(100 * kMiB);
  o.evictor_period = std::chrono::milliseconds(5);
  ASSERT_TRUE(Make(o).ok());
  for (uint64_t id = 1; id <= 48; ++id) host_.Add(id, 2 * kMiB);  // 96 MiB > 95
  manager_->StartEvictor();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (manager_->Counters(0).evictions.watermark == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  manager_.reset();  // joins the evictor thread: what it did is now final
  std::lock_guard<std::mutex> g(host_.mu);
  ASSERT_FALSE(host_.evicted.empty()) << "the evictor thread never evicted";
  EXPECT_LE(account_->used_bytes.load(), 90 * kMiB);
}

TEST_F(SpaceManagerTest, AnotherHostsStoreAsksForRoomThenGivesUp) {
  ASSERT_TRUE(Make(WithCapacity(10 * kMiB)).ok());
  for (uint64_t id = 1; id <= 5; ++id) host_.Add(id, 2 * kMiB);
  host_.may_evict = false;
  Status s = manager_->Reserve(0, 2 * kMiB);
  EXPECT_EQ(s.err(), ENOSPC);
  EXPECT_EQ(host_.waits, 6);
  EXPECT_EQ(host_.asked, 0) << "the request for room is withdrawn";
  EXPECT_TRUE(host_.evicted.empty());
  // The other host makes room while we wait: the reservation goes through.
  host_.waits = 0;
  host_.on_wait = [&] {
    if (host_.waits == 2) account_->used_bytes -= 4 * kMiB;
    EXPECT_EQ(host_.asked, static_cast<int64_t>(2 * kMiB)) << "asked for while waiting";
  };
  EXPECT_TRUE(manager_->Reserve(0, 2 * kMiB).ok());
  EXPECT_EQ(host_.waits, 2);
  EXPECT_EQ(host_.asked, 0);
  // Larger than the capacity leaves beside what is pinned: no point asking.
  manager_->Release(0, 2 * kMiB);
  host_.Add(6, 4 * kMiB);  // full again
  host_.waits = 0;
  account_->leased_bytes = 9 * kMiB;
  EXPECT_EQ(manager_->Reserve(0, 2 * kMiB).err(), ENOSPC);
  EXPECT_EQ(host_.waits, 0);
}

TEST_F(SpaceManagerTest, RefusesBadOptions) {
  SpaceManager::Options o = WithCapacity(kMiB);
  o.eviction_policy = "fifo-ish";
  EXPECT_EQ(Make(o).err(), EINVAL);
  o.eviction_policy = "s3fifo";
  o.low_watermark = 0.99;
  o.high_watermark = 0.5;
  EXPECT_EQ(Make(o).err(), EINVAL);
  o.low_watermark = 0.5;
  o.high_watermark = 1.5;
  EXPECT_EQ(Make(o).err(), EINVAL);
}

TEST_F(SpaceManagerTest, CapacitySplitsEvenlyUnlessGivenPerStore) {
  Result<std::unique_ptr<LocalStore>> a = LocalStore::Open(dir_.Sub("a"), LocalStoreOptions{});
  Result<std::unique_ptr<LocalStore>> b = LocalStore::Open(dir_.Sub("b"), LocalStoreOptions{});
  ASSERT_TRUE(a.ok() && b.ok());
  auto acc = [] { return std::make_shared<SpaceAccount>(); };
  SpaceManager::Options o = WithCapacity(10 * kMiB);
  Result<std::unique_ptr<SpaceManager>> m = SpaceManager::Create(o, {a->get(), b->get()}, {acc(), acc()}, &host_);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->Counters(0).limits.capacity_bytes, 5 * kMiB);
  EXPECT_EQ((*m)->Counters(1).limits.capacity_bytes, 5 * kMiB);
  o.store_limits = {StoreLimits{3 * kMiB}, StoreLimits{4 * kMiB}};
  m = SpaceManager::Create(o, {a->get(), b->get()}, {acc(), acc()}, &host_);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->capacity_bytes(), 7 * kMiB);
}

}  // namespace
}  // namespace kvfs
