// Unit tests of kvfs::Engine driven through its public API, with LocalStores
// in scratch directories: the write/commit/read path, visibility of drafts,
// leases across unlink and replacement, the namespace, persistence across a
// reopen, placement over several stores, readdir paging, capacity, xattrs and
// counters.
#include "core/engine.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "adapters/file_identity.h"
#include "adapters/key_hash.h"
#include "adapters/local_store.h"
#include "adapters/store_wrapper.h"
#include "tests/unit/engine_driver.h"
#include "tests/unit/test_util.h"
#include "fuse/debug_xattrs.h"
#include "fuse/stats_format.h"

namespace kvfs {
namespace {

using testing::RecordingObserver;
using testing::TempDir;

constexpr uint64_t kMiB = 1 << 20;

using testing::ErrText;

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(driver_.dir().ok()); }
  void TearDown() override { driver_.Close(); }

  // Opens an engine over `stores` LocalStores in the scratch directory; the
  // same directories are used again by every later call (a reopen).
  Status OpenEngine(size_t stores = 1, uint64_t capacity = 1ULL << 30, EngineOptions options = Defaults()) {
    return driver_.Open(stores, capacity, options);
  }

  static EngineOptions Defaults() {
    EngineOptions o = testing::EngineDriver::TestDefaults();
    // These tests open readers and in-place writers of one key by inode
    // number. With the page cache, such a writer is sent to a fresh inode
    // (ESTALE, and the kernel looks the name up again): page_cache_test.cc
    // covers that; here every handle bypasses the cache, unless a test
    // turns it on.
    o.page_cache = false;
    return o;
  }

  Engine& E() { return driver_.engine(); }

  // The shared driver's file helpers, on this fixture's engine.
  Result<uint64_t> PutFile(uint64_t parent, const std::string& name, const std::vector<uint8_t>& data,
                           uint32_t mode = 0644) {
    return testing::PutFile(E(), parent, name, data, {.mode = mode});
  }
  Result<std::vector<uint8_t>> ReadOnce(FileHandle* h, uint64_t offset, size_t size) {
    return testing::ReadOnce(E(), h, offset, size);
  }
  Result<std::vector<uint8_t>> ReadAll(FileHandle* h, size_t chunk = 128 * 1024) {
    return testing::ReadAll(E(), h, chunk);
  }
  Result<std::vector<uint8_t>> GetFile(uint64_t parent, const std::string& name) {
    return testing::GetFile(E(), parent, name);
  }

  // Names in a directory (without "." and ".."), in listing order.
  std::vector<std::string> List(uint64_t ino) {
    std::vector<std::string> names;
    Status s = E().ReadDir(ino, 0, false, [&](const DirEntry& e) {
      if (e.name != "." && e.name != "..") names.push_back(e.name);
      return true;
    });
    EXPECT_TRUE(s.ok()) << ErrText(s);
    return names;
  }

  Result<uint64_t> LookupIno(uint64_t parent, const std::string& name) {
    Result<Attr> a = E().Lookup(parent, name);
    if (!a.ok()) return a.status();
    return a->ino;
  }

  testing::EngineDriver driver_;
};


// ---------------------------------------------------------------------------
// Write, commit, read.

TEST_F(EngineTest, WriteFlushReadRoundTrip) {
  ASSERT_OK(OpenEngine());
  for (size_t size : {size_t{0}, size_t{1}, size_t{4095}, size_t{4096}, size_t{3 * kMiB + 7}}) {
    SCOPED_TRACE("size " + std::to_string(size));
    std::string name = "obj-" + std::to_string(size);
    std::vector<uint8_t> data = testing::Pattern(size + 1, size);
    Result<uint64_t> ino = PutFile(kRootIno, name, data);
    ASSERT_TRUE(ino.ok()) << ErrText(ino.status());

    Result<Attr> attr = E().Lookup(kRootIno, name);
    ASSERT_TRUE(attr.ok()) << ErrText(attr.status());
    EXPECT_EQ(attr->ino, *ino);
    EXPECT_EQ(attr->size, size);
    EXPECT_TRUE(S_ISREG(attr->mode));
    EXPECT_EQ(attr->mode & 07777, 0644u);
    Result<Attr> got_attr = E().GetAttr(*ino, nullptr);
    ASSERT_TRUE(got_attr.ok());
    EXPECT_EQ(got_attr->size, size);

    Result<std::vector<uint8_t>> back = GetFile(kRootIno, name);
    ASSERT_TRUE(back.ok()) << ErrText(back.status());
    EXPECT_TRUE(*back == data) << "bytes differ";

    // One request for the whole object, and unaligned ranges.
    Result<OpenResult> o = E().Open(*ino, O_RDONLY);
    ASSERT_TRUE(o.ok()) << ErrText(o.status());
    Result<std::vector<uint8_t>> whole = ReadOnce(o->handle, 0, size + 8192);
    ASSERT_TRUE(whole.ok()) << ErrText(whole.status());
    EXPECT_TRUE(*whole == data) << "single large read differs";
    if (size > 10) {
      uint64_t off = size / 3 + 1;
      size_t len = std::min<size_t>(size - off, 300001);
      Result<std::vector<uint8_t>> mid = ReadOnce(o->handle, off, len);
      ASSERT_TRUE(mid.ok()) << ErrText(mid.status());
      EXPECT_TRUE(*mid == std::vector<uint8_t>(data.begin() + off, data.begin() + off + len)) << "offset " << off;
      // A read crossing end of file is cut at the end.
      Result<std::vector<uint8_t>> tail = ReadOnce(o->handle, size - 5, 4096);
      ASSERT_TRUE(tail.ok());
      EXPECT_TRUE(*tail == std::vector<uint8_t>(data.end() - 5, data.end()));
    }
    Result<std::vector<uint8_t>> past = ReadOnce(o->handle, size + 4096, 4096);
    ASSERT_TRUE(past.ok());
    EXPECT_TRUE(past->empty());
    E().Release(o->handle);
  }
}

TEST_F(EngineTest, WritesAtAnyOffsetAndHoles) {
  ASSERT_OK(OpenEngine());
  Result<OpenResult> c = E().Create(kRootIno, "holes", 0600, O_CREAT | O_RDWR, 0, 0);
  ASSERT_TRUE(c.ok()) << ErrText(c.status());
  std::vector<uint8_t> tail = testing::Pattern(5, 1000);
  std::vector<uint8_t> head = testing::Pattern(6, 777);
  uint64_t tail_off = 2 * kMiB + 12345;
  ASSERT_TRUE(E().Write(c->handle, tail_off, tail.data(), tail.size()).ok());
  ASSERT_TRUE(E().Write(c->handle, 10, head.data(), head.size()).ok());
  // The writer sees its draft.
  Result<Attr> mine = E().GetAttr(c->attr.ino, c->handle);
  ASSERT_TRUE(mine.ok());
  EXPECT_EQ(mine->size, tail_off + tail.size());
  ASSERT_OK(E().Flush(c->handle));
  E().Release(c->handle);

  std::vector<uint8_t> want(tail_off + tail.size(), 0);
  std::copy(head.begin(), head.end(), want.begin() + 10);
  std::copy(tail.begin(), tail.end(), want.begin() + tail_off);
  Result<std::vector<uint8_t>> back = GetFile(kRootIno, "holes");
  ASSERT_TRUE(back.ok()) << ErrText(back.status());
  EXPECT_TRUE(*back == want);
}

TEST_F(EngineTest, NewKeyIsInvisibleUntilFlush) {
  ASSERT_OK(OpenEngine());
  Result<OpenResult> c = E().Create(kRootIno, "pending", 0644, O_CREAT | O_WRONLY, 0, 0);
  ASSERT_TRUE(c.ok()) << ErrText(c.status());
  std::vector<uint8_t> data = testing::Pattern(9, 50000);
  ASSERT_TRUE(E().Write(c->handle, 0, data.data(), data.size()).ok());

  Result<Attr> before = E().Lookup(kRootIno, "pending");
  EXPECT_FALSE(before.ok());
  EXPECT_EQ(before.err(), ENOENT);
  EXPECT_TRUE(List(kRootIno).empty());
  EXPECT_EQ(E().Stats().objects, 0u);
  // Creating the same key again with O_EXCL from elsewhere is not allowed to
  // observe it either way; a second Lookup is still ENOENT.
  EXPECT_EQ(E().Lookup(kRootIno, "pending").err(), ENOENT);

  ASSERT_OK(E().Flush(c->handle));
  Result<Attr> after = E().Lookup(kRootIno, "pending");
  ASSERT_TRUE(after.ok()) << ErrText(after.status());
  EXPECT_EQ(after->size, data.size());
  EXPECT_EQ(List(kRootIno), std::vector<std::string>{"pending"});
  E().Release(c->handle);
  Result<std::vector<uint8_t>> back = GetFile(kRootIno, "pending");
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(*back == data);
  EXPECT_EQ(E().Stats().objects, 1u);
}

TEST_F(EngineTest, CreatedKeyReleasedWithoutWritesStillCommitsEmptyFile) {
  // open(O_CREAT) + close with no write is `touch`: an empty object.
  ASSERT_OK(OpenEngine());
  Result<OpenResult> c = E().Create(kRootIno, "touched", 0644, O_CREAT | O_WRONLY, 0, 0);
  ASSERT_TRUE(c.ok());
  ASSERT_OK(E().Flush(c->handle));
  E().Release(c->handle);
  Result<Attr> a = E().Lookup(kRootIno, "touched");
  ASSERT_TRUE(a.ok()) << ErrText(a.status());
  EXPECT_EQ(a->size, 0u);
}

TEST_F(EngineTest, TruncatingOpenIsAVersionReadersDoNotSeeUntilCommit) {
  ASSERT_OK(OpenEngine());
  std::vector<uint8_t> v1 = testing::Pattern(1, 2 * kMiB + 100);
  std::vector<uint8_t> v2 = testing::Pattern(2, 700000);
  Result<uint64_t> ino = PutFile(kRootIno, "key", v1);
  ASSERT_TRUE(ino.ok()) << ErrText(ino.status());

  Result<OpenResult> old_reader = E().Open(*ino, O_RDONLY);
  ASSERT_TRUE(old_reader.ok());
  Result<OpenResult> w = E().Open(*ino, O_WRONLY | O_TRUNC);
  ASSERT_TRUE(w.ok()) << ErrText(w.status());
  ASSERT_TRUE(E().Write(w->handle, 0, v2.data(), v2.size()).ok());

  // Another open before the commit sees the previous version, whole.
  Result<OpenResult> mid_reader = E().Open(*ino, O_RDONLY);
  ASSERT_TRUE(mid_reader.ok());
  Result<std::vector<uint8_t>> mid = ReadAll(mid_reader->handle);
  ASSERT_TRUE(mid.ok()) << ErrText(mid.status());
  EXPECT_TRUE(*mid == v1) << "an uncommitted version leaked to a reader";
  Result<Attr> a = E().Lookup(kRootIno, "key");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size, v1.size());

  ASSERT_OK(E().Flush(w->handle));
  E().Release(w->handle);

  Result<OpenResult> new_reader = E().Open(*ino, O_RDONLY);
  ASSERT_TRUE(new_reader.ok());
  // Attributes as each handle sees them.
  Result<Attr> via_old = E().GetAttr(*ino, old_reader->handle);
  ASSERT_TRUE(via_old.ok());
  EXPECT_EQ(via_old->size, v1.size());
  Result<Attr> via_new = E().GetAttr(*ino, new_reader->handle);
  ASSERT_TRUE(via_new.ok());
  EXPECT_EQ(via_new->size, v2.size());
  Result<std::vector<uint8_t>> now = ReadAll(new_reader->handle);
  ASSERT_TRUE(now.ok()) << ErrText(now.status());
  EXPECT_TRUE(*now == v2);
  a = E().Lookup(kRootIno, "key");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size, v2.size());

  // The handles opened before the commit still read the old bytes.
  for (FileHandle* h : {old_reader->handle, mid_reader->handle}) {
    Result<std::vector<uint8_t>> old = ReadAll(h, 256 * 1024 + 4096);
    ASSERT_TRUE(old.ok()) << ErrText(old.status());
    EXPECT_TRUE(*old == v1) << "a lease no longer reads its version";
  }
  E().Release(old_reader->handle);
  E().Release(mid_reader->handle);
  E().Release(new_reader->handle);
  Result<std::vector<uint8_t>> last = GetFile(kRootIno, "key");
  ASSERT_TRUE(last.ok());
  EXPECT_TRUE(*last == v2);
  EXPECT_EQ(E().Stats().objects, 1u);
}

