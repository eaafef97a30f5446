#include "core/draft.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

std::vector<uint8_t> ReadAll(const Draft& d, uint64_t off, size_t len) {
  std::vector<uint8_t> out(len, 0xEE);
  size_t n = d.Read(off, len, out.data());
  out.resize(n);
  return out;
}

TEST(DraftTest, EmptyDraft) {
  Draft d;
  EXPECT_EQ(d.size(), 0u);
  EXPECT_EQ(d.memory_bytes(), 0u);
  uint8_t b = 0x77;
  EXPECT_EQ(d.Read(0, 1, &b), 0u);
  EXPECT_EQ(b, 0x77) << "a read at end must not touch the output";
}

TEST(DraftTest, SequentialWritesReadBack) {
  Draft d;
  std::vector<uint8_t> all = testing::Pattern(1, 3 * kDraftChunkSize + 7);
  // Odd-sized sequential writes, like FUSE payloads.
  size_t off = 0;
  size_t step = 131072 + 13;
  while (off < all.size()) {
    size_t n = std::min(step, all.size() - off);
    ASSERT_TRUE(d.Write(off, all.data() + off, n).ok());
    off += n;
  }
  EXPECT_EQ(d.size(), all.size());
  EXPECT_EQ(ReadAll(d, 0, all.size()), all);
  EXPECT_EQ(d.memory_bytes(), 4 * kDraftChunkSize);
}

TEST(DraftTest, WriteAcrossChunkBoundary) {
  Draft d;
  std::vector<uint8_t> data = testing::Pattern(2, 10000);
  uint64_t off = kDraftChunkSize - 5000;
  ASSERT_TRUE(d.Write(off, data.data(), data.size()).ok());
  EXPECT_EQ(d.size(), off + data.size());
  EXPECT_EQ(ReadAll(d, off, data.size()), data);
  // A read straddling the boundary at another offset.
  EXPECT_EQ(ReadAll(d, kDraftChunkSize - 10, 20),
            std::vector<uint8_t>(data.begin() + 4990, data.begin() + 5010));
  // Everything before the write is a hole.
  std::vector<uint8_t> head = ReadAll(d, 0, off);
  EXPECT_EQ(head, std::vector<uint8_t>(off, 0));
  // A write spanning three chunks.
  std::vector<uint8_t> big = testing::Pattern(3, 2 * kDraftChunkSize + 2);
  ASSERT_TRUE(d.Write(3 * kDraftChunkSize - 1, big.data(), big.size()).ok());
  EXPECT_EQ(d.size(), 3 * kDraftChunkSize - 1 + big.size());
  EXPECT_EQ(ReadAll(d, 3 * kDraftChunkSize - 1, big.size()), big);
  EXPECT_EQ(ReadAll(d, off, data.size()), data) << "earlier bytes disturbed";
}

TEST(DraftTest, OverwriteInPlace) {
  Draft d;
  std::vector<uint8_t> a = testing::Pattern(4, 8192);
  std::vector<uint8_t> b = testing::Pattern(5, 100);
  ASSERT_TRUE(d.Write(0, a.data(), a.size()).ok());
  ASSERT_TRUE(d.Write(4000, b.data(), b.size()).ok());
  EXPECT_EQ(d.size(), 8192u) << "an overwrite inside the draft must not change its size";
  std::vector<uint8_t> want = a;
  std::memcpy(want.data() + 4000, b.data(), b.size());
  EXPECT_EQ(ReadAll(d, 0, 8192), want);
}

