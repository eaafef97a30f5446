// Engine: drafts larger than the draft memory limit spill to their staging
// file, and commit, read back, survive a reopen, and take further writes
// after an fsync, with the daemon's draft memory bounded all along.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <xxhash.h>

#include <cinttypes>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "adapters/local_store.h"
#include "adapters/object_header.h"
#include "core/draft.h"
#include "core/engine.h"
#include "tests/unit/engine_driver.h"
#include "tests/unit/test_util.h"
#include "fuse/debug_xattrs.h"

namespace kvfs {
namespace {

constexpr size_t kMiB = 1 << 20;

class EngineLargeDraftTest : public ::testing::Test {
 protected:
  void OpenEngine() {
    ASSERT_TRUE(dir_.ok());
    engine_.reset();
    Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(dir_.Sub("store"), LocalStoreOptions{});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    std::vector<std::unique_ptr<Store>> stores;
    stores.push_back(std::move(*s));
    EngineOptions o;
    o.space.capacity_bytes = 4ULL << 30;
    o.buffer_count = 8;
    Result<std::unique_ptr<Engine>> e = Engine::Start(o, std::move(stores));
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(*e);
  }

  // Writes data through h in 1 MiB pieces; returns the peak draft memory seen.
  uint64_t WriteAll(FileHandle* h, const std::vector<uint8_t>& data, uint64_t at = 0) {
    uint64_t peak = 0;
    for (size_t off = 0; off < data.size(); off += kMiB) {
      size_t n = std::min(kMiB, data.size() - off);
      Result<size_t> w = engine_->Write(h, at + off, data.data() + off, n);
      EXPECT_TRUE(w.ok()) << w.status().ToString();
      peak = std::max(peak, Draft::total_memory_bytes());
    }
    return peak;
  }

  // Creates name, writes data (the draft spills), then truncates it to
  // `cut` through the still open handle, which it returns.
  Result<OpenResult> WriteThenCut(const std::string& name, const std::vector<uint8_t>& data, uint64_t cut) {
    Result<OpenResult> c = engine_->Create(kRootIno, name, 0644, O_CREAT | O_WRONLY | O_TRUNC, 0, 0);
    if (!c.ok()) return c;
    WriteAll(c->handle, data);
    SetAttrRequest shrink;
    shrink.size = cut;
    Status s = engine_->SetAttr(c->attr.ino, shrink, c->handle).status();
    if (!s.ok()) {
      engine_->Release(c->handle);
      return s;
    }
    return c;
  }

  // Commits name as `head` at 0 and `tail` at tail_at, a gap of zeros
  // between them that is never written; returns the bytes it should read.
  std::vector<uint8_t> PutSparse(const std::string& name, const std::vector<uint8_t>& head,
                                 const std::vector<uint8_t>& tail, uint64_t tail_at) {
    std::vector<uint8_t> want(tail_at + tail.size(), 0);
    std::copy(head.begin(), head.end(), want.begin());
    std::copy(tail.begin(), tail.end(), want.begin() + tail_at);
    Result<OpenResult> c = engine_->Create(kRootIno, name, 0644, O_CREAT | O_WRONLY | O_TRUNC, 0, 0);
    EXPECT_TRUE(c.ok());
    if (!c.ok()) return want;
    WriteAll(c->handle, head);
    WriteAll(c->handle, tail, tail_at);
    EXPECT_TRUE(engine_->Flush(c->handle).ok());
    engine_->Release(c->handle);
    return want;
  }

  // The committed bytes of name (empty when it cannot be read).
  std::vector<uint8_t> Get(const std::string& name) {
    Result<std::vector<uint8_t>> r = testing::GetFile(*engine_, kRootIno, name, kMiB);
    return r.ok() ? std::move(*r) : std::vector<uint8_t>();
  }

