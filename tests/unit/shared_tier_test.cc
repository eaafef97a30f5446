// Unit tests of SharedTier (core/shared_tier.h) with a fake cluster and a
// fake index: reconciler passes reach the index for shared stores only and
// are counted; WaitForPass waits for a whole pass; the lease thread follows
// the evictor lease and carries room requests; access counts go from
// non-holders to the cluster, and from the cluster to the holder's index.
#include "core/shared_tier.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "adapters/local_store.h"
#include "adapters/store_wrapper.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

using namespace std::chrono_literals;

class FakeCluster final : public ClusterCoordinator {
 public:
  const std::string& host_id() const override { return id_; }
  bool RenewEvictorLease() override {
    renewals++;
    return holder.load();
  }
  bool HoldsEvictorLease() const override { return holder.load(); }
  std::string EvictorHolder() const override { return holder.load() ? id_ : "other"; }
  Status RequestRoom(uint64_t bytes) override {
    room_requested = bytes;
    return Status::Ok();
  }
  uint64_t RoomRequested() override { return asked_of_holder.load(); }
  Status PublishAccesses(const std::map<std::string, uint64_t>& counts) override {
    std::lock_guard<std::mutex> g(mu);
    for (const auto& [k, n] : counts) published[k] += n;
    return Status::Ok();
  }
  Result<std::map<std::string, uint64_t>> CollectAccesses() override {
    std::lock_guard<std::mutex> g(mu);
    return std::exchange(to_collect, {});
  }
  uint64_t SweepAbandoned() override { return 0; }

  std::atomic<bool> holder{false};
  std::atomic<int> renewals{0};
  std::atomic<uint64_t> room_requested{0};
  std::atomic<uint64_t> asked_of_holder{0};
  std::mutex mu;
  std::map<std::string, uint64_t> published;   // guarded by mu
  std::map<std::string, uint64_t> to_collect;  // guarded by mu

 private:
  std::string id_ = "host-a";
};

// A local store that says it is shared, with a fake cluster.
class SharedLocalStore final : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  bool Shared() const override { return true; }
  ClusterCoordinator* cluster() override { return &cluster_; }
  FakeCluster& fake() { return cluster_; }

 private:
  FakeCluster cluster_;
};

class FakeIndex final : public SharedIndex {
 public:
  bool ReconcileStore(uint32_t store, bool) override {
    std::lock_guard<std::mutex> g(mu);
    reconciled.push_back(store);
    return !fail.load();
  }
  void ApplyRemoteAccesses(uint32_t, const std::map<std::string, uint64_t>& counts) override {
    std::lock_guard<std::mutex> g(mu);
    for (const auto& [k, n] : counts) applied[k] += n;
  }
  std::atomic<bool> fail{false};
  std::mutex mu;
  std::vector<uint32_t> reconciled;        // guarded by mu
  std::map<std::string, uint64_t> applied;  // guarded by mu
};

bool Eventually(const std::function<bool()>& pred) {
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

class SharedTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    Result<std::unique_ptr<LocalStore>> a = LocalStore::Open(dir_.Sub("local"), LocalStoreOptions{});
    Result<std::unique_ptr<LocalStore>> b = LocalStore::Open(dir_.Sub("shared"), LocalStoreOptions{});
    ASSERT_TRUE(a.ok() && b.ok());
    local_ = std::move(*a);
    shared_ = std::make_unique<SharedLocalStore>(std::move(*b));
    tier_ = std::make_unique<SharedTier>(std::vector<Store*>{local_.get(), shared_.get()}, 5ms, &index_);
  }
  void TearDown() override { tier_.reset(); }

  testing::TempDir dir_;
  std::unique_ptr<Store> local_;
  std::unique_ptr<SharedLocalStore> shared_;
  FakeIndex index_;
  std::unique_ptr<SharedTier> tier_;
};

