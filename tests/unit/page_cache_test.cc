// Engine: which handles the kernel may serve from its page cache, and when
// the pages it already holds for an inode are still a handle's bytes
// (OpenResult::page_cache and keep_cache). The FUSE layer turns these into
// FOPEN_DIRECT_IO and FOPEN_KEEP_CACHE; the mounted tests check the bytes.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "adapters/local_store.h"
#include "core/engine.h"
#include "tests/unit/engine_driver.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

class PageCacheTest : public ::testing::Test {
 protected:
  void OpenEngine(bool page_cache = true) {
    ASSERT_TRUE(dir_.ok());
    engine_.reset();
    Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(dir_.Sub("store"), LocalStoreOptions{});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    std::vector<std::unique_ptr<Store>> stores;
    stores.push_back(std::move(*s));
    EngineOptions o;
    o.space.capacity_bytes = 1ULL << 30;
    o.buffer_count = 4;
    o.page_cache = page_cache;
    Result<std::unique_ptr<Engine>> e = Engine::Start(o, std::move(stores));
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(*e);
  }

  // Writes and commits data through handle h, then releases it.
  void WriteAndClose(FileHandle* h, const std::vector<uint8_t>& data) {
    ASSERT_TRUE(engine_->Write(h, 0, data.data(), data.size()).ok());
    ASSERT_TRUE(engine_->Flush(h).ok());
    engine_->Release(h);
  }

  Result<OpenResult> OpenKey(const std::string& name, int flags) {
    Result<Attr> a = engine_->Lookup(kRootIno, name);
    if (!a.ok()) return a.status();
    return engine_->Open(a->ino, flags);
  }

  testing::TempDir dir_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(PageCacheTest, ANewKeysWritersAndLaterReadersShareItsPages) {
  OpenEngine();
  Result<OpenResult> w = engine_->Create(kRootIno, "k", 0644, O_CREAT | O_WRONLY | O_TRUNC, 0, 0);
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(w->page_cache) << "the writer of a new key may write through the page cache";
  EXPECT_FALSE(w->keep_cache);
  WriteAndClose(w->handle, testing::Pattern(1, 300000));
  // The writer's pages are the committed version's bytes: readers keep them.
  for (int i = 0; i < 2; ++i) {
    Result<OpenResult> r = OpenKey("k", O_RDONLY);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->page_cache);
    EXPECT_TRUE(r->keep_cache) << "reader " << i << " drops pages that hold its own version";
    engine_->Release(r->handle);
  }
  // O_DIRECT bypasses the cache but leaves it alone.
  Result<OpenResult> d = OpenKey("k", O_RDONLY | O_DIRECT);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->page_cache);
  EXPECT_TRUE(d->keep_cache);
  engine_->Release(d->handle);
  EXPECT_GE(engine_->Stats().page_cache_opens, 3u);
}

TEST_F(PageCacheTest, AVersionWrittenInPlaceNeverInheritsTheOldPages) {
  OpenEngine();
  Result<OpenResult> w = engine_->Create(kRootIno, "k", 0644, O_CREAT | O_WRONLY | O_TRUNC, 0, 0);
  ASSERT_TRUE(w.ok());
  WriteAndClose(w->handle, testing::Pattern(1, 300000));
  Result<OpenResult> r1 = OpenKey("k", O_RDONLY);
  ASSERT_TRUE(r1.ok());
  EXPECT_TRUE(r1->keep_cache);
  engine_->Release(r1->handle);

  // An in-place rewrite: its writer bypasses the cache and drops the pages.
  Result<OpenResult> w2 = OpenKey("k", O_WRONLY | O_TRUNC);
  ASSERT_TRUE(w2.ok());
  EXPECT_FALSE(w2->page_cache);
  EXPECT_FALSE(w2->keep_cache);
  // A reader while the key is being written: direct, and it keeps the pages
  // of the version it reads.
  Result<OpenResult> r2 = OpenKey("k", O_RDONLY);
  ASSERT_TRUE(r2.ok());
  EXPECT_FALSE(r2->page_cache);
  WriteAndClose(w2->handle, testing::Pattern(2, 200000));
  // r2 still holds the old version: a reader of the new one must not share pages.
  Result<OpenResult> r3 = OpenKey("k", O_RDONLY);
  ASSERT_TRUE(r3.ok());
  EXPECT_FALSE(r3->page_cache);
  engine_->Release(r2->handle);
  engine_->Release(r3->handle);
  // Alone again: cached, but whatever the kernel holds is not this version.
  Result<OpenResult> r4 = OpenKey("k", O_RDONLY);
  ASSERT_TRUE(r4.ok());
  EXPECT_TRUE(r4->page_cache);
  EXPECT_FALSE(r4->keep_cache) << "pages of the old version would be served as the new one";
  engine_->Release(r4->handle);
  Result<OpenResult> r5 = OpenKey("k", O_RDONLY);
  ASSERT_TRUE(r5.ok());
  EXPECT_TRUE(r5->keep_cache);
  engine_->Release(r5->handle);
}