  // Bytes the store's file of name takes on the drive (its allocated blocks).
  uint64_t AllocatedOnStore(const std::string& name) {
    Result<Attr> a = engine_->Lookup(kRootIno, name);
    EXPECT_TRUE(a.ok());
    if (!a.ok()) return 0;
    Result<std::string> loc = GetDebugXattr(*engine_, a->ino, "user.kvfs.location");
    EXPECT_TRUE(loc.ok());
    if (!loc.ok()) return 0;
    struct stat st;
    EXPECT_EQ(::stat((dir_.Sub("store") + "/" + *loc).c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_blocks) * 512;
  }

  testing::TempDir dir_;
  std::unique_ptr<Engine> engine_;
};

// A file written at two far-apart places keeps the gap a hole on the store,
// reads back with zeros there (checksums included), and a copy-on-write
// change of it copies only its data, not the gap.
TEST_F(EngineLargeDraftTest, ASparseObjectStaysSparseOnTheStoreAndThroughACopyOnWrite) {
  OpenEngine();
  std::vector<uint8_t> want = PutSparse("sparse", testing::Pattern(21, kMiB), testing::Pattern(22, kMiB + 7), 200 * kMiB);
  EXPECT_TRUE(Get("sparse") == want);
  EXPECT_LT(AllocatedOnStore("sparse"), 16 * kMiB) << "the 199 MiB gap was written out";

  // Copy-on-write: open the committed version for writing, change 10 bytes
  // in the middle of the gap.
  Result<Attr> a = engine_->Lookup(kRootIno, "sparse");
  ASSERT_TRUE(a.ok());
  Result<OpenResult> w = engine_->Open(a->ino, O_RDWR);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  const std::vector<uint8_t> patch = testing::Pattern(23, 10);
  uint64_t peak = WriteAll(w->handle, patch, 100 * kMiB);
  std::copy(patch.begin(), patch.end(), want.begin() + 100 * kMiB);
  EXPECT_LE(peak, 8 * kMiB) << "the copy of the base held its gap in memory";
  ASSERT_TRUE(engine_->Flush(w->handle).ok());
  engine_->Release(w->handle);
  EXPECT_TRUE(Get("sparse") == want);
  EXPECT_LT(AllocatedOnStore("sparse"), 16 * kMiB) << "the copy-on-write filled the gap";
  OpenEngine();  // rebuilt from the store
  EXPECT_TRUE(Get("sparse") == want);
}

// A draft small enough to stay in memory until its commit keeps its holes
// too: its staging file is not allocated up front as a dense one is.
TEST_F(EngineLargeDraftTest, ASmallSparseObjectKeepsItsHolesOnTheStore) {
  OpenEngine();
  const std::vector<uint8_t> want =
      PutSparse("small-sparse", testing::Pattern(24, 64 << 10), testing::Pattern(25, 64 << 10), 3 * kMiB);
  EXPECT_TRUE(Get("small-sparse") == want);
  EXPECT_LT(AllocatedOnStore("small-sparse"), 2 * kMiB) << "the 3 MiB object's 2 MiB gap was allocated";
  ASSERT_TRUE(testing::PutFile(*engine_, kRootIno, "dense", testing::Pattern(26, 2 * kMiB + 5)).ok());
  EXPECT_GE(AllocatedOnStore("dense"), 2 * kMiB);
  EXPECT_TRUE(Get("dense") == testing::Pattern(26, 2 * kMiB + 5));
}

// The copy skips ranges that are holes in the object file only where the
// checksums say zeros: a hole punched into stored data behind kvfs's back
// is damage, and the copy reports it instead of taking zeros.
TEST_F(EngineLargeDraftTest, AHolePunchedIntoStoredDataIsNotTakenForZerosByACopy) {
  OpenEngine();
  const std::vector<uint8_t> data = testing::Pattern(25, 4 * kMiB);
  ASSERT_TRUE(testing::PutFile(*engine_, kRootIno, "punched", data).ok());
  Result<Attr> a = engine_->Lookup(kRootIno, "punched");
  ASSERT_TRUE(a.ok());
  Result<std::string> loc = GetDebugXattr(*engine_, a->ino, "user.kvfs.location");
  ASSERT_TRUE(loc.ok());
  int fd = ::open((dir_.Sub("store") + "/" + *loc).c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, kHeaderSize + kMiB, kMiB), 0) << errno;
  ::close(fd);
  Result<OpenResult> w = engine_->Open(a->ino, O_RDWR);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  const uint8_t byte = 1;
  Result<size_t> wrote = engine_->Write(w->handle, 3 * kMiB, &byte, 1);
  EXPECT_FALSE(wrote.ok()) << "a copy took a punched hole for zeros";
  if (!wrote.ok()) {
    EXPECT_EQ(wrote.err(), EIO);
  }
  engine_->Release(w->handle);
}

// A spilled draft cut short and grown again reads zeros where it was cut,
// although its staging file still held the old bytes there.
TEST_F(EngineLargeDraftTest, ASpilledDraftCutAndGrownAgainReadsZerosWhereItWasCut) {
  OpenEngine();
  std::vector<uint8_t> data = testing::Pattern(24, 30 * kMiB);
  Result<OpenResult> c = WriteThenCut("regrown", data, 7 * kMiB + 5);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  SetAttrRequest grow;
  grow.size = 30 * kMiB;
  ASSERT_TRUE(engine_->SetAttr(c->attr.ino, grow, c->handle).ok());
  std::fill(data.begin() + 7 * kMiB + 5, data.end(), 0);
  ASSERT_TRUE(engine_->Flush(c->handle).ok());
  engine_->Release(c->handle);
  EXPECT_TRUE(Get("regrown") == data);
  OpenEngine();
  EXPECT_TRUE(Get("regrown") == data);
}

TEST_F(EngineLargeDraftTest, ALargeObjectIsWrittenWithBoundedMemoryAndReadsBackWhole) {
  OpenEngine();
  const std::vector<uint8_t> data = testing::Pattern(11, 96 * kMiB + 4097);
  Result<OpenResult> c = engine_->Create(kRootIno, "big", 0644, O_CREAT | O_WRONLY | O_TRUNC, 0, 0);
  ASSERT_TRUE(c.ok());
  uint64_t peak = WriteAll(c->handle, data);
  EXPECT_LE(peak, 8 * kMiB) << "draft memory grew with the object";
  ASSERT_TRUE(engine_->Flush(c->handle).ok());
  engine_->Release(c->handle);
  EXPECT_EQ(Get("big"), data);
  Result<Attr> a = engine_->Lookup(kRootIno, "big");
  ASSERT_TRUE(a.ok());
  Result<std::string> sum = GetDebugXattr(*engine_, a->ino, "user.kvfs.checksum");
  ASSERT_TRUE(sum.ok());
  char want[40];
  std::snprintf(want, sizeof(want), "xxh3-chunks:%016" PRIx64, testing::DataChecksum(data));
  EXPECT_EQ(*sum, want);
  OpenEngine();  // rebuilt from the store
  EXPECT_EQ(Get("big"), data);
}

TEST_F(EngineLargeDraftTest, WritesAfterAnFsyncOfASpilledDraftBuildOnTheCommittedVersion) {
  OpenEngine();
  std::vector<uint8_t> data = testing::Pattern(12, 24 * kMiB);
  Result<OpenResult> c = engine_->Create(kRootIno, "f", 0644, O_CREAT | O_RDWR | O_TRUNC, 0, 0);
  ASSERT_TRUE(c.ok());
  WriteAll(c->handle, data);
  ASSERT_TRUE(engine_->Fsync(c->handle).ok());
  EXPECT_EQ(Get("f"), data);
  // The writer reads its own version back, then changes it in the middle and at the end.
  ReadReply reply;
  ASSERT_TRUE(engine_->Read(c->handle, 3 * kMiB, 4096, &reply).ok());
  ASSERT_EQ(reply.bytes(), 4096u);
  std::vector<uint8_t> patch = testing::Pattern(13, 3 * kMiB);
  WriteAll(c->handle, patch, 10 * kMiB + 3);
  std::copy(patch.begin(), patch.end(), data.begin() + 10 * kMiB + 3);
  std::vector<uint8_t> tail = testing::Pattern(14, 2 * kMiB);
  WriteAll(c->handle, tail, data.size());
  data.insert(data.end(), tail.begin(), tail.end());
  ASSERT_TRUE(engine_->Flush(c->handle).ok());
  engine_->Release(c->handle);
  EXPECT_EQ(Get("f"), data);
  OpenEngine();
  EXPECT_EQ(Get("f"), data);
}

TEST_F(EngineLargeDraftTest, ATruncatedSpilledDraftLeavesNoStaleBytesInTheObject) {
  OpenEngine();
  std::vector<uint8_t> data = testing::Pattern(15, 30 * kMiB);
  Result<OpenResult> c = WriteThenCut("t", data, 7 * kMiB + 5);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  data.resize(7 * kMiB + 5);
  ASSERT_TRUE(engine_->Flush(c->handle).ok());
  engine_->Release(c->handle);
  EXPECT_EQ(Get("t"), data);
  OpenEngine();
  EXPECT_EQ(Get("t"), data);
}

}  // namespace
}  // namespace kvfs
