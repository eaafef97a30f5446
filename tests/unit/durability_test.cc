// Durability modes against a modelled power loss (PowerLossStore): with the
// default background durability, whatever a power loss takes away leaves
// every key at a whole committed version or absent; fsync'ed versions, and
// everything the background flush has reached, survive; with kClose, every
// commit survives from the moment close returns.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "adapters/local_store.h"
#include "core/engine.h"
#include "tests/unit/engine_driver.h"
#include "tests/unit/power_loss_store.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

using testing::PowerLossStore;
using testing::TempDir;
using Durability = EngineOptions::Durability;

class DurabilityTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  void TearDown() override { engine_.reset(); }

  // Opens an engine over one store in the scratch directory (the same one
  // every time), wrapped in a PowerLossStore.
  void OpenEngine(Durability durability, std::chrono::milliseconds interval = std::chrono::hours(1),
                  EngineOptions::CommitFlush flush = EngineOptions::CommitFlush::kFile) {
    engine_.reset();
    Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(dir_.Sub("store"), LocalStoreOptions{});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    auto wrapped = std::make_unique<PowerLossStore>(std::move(*s));
    store_ = wrapped.get();
    std::vector<std::unique_ptr<Store>> stores;
    stores.push_back(std::move(wrapped));
    EngineOptions o;
    o.buffer_count = 8;
    o.space.capacity_bytes = 1ULL << 30;
    o.durability = durability;
    o.sync_interval = interval;
    o.commit_flush = flush;
    Result<std::unique_ptr<Engine>> e = Engine::Start(o, std::move(stores));
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(*e);
  }

  // The power goes off: un-flushed changes are undone, the engine dies, and
  // a new one is opened over what the store holds.
  void PowerCycle(Durability durability) {
    store_->PowerLoss();
    engine_.reset();
    OpenEngine(durability);
  }

  // Creates name in the root, writes data in one call, optionally fsyncs,
  // closes.
  void Put(const std::string& name, const std::vector<uint8_t>& data, bool fsync = false) {
    Result<uint64_t> r =
        testing::PutFile(*engine_, kRootIno, name, data, {.piece = testing::kOneWrite, .fsync = fsync});
    ASSERT_TRUE(r.ok()) << testing::ErrText(r.status());
  }

  // The bytes of name in the root; ENOENT when absent.
  Result<std::vector<uint8_t>> Get(const std::string& name) { return testing::GetFile(*engine_, kRootIno, name); }

  TempDir dir_;
  std::unique_ptr<Engine> engine_;
  PowerLossStore* store_ = nullptr;  // owned by engine_
};

const std::vector<uint8_t> kV1 = testing::Pattern(1, (3 << 20) + 17);
const std::vector<uint8_t> kV2 = testing::Pattern(2, (1 << 20) + 5);

TEST_F(DurabilityTest, BackgroundCommitLostToPowerLossLeavesTheKeyAbsentNotTorn) {
  OpenEngine(Durability::kBackground);
  Put("k", kV1);
  // Visible to every reader at once, before any flush.
  Result<std::vector<uint8_t>> now = Get("k");
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(*now, kV1);
  EXPECT_GT(store_->unflushed(), 0u) << "the commit was flushed at close, which the background mode must not do";
  PowerCycle(Durability::kBackground);
  Result<std::vector<uint8_t>> after = Get("k");
  ASSERT_FALSE(after.ok()) << "an un-flushed commit survived a modelled power loss";
  EXPECT_EQ(after.err(), ENOENT);
}

TEST_F(DurabilityTest, FsyncMakesTheVersionDurableAndALaterReplacementRollsBackWhole) {
  OpenEngine(Durability::kBackground);
  Put("k", kV1, /*fsync=*/true);
  EXPECT_EQ(store_->unflushed(), 0u);
  Put("k", kV2);  // replaced, not flushed
  Result<std::vector<uint8_t>> now = Get("k");
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(*now, kV2);
  PowerCycle(Durability::kBackground);
  Result<std::vector<uint8_t>> after = Get("k");
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(*after, kV1) << "after a power loss the key must hold its last durable version, whole";
}

