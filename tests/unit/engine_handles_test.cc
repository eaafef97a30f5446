// Engine: how several handles on one version, abandoned opens and hopeless
// commits behave (regressions from a review of the commit path).
#include <fcntl.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "adapters/local_store.h"
#include "core/engine.h"
#include "tests/unit/engine_driver.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

constexpr uint64_t kMiB = 1 << 20;

class EngineHandlesTest : public ::testing::Test {
 protected:
  void Open(uint64_t capacity) {
    ASSERT_TRUE(dir_.ok());
    Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(dir_.Sub("store"), LocalStoreOptions{});
    ASSERT_TRUE(s.ok()) << s.status().message();
    std::vector<std::unique_ptr<Store>> stores;
    stores.push_back(std::move(*s));
    EngineOptions o;
    o.space.capacity_bytes = capacity;
    o.background_eviction = false;
    o.buffer_count = 4;
    Result<std::unique_ptr<Engine>> e = Engine::Start(o, std::move(stores));
    ASSERT_TRUE(e.ok()) << e.status().message();
    engine_ = std::move(*e);
  }

  // One Write of the whole data and a Flush, both as lock owner 1.
  Status Put(const std::string& name, const std::vector<uint8_t>& data) {
    return testing::PutFile(*engine_, kRootIno, name, data, {.piece = testing::kOneWrite, .owner = 1}).status();
  }

  // The committed bytes of name, read through a fresh handle (empty when it
  // cannot be read).
  std::vector<uint8_t> Get(const std::string& name) {
    Result<std::vector<uint8_t>> r = testing::GetFile(*engine_, kRootIno, name, 1 << 20);
    return r.ok() ? std::move(*r) : std::vector<uint8_t>();
  }

  testing::TempDir dir_;
  std::unique_ptr<Engine> engine_;
};

// Two handles writing one version: the first flush must not publish half of
// it, the last one must, before its close returns.
TEST_F(EngineHandlesTest, SharedVersionIsCommittedByTheLastFlush) {
  Open(64 * kMiB);
  Result<OpenResult> a = engine_->Create(kRootIno, "k", 0644, O_WRONLY | O_CREAT | O_TRUNC, 0, 0);
  ASSERT_TRUE(a.ok());
  Result<OpenResult> b = engine_->Open(a->attr.ino, O_WRONLY);  // joins the same version
  ASSERT_TRUE(b.ok());
  std::vector<uint8_t> first = testing::Pattern(1, 4096), second = testing::Pattern(2, 4096);
  ASSERT_TRUE(engine_->Write(a->handle, 0, first.data(), first.size(), 1).ok());
  ASSERT_TRUE(engine_->Write(b->handle, 4096, second.data(), second.size(), 1).ok());
  ASSERT_TRUE(engine_->Flush(a->handle, 1).ok());
  EXPECT_EQ(engine_->Lookup(kRootIno, "k").err(), ENOENT) << "published at the first of two flushes";
  ASSERT_TRUE(engine_->Flush(b->handle, 1).ok());
  std::vector<uint8_t> want = first;
  want.insert(want.end(), second.begin(), second.end());
  EXPECT_EQ(Get("k"), want) << "not committed by the last flush";
  engine_->Release(a->handle);
  engine_->Release(b->handle);
  EXPECT_EQ(Get("k"), want);
}

// An open whose reply never reached the caller commits nothing: the key
// keeps its bytes, and a create leaves no key.
TEST_F(EngineHandlesTest, AbandonedOpenCommitsNothing) {
  Open(64 * kMiB);
  std::vector<uint8_t> data = testing::Pattern(3, 10000);
  ASSERT_TRUE(Put("k", data).ok());
  Result<Attr> a = engine_->Lookup(kRootIno, "k");
  ASSERT_TRUE(a.ok());
  Result<OpenResult> r = engine_->Open(a->ino, O_WRONLY | O_TRUNC);
  ASSERT_TRUE(r.ok());
  engine_->Abandon(r->handle);
  EXPECT_EQ(Get("k"), data) << "an abandoned O_TRUNC open truncated the key";
  Result<OpenResult> c = engine_->Create(kRootIno, "new", 0644, O_WRONLY | O_CREAT | O_TRUNC, 0, 0);
  ASSERT_TRUE(c.ok());
  engine_->Abandon(c->handle);
  EXPECT_EQ(engine_->Lookup(kRootIno, "new").err(), ENOENT) << "an abandoned create published a key";
}

// A commit that cannot fit even after evicting everything evictable fails
// at once, without evicting anything.
TEST_F(EngineHandlesTest, HopelessCommitEvictsNothing) {
  Open(16 * kMiB);
  ASSERT_TRUE(Put("held", testing::Pattern(4, 7 * kMiB)).ok());
  Result<Attr> held = engine_->Lookup(kRootIno, "held");
  ASSERT_TRUE(held.ok());
  Result<OpenResult> lease = engine_->Open(held->ino, O_RDONLY);  // pins 7 MiB
  ASSERT_TRUE(lease.ok());
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(Put("small" + std::to_string(i), testing::Pattern(10 + i, kMiB - 8192)).ok());
  uint64_t objects = engine_->Stats().objects;
  ASSERT_EQ(objects, 7u);
  EXPECT_EQ(Put("big", testing::Pattern(5, 10 * kMiB)).err(), ENOSPC);
  EXPECT_EQ(engine_->Stats().objects, objects) << "objects were evicted for a commit that could not fit anyway";
  EXPECT_EQ(engine_->Stats().evictions.total(), 0u);
  engine_->Release(lease->handle);
  engine_->Forget(held->ino, 1);
}

}  // namespace
}  // namespace kvfs