// An O_TRUNC open of a key that is empty already, closed without a write,
// changes only the key's times: its object file keeps its identity (the
// header takes the new times in place), a reader's lease goes on, and the
// times survive a restart. A key with bytes still gets a new object file.
TEST_F(EngineTest, TruncatingAnEmptyKeyAgainRewritesOnlyItsHeader) {
  ASSERT_OK(OpenEngine());
  Result<uint64_t> ino = PutFile(kRootIno, "key", testing::Pattern(3, 5000));
  ASSERT_TRUE(ino.ok()) << ErrText(ino.status());
  auto object_file = [&]() -> std::pair<uint64_t, int64_t> {  // (identity, header mtime) of the key's object
    Result<std::string> loc = GetDebugXattr(E(), *ino, "user.kvfs.location");
    if (!loc.ok()) return {0, 0};
    Result<FileStatus> st = StatPath(driver_.root(0) + "/" + *loc, false);
    if (!st.ok()) return {0, 0};
    Result<Attr> a = E().GetAttr(*ino, nullptr);
    return {st->file_id(), a.ok() ? a->mtime_ns : 0};
  };
  auto truncate_and_close = [&] {
    Result<OpenResult> w = E().Open(*ino, O_WRONLY | O_TRUNC);
    ASSERT_TRUE(w.ok()) << ErrText(w.status());
    ASSERT_OK(E().Flush(w->handle));
    E().Release(w->handle);
  };
  const auto with_bytes = object_file();
  truncate_and_close();  // 5000 bytes to none: a new version, a new file
  const auto emptied = object_file();
  ASSERT_NE(emptied.first, 0u);
  EXPECT_NE(emptied.first, with_bytes.first);

  Result<OpenResult> reader = E().Open(*ino, O_RDONLY);
  ASSERT_TRUE(reader.ok()) << ErrText(reader.status());
  const uint64_t commits = E().Stats().commits;
  truncate_and_close();  // none to none: the times only
  const auto again = object_file();
  EXPECT_EQ(again.first, emptied.first) << "an unchanged empty version was written out as a new file";
  EXPECT_GT(again.second, emptied.second) << "the truncation did not change the modification time";
  EXPECT_EQ(E().Stats().commits, commits + 1);
  Result<std::vector<uint8_t>> read = ReadAll(reader->handle);
  ASSERT_TRUE(read.ok()) << ErrText(read.status());
  EXPECT_TRUE(read->empty());
  E().Release(reader->handle);

  // Written after its O_TRUNC, the key is a new version again.
  Result<OpenResult> w = E().Open(*ino, O_WRONLY | O_TRUNC);
  ASSERT_TRUE(w.ok());
  const std::vector<uint8_t> v = testing::Pattern(4, 100);
  ASSERT_TRUE(E().Write(w->handle, 0, v.data(), v.size()).ok());
  ASSERT_OK(E().Flush(w->handle));
  E().Release(w->handle);
  EXPECT_NE(object_file().first, again.first);
  Result<std::vector<uint8_t>> got = GetFile(kRootIno, "key");
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(*got == v);

  // The times of a times-only commit are in the header a restart reads.
  truncate_and_close();
  truncate_and_close();
  Result<Attr> before = E().GetAttr(*ino, nullptr);
  ASSERT_TRUE(before.ok());
  ASSERT_OK(OpenEngine());
  Result<Attr> after = E().Lookup(kRootIno, "key");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->size, 0u);
  EXPECT_EQ(after->mtime_ns, before->mtime_ns);
}

TEST_F(EngineTest, OpenWithoutTruncRewritesByCopyOnWrite) {
  ASSERT_OK(OpenEngine());
  std::vector<uint8_t> v1 = testing::Pattern(3, 300000);
  Result<uint64_t> ino = PutFile(kRootIno, "cow", v1);
  ASSERT_TRUE(ino.ok());
  Result<OpenResult> reader = E().Open(*ino, O_RDONLY);
  ASSERT_TRUE(reader.ok());
  Result<OpenResult> w = E().Open(*ino, O_WRONLY);
  ASSERT_TRUE(w.ok());
  std::vector<uint8_t> patch = testing::Pattern(4, 5000);
  ASSERT_TRUE(E().Write(w->handle, 262000, patch.data(), patch.size()).ok());
  ASSERT_OK(E().Flush(w->handle));
  E().Release(w->handle);
  std::vector<uint8_t> v2 = v1;
  std::copy(patch.begin(), patch.end(), v2.begin() + 262000);
  Result<std::vector<uint8_t>> now = GetFile(kRootIno, "cow");
  ASSERT_TRUE(now.ok()) << ErrText(now.status());
  EXPECT_TRUE(*now == v2);
  Result<std::vector<uint8_t>> old = ReadAll(reader->handle);
  ASSERT_TRUE(old.ok());
  EXPECT_TRUE(*old == v1);
  E().Release(reader->handle);
}

TEST_F(EngineTest, RoundTripWithoutIoUring) {
  EngineOptions o = Defaults();
  o.use_io_uring = false;
  ASSERT_OK(OpenEngine(1, 1ULL << 30, o));
  std::vector<uint8_t> data = testing::Pattern(31, 2 * kMiB + 4097);
  ASSERT_TRUE(PutFile(kRootIno, "plain", data).ok());
  Result<std::vector<uint8_t>> back = GetFile(kRootIno, "plain");
  ASSERT_TRUE(back.ok()) << ErrText(back.status());
  EXPECT_TRUE(*back == data);
  EXPECT_FALSE(E().Stats().io_uring);
}

TEST_F(EngineTest, FsyncCommitsAndTheHandleKeepsWriting) {
  ASSERT_OK(OpenEngine());
  Result<OpenResult> c = E().Create(kRootIno, "synced", 0644, O_CREAT | O_WRONLY, 0, 0);
  ASSERT_TRUE(c.ok());
  std::vector<uint8_t> part1 = testing::Pattern(1, 10000);
  ASSERT_TRUE(E().Write(c->handle, 0, part1.data(), part1.size()).ok());
  ASSERT_OK(E().Fsync(c->handle));
  // Visible, with the bytes written so far, while the writer is still open.
  Result<std::vector<uint8_t>> mid = GetFile(kRootIno, "synced");
  ASSERT_TRUE(mid.ok()) << ErrText(mid.status());
  EXPECT_TRUE(*mid == part1);
  std::vector<uint8_t> part2 = testing::Pattern(2, 5000);
  ASSERT_TRUE(E().Write(c->handle, part1.size(), part2.data(), part2.size()).ok());
  // The second batch of writes is not visible until the next commit.
  mid = GetFile(kRootIno, "synced");
  ASSERT_TRUE(mid.ok());
  EXPECT_TRUE(*mid == part1);
  ASSERT_OK(E().Flush(c->handle));
  E().Release(c->handle);
  std::vector<uint8_t> all = part1;
  all.insert(all.end(), part2.begin(), part2.end());
  Result<std::vector<uint8_t>> done = GetFile(kRootIno, "synced");
  ASSERT_TRUE(done.ok());
  EXPECT_TRUE(*done == all);
}

TEST_F(EngineTest, TwoWritersOfOneVersionCommitAtTheLastFlush) {
  ASSERT_OK(OpenEngine());
  Result<OpenResult> w1 = E().Create(kRootIno, "shared", 0644, O_CREAT | O_WRONLY, 0, 0);
  ASSERT_TRUE(w1.ok());
  Result<OpenResult> w2 = E().Open(w1->attr.ino, O_WRONLY);
  ASSERT_TRUE(w2.ok()) << ErrText(w2.status());
  std::vector<uint8_t> a = testing::Pattern(1, 4096);
  std::vector<uint8_t> b = testing::Pattern(2, 4096);
  ASSERT_TRUE(E().Write(w1->handle, 0, a.data(), a.size()).ok());
  ASSERT_TRUE(E().Write(w2->handle, 4096, b.data(), b.size()).ok());
  ASSERT_OK(E().Flush(w1->handle));
  E().Release(w1->handle);
  EXPECT_EQ(E().Lookup(kRootIno, "shared").err(), ENOENT) << "committed before its last writer closed";
  ASSERT_OK(E().Flush(w2->handle));
  E().Release(w2->handle);
  std::vector<uint8_t> want = a;
  want.insert(want.end(), b.begin(), b.end());
  Result<std::vector<uint8_t>> got = GetFile(kRootIno, "shared");
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == want);
}

TEST_F(EngineTest, AppendWritesGoToTheEnd) {
  ASSERT_OK(OpenEngine());
  std::vector<uint8_t> base = testing::Pattern(1, 5000);
  Result<uint64_t> ino = PutFile(kRootIno, "log", base);
  ASSERT_TRUE(ino.ok());
  Result<OpenResult> w = E().Open(*ino, O_WRONLY | O_APPEND);
  ASSERT_TRUE(w.ok());
  std::vector<uint8_t> more = testing::Pattern(2, 3000);
  ASSERT_TRUE(E().Write(w->handle, 0, more.data(), more.size()).ok());  // offset ignored with O_APPEND
  ASSERT_OK(E().Flush(w->handle));
  E().Release(w->handle);
  std::vector<uint8_t> want = base;
  want.insert(want.end(), more.begin(), more.end());
  Result<std::vector<uint8_t>> got = GetFile(kRootIno, "log");
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == want);
}

TEST_F(EngineTest, TruncateByPathIsANewVersionAndByHandleIsPartOfTheVersion) {
  ASSERT_OK(OpenEngine());
  std::vector<uint8_t> v1 = testing::Pattern(1, 700000);
  Result<uint64_t> ino = PutFile(kRootIno, "t", v1);
  ASSERT_TRUE(ino.ok());
  Result<OpenResult> reader = E().Open(*ino, O_RDONLY);
  ASSERT_TRUE(reader.ok());

  // truncate(path, n): shrink, committed at once.
  SetAttrRequest shrink;
  shrink.size = 1000;
  Result<Attr> a = E().SetAttr(*ino, shrink, nullptr);
  ASSERT_TRUE(a.ok()) << ErrText(a.status());
  EXPECT_EQ(a->size, 1000u);
  Result<std::vector<uint8_t>> got = GetFile(kRootIno, "t");
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == std::vector<uint8_t>(v1.begin(), v1.begin() + 1000));
  // The reader keeps its version.
  Result<std::vector<uint8_t>> old = ReadAll(reader->handle);
  ASSERT_TRUE(old.ok());
  EXPECT_TRUE(*old == v1);
  E().Release(reader->handle);

  // Grow by path: zeros after the old end.
  SetAttrRequest grow;
  grow.size = 5000;
  ASSERT_TRUE(E().SetAttr(*ino, grow, nullptr).ok());
  got = GetFile(kRootIno, "t");
  ASSERT_TRUE(got.ok());
  std::vector<uint8_t> want(v1.begin(), v1.begin() + 1000);
  want.resize(5000, 0);
  EXPECT_TRUE(*got == want);

  // ftruncate through a writable handle: committed with the handle's version.
  Result<OpenResult> w = E().Open(*ino, O_RDWR);
  ASSERT_TRUE(w.ok());
  SetAttrRequest cut;
  cut.size = 10;
  Result<Attr> wa = E().SetAttr(*ino, cut, w->handle);
  ASSERT_TRUE(wa.ok()) << ErrText(wa.status());
  EXPECT_EQ(wa->size, 10u);
  Result<Attr> outside = E().Lookup(kRootIno, "t");
  ASSERT_TRUE(outside.ok());
  EXPECT_EQ(outside->size, 5000u) << "ftruncate must not be visible before the commit";
  ASSERT_OK(E().Flush(w->handle));
  E().Release(w->handle);
  got = GetFile(kRootIno, "t");
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(*got == std::vector<uint8_t>(v1.begin(), v1.begin() + 10));

  ASSERT_OK(OpenEngine());
  got = GetFile(kRootIno, "t");
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(*got == std::vector<uint8_t>(v1.begin(), v1.begin() + 10));
}

TEST_F(EngineTest, UnlinkOfAPendingKeyPublishesNothing) {
  ASSERT_OK(OpenEngine());
  Result<OpenResult> c = E().Create(kRootIno, "scratch", 0644, O_CREAT | O_WRONLY, 0, 0);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(E().Write(c->handle, 0, testing::Pattern(1, 100).data(), 100).ok());
  ASSERT_OK(E().Unlink(kRootIno, "scratch"));
  Status f = E().Flush(c->handle);
  EXPECT_TRUE(f.ok()) << ErrText(f);
  E().Release(c->handle);
  EXPECT_EQ(E().Lookup(kRootIno, "scratch").err(), ENOENT);
  EXPECT_EQ(E().Stats().objects, 0u);
  ASSERT_OK(OpenEngine());
  EXPECT_EQ(E().Lookup(kRootIno, "scratch").err(), ENOENT);
}