TEST_F(SharedTierTest, PassesReconcileOnlySharedStoresAndAreCounted) {
  EXPECT_TRUE(tier_->any());
  EXPECT_FALSE(tier_->shared(0));
  EXPECT_TRUE(tier_->shared(1));
  EXPECT_FALSE(tier_->WaitForPass(10ms)) << "no pass before Start";
  tier_->Start();
  EXPECT_TRUE(tier_->WaitForPass(20s));
  {
    std::lock_guard<std::mutex> g(index_.mu);
    ASSERT_FALSE(index_.reconciled.empty());
    for (uint32_t s : index_.reconciled) EXPECT_EQ(s, 1u);
  }
  EXPECT_GE(tier_->State(1).reconcile_passes, 1u);
  index_.fail = true;
  EXPECT_TRUE(tier_->WaitForPass(20s));
  EXPECT_GE(tier_->State(1).reconcile_failures, 1u);
  tier_->Stop();
  EXPECT_TRUE(tier_->WaitForPass(10ms)) << "waiters are let go once stopped";
}

TEST_F(SharedTierTest, LeaseDecidesWhoEvictsAndRoomRequestsTravel) {
  EXPECT_TRUE(tier_->MayEvict(0)) << "a store of this host alone";
  EXPECT_FALSE(tier_->MayEvict(1)) << "no lease yet";
  shared_->fake().holder = true;
  tier_->Start();
  EXPECT_TRUE(Eventually([&] { return tier_->MayEvict(1); }));
  EXPECT_EQ(tier_->State(1).evictor_holder, "host-a");
  shared_->fake().asked_of_holder = 7;
  EXPECT_TRUE(Eventually([&] { return tier_->RoomAskedOfUs(1) == 7; }));
  shared_->fake().holder = false;
  EXPECT_TRUE(Eventually([&] { return !tier_->MayEvict(1); }));
  EXPECT_TRUE(Eventually([&] { return tier_->RoomAskedOfUs(1) == 0; })) << "only the holder is asked";
  tier_->AskForRoom(1, 5 << 20);
  EXPECT_TRUE(Eventually([&] { return shared_->fake().room_requested.load() == (5u << 20); }));
  tier_->AskForRoom(1, -(5 << 20));
  EXPECT_TRUE(Eventually([&] { return shared_->fake().room_requested.load() == 0; }));
}

TEST_F(SharedTierTest, AccessCountsFlowToTheHoldersIndex) {
  tier_->NoteAccess(1, "ab/cd/x");
  tier_->NoteAccess(1, "ab/cd/x");
  tier_->NoteAccess(0, "not/shared");  // ignored: nobody else evicts there
  tier_->Start();
  EXPECT_TRUE(tier_->WaitForPass(20s));
  {
    std::lock_guard<std::mutex> g(shared_->fake().mu);
    EXPECT_EQ(shared_->fake().published, (std::map<std::string, uint64_t>{{"ab/cd/x", 2}}));
  }
  // Once this host holds the lease, the others' counts reach its index.
  shared_->fake().holder = true;
  EXPECT_TRUE(Eventually([&] { return tier_->MayEvict(1); }));
  {
    std::lock_guard<std::mutex> g(shared_->fake().mu);
    shared_->fake().to_collect = {{"ef/gh/y", 4}};
  }
  EXPECT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> g(index_.mu);
    return index_.applied.count("ef/gh/y") == 1;
  }));
  std::lock_guard<std::mutex> g(index_.mu);
  EXPECT_EQ(index_.applied["ef/gh/y"], 4u);
}

TEST(SharedTierAloneTest, NoSharedStoreMeansNoThreadsAndFreeEviction) {
  testing::TempDir dir;
  Result<std::unique_ptr<LocalStore>> a = LocalStore::Open(dir.Sub("s"), LocalStoreOptions{});
  ASSERT_TRUE(a.ok());
  FakeIndex index;
  SharedTier tier({a->get()}, 5ms, &index);
  tier.Start();
  EXPECT_FALSE(tier.any());
  EXPECT_TRUE(tier.MayEvict(0));
  EXPECT_FALSE(tier.WaitForPass(50ms));
  std::lock_guard<std::mutex> g(index.mu);
  EXPECT_TRUE(index.reconciled.empty());
}

}  // namespace
}  // namespace kvfs