TEST(DraftTest, HolesReadAsZerosAndStayUnallocated) {
  Draft d;
  std::vector<uint8_t> tail = testing::Pattern(6, 100);
  uint64_t off = 5 * kDraftChunkSize + 123;
  ASSERT_TRUE(d.Write(off, tail.data(), tail.size()).ok());
  EXPECT_EQ(d.size(), off + 100);
  EXPECT_EQ(d.memory_bytes(), kDraftChunkSize) << "only the touched chunk should be allocated";
  std::vector<uint8_t> got = ReadAll(d, 0, d.size());
  ASSERT_EQ(got.size(), d.size());
  for (uint64_t i = 0; i < off; ++i) ASSERT_EQ(got[i], 0) << "hole byte " << i;
  EXPECT_EQ(std::vector<uint8_t>(got.begin() + off, got.end()), tail);
  {
    MutexLock lock(d.mutex());
    ASSERT_EQ(d.chunk_count_locked(), 6u);
    for (size_t i = 0; i < 5; ++i) EXPECT_EQ(d.chunk_locked(i), nullptr) << i;
    ASSERT_NE(d.chunk_locked(5), nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(d.chunk_locked(5)) % 4096, 0u);
    EXPECT_EQ(d.size_locked(), off + 100);
  }
}

TEST(DraftTest, ReadClampsAtEnd) {
  Draft d;
  std::vector<uint8_t> data = testing::Pattern(7, 1000);
  ASSERT_TRUE(d.Write(0, data.data(), data.size()).ok());
  std::vector<uint8_t> out(4096, 0xEE);
  EXPECT_EQ(d.Read(900, 4096, out.data()), 100u);
  EXPECT_TRUE(std::equal(out.begin(), out.begin() + 100, data.begin() + 900));
  EXPECT_EQ(out[100], 0xEE) << "bytes past the end must not be written";
  EXPECT_EQ(d.Read(1000, 10, out.data()), 0u);
  EXPECT_EQ(d.Read(5000, 10, out.data()), 0u);
}

TEST(DraftTest, TruncateShrinkThenGrowReadsZeros) {
  Draft d;
  std::vector<uint8_t> data = testing::Pattern(8, 2 * kDraftChunkSize + 500);
  ASSERT_TRUE(d.Write(0, data.data(), data.size()).ok());

  // Shrink into the middle of the first chunk.
  ASSERT_TRUE(d.Truncate(1000).ok());
  EXPECT_EQ(d.size(), 1000u);
  EXPECT_EQ(ReadAll(d, 0, 5000), std::vector<uint8_t>(data.begin(), data.begin() + 1000));
  EXPECT_LE(d.memory_bytes(), kDraftChunkSize) << "chunks past the new end should be freed";

  // Grow: everything after 1000 reads as zeros, including the old bytes.
  ASSERT_TRUE(d.Truncate(2 * kDraftChunkSize + 500).ok());
  EXPECT_EQ(d.size(), 2 * kDraftChunkSize + 500);
  std::vector<uint8_t> got = ReadAll(d, 0, d.size());
  ASSERT_EQ(got.size(), d.size());
  EXPECT_TRUE(std::equal(got.begin(), got.begin() + 1000, data.begin()));
  for (size_t i = 1000; i < got.size(); ++i) ASSERT_EQ(got[i], 0) << "stale byte at " << i;

  // Writing past the end after a shrink leaves a zero gap.
  ASSERT_TRUE(d.Truncate(10).ok());
  uint8_t x = 0x42;
  ASSERT_TRUE(d.Write(20, &x, 1).ok());
  EXPECT_EQ(d.size(), 21u);
  std::vector<uint8_t> small = ReadAll(d, 0, 21);
  std::vector<uint8_t> want(data.begin(), data.begin() + 10);
  want.resize(20, 0);
  want.push_back(0x42);
  EXPECT_EQ(small, want);
}

TEST(DraftTest, TruncateOnChunkBoundaryAndToZero) {
  Draft d;
  std::vector<uint8_t> data = testing::Pattern(9, 2 * kDraftChunkSize);
  ASSERT_TRUE(d.Write(0, data.data(), data.size()).ok());
  ASSERT_TRUE(d.Truncate(kDraftChunkSize).ok());
  ASSERT_TRUE(d.Truncate(2 * kDraftChunkSize).ok());
  std::vector<uint8_t> got = ReadAll(d, 0, d.size());
  EXPECT_TRUE(std::equal(got.begin(), got.begin() + kDraftChunkSize, data.begin()));
  for (size_t i = kDraftChunkSize; i < got.size(); ++i) ASSERT_EQ(got[i], 0) << i;

  ASSERT_TRUE(d.Truncate(0).ok());
  EXPECT_EQ(d.size(), 0u);
  EXPECT_EQ(d.memory_bytes(), 0u);
  ASSERT_TRUE(d.Truncate(4096).ok());
  EXPECT_EQ(ReadAll(d, 0, 4096), std::vector<uint8_t>(4096, 0));
}