TEST_F(EngineTest, DirectoryRenamedWhileAFileInItIsBeingWritten) {
  ASSERT_OK(OpenEngine(2));
  Result<Attr> d = E().Mkdir(kRootIno, "d", 0755, 0, 0);
  ASSERT_TRUE(d.ok());
  Result<OpenResult> c = E().Create(d->ino, "f", 0644, O_CREAT | O_WRONLY, 0, 0);
  ASSERT_TRUE(c.ok());
  std::vector<uint8_t> data = testing::Pattern(8, 333333);
  ASSERT_TRUE(E().Write(c->handle, 0, data.data(), data.size()).ok());
  ASSERT_OK(E().Rename(kRootIno, "d", kRootIno, "renamed", 0));
  ASSERT_OK(E().Flush(c->handle));
  E().Release(c->handle);
  Result<uint64_t> r = LookupIno(kRootIno, "renamed");
  ASSERT_TRUE(r.ok());
  Result<std::vector<uint8_t>> got = GetFile(*r, "f");
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == data);
  ASSERT_OK(OpenEngine(2));
  EXPECT_EQ(E().Lookup(kRootIno, "d").err(), ENOENT);
  r = LookupIno(kRootIno, "renamed");
  ASSERT_TRUE(r.ok());
  got = GetFile(*r, "f");
  ASSERT_TRUE(got.ok()) << "committed under its new path: " << ErrText(got.status());
  EXPECT_TRUE(*got == data);
}

TEST_F(EngineTest, RenameOfAFileIntoAnotherDirectoryAcrossStores) {
  ASSERT_OK(OpenEngine(2));
  Result<Attr> sub = E().Mkdir(kRootIno, "sub", 0755, 0, 0);
  ASSERT_TRUE(sub.ok());
  // Pick names so that the old and new keys live on different stores.
  std::string from, to;
  for (int i = 0; i < 1000 && from.empty(); ++i) {
    std::string f = "file-" + std::to_string(i);
    if (JumpConsistentHash(HashKey(f).low, 2) != JumpConsistentHash(HashKey("sub/" + f).low, 2)) from = f;
  }
  ASSERT_FALSE(from.empty());
  to = from;
  std::vector<uint8_t> data = testing::Pattern(44, 1234567);
  Result<uint64_t> ino = PutFile(kRootIno, from, data);
  ASSERT_TRUE(ino.ok());
  Result<OpenResult> reader = E().Open(*ino, O_RDONLY);
  ASSERT_TRUE(reader.ok());
  ASSERT_OK(E().Rename(kRootIno, from, sub->ino, to, 0));
  EXPECT_EQ(E().Lookup(kRootIno, from).err(), ENOENT);
  Result<std::vector<uint8_t>> got = GetFile(sub->ino, to);
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == data);
  Result<std::vector<uint8_t>> via_old_handle = ReadAll(reader->handle);
  ASSERT_TRUE(via_old_handle.ok()) << ErrText(via_old_handle.status());
  EXPECT_TRUE(*via_old_handle == data);
  E().Release(reader->handle);
  Result<uint64_t> moved = LookupIno(sub->ino, to);
  ASSERT_TRUE(moved.ok());
  Result<std::string> store = GetDebugXattr(E(), *moved, "user.kvfs.store");
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(*store, "local:" + driver_.root(JumpConsistentHash(HashKey("sub/" + to).low, 2)));
  EngineStats st = E().Stats();
  EXPECT_EQ(st.objects, 1u);
  EXPECT_EQ(st.stores[0].objects + st.stores[1].objects, 1u);

  ASSERT_OK(OpenEngine(2));
  EXPECT_EQ(E().Lookup(kRootIno, from).err(), ENOENT);
  Result<uint64_t> sub2 = LookupIno(kRootIno, "sub");
  ASSERT_TRUE(sub2.ok());
  got = GetFile(*sub2, to);
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == data);
  EXPECT_EQ(E().Stats().objects, 1u);
}

// An object an older build wrote (object format 1: its checksum is of the
// data bytes) moved to another store by a rename is copied there in
// format 2, its checksum that of its chunk table, its bytes unchanged.
TEST_F(EngineTest, AnOlderFormatObjectMovedToAnotherStoreIsWrittenInTheCurrentFormat) {
  ASSERT_OK(OpenEngine(2));
  std::string from;
  for (int i = 0; i < 1000 && from.empty(); ++i) {
    std::string f = "old-" + std::to_string(i);
    if (JumpConsistentHash(HashKey(f).low, 2) != JumpConsistentHash(HashKey(f + "-moved").low, 2)) from = f;
  }
  ASSERT_FALSE(from.empty());
  const std::string to = from + "-moved";
  std::vector<uint8_t> data = testing::Pattern(45, 2 * 1024 * 1024 + 77);
  ASSERT_TRUE(PutFile(kRootIno, from, data).ok());
  auto object_path = [&](const std::string& key) {
    std::string hex = HashKey(key).Hex();
    return driver_.root(JumpConsistentHash(HashKey(key).low, 2)) + "/objects/" + hex.substr(0, 2) + "/" + hex;
  };
  driver_.Close();  // no engine holds the stores while the header changes
  Result<ObjectHeader> h = testing::ReadObjectHeader(object_path(from));
  ASSERT_TRUE(h.ok()) << ErrText(h.status());
  h->format = 1;
  h->checksum = XXH3_64bits(data.data(), data.size());
  ASSERT_TRUE(testing::RewriteObjectHeader(object_path(from), *h));

  ASSERT_OK(OpenEngine(2));
  ASSERT_OK(E().Rename(kRootIno, from, kRootIno, to, 0));
  Result<ObjectHeader> moved = testing::ReadObjectHeader(object_path(to));
  ASSERT_TRUE(moved.ok()) << ErrText(moved.status());
  EXPECT_EQ(moved->format, kObjectFormatVersion);
  EXPECT_EQ(moved->checksum, testing::DataChecksum(data));
  Result<std::vector<uint8_t>> got = GetFile(kRootIno, to);
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == data);
  Result<uint64_t> ino = LookupIno(kRootIno, to);
  ASSERT_TRUE(ino.ok());
  Result<std::string> shown = GetDebugXattr(E(), *ino, "user.kvfs.checksum");
  ASSERT_TRUE(shown.ok());
  EXPECT_EQ(shown->rfind("xxh3-chunks:", 0), 0u) << *shown;
}

TEST_F(EngineTest, StoresHoldExactlyTheIndexAfterChurn) {
  // After creates, replacements, renames and unlinks, the object files on
  // the stores are exactly the live keys (plus directory records): nothing
  // stale that a restart could bring back.
  ASSERT_OK(OpenEngine(2));
  std::map<std::string, std::vector<uint8_t>> live;
  Result<Attr> dir = E().Mkdir(kRootIno, "dir", 0755, 0, 0);
  ASSERT_TRUE(dir.ok());
  for (int i = 0; i < 20; ++i) {
    std::string name = "k" + std::to_string(i);
    for (int round = 0; round < 3; ++round) {
      live[name] = testing::Pattern(i * 10 + round, 1000 + round * 5000 + i);
      ASSERT_TRUE(PutFile(kRootIno, name, live[name]).ok());
    }
  }
  for (int i = 0; i < 5; ++i) {
    std::string name = "k" + std::to_string(i);
    ASSERT_OK(E().Unlink(kRootIno, name));
    live.erase(name);
  }
  for (int i = 5; i < 10; ++i) {
    std::string name = "k" + std::to_string(i);
    ASSERT_OK(E().Rename(kRootIno, name, dir->ino, name, 0));
    live["dir/" + name] = live[name];
    live.erase(name);
  }
  ASSERT_OK(E().Rename(kRootIno, "k10", kRootIno, "k11", 0));
  live["k11"] = live["k10"];
  live.erase("k10");
  ASSERT_EQ(E().Stats().objects, live.size());
  driver_.Close();

  std::map<std::string, int> file_keys;
  std::set<std::string> dir_keys;
  for (const std::string& root : driver_.roots()) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(root + "/objects")) {
      if (!e.is_regular_file()) continue;
      std::vector<uint8_t> block(kHeaderSize);
      int fd = ::open(e.path().c_str(), O_RDONLY);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(::pread(fd, block.data(), kHeaderSize, 0), static_cast<ssize_t>(kHeaderSize)) << e.path();
      ::close(fd);
      Result<ObjectHeader> h = DecodeHeader(block.data(), block.size());
      ASSERT_TRUE(h.ok()) << e.path() << ": " << h.status().ToString();
      if (h->kind == ObjectKind::kDirectory) {
        dir_keys.insert(h->key);
      } else {
        file_keys[h->key]++;
        auto it = live.find(h->key);
        if (it != live.end()) {
          EXPECT_EQ(h->size, it->second.size()) << h->key;
          EXPECT_EQ(h->checksum, testing::DataChecksum(it->second)) << h->key;
        }
        // The object sits where its key says, on the store its key picks.
        std::string hex = HashKey(h->key).Hex();
        EXPECT_EQ(e.path().string(),
                  driver_.root(JumpConsistentHash(HashKey(h->key).low, 2)) + "/objects/" + hex.substr(0, 2) + "/" + hex);
      }
    }
  }
  std::set<std::string> want_keys;
  for (const auto& [k, v] : live) want_keys.insert(k);
  std::set<std::string> have_keys;
  for (const auto& [k, n] : file_keys) {
    have_keys.insert(k);
    EXPECT_EQ(n, 1) << k << " stored " << n << " times";
  }
  EXPECT_EQ(have_keys, want_keys);
  for (const std::string& k : dir_keys) EXPECT_TRUE(k.empty() || k == "dir") << "stale directory record " << k;

  ASSERT_OK(OpenEngine(2));
  for (const auto& [key, data] : live) {
    uint64_t parent = kRootIno;
    std::string name = key;
    if (key.rfind("dir/", 0) == 0) {
      Result<uint64_t> d = LookupIno(kRootIno, "dir");
      ASSERT_TRUE(d.ok());
      parent = *d;
      name = key.substr(4);
    }
    Result<std::vector<uint8_t>> got = GetFile(parent, name);
    ASSERT_TRUE(got.ok()) << key << ": " << ErrText(got.status());
    EXPECT_TRUE(*got == data) << key;
  }
}

TEST_F(EngineTest, ConcurrentWritersAndReadersOnDistinctKeys) {
  ASSERT_OK(OpenEngine(2));
  constexpr int kThreads = 8;
  constexpr int kFilesPerThread = 12;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  std::mutex msg_mu;
  std::string first_failure;
  auto fail = [&](const std::string& what) {
    failures++;
    std::lock_guard<std::mutex> g(msg_mu);
    if (first_failure.empty()) first_failure = what;
  };
  Result<Attr> shared_dir = E().Mkdir(kRootIno, "shared", 0755, 0, 0);
  ASSERT_TRUE(shared_dir.ok());
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kFilesPerThread; ++i) {
        std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
        std::vector<uint8_t> data = testing::Pattern(t * 100 + i, 50000 + 4096 * i + t);
        Result<uint64_t> ino = PutFile(shared_dir->ino, name, data);
        if (!ino.ok()) {
          fail(name + " put: " + ErrText(ino.status()));
          continue;
        }
        Result<std::vector<uint8_t>> got = GetFile(shared_dir->ino, name);
        if (!got.ok() || *got != data) fail(name + " read back wrong");
        int entries = 0;
        Status s = E().ReadDir(shared_dir->ino, 0, false, [&](const DirEntry&) { return ++entries, true; });
        if (!s.ok()) fail("readdir: " + ErrText(s));
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0) << first_failure;
  EXPECT_EQ(List(shared_dir->ino).size(), static_cast<size_t>(kThreads * kFilesPerThread));
  EXPECT_EQ(E().Stats().objects, static_cast<uint64_t>(kThreads * kFilesPerThread));
}

// Every object file has the same identity, as when a file system hands a
// freed inode number to the next file at once (ext4 and XFS do); and the
// next OpenForRead first runs a callback.
class RecycledIdentityStore final : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  Result<uint64_t> FileIdOf(int) override { return 7; }
  Result<int> OpenForRead(const std::string& location) override {
    std::function<void()> f = std::exchange(before_next_open, nullptr);
    if (f) f();
    return StoreWrapper::OpenForRead(location);
  }
  std::function<void()> before_next_open;
};