TEST_F(DurabilityTest, UnflushedRenameAndUnlinkRollBackToOneWholeState) {
  OpenEngine(Durability::kBackground);
  Put("a", kV1, true);
  Put("b", kV2, true);
  ASSERT_TRUE(engine_->Rename(kRootIno, "a", kRootIno, "c", 0).ok());
  ASSERT_TRUE(engine_->Unlink(kRootIno, "b").ok());
  EXPECT_EQ(Get("a").err(), ENOENT);
  EXPECT_EQ(Get("b").err(), ENOENT);
  PowerCycle(Durability::kBackground);
  Result<std::vector<uint8_t>> a = Get("a");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(*a, kV1);
  EXPECT_EQ(Get("c").err(), ENOENT) << "the rename was undone, so the object must not be under both names";
  Result<std::vector<uint8_t>> b = Get("b");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(*b, kV2);
}

TEST_F(DurabilityTest, BackgroundFlushMakesCommitsDurableWithinTheInterval) {
  OpenEngine(Durability::kBackground, std::chrono::milliseconds(20));
  Put("k", kV1);
  ASSERT_TRUE(engine_->Rename(kRootIno, "k", kRootIno, "k2", 0).ok());
  ASSERT_TRUE(engine_->WaitForBackgroundSync(std::chrono::seconds(30)));
  EXPECT_EQ(store_->unflushed(), 0u);
  EngineStats st = engine_->Stats();
  EXPECT_EQ(st.durability, "background");
  EXPECT_GE(st.background_syncs, 1u);
  EXPECT_EQ(st.stores_not_durable, 0u);
  PowerCycle(Durability::kBackground);
  Result<std::vector<uint8_t>> k2 = Get("k2");
  ASSERT_TRUE(k2.ok()) << k2.status().ToString();
  EXPECT_EQ(*k2, kV1);
  EXPECT_EQ(Get("k").err(), ENOENT);
}

TEST_F(DurabilityTest, CloseModeMakesEveryCommitDurableBeforeCloseReturns) {
  // Whichever way a commit is flushed (its own file, a group's syncfs, or
  // fdatasync + directory fsync), nothing is left for a power loss to take.
  for (EngineOptions::CommitFlush flush : {EngineOptions::CommitFlush::kFile, EngineOptions::CommitFlush::kGroup,
                                           EngineOptions::CommitFlush::kEach}) {
    SCOPED_TRACE(static_cast<int>(flush));
    OpenEngine(Durability::kClose, std::chrono::hours(1), flush);
    Put("k", kV1);
    EXPECT_EQ(store_->unflushed(), 0u);
    Put("k", kV2);
    EXPECT_EQ(store_->unflushed(), 0u);
    Put("small", {1, 2, 3});  // staged through the page cache
    EXPECT_EQ(store_->unflushed(), 0u);
    ASSERT_TRUE(engine_->Rename(kRootIno, "k", kRootIno, "k2", 0).ok());
    EXPECT_EQ(store_->unflushed(), 0u);
    EXPECT_EQ(engine_->Stats().durability, "close");
    PowerCycle(Durability::kClose);
    Result<std::vector<uint8_t>> k2 = Get("k2");
    ASSERT_TRUE(k2.ok()) << k2.status().ToString();
    EXPECT_EQ(*k2, kV2);
    EXPECT_EQ(Get("k").err(), ENOENT);
    Result<std::vector<uint8_t>> small = Get("small");
    ASSERT_TRUE(small.ok()) << small.status().ToString();
    EXPECT_EQ(*small, (std::vector<uint8_t>{1, 2, 3}));
    for (const char* name : {"k2", "small"}) ASSERT_TRUE(engine_->Unlink(kRootIno, name).ok());
  }
}

// A store whose file flushes fail (a drive that reports a write error when
// the rename's journal commit is flushed).
class FailingFileFlushStore : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  Status SyncPublished(StagingFile&) override { return Status::Error(EIO, "injected flush failure"); }
};