TEST_F(PageCacheTest, AWriterThatJoinsWithoutTheCacheMakesTheNewKeysPagesUntrusted) {
  OpenEngine();
  Result<OpenResult> w = engine_->Create(kRootIno, "k", 0644, O_CREAT | O_WRONLY | O_TRUNC, 0, 0);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->page_cache);
  // The creating process opens its pending key again (by inode, as the kernel does).
  Result<OpenResult> direct = engine_->Open(w->attr.ino, O_WRONLY | O_DIRECT);
  ASSERT_TRUE(direct.ok());
  EXPECT_FALSE(direct->page_cache);
  std::vector<uint8_t> data = testing::Pattern(3, 8192);
  ASSERT_TRUE(engine_->Write(direct->handle, 0, data.data(), data.size()).ok());
  engine_->Release(direct->handle);
  WriteAndClose(w->handle, testing::Pattern(4, 4096));
  Result<OpenResult> r = OpenKey("k", O_RDONLY);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->keep_cache) << "the cache cannot hold bytes written around it";
  engine_->Release(r->handle);
}

// The bytes of one Read call at offset 0 through handle h (empty when the
// read fails).
std::vector<uint8_t> ReadUpTo(Engine& e, FileHandle* h, size_t size) {
  Result<std::vector<uint8_t>> r = testing::ReadOnce(e, h, 0, size);
  return r.ok() ? std::move(*r) : std::vector<uint8_t>();
}

TEST_F(PageCacheTest, AnInPlaceWriterGetsAFreshInodeWhilePageCacheReadersKeepTheirs) {
  OpenEngine();
  const std::vector<uint8_t> v1 = testing::Pattern(1, 300000), v2 = testing::Pattern(2, 100000);
  Result<OpenResult> w = engine_->Create(kRootIno, "k", 0644, O_CREAT | O_WRONLY | O_TRUNC, 0, 0);
  ASSERT_TRUE(w.ok());
  const uint64_t old_ino = w->attr.ino;
  WriteAndClose(w->handle, v1);
  Result<OpenResult> r1 = OpenKey("k", O_RDONLY);
  ASSERT_TRUE(r1.ok());
  ASSERT_TRUE(r1->page_cache);

  // The kernel's file size belongs to the inode: the writer must not share it.
  Result<OpenResult> refused = engine_->Open(old_ino, O_WRONLY | O_TRUNC);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.err(), ESTALE) << "the kernel must look the name up again";
  Result<Attr> fresh = engine_->Lookup(kRootIno, "k");
  ASSERT_TRUE(fresh.ok());
  EXPECT_NE(fresh->ino, old_ino);
  EXPECT_EQ(fresh->size, v1.size());
  Result<OpenResult> w2 = engine_->Open(fresh->ino, O_WRONLY | O_TRUNC);
  ASSERT_TRUE(w2.ok()) << w2.status().ToString();
  WriteAndClose(w2->handle, v2);

  // The old inode still serves its reader's version, bytes and size.
  EXPECT_EQ(ReadUpTo(*engine_, r1->handle, 1 << 20), v1);
  Result<Attr> a1 = engine_->GetAttr(old_ino, r1->handle);
  ASSERT_TRUE(a1.ok());
  EXPECT_EQ(a1->size, v1.size());
  Result<Attr> a1_no_handle = engine_->GetAttr(old_ino, nullptr);
  ASSERT_TRUE(a1_no_handle.ok());
  EXPECT_EQ(a1_no_handle->size, v1.size()) << "fstat without a handle must show the reader's version";
  // New opens find the new version under the name, listed once.
  Result<OpenResult> r2 = OpenKey("k", O_RDONLY);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(ReadUpTo(*engine_, r2->handle, 1 << 20), v2);
  engine_->Release(r2->handle);
  int listed = 0;
  ASSERT_TRUE(engine_->ReadDir(kRootIno, 0, false, [&](const DirEntry& d) {
                               if (d.name == "k") ++listed;
                               return true;
                             }).ok());
  EXPECT_EQ(listed, 1);
  engine_->Release(r1->handle);
  EXPECT_EQ(engine_->Stats().superseded_inodes, 1u);
}