// A reader looked up version 1; the key is replaced twice before it opens
// the object file, whose identity cannot show that it now holds version 3.
// The open takes the current version instead of reading version 3's file as
// version 1 (which failed the read and quarantined the key's good object).
TEST(EngineReplacedWhileOpeningTest, AnOpenNeverTakesALaterFileForTheVersionItLookedUp) {
  testing::TempDir dir;
  ASSERT_TRUE(dir.ok());
  EngineOptions o;
  o.space.capacity_bytes = 1ULL << 30;
  o.buffer_count = 8;
  o.page_cache = false;
  RecycledIdentityStore* store = nullptr;
  Result<std::unique_ptr<Engine>> started = testing::StartOverWrappedLocalStore(dir.Sub("store"), o, &store);
  ASSERT_TRUE(started.ok()) << ErrText(started.status());
  Engine& e = **started;
  const std::vector<uint8_t> v1 = testing::Pattern(1, 300000), v2 = testing::Pattern(2, 700000),
                             v3 = testing::Pattern(3, 1500000);
  Result<uint64_t> ino = testing::PutFile(e, kRootIno, "k", v1);
  ASSERT_TRUE(ino.ok());
  bool replaced = false;
  store->before_next_open = [&] {
    replaced = testing::PutFile(e, kRootIno, "k", v2).ok() && testing::PutFile(e, kRootIno, "k", v3).ok();
  };
  Result<OpenResult> r = e.Open(*ino, O_RDONLY);
  ASSERT_TRUE(replaced);
  ASSERT_TRUE(r.ok()) << testing::ErrText(r.status());
  Result<std::vector<uint8_t>> got = testing::ReadAll(e, r->handle);
  e.Release(r->handle);
  ASSERT_TRUE(got.ok()) << testing::ErrText(got.status());
  EXPECT_TRUE(*got == v3) << "read " << got->size() << " bytes, not version 3";
  // The key's object is where it was, not in quarantine.
  Result<std::vector<uint8_t>> again = testing::GetFile(e, kRootIno, "k");
  ASSERT_TRUE(again.ok()) << testing::ErrText(again.status());
  EXPECT_TRUE(*again == v3);
  started->reset();
}

TEST_F(EngineTest, ConcurrentReadersOfOneKeyWhileItIsReplaced) {
  ASSERT_OK(OpenEngine());
  std::vector<std::vector<uint8_t>> versions;
  for (int v = 0; v < 6; ++v) versions.push_back(testing::Pattern(900 + v, 600000 + v * 70000));
  ASSERT_TRUE(PutFile(kRootIno, "hot", versions[0]).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> torn{0}, errors{0}, reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        Result<uint64_t> ino = LookupIno(kRootIno, "hot");
        if (!ino.ok()) {
          errors++;
          continue;
        }
        Result<OpenResult> o = E().Open(*ino, O_RDONLY);
        if (!o.ok()) {
          // An open racing a replacement may see ESTALE; anything else is wrong.
          if (o.err() != ESTALE) errors++;
          continue;
        }
        Result<std::vector<uint8_t>> got = ReadAll(o->handle, 100000);
        E().Release(o->handle);
        if (!got.ok()) {
          errors++;
          continue;
        }
        reads++;
        bool whole = false;
        for (const auto& v : versions) whole = whole || *got == v;
        if (!whole) torn++;
      }
    });
  }
  // The readers are running: a failed replacement stops the loop, and is
  // reported once they have been joined.
  Status replaced;
  int failed_round = 0;
  for (int round = 1; round < 30 && replaced.ok(); ++round) {
    replaced = PutFile(kRootIno, "hot", versions[round % versions.size()]).status();
    failed_round = round;
  }
  stop = true;
  for (auto& th : readers) th.join();
  ASSERT_TRUE(replaced.ok()) << "replacement " << failed_round << ": " << ErrText(replaced);
  EXPECT_EQ(torn.load(), 0) << "a reader saw a mix of versions";
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(reads.load(), 0);
}

TEST_F(EngineTest, WritePastMaxObjectSizeIsEfbig) {
  EngineOptions o = Defaults();
  o.max_object_bytes = kMiB;
  ASSERT_OK(OpenEngine(1, 1ULL << 30, o));
  Result<OpenResult> c = E().Create(kRootIno, "big", 0644, O_CREAT | O_WRONLY, 0, 0);
  ASSERT_TRUE(c.ok());
  std::vector<uint8_t> data = testing::Pattern(1, 100);
  EXPECT_TRUE(E().Write(c->handle, kMiB - 100, data.data(), 100).ok());
  EXPECT_EQ(E().Write(c->handle, kMiB - 50, data.data(), 100).err(), EFBIG);
  ASSERT_OK(E().Flush(c->handle));
  E().Release(c->handle);
  Result<Attr> a = E().Lookup(kRootIno, "big");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size, kMiB);
}

TEST_F(EngineTest, PageCacheOnlyForReadOnlyHandlesOfTheOnlyOpenVersion) {
  EngineOptions options = Defaults();
  options.page_cache = true;
  ASSERT_OK(OpenEngine(1, 1ULL << 30, options));
  Result<uint64_t> ino = PutFile(kRootIno, "pc", testing::Pattern(1, 10000));
  ASSERT_TRUE(ino.ok());
  Result<OpenResult> r1 = E().Open(*ino, O_RDONLY);
  ASSERT_TRUE(r1.ok());
  EXPECT_TRUE(r1->page_cache);
  // A writer must not share the page-cache reader's inode (the kernel keeps
  // one file size per inode): ESTALE sends the kernel to look the name up
  // again, and the key now has a fresh inode.
  Result<OpenResult> w = E().Open(*ino, O_RDWR);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.err(), ESTALE);
  Result<Attr> fresh = E().Lookup(kRootIno, "pc");
  ASSERT_TRUE(fresh.ok());
  EXPECT_NE(fresh->ino, *ino);
  w = E().Open(fresh->ino, O_RDWR);
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->page_cache) << "a writable handle of an existing key must not use the page cache";
  // A reader while the key has a writer: no page cache either.
  Result<OpenResult> during = E().Open(fresh->ino, O_RDONLY);
  ASSERT_TRUE(during.ok());
  EXPECT_FALSE(during->page_cache);
  E().Release(during->handle);
  E().Release(w->handle);
  // Replace the key while r1 still reads the old version on its own inode:
  // the new version lives on the fresh inode, with pages of its own.
  ASSERT_TRUE(PutFile(kRootIno, "pc", testing::Pattern(2, 20000)).ok());
  Result<OpenResult> r2 = E().Open(fresh->ino, O_RDONLY);
  ASSERT_TRUE(r2.ok());
  EXPECT_TRUE(r2->page_cache);
  EXPECT_FALSE(r2->keep_cache) << "no pages of an earlier version may be kept";
  E().Release(r1->handle);
  E().Release(r2->handle);
  Result<OpenResult> r3 = E().Open(fresh->ino, O_RDONLY);
  ASSERT_TRUE(r3.ok());
  EXPECT_TRUE(r3->page_cache);
  EXPECT_TRUE(r3->keep_cache);
  E().Release(r3->handle);
}

TEST_F(EngineTest, ObserverHearsFirstCommitsAndEvictions) {
  EngineOptions o = Defaults();
  o.background_eviction = false;
  ASSERT_OK(OpenEngine(1, 3 * kMiB, o));
  RecordingObserver obs;
  E().SetObserver(&obs);
  Result<Attr> d = E().Mkdir(kRootIno, "d", 0755, 0, 0);
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(PutFile(d->ino, "first", testing::Pattern(1, kMiB - 8192)).ok());
  ASSERT_TRUE(PutFile(d->ino, "first", testing::Pattern(2, kMiB - 8192)).ok());  // not new
  {
    std::lock_guard<std::mutex> g(obs.mu);
    ASSERT_EQ(obs.appeared.size(), 1u);
    EXPECT_EQ(obs.appeared[0], std::make_pair(d->ino, std::string("first")));
    EXPECT_TRUE(obs.evicted.empty());
  }
  // Fill the capacity: "first" (least recently used, unleased) is evicted.
  ASSERT_TRUE(PutFile(d->ino, "second", testing::Pattern(3, kMiB - 8192)).ok());
  ASSERT_TRUE(PutFile(d->ino, "third", testing::Pattern(4, kMiB - 8192)).ok());
  ASSERT_TRUE(PutFile(d->ino, "fourth", testing::Pattern(5, kMiB - 8192)).ok());
  E().SetObserver(nullptr);
  std::lock_guard<std::mutex> g(obs.mu);
  EXPECT_EQ(obs.appeared.size(), 4u);
  // Every commit, new key or not, invalidates cached attributes: 5 commits.
  ASSERT_EQ(obs.committed.size(), 5u);
  EXPECT_EQ(obs.committed[0], obs.committed[1]) << "both versions of 'first' are one inode";
  ASSERT_FALSE(obs.evicted.empty());
  for (const auto& [parent, name] : obs.evicted) {
    EXPECT_EQ(parent, d->ino);
    EXPECT_EQ(E().Lookup(d->ino, name).err(), ENOENT) << name << " reported evicted but still there";
  }
  EXPECT_TRUE(E().Lookup(d->ino, "fourth").ok());
}

// ---------------------------------------------------------------------------
// Leases, unlink and space.

TEST_F(EngineTest, UnlinkOfOpenFileKeepsBytesForTheHandleThenFreesSpace) {
  ASSERT_OK(OpenEngine());
  const uint64_t used0 = E().Stats().used_bytes;
  std::vector<uint8_t> data = testing::Pattern(11, kMiB + 5);
  Result<uint64_t> ino = PutFile(kRootIno, "doomed", data);
  ASSERT_TRUE(ino.ok()) << ErrText(ino.status());
  EngineStats committed = E().Stats();
  EXPECT_EQ(committed.used_bytes, used0 + ObjectFootprint(data.size()));
  EXPECT_EQ(committed.objects, 1u);

  Result<OpenResult> h = E().Open(*ino, O_RDONLY);
  ASSERT_TRUE(h.ok());
  ASSERT_OK(E().Unlink(kRootIno, "doomed"));
  EXPECT_EQ(E().Lookup(kRootIno, "doomed").err(), ENOENT);
  EXPECT_TRUE(List(kRootIno).empty());
  EXPECT_EQ(E().Unlink(kRootIno, "doomed").err(), ENOENT);

  // The lease keeps the bytes readable (and their space in use).
  Result<std::vector<uint8_t>> back = ReadAll(h->handle);
  ASSERT_TRUE(back.ok()) << ErrText(back.status());
  EXPECT_TRUE(*back == data);
  EXPECT_GE(E().Stats().used_bytes, used0 + ObjectFootprint(data.size()));

  E().Release(h->handle);
  EngineStats after = E().Stats();
  EXPECT_EQ(after.used_bytes, used0) << "space of an unlinked version not returned after its last lease";
  EXPECT_EQ(after.objects, 0u);
  EXPECT_EQ(after.leased_bytes, 0u);
  EXPECT_EQ(after.open_handles, 0u);
  // Once the kernel forgets it (Create gave it one lookup reference), the
  // inode is gone.
  E().Forget(*ino, 1);
  EXPECT_FALSE(E().GetAttr(*ino, nullptr).ok());

  // The name can be used again for a new key.
  std::vector<uint8_t> again = testing::Pattern(12, 10);
  ASSERT_TRUE(PutFile(kRootIno, "doomed", again).ok());
  Result<std::vector<uint8_t>> fresh = GetFile(kRootIno, "doomed");
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE(*fresh == again);
}

TEST_F(EngineTest, UnlinkedFileIsGoneAfterReopen) {
  ASSERT_OK(OpenEngine());
  ASSERT_TRUE(PutFile(kRootIno, "gone", testing::Pattern(1, 100)).ok());
  ASSERT_TRUE(PutFile(kRootIno, "kept", testing::Pattern(2, 100)).ok());
  ASSERT_OK(E().Unlink(kRootIno, "gone"));
  ASSERT_OK(OpenEngine());
  EXPECT_EQ(E().Lookup(kRootIno, "gone").err(), ENOENT);
  EXPECT_TRUE(E().Lookup(kRootIno, "kept").ok());
  EXPECT_EQ(E().Stats().objects, 1u);
}

TEST_F(EngineTest, HandlesNeverReleasedAreReleasedWhenTheEngineCloses) {
  // A stop by signal can end the FUSE session before the kernel's RELEASE of
  // a file closed just before arrives: closing the engine releases such
  // handles as the kernel would have (an unflushed draft is committed, and
  // nothing is left allocated).
  ASSERT_OK(OpenEngine());
  Result<OpenResult> c = E().Create(kRootIno, "open", 0644, O_CREAT | O_WRONLY, 0, 0);
  ASSERT_TRUE(c.ok()) << ErrText(c.status());
  std::vector<uint8_t> data = testing::Pattern(3, 70000);
  ASSERT_TRUE(E().Write(c->handle, 0, data.data(), data.size()).ok());
  Result<uint64_t> kept = PutFile(kRootIno, "kept", testing::Pattern(4, 100));
  ASSERT_TRUE(kept.ok());
  Result<OpenResult> reader = E().Open(*kept, O_RDONLY);
  ASSERT_TRUE(reader.ok()) << ErrText(reader.status());
  EXPECT_EQ(E().Stats().open_handles, 2u);
  ASSERT_OK(OpenEngine());  // the old engine goes with both handles open
  Result<std::vector<uint8_t>> back = GetFile(kRootIno, "open");
  ASSERT_TRUE(back.ok()) << ErrText(back.status());
  EXPECT_TRUE(*back == data);
  EXPECT_EQ(E().Stats().objects, 2u);
}

