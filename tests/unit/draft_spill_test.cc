// Draft: bounded memory. A draft with a spill target keeps a few chunks in
// memory and the rest in the target; reads, rewrites, truncation and the
// checksums a commit needs see exactly the bytes written.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "core/draft.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

constexpr size_t kMiB = 1 << 20;

// An in-memory spill target that counts what it is asked to do.
class MemorySpill : public DraftSpill {
 public:
  struct Shared {
    std::map<uint64_t, std::vector<uint8_t>> blocks;  // offset -> bytes
    size_t writes = 0, reads = 0;
    bool fail_writes = false;
  };
  explicit MemorySpill(Shared* s) : s_(s) {}
  Status Write(uint64_t offset, const uint8_t* data, size_t len) override {
    if (s_->fail_writes) return Status::Error(ENOSPC, "injected: the store is full");
    EXPECT_EQ(offset % 4096, 0u);
    EXPECT_EQ(len % 4096, 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(data) % 4096, 0u);
    s_->blocks[offset].assign(data, data + len);
    s_->writes++;
    return Status::Ok();
  }
  Status Read(uint64_t offset, uint8_t* data, size_t len) override {
    auto it = s_->blocks.find(offset);
    if (it == s_->blocks.end() || it->second.size() != len) return Status::Error(EIO, "never written");
    std::memcpy(data, it->second.data(), len);
    s_->reads++;
    return Status::Ok();
  }

 private:
  Shared* s_;
};

DraftSpillFactory FactoryFor(MemorySpill::Shared* shared) {
  return [shared]() -> Result<std::unique_ptr<DraftSpill>> {
    return std::unique_ptr<DraftSpill>(std::make_unique<MemorySpill>(shared));
  };
}

std::vector<uint8_t> ReadBack(const Draft& d) {
  std::vector<uint8_t> out(d.size());
  EXPECT_EQ(d.Read(0, out.size(), out.data()), out.size());
  return out;
}

// The checksums a commit takes from the draft, against the bytes themselves.
void ExpectChecksums(Draft& d, const std::vector<uint8_t>& want) {
  testing::AlignedBuffer scratch(kDraftChunkSize);
  MutexLock lk(d.mutex());
  std::vector<uint8_t> table(ChunkCount(want.size()) * 8);
  Status summed = d.UnitChecksumsLocked(table.data(), scratch.data());
  ASSERT_TRUE(summed.ok()) << summed.ToString();
  EXPECT_EQ(DataChecksumOfTable(table.data(), ChunkCount(want.size())), testing::DataChecksum(want));
  for (uint64_t u = 0; u * kDraftSumUnit < want.size(); ++u) {
    size_t len = std::min<size_t>(kDraftSumUnit, want.size() - u * kDraftSumUnit);
    Result<uint64_t> h = d.UnitChecksumLocked(u, len, scratch.data());
    ASSERT_TRUE(h.ok());
    EXPECT_EQ(*h, XXH3_64bits(want.data() + u * kDraftSumUnit, len)) << "unit " << u;
  }
}

TEST(DraftSpillTest, ALargeSequentialDraftKeepsAFewChunksInMemory) {
  MemorySpill::Shared shared;
  Draft d;
  d.SetSpill(FactoryFor(&shared));
  const size_t size = 64 * kMiB + 12345;
  std::vector<uint8_t> data = testing::Pattern(7, size);
  uint64_t peak = 0;
  for (size_t off = 0; off < size; off += 300000) {
    size_t n = std::min<size_t>(300000, size - off);
    ASSERT_TRUE(d.Write(off, data.data() + off, n).ok());
    peak = std::max(peak, d.memory_bytes());
  }
  EXPECT_LE(peak, (kDraftResidentChunks + 1) * kMiB) << "the draft's memory grew with its size";
  EXPECT_GE(shared.writes, 60u);
  EXPECT_EQ(ReadBack(d), data);
  ExpectChecksums(d, data);
}

TEST(DraftSpillTest, RewritesAndTruncationIntoSpilledChunksKeepTheBytesRight) {
  MemorySpill::Shared shared;
  Draft d;
  d.SetSpill(FactoryFor(&shared));
  std::vector<uint8_t> want = testing::Pattern(1, 20 * kMiB);
  ASSERT_TRUE(d.Write(0, want.data(), want.size()).ok());
  // Rewrite inside chunk 2 (spilled by now): read back, changed, spilled again later.
  std::vector<uint8_t> patch = testing::Pattern(2, 5000);
  ASSERT_TRUE(d.Write(2 * kMiB + 100, patch.data(), patch.size()).ok());
  std::memcpy(want.data() + 2 * kMiB + 100, patch.data(), patch.size());
  EXPECT_GE(shared.reads, 1u);
  EXPECT_EQ(ReadBack(d), want);
  ExpectChecksums(d, want);
  // Truncate into the middle of a spilled chunk, then grow again past it.
  ASSERT_TRUE(d.Truncate(5 * kMiB + 777).ok());
  want.resize(5 * kMiB + 777);
  EXPECT_EQ(ReadBack(d), want);
  std::vector<uint8_t> tail = testing::Pattern(3, 10);
  ASSERT_TRUE(d.Write(9 * kMiB, tail.data(), tail.size()).ok());
  want.resize(9 * kMiB, 0);
  want.insert(want.end(), tail.begin(), tail.end());
  EXPECT_EQ(ReadBack(d), want) << "bytes past a truncation must read as zeros";
  ExpectChecksums(d, want);
}

TEST(DraftSpillTest, AFailingSpillFailsTheWrite) {
  MemorySpill::Shared shared;
  shared.fail_writes = true;
  Draft d;
  d.SetSpill(FactoryFor(&shared));
  std::vector<uint8_t> data = testing::Pattern(4, 16 * kMiB);
  Status s = d.Write(0, data.data(), data.size());
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.err(), ENOSPC);
}

TEST(DraftSpillTest, WithoutASpillTargetEverythingStaysInMemory) {
  Draft d;
  std::vector<uint8_t> data = testing::Pattern(5, 12 * kMiB);
  ASSERT_TRUE(d.Write(0, data.data(), data.size()).ok());
  EXPECT_EQ(d.memory_bytes(), 12 * kMiB);
  EXPECT_EQ(ReadBack(d), data);
  ExpectChecksums(d, data);
}

}  // namespace
}  // namespace kvfs