TEST_F(PageCacheTest, CreateAndTruncateOverPageCacheReadersUseAFreshInode) {
  OpenEngine();
  Result<OpenResult> w = engine_->Create(kRootIno, "k", 0644, O_CREAT | O_WRONLY | O_TRUNC, 0, 0);
  ASSERT_TRUE(w.ok());
  const uint64_t first = w->attr.ino;
  WriteAndClose(w->handle, testing::Pattern(1, 50000));
  Result<OpenResult> r1 = OpenKey("k", O_RDONLY);
  ASSERT_TRUE(r1.ok() && r1->page_cache);
  // CREATE of the existing name (the kernel had no entry for it): the reply names the fresh inode.
  Result<OpenResult> c = engine_->Create(kRootIno, "k", 0644, O_CREAT | O_WRONLY | O_TRUNC, 0, 0);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_NE(c->attr.ino, first);
  WriteAndClose(c->handle, testing::Pattern(2, 7000));
  EXPECT_EQ(ReadUpTo(*engine_, r1->handle, 1 << 20), testing::Pattern(1, 50000));

  // truncate(path) while a page-cache reader holds the current inode.
  Result<OpenResult> r2 = OpenKey("k", O_RDONLY);
  ASSERT_TRUE(r2.ok());
  ASSERT_TRUE(r2->page_cache);
  const uint64_t second = c->attr.ino;
  SetAttrRequest truncate;
  truncate.size = 10;
  Result<Attr> t = engine_->SetAttr(second, truncate, nullptr);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.err(), ESTALE);
  Result<Attr> third = engine_->Lookup(kRootIno, "k");
  ASSERT_TRUE(third.ok());
  Result<Attr> t2 = engine_->SetAttr(third->ino, truncate, nullptr);
  ASSERT_TRUE(t2.ok()) << t2.status().ToString();
  EXPECT_EQ(t2->size, 10u);
  EXPECT_EQ(ReadUpTo(*engine_, r2->handle, 1 << 20), testing::Pattern(2, 7000));
  engine_->Release(r1->handle);
  engine_->Release(r2->handle);
  EXPECT_EQ(engine_->Stats().superseded_inodes, 2u);
}

TEST_F(PageCacheTest, OffMeansEveryHandleBypassesTheCache) {
  OpenEngine(false);
  Result<OpenResult> w = engine_->Create(kRootIno, "k", 0644, O_CREAT | O_WRONLY | O_TRUNC, 0, 0);
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->page_cache);
  WriteAndClose(w->handle, testing::Pattern(1, 5000));
  Result<OpenResult> r = OpenKey("k", O_RDONLY);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->page_cache);
  engine_->Release(r->handle);
  EXPECT_EQ(engine_->Stats().page_cache_opens, 0u);
}

}  // namespace
}  // namespace kvfs