// An engine with --durability close and file flushes over `store`.
Result<std::unique_ptr<Engine>> StartCloseModeEngine(std::unique_ptr<Store> store) {
  std::vector<std::unique_ptr<Store>> stores;
  stores.push_back(std::move(store));
  EngineOptions o;
  o.buffer_count = 8;
  o.space.capacity_bytes = 1ULL << 30;
  o.durability = Durability::kClose;
  o.commit_flush = EngineOptions::CommitFlush::kFile;
  return Engine::Start(o, std::move(stores));
}

TEST(CloseModeFileFlushTest, AFailedFlushFailsTheCloseWithEio) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(dir.Sub("store"), LocalStoreOptions{});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  Result<std::unique_ptr<Engine>> e = StartCloseModeEngine(std::make_unique<FailingFileFlushStore>(std::move(*s)));
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  Result<uint64_t> r = testing::PutFile(**e, kRootIno, "k", kV2, {.piece = testing::kOneWrite});
  ASSERT_FALSE(r.ok()) << "close reported success although its version could not be flushed";
  EXPECT_EQ(r.status().err(), EIO);
  EXPECT_EQ((*e)->Stats().commit_failures, 1u);
}

// A store that renames the file into place and then fails to flush the
// directory (as a dfs: store does for every publish, and any store with
// --commit-flush each): the version is live on the store, so it is the one
// the index shows, the close says EIO, and nothing is left to retry.
class FailingAfterRenameStore : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  Status PublishUnsynced(StagingFile& file, const std::string& location) override {
    Status s = StoreWrapper::PublishUnsynced(file, location);
    if (!s.ok()) return s;
    fails++;
    return Status::Error(EIO, "injected directory flush failure");
  }
  int fails = 0;
};

TEST(CloseModeFileFlushTest, AFlushThatFailsAfterTheRenameLeavesTheNewVersionIndexed) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(dir.Sub("store"), LocalStoreOptions{});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto failing = std::make_unique<FailingAfterRenameStore>(std::move(*s));
  FailingAfterRenameStore* store = failing.get();
  Result<std::unique_ptr<Engine>> e = StartCloseModeEngine(std::move(failing));
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  for (const std::vector<uint8_t>& v : {kV1, kV2}) {  // a new key, then a replacement
    Result<uint64_t> r = testing::PutFile(**e, kRootIno, "k", v, {.piece = testing::kOneWrite});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().err(), EIO);
    Result<std::vector<uint8_t>> got = testing::GetFile(**e, kRootIno, "k");
    ASSERT_TRUE(got.ok()) << "the version on the store is not indexed: " << got.status().ToString();
    EXPECT_EQ(*got, v);
  }
  EXPECT_EQ(store->fails, 2) << "each close published once: nothing was retried";
  Result<std::vector<std::string>> staging = store->ListStaging();
  ASSERT_TRUE(staging.ok());
  for (const std::string& n : *staging) {
    EXPECT_EQ(n.find(".tmp"), std::string::npos) << "staging file left: " << n;
  }
  e->reset();
  // After a restart the store's version is the key's.
  Result<std::unique_ptr<LocalStore>> again = LocalStore::Open(dir.Sub("store"), LocalStoreOptions{});
  ASSERT_TRUE(again.ok());
  Result<std::unique_ptr<Engine>> e2 = StartCloseModeEngine(std::move(*again));
  ASSERT_TRUE(e2.ok());
  Result<std::vector<uint8_t>> got = testing::GetFile(**e2, kRootIno, "k");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, kV2);
}

TEST_F(DurabilityTest, FsyncFailsWhenTheStoreCannotFlush) {
  OpenEngine(Durability::kBackground);
  Put("k", kV1);
  Result<OpenResult> c = engine_->Create(kRootIno, "k3", 0644, O_CREAT | O_WRONLY | O_TRUNC, 0, 0);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(engine_->Write(c->handle, 0, kV2.data(), kV2.size()).ok());
  store_->PowerLoss();  // from here on, every store call fails
  Status f = engine_->Fsync(c->handle);
  EXPECT_FALSE(f.ok()) << "fsync returned success although nothing could be made durable";
  engine_->Release(c->handle);
}

}  // namespace
}  // namespace kvfs
