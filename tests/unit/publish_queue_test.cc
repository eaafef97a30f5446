// Unit tests of PublishQueue (core/publish_queue.h): jobs that meet at the
// publish step share one flush per store; a failed flush fails its group's
// jobs but leaves them linked and completed; a failed link completes
// nothing; deferred stores are marked dirty instead of flushed; without
// group commit nothing is flushed by the queue.
#include "core/publish_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "adapters/local_store.h"
#include "adapters/store_wrapper.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

// Counts SyncAll calls and fails them on demand.
class CountingStore final : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  Status SyncAll() override {
    syncs++;
    return fail_sync.load() ? Status::Error(EIO, "injected flush failure") : Status::Ok();
  }
  std::atomic<int> syncs{0};
  std::atomic<bool> fail_sync{false};
};

class TestJob final : public PublishJob {
 public:
  TestJob(Store* store, uint32_t si, std::function<Status()> link = nullptr)
      : PublishJob(store, si), link_(std::move(link)) {}
  Status Place() override {
    links++;
    return link_ ? link_() : Status::Ok();
  }
  void Complete() override { completes++; }
  bool PlacedAnyway() const override { return placed_anyway; }
  bool placed_anyway = false;
  std::atomic<int> links{0};
  std::atomic<int> completes{0};

 private:
  std::function<Status()> link_;
};

class PublishQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    for (int i = 0; i < 2; ++i) {
      Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(dir_.Sub("s" + std::to_string(i)), LocalStoreOptions{});
      ASSERT_TRUE(s.ok());
      stores_.push_back(std::make_unique<CountingStore>(std::move(*s)));
    }
  }
  std::unique_ptr<PublishQueue> Make(bool group_commit, bool deferred = false) {
    return std::make_unique<PublishQueue>(
        publish_mu_, group_commit, [deferred](uint32_t) { return deferred; }, [this](uint32_t si) { dirtied_[si]++; });
  }

  testing::TempDir dir_;
  std::vector<std::unique_ptr<CountingStore>> stores_;
  Mutex publish_mu_;
  std::atomic<int> dirtied_[2] = {0, 0};
};

// Waits (bounded) until pred holds; false on timeout.
bool Eventually(const std::function<bool()>& pred) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST_F(PublishQueueTest, JobsThatMeetShareOneFlushPerStore) {
  auto q = Make(true);
  // The first job's link holds the publish lock until three more jobs (two
  // on store 0, one on store 1) are queued behind it: they form one group.
  PublishQueue* raw = q.get();
  TestJob first(stores_[0].get(), 0, [raw] {
    return Eventually([raw] { return raw->queued() == 3; }) ? Status::Ok() : Status::Error(ETIMEDOUT, "never queued");
  });
  TestJob a(stores_[0].get(), 0), b(stores_[0].get(), 0), c(stores_[1].get(), 1);
  std::thread leader([&] { EXPECT_TRUE(q->Run(&first).ok()); });
  EXPECT_TRUE(Eventually([&] { return first.links.load() == 1; }));  // no ASSERT: the leader runs
  std::vector<std::thread> others;
  for (TestJob* j : {&a, &b, &c}) others.emplace_back([&q, j] { EXPECT_TRUE(q->Run(j).ok()); });
  leader.join();
  for (std::thread& t : others) t.join();
  for (TestJob* j : {&first, &a, &b, &c}) {
    EXPECT_EQ(j->links.load(), 1);
    EXPECT_EQ(j->completes.load(), 1);
    EXPECT_TRUE(j->linked());
  }
  EXPECT_EQ(q->groups(), 2u);
  EXPECT_EQ(q->jobs(), 4u);
  EXPECT_EQ(stores_[0]->syncs.load(), 2) << "one flush for the first job, one for the group behind it";
  EXPECT_EQ(stores_[1]->syncs.load(), 1);
}

TEST_F(PublishQueueTest, FailedFlushFailsTheGroupButLeavesItLinked) {
  auto q = Make(true);
  stores_[0]->fail_sync = true;
  TestJob j(stores_[0].get(), 0);
  Status s = q->Run(&j);
  EXPECT_EQ(s.err(), EIO);
  EXPECT_TRUE(j.linked()) << "the file is in place, only its durability is in doubt";
  EXPECT_EQ(j.completes.load(), 1) << "the index follows what is on the store";
  TestJob other(stores_[1].get(), 1);
  EXPECT_TRUE(q->Run(&other).ok()) << "another store's flush is its own";
}

TEST_F(PublishQueueTest, FailedPlaceCompletesNothingAndFlushesNothing) {
  auto q = Make(true);
  TestJob j(stores_[0].get(), 0, [] { return Status::Error(ENOSPC, "no room for the rename"); });
  EXPECT_EQ(q->Run(&j).err(), ENOSPC);
  EXPECT_FALSE(j.linked());
  EXPECT_EQ(j.completes.load(), 0);
  EXPECT_EQ(stores_[0]->syncs.load(), 0);
}

// A store that flushes its own renames (dfs:) may fail after the file is
// in place: linked and completed like a failed group flush, result EIO.
TEST_F(PublishQueueTest, PlaceThatFailsAfterTheFileWentInPlaceLeavesItLinked) {
  for (bool group_commit : {true, false}) {
    SCOPED_TRACE(group_commit ? "group commit" : "no group commit");
    auto q = Make(group_commit);
    TestJob j(stores_[0].get(), 0, [] { return Status::Error(EIO, "directory flush failed"); });
    j.placed_anyway = true;
    EXPECT_EQ(q->Run(&j).err(), EIO);
    EXPECT_TRUE(j.linked());
    EXPECT_EQ(j.completes.load(), 1) << "the index follows what is on the store";
  }
}

TEST_F(PublishQueueTest, DeferredStoresAreMarkedDirtyNotFlushed) {
  auto q = Make(true, /*deferred=*/true);
  TestJob j(stores_[1].get(), 1), k(stores_[1].get(), 1);
  EXPECT_TRUE(q->Run(&j).ok());
  EXPECT_TRUE(q->Run(&k).ok());
  EXPECT_EQ(stores_[1]->syncs.load(), 0);
  EXPECT_EQ(dirtied_[1].load(), 2);
  EXPECT_EQ(dirtied_[0].load(), 0);
  EXPECT_EQ(j.completes.load(), 1);
}

TEST_F(PublishQueueTest, WithoutGroupCommitEachPlaceIsItsOwnFlush) {
  auto q = Make(false);
  TestJob j(stores_[0].get(), 0);
  EXPECT_TRUE(q->Run(&j).ok());
  EXPECT_EQ(stores_[0]->syncs.load(), 0) << "the job's own Place (Store::Publish) made it durable";
  EXPECT_EQ(j.completes.load(), 1);
  EXPECT_EQ(q->groups(), 1u);
}

}  // namespace
}  // namespace kvfs
