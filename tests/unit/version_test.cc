// Version (core/version.h): the compact per-key record of the index. Its
// location is kept as a key hash when it is the store's place for that key,
// its header packed without the key, its lease state made on first lease.
#include "core/version.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>

#include "adapters/local_store.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

class VersionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    auto s = LocalStore::Open(dir_.Sub("store"), LocalStoreOptions{});
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(*s);
    home_ = std::make_shared<VersionHome>();
    home_->store = store_.get();
    home_->total = std::make_shared<SpaceAccount>();
    home_->store_account = std::make_shared<SpaceAccount>();
  }

  ObjectHeader Header(const std::string& key, uint64_t size) {
    ObjectHeader h;
    h.key = key;
    h.size = size;
    h.generation = 42;
    h.checksum = 0xabcdef;
    h.mode = S_IFREG | 0640;
    h.uid = 7;
    h.gid = 8;
    h.mtime_ns = 111;
    h.ctime_ns = 222;
    h.slot = 1;
    return h;
  }

  testing::TempDir dir_;
  std::unique_ptr<LocalStore> store_;
  std::shared_ptr<VersionHome> home_;
};

TEST_F(VersionTest, LocationOfTheKeysOwnPlaceComesBackFromItsHash) {
  std::string loc = store_->LocationFor(HashKey("a/b"));
  Version v(home_, loc, "a/b", Header("a/b", 10));
  EXPECT_EQ(v.location(), loc);
  // After a rename, the place of the new key.
  std::string moved = store_->LocationFor(HashKey("c"));
  v.SetLocation(moved, "c");
  EXPECT_EQ(v.location(), moved);
}

TEST_F(VersionTest, LocationElsewhereIsKeptAsItIs) {
  // For example an object left at an old key's place by an interrupted rename.
  std::string other = store_->LocationFor(HashKey("old-key"));
  Version v(home_, other, "new-key", Header("new-key", 10));
  EXPECT_EQ(v.location(), other);
}

TEST_F(VersionTest, HeaderRoundTripsWithoutTheKey) {
  Version v(home_, store_->LocationFor(HashKey("k")), "k", Header("k", 12345));
  ObjectHeader h = v.header();
  EXPECT_EQ(h.key, "") << "the index holds the key once, as the inode's path";
  EXPECT_EQ(h.size, 12345u);
  EXPECT_EQ(h.generation, 42u);
  EXPECT_EQ(h.checksum, 0xabcdefu);
  EXPECT_EQ(h.mode, static_cast<uint32_t>(S_IFREG | 0640));
  EXPECT_EQ(h.uid, 7u);
  EXPECT_EQ(h.gid, 8u);
  EXPECT_EQ(h.mtime_ns, 111);
  EXPECT_EQ(h.ctime_ns, 222);
  EXPECT_EQ(h.slot, 1);
  EXPECT_EQ(h.kind, ObjectKind::kFile);
  // A header update keeps the version's size.
  ObjectHeader changed = Header("k", 99);
  changed.generation = 43;
  changed.mode = S_IFREG | 0600;
  changed.slot = 0;
  v.set_header(changed);
  EXPECT_EQ(v.header().size, 12345u);
  EXPECT_EQ(v.header().generation, 43u);
  EXPECT_EQ(v.header().mode, static_cast<uint32_t>(S_IFREG | 0600));
  EXPECT_EQ(v.header().slot, 0);
}

TEST_F(VersionTest, FootprintIsChargedForTheVersionsLifetime) {
  {
    Version v(home_, store_->LocationFor(HashKey("k")), "k", Header("k", 5000));
    EXPECT_EQ(home_->total->used_bytes.load(), ObjectFootprint(5000));
    EXPECT_EQ(home_->store_account->objects.load(), 1u);
    EXPECT_EQ(v.leases(), 0u);
    EXPECT_EQ(v.fd(), -1) << "no descriptor before the first lease";
  }
  EXPECT_EQ(home_->total->used_bytes.load(), 0u);
  EXPECT_EQ(home_->store_account->objects.load(), 0u);
}

TEST_F(VersionTest, LeaseOfAMissingObjectFailsAndLeavesNothingLeased) {
  auto v = std::make_shared<Version>(home_, store_->LocationFor(HashKey("nope")), "nope", Header("nope", 10));
  Result<Lease> l = Lease::Take(v);
  EXPECT_FALSE(l.ok());
  EXPECT_EQ(v->leases(), 0u);
  EXPECT_EQ(home_->total->leased_bytes.load(), 0u);
}

}  // namespace
}  // namespace kvfs