TEST_F(EngineTest, ReplacedVersionSpaceIsFreedWhenLastLeaseEnds) {
  ASSERT_OK(OpenEngine());
  const uint64_t used0 = E().Stats().used_bytes;
  std::vector<uint8_t> v1 = testing::Pattern(1, 600000);
  std::vector<uint8_t> v2 = testing::Pattern(2, 100000);
  Result<uint64_t> ino = PutFile(kRootIno, "k", v1);
  ASSERT_TRUE(ino.ok());
  Result<OpenResult> r = E().Open(*ino, O_RDONLY);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(PutFile(kRootIno, "k", v2).ok());
  EXPECT_EQ(E().Stats().used_bytes, used0 + ObjectFootprint(v1.size()) + ObjectFootprint(v2.size()));
  E().Release(r->handle);
  EXPECT_EQ(E().Stats().used_bytes, used0 + ObjectFootprint(v2.size()));
  EXPECT_EQ(E().Stats().objects, 1u);
}

// ---------------------------------------------------------------------------
// Rename.

TEST_F(EngineTest, RenameOverAnExistingKey) {
  ASSERT_OK(OpenEngine());
  std::vector<uint8_t> a = testing::Pattern(21, 123456);
  std::vector<uint8_t> b = testing::Pattern(22, 54321);
  ASSERT_TRUE(PutFile(kRootIno, "x.tmp", a).ok());
  Result<uint64_t> b_ino = PutFile(kRootIno, "x", b);
  ASSERT_TRUE(b_ino.ok());
  Result<OpenResult> old_reader = E().Open(*b_ino, O_RDONLY);
  ASSERT_TRUE(old_reader.ok());

  EXPECT_EQ(E().Rename(kRootIno, "x.tmp", kRootIno, "x", RENAME_NOREPLACE).err(), EEXIST);
  ASSERT_OK(E().Rename(kRootIno, "x.tmp", kRootIno, "x", 0));
  EXPECT_EQ(E().Lookup(kRootIno, "x.tmp").err(), ENOENT);
  Result<std::vector<uint8_t>> now = GetFile(kRootIno, "x");
  ASSERT_TRUE(now.ok()) << ErrText(now.status());
  EXPECT_TRUE(*now == a);
  EXPECT_EQ(List(kRootIno), std::vector<std::string>{"x"});
  // The replaced version is still readable through its handle.
  Result<std::vector<uint8_t>> old = ReadAll(old_reader->handle);
  ASSERT_TRUE(old.ok()) << ErrText(old.status());
  EXPECT_TRUE(*old == b);
  E().Release(old_reader->handle);
  EXPECT_EQ(E().Stats().objects, 1u);
  EXPECT_EQ(E().Rename(kRootIno, "missing", kRootIno, "y", 0).err(), ENOENT);
  EXPECT_EQ(E().Rename(kRootIno, "x", kRootIno, "y", RENAME_EXCHANGE).err(), EINVAL);

  // The rename is durable.
  ASSERT_OK(OpenEngine());
  EXPECT_EQ(E().Lookup(kRootIno, "x.tmp").err(), ENOENT);
  Result<std::vector<uint8_t>> persisted = GetFile(kRootIno, "x");
  ASSERT_TRUE(persisted.ok()) << ErrText(persisted.status());
  EXPECT_TRUE(*persisted == a);
}

TEST_F(EngineTest, RenameOfADirectoryWithChildren) {
  ASSERT_OK(OpenEngine(2));
  Result<Attr> d = E().Mkdir(kRootIno, "d", 0755, 0, 0);
  ASSERT_TRUE(d.ok()) << ErrText(d.status());
  Result<Attr> sub = E().Mkdir(d->ino, "sub", 0750, 0, 0);
  ASSERT_TRUE(sub.ok());
  Result<Attr> empty = E().Mkdir(sub->ino, "empty", 0700, 0, 0);
  ASSERT_TRUE(empty.ok());
  std::map<std::string, std::vector<uint8_t>> files;
  for (int i = 0; i < 12; ++i) {
    files["f" + std::to_string(i)] = testing::Pattern(100 + i, 1000 * i + 1);
    ASSERT_TRUE(PutFile(i % 2 ? d->ino : sub->ino, "f" + std::to_string(i), files["f" + std::to_string(i)]).ok());
  }
  ASSERT_OK(E().Rename(kRootIno, "d", kRootIno, "e", 0));
  EXPECT_EQ(E().Lookup(kRootIno, "d").err(), ENOENT);
  auto check = [&](const char* when) {
    SCOPED_TRACE(when);
    Result<uint64_t> e_ino = LookupIno(kRootIno, "e");
    ASSERT_TRUE(e_ino.ok()) << ErrText(e_ino.status());
    Result<uint64_t> sub_ino = LookupIno(*e_ino, "sub");
    ASSERT_TRUE(sub_ino.ok());
    Result<Attr> empty_attr = E().Lookup(*sub_ino, "empty");
    ASSERT_TRUE(empty_attr.ok());
    EXPECT_TRUE(S_ISDIR(empty_attr->mode));
    EXPECT_EQ(empty_attr->mode & 07777, 0700u);
    for (int i = 0; i < 12; ++i) {
      std::string name = "f" + std::to_string(i);
      Result<std::vector<uint8_t>> got = GetFile(i % 2 ? *e_ino : *sub_ino, name);
      ASSERT_TRUE(got.ok()) << name << ": " << ErrText(got.status());
      EXPECT_TRUE(*got == files[name]) << name;
      // The key (and so the header and placement) follows the new path.
      Result<uint64_t> fino = LookupIno(i % 2 ? *e_ino : *sub_ino, name);
      ASSERT_TRUE(fino.ok());
      Result<std::string> key = GetDebugXattr(E(), *fino, "user.kvfs.key");
      if (key.ok()) {
        EXPECT_EQ(*key, (i % 2 ? "e/" : "e/sub/") + name);
      }
    }
  };
  check("after rename");
  ASSERT_OK(OpenEngine(2));
  EXPECT_EQ(E().Lookup(kRootIno, "d").err(), ENOENT);
  check("after reopen");
  EXPECT_EQ(E().Stats().objects, 12u);
}

TEST_F(EngineTest, RenameErrors) {
  ASSERT_OK(OpenEngine());
  Result<Attr> d = E().Mkdir(kRootIno, "d", 0755, 0, 0);
  ASSERT_TRUE(d.ok());
  Result<Attr> full = E().Mkdir(kRootIno, "full", 0755, 0, 0);
  ASSERT_TRUE(full.ok());
  ASSERT_TRUE(PutFile(full->ino, "child", testing::Pattern(1, 10)).ok());
  ASSERT_TRUE(PutFile(kRootIno, "file", testing::Pattern(2, 10)).ok());
  // A directory into itself.
  EXPECT_EQ(E().Rename(kRootIno, "d", d->ino, "inside", 0).err(), EINVAL);
  // Over a non-empty directory.
  int over_full = E().Rename(kRootIno, "d", kRootIno, "full", 0).err();
  EXPECT_TRUE(over_full == ENOTEMPTY || over_full == EEXIST) << over_full;
  // Directory over file and file over directory.
  EXPECT_EQ(E().Rename(kRootIno, "d", kRootIno, "file", 0).err(), ENOTDIR);
  EXPECT_EQ(E().Rename(kRootIno, "file", kRootIno, "d", 0).err(), EISDIR);
  // Renaming a name onto itself changes nothing.
  ASSERT_OK(E().Rename(kRootIno, "file", kRootIno, "file", 0));
  Result<std::vector<uint8_t>> same = GetFile(kRootIno, "file");
  ASSERT_TRUE(same.ok()) << ErrText(same.status());
  EXPECT_TRUE(*same == testing::Pattern(2, 10));
  // Nothing moved.
  EXPECT_TRUE(E().Lookup(kRootIno, "d").ok());
  EXPECT_TRUE(E().Lookup(full->ino, "child").ok());
  EXPECT_TRUE(E().Lookup(kRootIno, "file").ok());
}

// ---------------------------------------------------------------------------
// Directories.

TEST_F(EngineTest, MkdirRmdirAndNameErrors) {
  ASSERT_OK(OpenEngine());
  Result<Attr> d = E().Mkdir(kRootIno, "dir", 0755, 0, 0);
  ASSERT_TRUE(d.ok()) << ErrText(d.status());
  EXPECT_TRUE(S_ISDIR(d->mode));
  EXPECT_EQ(d->mode & 07777, 0755u);
  Result<Attr> looked = E().Lookup(kRootIno, "dir");
  ASSERT_TRUE(looked.ok());
  EXPECT_EQ(looked->ino, d->ino);

  EXPECT_EQ(E().Mkdir(kRootIno, "dir", 0755, 0, 0).err(), EEXIST);
  ASSERT_TRUE(PutFile(kRootIno, "file", testing::Pattern(1, 10)).ok());
  EXPECT_EQ(E().Mkdir(kRootIno, "file", 0755, 0, 0).err(), EEXIST);
  Result<OpenResult> excl = E().Create(kRootIno, "file", 0644, O_CREAT | O_EXCL | O_WRONLY, 0, 0);
  EXPECT_EQ(excl.err(), EEXIST);
  Result<OpenResult> on_dir = E().Create(kRootIno, "dir", 0644, O_CREAT | O_WRONLY, 0, 0);
  EXPECT_EQ(on_dir.err(), EISDIR);

  ASSERT_TRUE(PutFile(d->ino, "child", testing::Pattern(2, 10)).ok());
  EXPECT_EQ(E().Rmdir(kRootIno, "dir").err(), ENOTEMPTY);
  EXPECT_EQ(E().Rmdir(kRootIno, "nope").err(), ENOENT);
  EXPECT_EQ(E().Rmdir(kRootIno, "file").err(), ENOTDIR);
  EXPECT_EQ(E().Unlink(kRootIno, "dir").err(), EISDIR);
  EXPECT_EQ(E().Lookup(kRootIno, "nope").err(), ENOENT);
  EXPECT_EQ(E().Lookup(d->ino + 100000, "x").err(), ENOENT);

  ASSERT_OK(E().Unlink(d->ino, "child"));
  ASSERT_OK(E().Rmdir(kRootIno, "dir"));
  EXPECT_EQ(E().Lookup(kRootIno, "dir").err(), ENOENT);
  EXPECT_EQ(E().Rmdir(kRootIno, "dir").err(), ENOENT);

  // Names: 255 bytes is the limit for one component.
  std::string longest(255, 'n');
  std::string too_long(256, 'n');
  EXPECT_TRUE(E().Mkdir(kRootIno, longest, 0755, 0, 0).ok());
  EXPECT_EQ(E().Mkdir(kRootIno, too_long, 0755, 0, 0).err(), ENAMETOOLONG);
  EXPECT_EQ(E().Create(kRootIno, too_long, 0644, O_CREAT | O_WRONLY, 0, 0).err(), ENAMETOOLONG);
  EXPECT_EQ(E().Lookup(kRootIno, too_long).err(), ENAMETOOLONG);
  EXPECT_EQ(E().Mkdir(kRootIno, "", 0755, 0, 0).err(), EINVAL);
  EXPECT_EQ(E().Mkdir(kRootIno, "a/b", 0755, 0, 0).err(), EINVAL);
  // A whole key longer than a header can hold.
  uint64_t parent = kRootIno;
  size_t key_len = 0;
  bool refused = false;
  for (int i = 0; i < 20 && !refused; ++i) {
    std::string name(200, static_cast<char>('a' + i));
    Result<Attr> m = E().Mkdir(parent, name, 0755, 0, 0);
    key_len += (key_len ? 1 : 0) + name.size();
    if (key_len > kMaxKeyLength) {
      EXPECT_EQ(m.err(), ENAMETOOLONG) << "key of " << key_len << " bytes";
      refused = true;
    } else {
      ASSERT_TRUE(m.ok()) << ErrText(m.status());
      parent = m->ino;
    }
  }
  EXPECT_TRUE(refused);
}

