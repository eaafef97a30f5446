// Unit tests of the Engine's special files (engine_special.cc): symbolic
// links, FIFOs, sockets and device nodes as namespace-only records, their
// persistence across a reopen (also after renames that move them to another
// store), and what they are not (opened, truncated, counted as objects).
// Also: set-group-ID directories passing on their group, and a new record
// (a directory's or a special file's) that loses its name to a file created
// while the record was being published.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <functional>
#include <string>
#include <vector>

#include "adapters/key_hash.h"
#include "adapters/local_store.h"
#include "adapters/store_wrapper.h"
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

// Runs a hook (once) inside the next publish: the moment a new record sits
// on the store but is not in the index yet.
class PublishHookStore final : public StoreWrapper {
 public:
  using StoreWrapper::StoreWrapper;
  std::function<void()> hook;
  Status Publish(StagingFile& file, const std::string& location) override {
    Status s = StoreWrapper::Publish(file, location);
    RunHook();
    return s;
  }
  Status PublishUnsynced(StagingFile& file, const std::string& location) override {
    Status s = StoreWrapper::PublishUnsynced(file, location);
    RunHook();
    return s;
  }

 private:
  void RunHook() {
    std::function<void()> h = std::move(hook);
    hook = nullptr;
    if (h) h();
  }
};

// mkdir and mknod publish their record before they take the name; a file
// created under that name meanwhile (create takes no publish lock) wins: the
// call fails with EEXIST, its record is removed from the store again, and
// the name is the file's (also after a restart).
TEST(EngineRecordRaceTest, RecordLosesItsNameToAFileCreatedMeanwhile) {
  for (bool dir : {true, false}) {
    SCOPED_TRACE(dir ? "mkdir" : "mknod (FIFO)");
    testing::TempDir tmp;
    ASSERT_TRUE(tmp.ok());
    EngineOptions options = testing::EngineDriver::TestDefaults();
    options.space.capacity_bytes = 1ULL << 30;
    {
      Result<std::unique_ptr<LocalStore>> local = LocalStore::Open(tmp.Sub("store"), LocalStoreOptions{});
      ASSERT_TRUE(local.ok()) << local.status().message();
      auto hooked = std::make_unique<PublishHookStore>(std::move(*local));
      PublishHookStore* store = hooked.get();
      std::vector<std::unique_ptr<Store>> stores;
      stores.push_back(std::move(hooked));
      Result<std::unique_ptr<Engine>> e = Engine::Start(options, std::move(stores));
      ASSERT_TRUE(e.ok()) << e.status().message();
      Engine& engine = **e;

      Result<OpenResult> file = Status::Error(EIO, "the hook did not run");
      store->hook = [&] { file = engine.Create(kRootIno, "name", 0644, O_CREAT | O_EXCL | O_WRONLY, 0, 0); };
      Result<Attr> made = dir ? engine.Mkdir(kRootIno, "name", 0755, 0, 0)
                              : engine.Mknod(kRootIno, "name", S_IFIFO | 0644, 0, 0, 0);
      ASSERT_TRUE(file.ok()) << file.status().message();
      EXPECT_EQ(made.err(), EEXIST);
      EXPECT_EQ(store->OpenForRead(store->LocationFor(HashKey("name"))).err(), ENOENT)
          << "the losing record stays on the store";
      EXPECT_EQ(engine.Lookup(kRootIno, "name").err(), ENOENT) << "a new key stays invisible until its first commit";
      // The file's last writer leaves: its (empty) version is committed.
      engine.Release(file->handle);
      engine.Forget(file->attr.ino, 1);
      Result<Attr> looked = engine.Lookup(kRootIno, "name");
      ASSERT_TRUE(looked.ok()) << looked.status().message();
      EXPECT_TRUE(S_ISREG(looked->mode));
    }
    // Reopened over the same directory: the name is the file's.
    std::vector<std::unique_ptr<Store>> stores;
    Result<std::unique_ptr<LocalStore>> local = LocalStore::Open(tmp.Sub("store"), LocalStoreOptions{});
    ASSERT_TRUE(local.ok()) << local.status().message();
    stores.push_back(std::move(*local));
    Result<std::unique_ptr<Engine>> again = Engine::Start(options, std::move(stores));
    ASSERT_TRUE(again.ok()) << again.status().message();
    Result<Attr> looked = (*again)->Lookup(kRootIno, "name");
    ASSERT_TRUE(looked.ok()) << looked.status().message();
    EXPECT_TRUE(S_ISREG(looked->mode));
    EXPECT_EQ(looked->size, 0u);
  }
}

}  // namespace
}  // namespace kvfs
