// Unit tests of the Engine's special files (engine_special.cc): symbolic
// links, FIFOs, sockets and device nodes as namespace-only records, their
// persistence across a reopen (also after renames that move them to another
// store), and what they are not (opened, truncated, counted as objects).
// Also: set-group-ID directories passing on their group.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <string>
#include <vector>

#include "adapters/local_store.h"
#include "core/engine.h"
#include "core/fsck.h"
#include "tests/unit/engine_driver.h"

namespace kvfs {
namespace {

using testing::EngineDriver;

class EngineSpecialTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(d_.Open(2).ok()); }
  Engine& E() { return d_.engine(); }
  EngineDriver d_;
};

TEST_F(EngineSpecialTest, SymlinkRecordsItsTarget) {
  Result<Attr> a = E().Symlink(kRootIno, "lnk", "some/where/else", 10, 20);
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_TRUE(S_ISLNK(a->mode));
  EXPECT_EQ(a->mode & 07777, 0777u);
  EXPECT_EQ(a->size, 15u);
  EXPECT_EQ(a->uid, 10u);
  EXPECT_EQ(a->gid, 20u);
  Result<std::string> t = E().Readlink(a->ino);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(*t, "some/where/else");
  Result<Attr> looked = E().Lookup(kRootIno, "lnk");
  ASSERT_TRUE(looked.ok());
  EXPECT_EQ(looked->ino, a->ino);
  // Special records are not objects (files) and cannot be opened.
  EXPECT_EQ(E().Stats().objects, 0u);
  EXPECT_EQ(E().Open(a->ino, O_RDONLY).err(), ENXIO);
  SetAttrRequest truncate;
  truncate.size = 0;
  EXPECT_EQ(E().SetAttr(a->ino, truncate, nullptr).err(), EINVAL);
}

TEST_F(EngineSpecialTest, SymlinkTargetBounds) {
  EXPECT_EQ(E().Symlink(kRootIno, "empty", "", 0, 0).err(), ENOENT);
  EXPECT_EQ(E().Symlink(kRootIno, "long", std::string(4096, 'x'), 0, 0).err(), ENAMETOOLONG);
  std::string longest(4095, 'y');
  Result<Attr> a = E().Symlink(kRootIno, "longest", longest, 0, 0);
  ASSERT_TRUE(a.ok()) << a.status().message();
  Result<std::string> t = E().Readlink(a->ino);
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(*t, longest);
  EXPECT_EQ(E().Lookup(kRootIno, "empty").err(), ENOENT);
  EXPECT_EQ(E().Lookup(kRootIno, "long").err(), ENOENT);
}

TEST_F(EngineSpecialTest, MknodMakesTypedRecordsAndRefusesOthers) {
  const uint32_t dev = static_cast<uint32_t>(makedev(1, 3));
  struct Want {
    const char* name;
    uint32_t type;
    uint32_t rdev;
  };
  for (const Want& w : {Want{"fifo", S_IFIFO, 0}, Want{"sock", S_IFSOCK, 0}, Want{"chr", S_IFCHR, dev},
                        Want{"blk", S_IFBLK, dev}}) {
    Result<Attr> a = E().Mknod(kRootIno, w.name, w.type | 0640, dev, 1, 2);
    ASSERT_TRUE(a.ok()) << w.name << ": " << a.status().message();
    EXPECT_EQ(a->mode, w.type | 0640) << w.name;
    EXPECT_EQ(a->rdev, w.rdev) << w.name;
    EXPECT_EQ(a->size, 0u) << w.name;
    EXPECT_EQ(E().Readlink(a->ino).err(), EINVAL) << w.name;
  }
  EXPECT_EQ(E().Mknod(kRootIno, "fifo", S_IFIFO | 0640, 0, 0, 0).err(), EEXIST);
  EXPECT_EQ(E().Mknod(kRootIno, "dir", S_IFDIR | 0755, 0, 0, 0).err(), EINVAL);
  // A regular file: empty, committed at once.
  Result<Attr> reg = E().Mknod(kRootIno, "reg", S_IFREG | 0600, 0, 0, 0);
  ASSERT_TRUE(reg.ok()) << reg.status().message();
  EXPECT_TRUE(S_ISREG(reg->mode));
  EXPECT_EQ(E().Stats().objects, 1u);
  Result<std::vector<uint8_t>> bytes = d_.Get("reg");
  ASSERT_TRUE(bytes.ok()) << bytes.status().message();
  EXPECT_TRUE(bytes->empty());
}