TEST_F(EngineTest, ReadDirListsDotEntriesAndAttributes) {
  ASSERT_OK(OpenEngine());
  Result<Attr> d = E().Mkdir(kRootIno, "d", 0755, 0, 0);
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(PutFile(d->ino, "a", testing::Pattern(1, 4097)).ok());
  std::vector<DirEntry> entries;
  ASSERT_OK(E().ReadDir(d->ino, 0, false, [&](const DirEntry& e) {
    entries.push_back(e);
    return true;
  }));
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].name, ".");
  EXPECT_EQ(entries[1].name, "..");
  EXPECT_EQ(entries[2].name, "a");
  EXPECT_TRUE(S_ISREG(entries[2].attr.mode));
  EXPECT_NE(entries[2].attr.ino, 0u);
  EXPECT_EQ(entries[2].attr.size, 0u) << "a plain listing reports the type only";
  // READDIRPLUS carries the attributes.
  std::vector<DirEntry> plus;
  ASSERT_OK(E().ReadDir(d->ino, entries[1].next_offset, true, [&](const DirEntry& e) {
    plus.push_back(e);
    return true;
  }));
  ASSERT_EQ(plus.size(), 1u);
  EXPECT_EQ(plus[0].name, "a");
  EXPECT_EQ(plus[0].attr.ino, entries[2].attr.ino);
  EXPECT_EQ(plus[0].attr.size, 4097u);
  EXPECT_EQ(plus[0].attr.nlink, 1u);
  EXPECT_LT(entries[0].next_offset, entries[1].next_offset);
  EXPECT_LT(entries[1].next_offset, entries[2].next_offset);
  // Resuming after the last entry gives nothing.
  int more = 0;
  ASSERT_OK(E().ReadDir(d->ino, entries[2].next_offset, false, [&](const DirEntry&) { return ++more, true; }));
  EXPECT_EQ(more, 0);
  // ReadDir of a file.
  Result<uint64_t> f = LookupIno(d->ino, "a");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(E().ReadDir(*f, 0, false, [](const DirEntry&) { return true; }).err(), ENOTDIR);
}

TEST_F(EngineTest, ReadDirPagingIsConsistentWhileEntriesComeAndGo) {
  ASSERT_OK(OpenEngine());
  Result<Attr> dir = E().Mkdir(kRootIno, "big", 0755, 0, 0);
  ASSERT_TRUE(dir.ok());
  const uint64_t d = dir->ino;
  std::set<std::string> initial;
  for (int i = 0; i < 1000; ++i) {
    std::string name = "entry-" + std::to_string(i);
    ASSERT_TRUE(PutFile(d, name, {}).ok()) << name;
    initial.insert(name);
  }
  ASSERT_EQ(List(d).size(), 1000u);

  std::set<std::string> deleted;  // removed at some point during the listing
  std::map<std::string, int> seen;
  std::set<std::string> deleted_before_page;
  uint64_t offset = 0;
  const size_t kPage = 37;
  int pages = 0;
  int added = 0;
  bool done = false;
  while (!done) {
    ASSERT_LT(++pages, 1000) << "listing does not terminate";
    std::vector<DirEntry> page;
    ASSERT_OK(E().ReadDir(d, offset, false, [&](const DirEntry& e) {
      if (page.size() == kPage) return false;  // "buffer full": this entry is not taken
      page.push_back(e);
      return true;
    }));
    if (page.empty()) break;
    done = page.size() < kPage;
    for (const DirEntry& e : page) {
      EXPECT_GT(e.next_offset, offset) << "offsets must grow";
      offset = e.next_offset;
      if (e.name == "." || e.name == "..") continue;
      seen[e.name]++;
      EXPECT_EQ(deleted_before_page.count(e.name), 0u) << e.name << " listed after it was removed";
    }
    // Between pages: remove some entries not yet listed and some already
    // listed, and add new ones.
    for (int k = 0; k < 5; ++k) {
      int victim = (pages * 131 + k * 197) % 1000;
      std::string name = "entry-" + std::to_string(victim);
      if (deleted.count(name)) continue;
      ASSERT_OK(E().Unlink(d, name));
      deleted.insert(name);
      deleted_before_page.insert(name);
    }
    for (int k = 0; k < 3; ++k) {
      ASSERT_TRUE(PutFile(d, "new-" + std::to_string(added++), {}).ok());
    }
  }
  for (const auto& [name, count] : seen) EXPECT_EQ(count, 1) << name << " listed " << count << " times";
  size_t stable = 0;
  for (const std::string& name : initial) {
    if (deleted.count(name)) continue;
    ++stable;
    EXPECT_EQ(seen.count(name), 1u) << name << " was present throughout but not listed";
  }
  EXPECT_GT(stable, 500u);
  EXPECT_GT(pages, 25);
  // A fresh listing is exactly the current contents.
  std::vector<std::string> now = List(d);
  std::set<std::string> now_set(now.begin(), now.end());
  EXPECT_EQ(now.size(), now_set.size());
  EXPECT_EQ(now_set.size(), initial.size() - deleted.size() + added);
}

TEST_F(EngineTest, ReadDirPlusAddsLookupReferencesOnlyForTakenEntries) {
  // A smoke test of `plus`: entries emitted with plus stay resolvable.
  ASSERT_OK(OpenEngine());
  ASSERT_TRUE(PutFile(kRootIno, "a", testing::Pattern(1, 5)).ok());
  ASSERT_TRUE(PutFile(kRootIno, "b", testing::Pattern(2, 5)).ok());
  std::vector<DirEntry> got;
  ASSERT_OK(E().ReadDir(kRootIno, 0, true, [&](const DirEntry& e) {
    got.push_back(e);
    return true;
  }));
  ASSERT_EQ(got.size(), 4u);
  for (const DirEntry& e : got) {
    if (e.name == "." || e.name == "..") continue;
    Result<Attr> a = E().GetAttr(e.attr.ino, nullptr);
    ASSERT_TRUE(a.ok()) << e.name;
    EXPECT_EQ(a->size, 5u);
  }
}

// ---------------------------------------------------------------------------
// Persistence.

TEST_F(EngineTest, ReopenRestoresFilesBytesEmptyDirsAndModes) {
  ASSERT_OK(OpenEngine());
  std::map<std::string, std::vector<uint8_t>> root_files = {
      {"zero", {}},
      {"small", testing::Pattern(1, 17)},
      {"big", testing::Pattern(2, 5 * kMiB + 3)},
  };
  std::map<std::string, uint32_t> modes = {{"zero", 0600}, {"small", 0640}, {"big", 0444}};
  for (const auto& [name, data] : root_files) ASSERT_TRUE(PutFile(kRootIno, name, data, modes[name]).ok()) << name;
  Result<Attr> a = E().Mkdir(kRootIno, "a", 0750, 0, 0);
  ASSERT_TRUE(a.ok());
  Result<Attr> b = E().Mkdir(a->ino, "b", 0711, 0, 0);
  ASSERT_TRUE(b.ok());
  Result<Attr> empty = E().Mkdir(kRootIno, "empty", 0700, 0, 0);
  ASSERT_TRUE(empty.ok());
  Result<Attr> nested_empty = E().Mkdir(b->ino, "leaf", 0755, 0, 0);
  ASSERT_TRUE(nested_empty.ok());
  std::vector<uint8_t> deep = testing::Pattern(3, 70000);
  ASSERT_TRUE(PutFile(b->ino, "deep", deep, 0604).ok());
  // chmod of a committed file and of a directory persists too.
  Result<uint64_t> small_ino = LookupIno(kRootIno, "small");
  ASSERT_TRUE(small_ino.ok());
  SetAttrRequest chmod;
  chmod.mode = 0660;
  ASSERT_TRUE(E().SetAttr(*small_ino, chmod, nullptr).ok());
  modes["small"] = 0660;
  SetAttrRequest chmod_dir;
  chmod_dir.mode = 0705;
  ASSERT_TRUE(E().SetAttr(empty->ino, chmod_dir, nullptr).ok());
  Result<Attr> big_before = E().Lookup(kRootIno, "big");
  ASSERT_TRUE(big_before.ok());

  ASSERT_OK(OpenEngine());  // destroys the engine and opens the same stores

  for (const auto& [name, data] : root_files) {
    Result<Attr> attr = E().Lookup(kRootIno, name);
    ASSERT_TRUE(attr.ok()) << name << ": " << ErrText(attr.status());
    EXPECT_TRUE(S_ISREG(attr->mode)) << name;
    EXPECT_EQ(attr->mode & 07777, modes[name]) << name;
    EXPECT_EQ(attr->size, data.size()) << name;
    Result<std::vector<uint8_t>> got = GetFile(kRootIno, name);
    ASSERT_TRUE(got.ok()) << name << ": " << ErrText(got.status());
    EXPECT_TRUE(*got == data) << name;
  }
  Result<Attr> big_after = E().Lookup(kRootIno, "big");
  ASSERT_TRUE(big_after.ok());
  EXPECT_EQ(big_after->mtime_ns, big_before->mtime_ns) << "commit time (mtime) must persist";

  Result<Attr> a2 = E().Lookup(kRootIno, "a");
  ASSERT_TRUE(a2.ok());
  EXPECT_TRUE(S_ISDIR(a2->mode));
  EXPECT_EQ(a2->mode & 07777, 0750u);
  Result<Attr> b2 = E().Lookup(a2->ino, "b");
  ASSERT_TRUE(b2.ok());
  EXPECT_EQ(b2->mode & 07777, 0711u);
  Result<Attr> empty2 = E().Lookup(kRootIno, "empty");
  ASSERT_TRUE(empty2.ok()) << "empty directories must survive a restart";
  EXPECT_TRUE(S_ISDIR(empty2->mode));
  EXPECT_EQ(empty2->mode & 07777, 0705u);
  EXPECT_TRUE(List(empty2->ino).empty());
  Result<Attr> leaf2 = E().Lookup(b2->ino, "leaf");
  ASSERT_TRUE(leaf2.ok());
  EXPECT_TRUE(S_ISDIR(leaf2->mode));
  Result<Attr> deep_attr = E().Lookup(b2->ino, "deep");
  ASSERT_TRUE(deep_attr.ok());
  EXPECT_EQ(deep_attr->mode & 07777, 0604u);
  Result<std::vector<uint8_t>> deep2 = GetFile(b2->ino, "deep");
  ASSERT_TRUE(deep2.ok());
  EXPECT_TRUE(*deep2 == deep);

  std::vector<std::string> names = List(kRootIno);
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()),
            (std::set<std::string>{"zero", "small", "big", "a", "empty"}));
  EXPECT_EQ(names.size(), 5u);
  EXPECT_EQ(E().Stats().objects, 4u);

  // A removed empty directory stays removed.
  ASSERT_OK(E().Rmdir(kRootIno, "empty"));
  ASSERT_OK(OpenEngine());
  EXPECT_EQ(E().Lookup(kRootIno, "empty").err(), ENOENT);
}

TEST_F(EngineTest, UncommittedVersionsAreNotThereAfterACrash) {
  // The engine runs in a child process that dies (no destructors, no
  // releases) with a committed key being rewritten and a new key being
  // written. A restart must find the committed version and no trace of the
  // new key.
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int code = 0;
    if (!OpenEngine().ok()) code = 10;
    if (!code && !PutFile(kRootIno, "k", testing::Pattern(1, 300000)).ok()) code = 11;
    Result<uint64_t> ino = code ? Result<uint64_t>(Status::Error(EIO, "")) : LookupIno(kRootIno, "k");
    if (!code && !ino.ok()) code = 12;
    if (!code) {
      Result<OpenResult> w = E().Open(*ino, O_WRONLY | O_TRUNC);
      if (!w.ok() || !E().Write(w->handle, 0, testing::Pattern(2, 50).data(), 50).ok()) code = 13;
      Result<OpenResult> c = E().Create(kRootIno, "never", 0644, O_CREAT | O_WRONLY, 0, 0);
      if (!c.ok() || !E().Write(c->handle, 0, testing::Pattern(3, 5000).data(), 5000).ok()) code = 14;
    }
    ::_exit(code);
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus));
  ASSERT_EQ(WEXITSTATUS(wstatus), 0) << "child failed at step " << WEXITSTATUS(wstatus);

  ASSERT_OK(OpenEngine());
  Result<std::vector<uint8_t>> got = GetFile(kRootIno, "k");
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == testing::Pattern(1, 300000));
  EXPECT_EQ(E().Lookup(kRootIno, "never").err(), ENOENT);
  EXPECT_EQ(List(kRootIno), std::vector<std::string>{"k"});
  EXPECT_EQ(E().Stats().objects, 1u);
}