TEST(DraftTest, ExtendingTruncateOfEmptyDraftReadsZeros) {
  Draft d;
  ASSERT_TRUE(d.Truncate(3 * kDraftChunkSize + 1).ok());
  EXPECT_EQ(d.size(), 3 * kDraftChunkSize + 1);
  std::vector<uint8_t> got = ReadAll(d, 0, d.size());
  ASSERT_EQ(got.size(), d.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], 0) << i;
}

TEST(DraftTest, DirtyFlag) {
  Draft d;
  EXPECT_TRUE(d.dirty()) << "a new draft is an uncommitted version";
  d.set_dirty(false);
  EXPECT_FALSE(d.dirty());
  uint8_t b = 1;
  ASSERT_TRUE(d.Write(0, &b, 1).ok());
  EXPECT_TRUE(d.dirty()) << "a write must mark the draft dirty";
  d.set_dirty(false);
  EXPECT_FALSE(d.dirty());
  ASSERT_TRUE(d.Truncate(0).ok());
  EXPECT_TRUE(d.dirty()) << "a truncate must mark the draft dirty";
  d.set_dirty(false);
  std::vector<uint8_t> out(1);
  d.Read(0, 1, out.data());
  EXPECT_FALSE(d.dirty()) << "a read must not mark the draft dirty";
}

TEST(DraftTest, ZeroChunkIsAlignedZeros) {
  const uint8_t* z = ZeroChunk();
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(z) % 4096, 0u);
  for (size_t i = 0; i < kDraftChunkSize; ++i) ASSERT_EQ(z[i], 0) << i;
  EXPECT_EQ(ZeroChunk(), z);
}

// Chunks are reused across drafts: a reused chunk must read as zeros
// wherever its new draft has not written, whatever the old draft left there.
TEST(DraftTest, ReusedChunksReadAsZerosWhereNotWritten) {
  for (int round = 0; round < 3; ++round) {
    {
      Draft old;
      std::vector<uint8_t> junk(kDraftChunkSize, 0xA5);
      ASSERT_TRUE(old.Write(0, junk.data(), junk.size()).ok());
      ASSERT_TRUE(old.Write(kDraftChunkSize, junk.data(), 12345).ok());
      ASSERT_TRUE(old.Truncate(kDraftChunkSize + 100).ok());
    }
    Draft fresh;
    uint8_t one = 0x5A;
    ASSERT_TRUE(fresh.Write(kDraftChunkSize / 2, &one, 1).ok());
    ASSERT_TRUE(fresh.Write(kDraftChunkSize + 7, &one, 1).ok());
    std::vector<uint8_t> got = ReadAll(fresh, 0, kDraftChunkSize + 8);
    ASSERT_EQ(got.size(), kDraftChunkSize + 8);
    for (size_t i = 0; i < got.size(); ++i) {
      uint8_t want = (i == kDraftChunkSize / 2 || i == kDraftChunkSize + 7) ? 0x5A : 0;
      ASSERT_EQ(got[i], want) << "round " << round << ", byte " << i;
    }
    // The committed form reads the chunks directly: check them too.
    MutexLock lk(fresh.mutex());
    ASSERT_EQ(fresh.chunk_count_locked(), 2u);
    EXPECT_EQ(fresh.chunk_locked(1)[kDraftChunkSize - 1], 0) << "past the size, a chunk holds zeros as well";
    EXPECT_EQ(fresh.chunk_locked(0)[0], 0);
  }
}

}  // namespace
}  // namespace kvfs