TEST_F(EngineSpecialTest, RecordsSurviveReopenAfterRenamesAcrossStores) {
  const uint32_t dev = static_cast<uint32_t>(makedev(8, 17));
  Result<Attr> dir = E().Mkdir(kRootIno, "d", 0755, 0, 0);
  ASSERT_TRUE(dir.ok());
  // Sixteen of each: with two stores, renames move some of them to the other store.
  for (int i = 0; i < 16; ++i) {
    std::string n = std::to_string(i);
    ASSERT_TRUE(E().Symlink(kRootIno, "l" + n, "target-" + n, 7, 8).ok());
    ASSERT_TRUE(E().Mknod(kRootIno, "c" + n, S_IFCHR | 0600, dev, 7, 8).ok());
    ASSERT_TRUE(E().Rename(kRootIno, "l" + n, dir->ino, "moved-l" + n, 0).ok());
    ASSERT_TRUE(E().Rename(kRootIno, "c" + n, dir->ino, "moved-c" + n, 0).ok());
  }
  ASSERT_TRUE(E().Symlink(kRootIno, "gone", "x", 0, 0).ok());
  ASSERT_TRUE(E().Unlink(kRootIno, "gone").ok());
  ASSERT_TRUE(E().Rename(kRootIno, "d", kRootIno, "d2", 0).ok());  // moves every record below it
  d_.Close();
  ASSERT_TRUE(d_.Open(2).ok());
  EXPECT_EQ(E().Lookup(kRootIno, "gone").err(), ENOENT);
  Result<Attr> d2 = E().Lookup(kRootIno, "d2");
  ASSERT_TRUE(d2.ok());
  for (int i = 0; i < 16; ++i) {
    std::string n = std::to_string(i);
    Result<Attr> l = E().Lookup(d2->ino, "moved-l" + n);
    ASSERT_TRUE(l.ok()) << n;
    EXPECT_TRUE(S_ISLNK(l->mode));
    EXPECT_EQ(l->uid, 7u);
    Result<std::string> t = E().Readlink(l->ino);
    ASSERT_TRUE(t.ok()) << t.status().message();
    EXPECT_EQ(*t, "target-" + n);
    Result<Attr> c = E().Lookup(d2->ino, "moved-c" + n);
    ASSERT_TRUE(c.ok()) << n;
    EXPECT_EQ(c->mode, S_IFCHR | 0600u);
    EXPECT_EQ(c->rdev, dev);
    EXPECT_EQ(c->gid, 8u);
  }
  EXPECT_EQ(E().Stats().objects, 0u);
}

// fsck counts special records as such, verifies a link's target, and finds
// the stores clean.
TEST_F(EngineSpecialTest, FsckCountsAndVerifiesRecords) {
  ASSERT_TRUE(E().Symlink(kRootIno, "lnk", "target", 0, 0).ok());
  ASSERT_TRUE(E().Mknod(kRootIno, "fifo", S_IFIFO | 0600, 0, 0, 0).ok());
  ASSERT_TRUE(E().Mkdir(kRootIno, "dir", 0755, 0, 0).ok());
  d_.Close();
  uint64_t special = 0, files = 0;
  for (const std::string& root : d_.roots()) {
    Result<std::unique_ptr<LocalStore>> store = LocalStore::Open(root, LocalStoreOptions{});
    ASSERT_TRUE(store.ok()) << store.status().message();
    Result<FsckReport> r = CheckStore(**store, false);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_TRUE(r->clean()) << r->ToText();
    special += r->special;
    files += r->files;
  }
  EXPECT_EQ(special, 2u);
  EXPECT_EQ(files, 0u);
}

TEST_F(EngineSpecialTest, SetgidDirectoryPassesOnItsGroup) {
  Result<Attr> dir = E().Mkdir(kRootIno, "shared", 02775, 0, 500);
  ASSERT_TRUE(dir.ok());
  Result<Attr> sub = E().Mkdir(dir->ino, "sub", 0755, 1, 1);
  ASSERT_TRUE(sub.ok());
  EXPECT_EQ(sub->gid, 500u);
  EXPECT_EQ(sub->mode, S_IFDIR | 02755u);
  Result<Attr> lnk = E().Symlink(sub->ino, "lnk", "t", 1, 1);
  ASSERT_TRUE(lnk.ok());
  EXPECT_EQ(lnk->gid, 500u);
  Result<OpenResult> f = E().Create(dir->ino, "f", 0644, O_CREAT | O_WRONLY, 1, 1);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->attr.gid, 500u);
  EXPECT_EQ(f->attr.mode, S_IFREG | 0644u);  // files do not take the bit
  ASSERT_TRUE(E().Flush(f->handle).ok());
  E().Release(f->handle);
  // A plain directory passes on nothing.
  Result<Attr> plain = E().Mkdir(kRootIno, "plain", 0755, 0, 600);
  ASSERT_TRUE(plain.ok());
  Result<Attr> inner = E().Mkdir(plain->ino, "inner", 0755, 1, 1);
  ASSERT_TRUE(inner.ok());
  EXPECT_EQ(inner->gid, 1u);
  EXPECT_EQ(inner->mode, S_IFDIR | 0755u);
  d_.Close();
  ASSERT_TRUE(d_.Open(2).ok());
  Result<Attr> dir2 = E().Lookup(kRootIno, "shared");
  ASSERT_TRUE(dir2.ok());
  Result<Attr> sub2 = E().Lookup(dir2->ino, "sub");
  ASSERT_TRUE(sub2.ok());
  EXPECT_EQ(sub2->gid, 500u);
  EXPECT_EQ(sub2->mode, S_IFDIR | 02755u);
}

}  // namespace
}  // namespace kvfs