TEST_F(EngineTest, KeysSpreadOverTwoStoresAndComeBackAfterReopen) {
  ASSERT_OK(OpenEngine(2));
  std::map<std::string, std::vector<uint8_t>> files;
  for (int i = 0; i < 64; ++i) {
    std::string name = "chunk-" + std::to_string(i);
    files[name] = testing::Pattern(500 + i, 4096 * (i % 5) + i);
    ASSERT_TRUE(PutFile(kRootIno, name, files[name]).ok()) << name;
  }
  auto check = [&](const char* when) {
    SCOPED_TRACE(when);
    EngineStats st = E().Stats();
    ASSERT_EQ(st.stores.size(), 2u);
    EXPECT_GT(st.stores[0].objects, 0u);
    EXPECT_GT(st.stores[1].objects, 0u);
    EXPECT_EQ(st.stores[0].objects + st.stores[1].objects, 64u);
    EXPECT_EQ(st.objects, 64u);
    size_t expected_on_0 = 0;
    for (const auto& [name, data] : files) {
      Result<std::vector<uint8_t>> got = GetFile(kRootIno, name);
      ASSERT_TRUE(got.ok()) << name << ": " << ErrText(got.status());
      EXPECT_TRUE(*got == data) << name;
      // Placement is the jump consistent hash of the key over the stores.
      uint32_t want = JumpConsistentHash(HashKey(name).low, 2);
      expected_on_0 += want == 0;
      Result<uint64_t> ino = LookupIno(kRootIno, name);
      ASSERT_TRUE(ino.ok());
      Result<std::string> store = GetDebugXattr(E(), *ino, "user.kvfs.store");
      ASSERT_TRUE(store.ok());
      EXPECT_EQ(*store, "local:" + driver_.root(want)) << name;
      Result<std::string> loc = GetDebugXattr(E(), *ino, "user.kvfs.location");
      if (loc.ok()) {
        std::string hex = HashKey(name).Hex();
        EXPECT_EQ(*loc, "objects/" + hex.substr(0, 2) + "/" + hex);
        EXPECT_TRUE(testing::PathExists(driver_.root(want) + "/" + *loc)) << name;
      }
    }
    EXPECT_EQ(st.stores[0].objects, expected_on_0);
  };
  check("before reopen");
  ASSERT_OK(OpenEngine(2));
  check("after reopen");
}

// Writes an object file the way the documented on-disk format describes it
// ([header][data padded to 4 KiB][XXH3-64 per 256 KiB chunk, padded]), with
// no help from the engine.
Status WriteRawObject(Store& store, const std::string& key, const std::vector<uint8_t>& data, uint64_t generation) {
  Result<std::unique_ptr<StagingFile>> staging = store.CreateStaging(Store::kUnknownSize);
  if (!staging.ok()) return staging.status();
  uint64_t total = ObjectFootprint(data.size());
  testing::AlignedBuffer buf(total);
  ObjectHeader h;
  h.kind = ObjectKind::kFile;
  h.generation = generation;
  h.size = data.size();
  h.checksum = testing::DataChecksum(data);
  h.chunk_shift = kChunkShift;
  h.mode = S_IFREG | 0640;
  h.mtime_ns = h.ctime_ns = 1700000000000000000LL;
  h.key = key;
  KVFS_RETURN_IF_ERROR(EncodeHeader(h, buf.data()));
  if (!data.empty()) std::memcpy(buf.data() + kHeaderSize, data.data(), data.size());
  for (uint64_t c = 0; c < ChunkCount(data.size()); ++c) {
    uint64_t len = std::min<uint64_t>(kChunkSize, data.size() - c * kChunkSize);
    uint64_t sum = XXH3_64bits(data.data() + c * kChunkSize, len);
    std::memcpy(buf.data() + ChecksumTableOffset(data.size()) + c * 8, &sum, 8);  // little endian host
  }
  if (::pwrite((*staging)->fd(), buf.data(), total, 0) != static_cast<ssize_t>(total)) return Status::FromErrno("pwrite");
  return store.Publish(**staging, store.LocationFor(HashKey(key)));
}

TEST_F(EngineTest, RebuildReadsIndependentlyWrittenObjectsNewestWinsAndSkipsGarbage) {
  std::vector<uint8_t> older = testing::Pattern(1, 300000);
  std::vector<uint8_t> newer = testing::Pattern(2, 200000);
  std::vector<uint8_t> other = testing::Pattern(3, 5000);
  std::string older_path;
  {
    auto s0 = LocalStore::Open(driver_.dir().Sub("store0"), LocalStoreOptions{});
    auto s1 = LocalStore::Open(driver_.dir().Sub("store1"), LocalStoreOptions{});
    ASSERT_TRUE(s0.ok() && s1.ok());
    // Two copies of one key, as an interrupted cross-store rename leaves them.
    ASSERT_OK(WriteRawObject(**s0, "k", older, 5));
    ASSERT_OK(WriteRawObject(**s1, "k", newer, 9));
    ASSERT_OK(WriteRawObject(**s0, "dir/other", other, 3));
    older_path = driver_.dir().Sub("store0") + "/" + (*s0)->LocationFor(HashKey("k"));
    std::filesystem::create_directories(driver_.dir().Sub("store1") + "/objects/ab");
    ASSERT_TRUE(testing::WriteFile(driver_.dir().Sub("store1") + "/objects/ab/garbage", std::string(9000, 'g')));
    ASSERT_TRUE(testing::WriteFile(driver_.dir().Sub("store0") + "/staging/1-1.tmp", "half written"));
  }
  ASSERT_OK(OpenEngine(2));
  Result<std::vector<uint8_t>> k = GetFile(kRootIno, "k");
  ASSERT_TRUE(k.ok()) << ErrText(k.status());
  EXPECT_TRUE(*k == newer) << "the copy with the higher generation must win";
  Result<Attr> ka = E().Lookup(kRootIno, "k");
  ASSERT_TRUE(ka.ok());
  EXPECT_EQ(ka->mode & 07777, 0640u);
  EXPECT_EQ(ka->mtime_ns, 1700000000000000000LL);
  Result<uint64_t> dir = LookupIno(kRootIno, "dir");
  ASSERT_TRUE(dir.ok()) << "parent directories are implied by keys";
  Result<std::vector<uint8_t>> o = GetFile(*dir, "other");
  ASSERT_TRUE(o.ok()) << ErrText(o.status());
  EXPECT_TRUE(*o == other);
  EXPECT_EQ(E().Stats().objects, 2u);
  EXPECT_FALSE(testing::PathExists(older_path)) << "the superseded copy should be removed";
  // New versions get generations above every one found on the stores.
  ASSERT_TRUE(PutFile(kRootIno, "k", older).ok());
  Result<uint64_t> kino = LookupIno(kRootIno, "k");
  ASSERT_TRUE(kino.ok());
  Result<std::string> version = GetDebugXattr(E(), *kino, "user.kvfs.version");
  ASSERT_TRUE(version.ok());
  EXPECT_GT(std::stoull(*version), 9u);
  ASSERT_OK(OpenEngine(2));
  k = GetFile(kRootIno, "k");
  ASSERT_TRUE(k.ok());
  EXPECT_TRUE(*k == older);
}

TEST_F(EngineTest, TruncatingOpenWithNoWritesCommitsAnEmptyVersion) {
  ASSERT_OK(OpenEngine());
  Result<uint64_t> ino = PutFile(kRootIno, "e", testing::Pattern(1, 9999));
  ASSERT_TRUE(ino.ok());
  Result<OpenResult> w = E().Open(*ino, O_WRONLY | O_TRUNC);
  ASSERT_TRUE(w.ok());
  ASSERT_OK(E().Flush(w->handle));
  E().Release(w->handle);
  Result<Attr> a = E().Lookup(kRootIno, "e");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size, 0u);
  ASSERT_OK(OpenEngine());
  a = E().Lookup(kRootIno, "e");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size, 0u);
}

// ---------------------------------------------------------------------------
// Capacity.

TEST_F(EngineTest, CommitThatCannotFitIsEnospcAndKeepsThePreviousVersion) {
  // Every committed object is leased by an open reader, so nothing can be
  // evicted to make room.
  ASSERT_OK(OpenEngine(1, 4 * kMiB));
  std::vector<uint8_t> a = testing::Pattern(1, kMiB);
  std::vector<uint8_t> b = testing::Pattern(2, kMiB);
  std::vector<uint8_t> v1 = testing::Pattern(3, 512 * 1024);
  std::vector<uint8_t> v2 = testing::Pattern(4, 2 * kMiB);
  ASSERT_TRUE(PutFile(kRootIno, "a", a).ok());
  ASSERT_TRUE(PutFile(kRootIno, "b", b).ok());
  Result<uint64_t> k = PutFile(kRootIno, "k", v1);
  ASSERT_TRUE(k.ok());
  std::vector<FileHandle*> readers;
  for (const char* name : {"a", "b", "k"}) {
    Result<uint64_t> ino = LookupIno(kRootIno, name);
    ASSERT_TRUE(ino.ok());
    Result<OpenResult> r = E().Open(*ino, O_RDONLY);
    ASSERT_TRUE(r.ok());
    readers.push_back(r->handle);
  }
  const EngineStats before = E().Stats();

  Result<OpenResult> w = E().Open(*k, O_WRONLY | O_TRUNC);
  ASSERT_TRUE(w.ok());
  Result<size_t> wr = E().Write(w->handle, 0, v2.data(), v2.size());
  Status commit = wr.ok() ? E().Flush(w->handle) : wr.status();
  EXPECT_EQ(commit.err(), ENOSPC) << ErrText(commit);
  E().Release(w->handle);

  EngineStats after = E().Stats();
  EXPECT_EQ(after.used_bytes, before.used_bytes) << "a failed commit must not leave space in use";
  EXPECT_LE(after.used_bytes, 4 * kMiB);
  EXPECT_EQ(after.objects, 3u);
  EXPECT_EQ(after.commits, before.commits);
  for (FileHandle* h : readers) E().Release(h);
  // The previous version is intact, and so is everything else.
  Result<std::vector<uint8_t>> got = GetFile(kRootIno, "k");
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == v1);
  Result<std::vector<uint8_t>> got_a = GetFile(kRootIno, "a");
  ASSERT_TRUE(got_a.ok());
  EXPECT_TRUE(*got_a == a);
  Result<std::vector<uint8_t>> got_b = GetFile(kRootIno, "b");
  ASSERT_TRUE(got_b.ok());
  EXPECT_TRUE(*got_b == b);
  // And it is what a restart finds.
  ASSERT_OK(OpenEngine(1, 4 * kMiB));
  got = GetFile(kRootIno, "k");
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == v1);
}

TEST_F(EngineTest, ObjectLargerThanCapacityIsEnospcAndHarmsNothing) {
  // The new version cannot fit even in an empty store; trying must not evict
  // (or otherwise lose) the key's committed version.
  ASSERT_OK(OpenEngine(1, kMiB));
  std::vector<uint8_t> v1 = testing::Pattern(5, 100000);
  Result<uint64_t> k = PutFile(kRootIno, "k", v1);
  ASSERT_TRUE(k.ok());
  const uint64_t used_before = E().Stats().used_bytes;
  Result<OpenResult> w = E().Open(*k, O_WRONLY | O_TRUNC);
  ASSERT_TRUE(w.ok());
  std::vector<uint8_t> v2 = testing::Pattern(6, kMiB);  // footprint > capacity
  Result<size_t> wr = E().Write(w->handle, 0, v2.data(), v2.size());
  Status commit = wr.ok() ? E().Flush(w->handle) : wr.status();
  EXPECT_EQ(commit.err(), ENOSPC) << ErrText(commit);
  E().Release(w->handle);
  Result<std::vector<uint8_t>> got = GetFile(kRootIno, "k");
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == v1);
  EXPECT_EQ(E().Stats().used_bytes, used_before);
  EXPECT_EQ(E().Stats().objects, 1u);
}

TEST_F(EngineTest, UnleasedObjectsAreEvictedToMakeRoom) {
  ASSERT_OK(OpenEngine(1, 4 * kMiB));
  for (int i = 0; i < 6; ++i) {
    Result<uint64_t> r = PutFile(kRootIno, "f" + std::to_string(i), testing::Pattern(i, kMiB - 8192));
    ASSERT_TRUE(r.ok()) << i << ": " << ErrText(r.status());
    EXPECT_LE(E().Stats().used_bytes, 4 * kMiB);
  }
  // The newest one is always there.
  Result<std::vector<uint8_t>> got = GetFile(kRootIno, "f5");
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(*got == testing::Pattern(5, kMiB - 8192));
  EXPECT_LT(E().Stats().objects, 6u);
  EXPECT_GT(E().Stats().evictions.total(), 0u);
}

