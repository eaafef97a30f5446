// Engine: read-ahead for sequential readers that bypass the page cache.
// Sequential, backward and skipping reads all return the object's bytes,
// and a handle released while its read-ahead runs leaves nothing behind.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "adapters/local_store.h"
#include "core/engine.h"
#include "core/read_ahead.h"
#include "tests/unit/engine_driver.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

constexpr size_t kMiB = 1 << 20;

TEST(ReadAheadWorkersTest, RefusesWorkWhileEveryThreadIsBusy) {
  ReadAhead ra(1);
  auto gate = std::make_shared<Prefetch>(0, 1);
  auto ran = std::make_shared<Prefetch>(0, 1);
  ASSERT_TRUE(ra.Submit([gate, ran] {
    gate->Wait();
    ran->Finish(nullptr);
  }));
  EXPECT_FALSE(ra.Submit([] {})) << "a second task queued behind a busy thread";
  gate->Finish(nullptr);
  ran->Wait();
}

class ReadAheadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(dir_.Sub("store"), LocalStoreOptions{});
    ASSERT_TRUE(s.ok());
    std::vector<std::unique_ptr<Store>> stores;
    stores.push_back(std::move(*s));
    EngineOptions o;
    o.space.capacity_bytes = 1ULL << 30;
    o.buffer_count = 16;
    o.page_cache = false;  // every handle reads through the engine
    Result<std::unique_ptr<Engine>> e = Engine::Start(o, std::move(stores));
    ASSERT_TRUE(e.ok());
    engine_ = std::move(*e);
    data_ = testing::Pattern(9, 20 * kMiB + 333);
    Result<uint64_t> ino = testing::PutFile(*engine_, kRootIno, "obj", data_, {.piece = testing::kOneWrite});
    ASSERT_TRUE(ino.ok()) << testing::ErrText(ino.status());
    ino_ = *ino;
  }

  // Reads [off, off+len) through h and compares it with the object's bytes.
  void ExpectRange(FileHandle* h, uint64_t off, size_t len) {
    Result<std::vector<uint8_t>> read = testing::ReadOnce(*engine_, h, off, len);
    ASSERT_TRUE(read.ok()) << testing::ErrText(read.status());
    const std::vector<uint8_t>& got = *read;
    size_t want = off >= data_.size() ? 0 : std::min<size_t>(len, data_.size() - off);
    ASSERT_EQ(got.size(), want) << "at " << off;
    EXPECT_TRUE(std::equal(got.begin(), got.end(), data_.begin() + off)) << "wrong bytes at " << off;
  }

  testing::TempDir dir_;
  std::unique_ptr<Engine> engine_;
  std::vector<uint8_t> data_;
  uint64_t ino_ = 0;
};

TEST_F(ReadAheadTest, SequentialBackwardAndSkippingReadsReturnTheObjectsBytes) {
  Result<OpenResult> r = engine_->Open(ino_, O_RDONLY | O_DIRECT);
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(r->page_cache);
  for (uint64_t off = 0; off < data_.size() + kMiB; off += kMiB) ExpectRange(r->handle, off, kMiB);
  ExpectRange(r->handle, 5 * kMiB + 7, 300000);  // backward
  ExpectRange(r->handle, 5 * kMiB + 7 + 300000, 128 << 10);
  ExpectRange(r->handle, 17 * kMiB, kMiB);  // forward skip
  ExpectRange(r->handle, 18 * kMiB, 2 * kMiB);
  engine_->Release(r->handle);
}

TEST_F(ReadAheadTest, HandlesReleasedWhileTheirReadAheadRunsAndAnEngineClosedMeanwhileAreSafe) {
  for (int i = 0; i < 20; ++i) {
    Result<OpenResult> r = engine_->Open(ino_, O_RDONLY);
    ASSERT_TRUE(r.ok());
    ExpectRange(r->handle, 0, kMiB);  // starts a read-ahead of the next part
    engine_->Release(r->handle);
  }
  // Unlinking frees the version only when the read-aheads' leases end; the
  // engine's destruction waits for them (it must neither hang nor crash).
  ASSERT_TRUE(engine_->Unlink(kRootIno, "obj").ok());
  Result<OpenResult> c = engine_->Create(kRootIno, "after", 0644, O_CREAT | O_WRONLY | O_TRUNC, 0, 0);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(engine_->Write(c->handle, 0, data_.data(), 4 * kMiB).ok());
  ASSERT_TRUE(engine_->Flush(c->handle).ok());
  Result<OpenResult> r = engine_->Open(c->attr.ino, O_RDONLY);
  engine_->Release(c->handle);
  ASSERT_TRUE(r.ok());
  ExpectRange(r->handle, 0, kMiB);  // a read-ahead in flight at destruction
  engine_->Release(r->handle);
  engine_.reset();
}

// A page-cache handle's reads reach the engine only for pages the kernel
// does not hold (its own read-ahead requests, in order): they are read
// ahead too, and still give the handle's own version after the key is
// replaced under it.
TEST(PageCacheReadAheadTest, SequentialMissesOfAPageCacheReaderGiveItsVersionsBytes) {
  testing::EngineDriver driver;
  ASSERT_OK(driver.Open());
  Engine& e = driver.engine();
  const std::vector<uint8_t> v1 = testing::Pattern(31, 12 * kMiB + 5), v2 = testing::Pattern(32, 3 * kMiB);
  Result<uint64_t> ino = driver.Put("obj", v1);
  ASSERT_TRUE(ino.ok()) << testing::ErrText(ino.status());
  Result<OpenResult> r = e.Open(*ino, O_RDONLY);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->page_cache);
  std::vector<uint8_t> got;
  for (uint64_t off = 0; off < v1.size(); off += 256 << 10) {
    if (off == 4 * kMiB) {
      ASSERT_TRUE(driver.Put("obj", v2).ok());  // replaced while read ahead
    }
    Result<std::vector<uint8_t>> piece = testing::ReadOnce(e, r->handle, off, 256 << 10);
    ASSERT_TRUE(piece.ok()) << testing::ErrText(piece.status());
    got.insert(got.end(), piece->begin(), piece->end());
  }
  e.Release(r->handle);
  EXPECT_TRUE(got == v1) << "a page-cache reader read bytes that are not its version's";
  Result<std::vector<uint8_t>> now = driver.Get("obj");
  ASSERT_TRUE(now.ok());
  EXPECT_TRUE(*now == v2);
}

}  // namespace
}  // namespace kvfs
