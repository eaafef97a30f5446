// Engine: read-ahead for sequential readers that bypass the page cache.
// Sequential, backward and skipping reads all return the object's bytes,
// a handle released while its read-ahead runs leaves nothing behind, and a
// reader with reads in flight is not read ahead of over what it asked for.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <string>
#include <vector>

#include "adapters/local_store.h"
#include "adapters/object_header.h"
#include "adapters/store_wrapper.h"
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

// Records the object-data ranges every read of the store covers, and can
// hold the read that starts at one data offset until released.
class RangeRecordingStore final : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  Status TransferData(IoExecutor& io, const std::shared_ptr<DataBatch>& batch) override {
    bool hold = false;
    {
      std::unique_lock<std::mutex> lk(mu);
      uint64_t batch_start = UINT64_MAX, batch_bytes = 0;
      for (const IoRequest& r : batch->requests) {
        if (r.write || r.offset < kHeaderSize || r.offset - kHeaderSize >= data_bytes) continue;
        uint64_t start = r.offset - kHeaderSize;
        ranges.emplace_back(start, std::min<uint64_t>(start + r.len, data_bytes));
        batch_start = std::min(batch_start, start);
        batch_bytes += r.len;
        hold = hold || (held_offset && start == *held_offset);
      }
      if (batch_bytes > 0) batches.emplace_back(batch_start, batch_bytes);
      if (hold) {
        reached = true;
        cv.notify_all();
        cv.wait(lk, [&] { return !held_offset; });
      }
    }
    return StoreWrapper::TransferData(io, batch);
  }
  void WaitReached() {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return reached; });
  }
  void ReleaseHeld() {
    std::lock_guard<std::mutex> g(mu);
    held_offset.reset();
    cv.notify_all();
  }
  std::mutex mu;
  std::condition_variable cv;
  uint64_t data_bytes = 0;                // set before reading: the object's size
  std::optional<uint64_t> held_offset;    // guarded by mu
  bool reached = false;                   // guarded by mu
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // guarded by mu
  std::vector<std::pair<uint64_t, uint64_t>> batches;  // (first data offset, bytes); guarded by mu
};

// An engine (every handle read through it, read-ahead of 2 MiB) over a
// RangeRecordingStore; PutAndOpen writes an object and opens it O_DIRECT.
class ReadAheadInFlightTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    EngineOptions o;
    o.space.capacity_bytes = 1ULL << 30;
    o.buffer_count = 32;
    o.page_cache = false;
    ASSERT_EQ(o.read_ahead_bytes, 2 * kMiB);
    Result<std::unique_ptr<Engine>> e = testing::StartOverWrappedLocalStore(dir_.Sub("store"), o, &store_);
    ASSERT_TRUE(e.ok());
    engine_ = std::move(*e);
  }
  void PutAndOpen(const std::vector<uint8_t>& data, FileHandle** opened) {
    Result<uint64_t> ino = testing::PutFile(*engine_, kRootIno, "obj", data, {.piece = testing::kOneWrite});
    ASSERT_TRUE(ino.ok()) << testing::ErrText(ino.status());
    Result<OpenResult> r = engine_->Open(*ino, O_RDONLY | O_DIRECT);
    ASSERT_TRUE(r.ok());
    *opened = r->handle;
    std::lock_guard<std::mutex> g(store_->mu);
    store_->data_bytes = data.size();
    store_->ranges.clear();
    store_->batches.clear();
  }
  testing::TempDir dir_;
  RangeRecordingStore* store_ = nullptr;
  std::unique_ptr<Engine> engine_;
};

// The way fio (io_uring, several reads in flight) reads: the read of the
// second MiB is still at the store when the first MiB's read completes.
// The read-ahead after the first must start past the second, and in the
// end every byte of the object was read from the store once.
TEST_F(ReadAheadInFlightTest, ReadsAlreadyInFlightAreNotReadAgainAhead) {
  RangeRecordingStore* store = store_;
  std::unique_ptr<Engine>& engine = engine_;
  const std::vector<uint8_t> data = testing::Pattern(10, 8 * kMiB);
  FileHandle* handle = nullptr;
  ASSERT_NO_FATAL_FAILURE(PutAndOpen(data, &handle));
  {
    std::lock_guard<std::mutex> g(store->mu);
    store->held_offset = kMiB;
  }
  auto expect_range = [&](uint64_t off) -> std::string {
    Result<std::vector<uint8_t>> got = testing::ReadOnce(*engine, handle, off, kMiB);
    if (!got.ok()) return testing::ErrText(got.status());
    if (!std::equal(got->begin(), got->end(), data.begin() + off) || got->size() != kMiB) {
      return "wrong bytes at " + std::to_string(off);
    }
    return "";
  };
  std::string second;
  std::thread in_flight([&] { second = expect_range(kMiB); });
  store->WaitReached();
  EXPECT_EQ(expect_range(0), "");  // completes while the second MiB's read waits
  store->ReleaseHeld();
  in_flight.join();
  EXPECT_EQ(second, "");
  for (uint64_t off = 2 * kMiB; off < data.size(); off += kMiB) EXPECT_EQ(expect_range(off), "");
  engine->Release(handle);
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  {
    // Every prefetch was consumed by the reads above: none is left to run.
    std::lock_guard<std::mutex> g(store->mu);
    ranges = store->ranges;
  }
  engine.reset();  // and the store with it
  std::sort(ranges.begin(), ranges.end());
  uint64_t covered = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    if (i > 0) {
      EXPECT_GE(ranges[i].first, ranges[i - 1].second)
          << "bytes " << ranges[i].first << ".." << std::min(ranges[i].second, ranges[i - 1].second)
          << " were read from the store twice";
    }
    covered += ranges[i].second - ranges[i].first;
  }
  EXPECT_EQ(covered, data.size()) << "every byte read from the store once";
}

// A reader that reads the end of an object first (a footer), then the
// object from its start: the far read left nothing behind, so the
// sequential reads that follow are read ahead of again.
TEST_F(ReadAheadInFlightTest, AFarReadFirstDoesNotStopReadAheadLater) {
  RangeRecordingStore* store = store_;
  std::unique_ptr<Engine>& engine = engine_;
  const std::vector<uint8_t> data = testing::Pattern(11, 8 * kMiB);
  FileHandle* handle = nullptr;
  ASSERT_NO_FATAL_FAILURE(PutAndOpen(data, &handle));
  for (uint64_t off : {data.size() - kMiB, uint64_t{0}, kMiB, 2 * kMiB}) {
    Result<std::vector<uint8_t>> got = testing::ReadOnce(*engine, handle, off, kMiB);
    ASSERT_TRUE(got.ok()) << testing::ErrText(got.status());
    EXPECT_TRUE(got->size() == kMiB && std::equal(got->begin(), got->end(), data.begin() + off)) << "at " << off;
  }
  engine->Release(handle);
  std::vector<std::pair<uint64_t, uint64_t>> batches;
  {
    std::lock_guard<std::mutex> g(store->mu);
    batches = store->batches;
  }
  engine.reset();
  // The read of 1..2 MiB continued the one of 0..1 MiB: the next 2 MiB were
  // read ahead in one batch, and the read of 2..3 MiB was served from it.
  EXPECT_NE(std::find(batches.begin(), batches.end(), std::make_pair(2 * kMiB, uint64_t{2 * kMiB})), batches.end())
      << "no read-ahead of 2..4 MiB after the footer read";
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