TEST_F(EngineTest, CommitThatEvictsDoesNotDeadlockWithConcurrentXattrReads) {
  // A commit that must evict many objects to make room runs while another
  // thread (an operator's getfattr) reads the attributes of the file being
  // committed. Both must finish: "never a hang".
  EngineOptions o = Defaults();
  o.background_eviction = false;
  ASSERT_OK(OpenEngine(1, 8 * kMiB, o));
  for (int i = 0; i < 150; ++i) {
    ASSERT_TRUE(PutFile(kRootIno, "small-" + std::to_string(i), testing::Pattern(i, 40000)).ok());
  }
  Result<OpenResult> c = E().Create(kRootIno, "big", 0644, O_CREAT | O_WRONLY, 0, 0);
  ASSERT_TRUE(c.ok());
  const uint64_t ino = c->attr.ino;
  std::vector<uint8_t> data = testing::Pattern(7, 6 * kMiB);
  ASSERT_TRUE(E().Write(c->handle, 0, data.data(), data.size()).ok());

  auto state = std::make_shared<std::atomic<int>>(0);  // 1: flush done, 2: flush failed
  auto stop = std::make_shared<std::atomic<bool>>(false);
  Engine* engine = &E();
  std::thread getfattr([engine, ino, stop] {
    while (!stop->load()) {
      (void)GetDebugXattr(*engine, ino, "user.kvfs.state");
      (void)ListDebugXattrs(*engine, ino);
    }
  });
  FileHandle* h = c->handle;
  std::thread flusher([engine, h, state] { state->store(engine->Flush(h).ok() ? 1 : 2); });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (state->load() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop->store(true);
  if (state->load() == 0) {
    // Deadlocked: leave the stuck threads and the engine behind so the rest
    // of the suite can run.
    getfattr.detach();
    flusher.detach();
    driver_.Abandon();
    FAIL() << "Flush did not return within 20 s while GetXattr ran concurrently (deadlock)";
  }
  flusher.join();
  getfattr.join();
  EXPECT_EQ(state->load(), 1);
  E().Release(h);
  Result<std::vector<uint8_t>> got = GetFile(kRootIno, "big");
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == data);
  EXPECT_GT(E().Stats().evictions.capacity, 0u);
  EXPECT_LE(E().Stats().used_bytes, 8 * kMiB);
}

// ---------------------------------------------------------------------------
// Debugging surface and counters.

TEST_F(EngineTest, XattrsOfACommittedFile) {
  ASSERT_OK(OpenEngine());
  std::vector<uint8_t> data = testing::Pattern(77, 300000);
  Result<uint64_t> ino = PutFile(kRootIno, "x", data);
  ASSERT_TRUE(ino.ok());

  Result<std::string> checksum = GetDebugXattr(E(), *ino, "user.kvfs.checksum");
  ASSERT_TRUE(checksum.ok()) << ErrText(checksum.status());
  uint64_t sum = testing::DataChecksum(data);
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016" PRIx64, sum);
  EXPECT_TRUE(checksum->find(hex) != std::string::npos || checksum->find(std::to_string(sum)) != std::string::npos)
      << "checksum xattr '" << *checksum << "' does not show XXH3-64 of the data (" << hex << ")";

  Result<std::string> version = GetDebugXattr(E(), *ino, "user.kvfs.version");
  ASSERT_TRUE(version.ok()) << ErrText(version.status());
  uint64_t v1 = std::stoull(*version);
  EXPECT_GT(v1, 0u);

  Result<std::string> store = GetDebugXattr(E(), *ino, "user.kvfs.store");
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(*store, "local:" + driver_.root(0));

  Result<std::string> key_hash = GetDebugXattr(E(), *ino, "user.kvfs.key_hash");
  if (key_hash.ok()) {
    EXPECT_EQ(*key_hash, HashKey("x").Hex());
  }

  EXPECT_EQ(GetDebugXattr(E(), *ino, "user.kvfs.no_such_thing").err(), ENODATA);
  EXPECT_EQ(GetDebugXattr(E(), *ino, "user.other").err(), ENODATA);
  EXPECT_EQ(GetDebugXattr(E(), *ino, "trusted.kvfs.checksum").err(), EOPNOTSUPP);
  EXPECT_EQ(GetDebugXattr(E(), *ino, "security.selinux").err(), EOPNOTSUPP);
  EXPECT_EQ(GetDebugXattr(E(), *ino, "system.posix_acl_access").err(), EOPNOTSUPP);

  Result<std::vector<std::string>> names = ListDebugXattrs(E(), *ino);
  ASSERT_TRUE(names.ok());
  for (const char* n : {"user.kvfs.checksum", "user.kvfs.version", "user.kvfs.store"}) {
    EXPECT_NE(std::find(names->begin(), names->end(), n), names->end()) << n;
  }
  for (const std::string& n : *names) {
    Result<std::string> value = GetDebugXattr(E(), *ino, n);
    EXPECT_TRUE(value.ok()) << "listed attribute " << n << " cannot be read";
  }

  // A new version has a higher version number and its own checksum.
  std::vector<uint8_t> data2 = testing::Pattern(78, 1000);
  ASSERT_TRUE(PutFile(kRootIno, "x", data2).ok());
  version = GetDebugXattr(E(), *ino, "user.kvfs.version");
  ASSERT_TRUE(version.ok());
  EXPECT_GT(std::stoull(*version), v1);
  checksum = GetDebugXattr(E(), *ino, "user.kvfs.checksum");
  ASSERT_TRUE(checksum.ok());
  std::snprintf(hex, sizeof(hex), "%016" PRIx64, testing::DataChecksum(data2));
  EXPECT_NE(checksum->find(hex), std::string::npos) << *checksum;

  // Versions keep growing across a restart (never reused).
  uint64_t before_reopen = std::stoull(*version);
  ASSERT_OK(OpenEngine());
  Result<uint64_t> ino2 = LookupIno(kRootIno, "x");
  ASSERT_TRUE(ino2.ok());
  Result<std::string> v_after = GetDebugXattr(E(), *ino2, "user.kvfs.version");
  ASSERT_TRUE(v_after.ok());
  EXPECT_EQ(std::stoull(*v_after), before_reopen);
  ASSERT_TRUE(PutFile(kRootIno, "x", data).ok());
  v_after = GetDebugXattr(E(), *ino2, "user.kvfs.version");
  ASSERT_TRUE(v_after.ok());
  EXPECT_GT(std::stoull(*v_after), before_reopen);
}

TEST_F(EngineTest, StatsCountReadsWritesAndCommits) {
  ASSERT_OK(OpenEngine());
  const EngineStats s0 = E().Stats();
  EXPECT_EQ(s0.capacity_bytes, 1ULL << 30);
  Result<OpenResult> c = E().Create(kRootIno, "counted", 0644, O_CREAT | O_WRONLY, 0, 0);
  ASSERT_TRUE(c.ok());
  std::vector<uint8_t> data = testing::Pattern(1, 30000);
  ASSERT_TRUE(E().Write(c->handle, 0, data.data(), 10000).ok());
  ASSERT_TRUE(E().Write(c->handle, 10000, data.data() + 10000, 10000).ok());
  ASSERT_TRUE(E().Write(c->handle, 20000, data.data() + 20000, 10000).ok());
  EXPECT_EQ(E().Stats().open_handles, s0.open_handles + 1);
  ASSERT_OK(E().Flush(c->handle));
  E().Release(c->handle);
  const EngineStats s1 = E().Stats();
  EXPECT_EQ(s1.writes - s0.writes, 3u);
  EXPECT_EQ(s1.write_bytes - s0.write_bytes, 30000u);
  EXPECT_EQ(s1.commits - s0.commits, 1u);
  EXPECT_EQ(s1.commit_failures, s0.commit_failures);
  // The commit histogram counts exactly the successful commits.
  EXPECT_EQ(s1.commit_latency_ns.count - s0.commit_latency_ns.count, 1u);
  EXPECT_EQ(s1.commit_latency_ns.count, s1.commits);
  EXPECT_GT(s1.commit_latency_ns.sum, s0.commit_latency_ns.sum);
  EXPECT_EQ(s1.objects, 1u);
  EXPECT_EQ(s1.open_handles, s0.open_handles);

  Result<uint64_t> ino = LookupIno(kRootIno, "counted");
  ASSERT_TRUE(ino.ok());
  Result<OpenResult> r = E().Open(*ino, O_RDONLY);
  ASSERT_TRUE(r.ok());
  Result<std::vector<uint8_t>> p1 = ReadOnce(r->handle, 0, 4096);
  Result<std::vector<uint8_t>> p2 = ReadOnce(r->handle, 4096, 100000);
  ASSERT_TRUE(p1.ok() && p2.ok());
  EXPECT_EQ(p1->size() + p2->size(), 30000u);
  E().Release(r->handle);
  const EngineStats s2 = E().Stats();
  EXPECT_EQ(s2.reads - s1.reads, 2u);
  // Every read lands in the read latency histogram.
  EXPECT_EQ(s2.read_latency_ns.count - s1.read_latency_ns.count, 2u);
  EXPECT_EQ(s2.read_latency_ns.count, s2.reads);
  EXPECT_EQ(s2.read_latency_ns.counts.size(), s2.read_latency_ns.bounds.size() + 1);
  EXPECT_EQ(s2.read_bytes - s1.read_bytes, 30000u);
  EXPECT_EQ(s2.writes, s1.writes);
  EXPECT_EQ(s2.commits, s1.commits);

  const uint64_t neg0 = s2.negative_lookups;
  EXPECT_EQ(E().Lookup(kRootIno, "absent").err(), ENOENT);
  EXPECT_EQ(E().Stats().negative_lookups, neg0 + 1);
  EXPECT_FALSE(FormatStatsJson(E().Stats()).empty());
}

TEST_F(EngineTest, CorruptedObjectOnStoreReadsAsEioNotWrongBytes) {
  ASSERT_OK(OpenEngine());
  std::vector<uint8_t> data = testing::Pattern(9, 600000);
  Result<uint64_t> ino = PutFile(kRootIno, "fragile", data);
  ASSERT_TRUE(ino.ok());
  std::string hex = HashKey("fragile").Hex();
  std::string loc = driver_.root(0) + "/objects/" + hex.substr(0, 2) + "/" + hex;
  ASSERT_TRUE(testing::PathExists(loc)) << loc;
  // Flip one data byte in the second 256 KiB chunk behind kvfs's back.
  int fd = ::open(loc.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  uint8_t flipped = data[300000] ^ 0xFF;
  ASSERT_EQ(::pwrite(fd, &flipped, 1, kHeaderSize + 300000), 1);
  ::fsync(fd);
  ::close(fd);

  Result<OpenResult> r = E().Open(*ino, O_RDONLY);
  if (!r.ok()) {
    EXPECT_EQ(r.err(), EIO);
    return;
  }
  // The first chunk is fine; the damaged one must not be served.
  Result<std::vector<uint8_t>> first = ReadOnce(r->handle, 0, 4096);
  if (first.ok()) {
    EXPECT_TRUE(*first == std::vector<uint8_t>(data.begin(), data.begin() + 4096));
  }
  Result<std::vector<uint8_t>> damaged = ReadOnce(r->handle, 299000, 4096);
  EXPECT_FALSE(damaged.ok()) << "served bytes of a corrupted chunk";
  if (!damaged.ok()) {
    EXPECT_EQ(damaged.err(), EIO);
  }
  E().Release(r->handle);
}

TEST_F(EngineTest, WriteThroughReadOnlyHandleAndReadThroughWriteOnlyHandleFail) {
  ASSERT_OK(OpenEngine());
  Result<uint64_t> ino = PutFile(kRootIno, "f", testing::Pattern(1, 100));
  ASSERT_TRUE(ino.ok());
  Result<OpenResult> r = E().Open(*ino, O_RDONLY);
  ASSERT_TRUE(r.ok());
  uint8_t b = 1;
  EXPECT_EQ(E().Write(r->handle, 0, &b, 1).err(), EBADF);
  E().Release(r->handle);
  Result<OpenResult> w = E().Open(*ino, O_WRONLY);
  ASSERT_TRUE(w.ok());
  ReadReply reply;
  EXPECT_EQ(E().Read(w->handle, 0, 10, &reply).err(), EBADF);
  E().Release(w->handle);
  Result<std::vector<uint8_t>> got = GetFile(kRootIno, "f");
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(*got == testing::Pattern(1, 100));
}

TEST_F(EngineTest, OpenRejectsBadOptions) {
  std::vector<std::unique_ptr<Store>> none;
  EXPECT_EQ(Engine::Start(EngineOptions{}, std::move(none)).err(), EINVAL);
}

}  // namespace
}  // namespace kvfs
