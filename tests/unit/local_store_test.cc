#include "adapters/local_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "adapters/file_identity.h"
#include "adapters/io_ring.h"
#include "adapters/manifest.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

using testing::AlignedBuffer;
using testing::PathExists;
using testing::TempDir;

uint64_t Padded(uint64_t n) { return (n + 4095) / 4096 * 4096; }

ObjectHeader FileHeader(const std::string& key, uint64_t size, uint64_t checksum, uint64_t generation = 1) {
  ObjectHeader h;
  h.kind = ObjectKind::kFile;
  h.generation = generation;
  h.size = size;
  h.checksum = checksum;
  h.mode = S_IFREG | 0644;
  h.key = key;
  return h;
}

// Writes [header][data padded to 4 KiB] into a staging file with aligned
// pwrites (the fd may be O_DIRECT) and publishes it at the key's location.
Status PublishObject(Store& store, const std::string& key, const std::vector<uint8_t>& data,
                     uint64_t generation = 1, std::string* location_out = nullptr) {
  Result<std::unique_ptr<StagingFile>> staging = store.CreateStaging(Store::kUnknownSize);
  if (!staging.ok()) return staging.status();
  StagingFile& file = **staging;
  AlignedBuffer buf(kHeaderSize + Padded(data.size()));
  ObjectHeader h = FileHeader(key, data.size(), testing::DataChecksum(data), generation);
  KVFS_RETURN_IF_ERROR(EncodeHeader(h, buf.data()));
  if (!data.empty()) std::memcpy(buf.data() + kHeaderSize, data.data(), data.size());
  size_t total = kHeaderSize + Padded(data.size());
  ssize_t n = ::pwrite(file.fd(), buf.data(), total, 0);
  if (n != static_cast<ssize_t>(total)) return Status::FromErrno("pwrite staging");
  std::string location = store.LocationFor(HashKey(key));
  KVFS_RETURN_IF_ERROR(store.Publish(file, location));
  if (location_out) *location_out = location;
  return Status::Ok();
}

// Reads header + `data_size` bytes back through an fd from OpenForRead.
struct ReadBack {
  Result<ObjectHeader> header = Status::Error(EINVAL, "unread");
  std::vector<uint8_t> data;
};

ReadBack ReadObjectFd(int fd, uint64_t data_size) {
  ReadBack out;
  size_t total = kHeaderSize + Padded(data_size);
  AlignedBuffer buf(total);
  size_t done = 0;
  while (done < total) {
    ssize_t n = ::pread(fd, buf.data() + done, total - done, static_cast<off_t>(done));
    if (n < 0) {
      out.header = Status::FromErrno("pread");
      return out;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  if (done < kHeaderSize) {
    out.header = Status::Error(EIO, "short object");
    return out;
  }
  out.header = DecodeHeader(buf.data(), kHeaderSize);
  size_t avail = std::min<size_t>(data_size, done - kHeaderSize);
  out.data.assign(buf.data() + kHeaderSize, buf.data() + kHeaderSize + avail);
  return out;
}

std::unique_ptr<LocalStore> OpenStore(const std::string& root) {
  Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(root, LocalStoreOptions{});
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  if (!s.ok()) return nullptr;
  return std::move(*s);
}

class LocalStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  std::string Root() const { return dir_.Sub("store"); }
  TempDir dir_;
};

TEST_F(LocalStoreTest, OpenCreatesDirectoriesAndManifest) {
  std::string root = dir_.Sub("nested/deeper/store");
  auto store = OpenStore(root);
  ASSERT_TRUE(store);
  struct stat st;
  ASSERT_EQ(::stat((root + "/objects").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  ASSERT_EQ(::stat((root + "/staging").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  Result<StoreManifest> m = ReadManifest(root);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(m->CheckCompatible().ok());
  EXPECT_EQ(store->root(), root);
  EXPECT_EQ(store->Describe(), "local:" + root);
  EXPECT_EQ(store->swept_staging_files(), 0u);
}

// Small objects of known size are staged through the page cache (no device
// write before the commit), everything else with O_DIRECT, and both publish
// and read back the same.
TEST_F(LocalStoreTest, SmallStagingFilesAreBufferedOthersDirect) {
  std::unique_ptr<LocalStore> store = OpenStore(Root());
  ASSERT_TRUE(store);
  if (!store->DirectIo()) GTEST_SKIP() << "the scratch filesystem refuses O_DIRECT";
  auto flags_of = [&](uint64_t final_bytes) {
    Result<std::unique_ptr<StagingFile>> f = store->CreateStaging(final_bytes);
    EXPECT_TRUE(f.ok());
    return f.ok() ? ::fcntl((*f)->fd(), F_GETFL) : 0;
  };
  EXPECT_EQ(flags_of(4096) & O_DIRECT, 0);
  EXPECT_EQ(flags_of(Store::kBufferedStagingMax) & O_DIRECT, 0);
  EXPECT_NE(flags_of(Store::kBufferedStagingMax + 4096) & O_DIRECT, 0);
  EXPECT_NE(flags_of(Store::kUnknownSize) & O_DIRECT, 0) << "a spilling draft's size is unknown: direct";

  // A small object written through the buffered staging file reads back
  // through OpenForRead's (direct) descriptor.
  Result<std::unique_ptr<StagingFile>> staging = store->CreateStaging(2 * 4096);
  ASSERT_TRUE(staging.ok());
  std::vector<uint8_t> data(1000, 0x5a);
  AlignedBuffer buf(kHeaderSize + 4096);
  ASSERT_TRUE(EncodeHeader(FileHeader("small", data.size(), testing::DataChecksum(data)), buf.data()).ok());
  std::memcpy(buf.data() + kHeaderSize, data.data(), data.size());
  ASSERT_EQ(::pwrite((*staging)->fd(), buf.data(), kHeaderSize + 4096, 0), static_cast<ssize_t>(kHeaderSize + 4096));
  std::string location = store->LocationFor(HashKey("small"));
  ASSERT_TRUE(store->PublishUnsynced(**staging, location).ok());
  Result<int> fd = store->OpenForRead(location);
  ASSERT_TRUE(fd.ok());
  ReadBack back = ReadObjectFd(*fd, data.size());
  ::close(*fd);
  ASSERT_TRUE(back.header.ok());
  EXPECT_EQ(back.header->key, "small");
  EXPECT_EQ(back.data, data);
}

// CreateStagingWith hands back a staging file that holds the whole image:
// a small one written through the page cache in the same call, a larger one
// (O_DIRECT) through the executor; both publish and read back the same.
TEST_F(LocalStoreTest, CreateStagingWithWritesTheWholeImage) {
  std::unique_ptr<LocalStore> store = OpenStore(Root());
  ASSERT_TRUE(store);
  IoExecutor io(nullptr, true);
  for (size_t size : {size_t{0}, size_t{1000}, size_t{Store::kBufferedStagingMax - kHeaderSize - 4096},
                      size_t{200 * 1024}}) {
    const std::string key = "with/size-" + std::to_string(size);
    const std::vector<uint8_t> data = testing::Pattern(size + 5, size);
    const size_t bytes = kHeaderSize + Padded(size);
    std::shared_ptr<uint8_t> image(static_cast<uint8_t*>(std::aligned_alloc(4096, bytes)), &std::free);
    std::memset(image.get(), 0, bytes);
    ASSERT_TRUE(EncodeHeader(FileHeader(key, size, testing::DataChecksum(data)), image.get()).ok());
    if (size > 0) std::memcpy(image.get() + kHeaderSize, data.data(), size);
    Result<std::unique_ptr<StagingFile>> staging = store->CreateStagingWith(io, image, bytes);
    ASSERT_TRUE(staging.ok()) << staging.status().ToString();
    struct stat st;
    ASSERT_EQ(::fstat((*staging)->fd(), &st), 0);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), bytes) << "size " << size;
    if (store->DirectIo()) {
      const bool direct = (::fcntl((*staging)->fd(), F_GETFL) & O_DIRECT) != 0;
      EXPECT_EQ(direct, bytes > Store::kBufferedStagingMax) << "size " << size;
    }
    const std::string location = store->LocationFor(HashKey(key));
    ASSERT_TRUE(store->PublishUnsynced(**staging, location).ok());
    Result<int> fd = store->OpenForRead(location);
    ASSERT_TRUE(fd.ok());
    ReadBack back = ReadObjectFd(*fd, size);
    ::close(*fd);
    ASSERT_TRUE(back.header.ok()) << "size " << size;
    EXPECT_EQ(back.header->key, key);
    EXPECT_EQ(back.data, data) << "size " << size;
  }
}

TEST_F(LocalStoreTest, TrailingSlashIsNormalised) {
  auto store = OpenStore(Root() + "/");
  ASSERT_TRUE(store);
  EXPECT_EQ(store->root(), Root());
}

TEST_F(LocalStoreTest, MissingRootWithoutCreateIsEnoent) {
  LocalStoreOptions opts;
  opts.create_if_missing = false;
  Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(Root(), opts);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.err(), ENOENT);
  EXPECT_FALSE(PathExists(Root()));
}

TEST_F(LocalStoreTest, ReopenKeepsTheManifestAndObjects) {
  std::vector<uint8_t> data = testing::Pattern(1, 5000);
  {
    auto store = OpenStore(Root());
    ASSERT_TRUE(store);
    ASSERT_TRUE(PublishObject(*store, "k/1", data).ok());
  }
  LocalStoreOptions opts;
  opts.create_if_missing = false;
  Result<std::unique_ptr<LocalStore>> again = LocalStore::Open(Root(), opts);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  Result<int> fd = (*again)->OpenForRead((*again)->LocationFor(HashKey("k/1")));
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  ReadBack rb = ReadObjectFd(*fd, data.size());
  ::close(*fd);
  ASSERT_TRUE(rb.header.ok());
  EXPECT_EQ(rb.data, data);
}

TEST_F(LocalStoreTest, SecondOpenWhileFirstIsAliveIsEbusy) {
  auto first = OpenStore(Root());
  ASSERT_TRUE(first);
  Result<std::unique_ptr<LocalStore>> second = LocalStore::Open(Root(), LocalStoreOptions{});
  EXPECT_FALSE(second.ok());
  EXPECT_EQ(second.err(), EBUSY);
  // Also through a differently spelled path to the same directory.
  Result<std::unique_ptr<LocalStore>> third = LocalStore::Open(Root() + "/", LocalStoreOptions{});
  EXPECT_EQ(third.err(), EBUSY);
  first.reset();
  auto fourth = OpenStore(Root());
  EXPECT_TRUE(fourth) << "the lock must be released when the store is destroyed";
}

TEST_F(LocalStoreTest, OpenOnRegularFileIsEnotdir) {
  std::string file = dir_.Sub("plain-file");
  ASSERT_TRUE(testing::WriteFile(file, "hello"));
  Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(file, LocalStoreOptions{});
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.err(), ENOTDIR);
}

TEST_F(LocalStoreTest, IncompatibleManifestIsEproto) {
  std::filesystem::create_directories(Root());
  StoreManifest m = StoreManifest::Current();
  m.seed ^= 1;
  ASSERT_TRUE(WriteManifest(Root(), m).ok());
  Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(Root(), LocalStoreOptions{});
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.err(), EPROTO);
  // The refused manifest is left alone.
  Result<StoreManifest> after = ReadManifest(Root());
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->seed, m.seed);
  // And the lock was not leaked: with a good manifest it opens.
  ASSERT_TRUE(WriteManifest(Root(), StoreManifest::Current()).ok());
  EXPECT_TRUE(OpenStore(Root()));
}

TEST_F(LocalStoreTest, NewerFormatManifestIsEproto) {
  std::filesystem::create_directories(Root());
  StoreManifest m = StoreManifest::Current();
  m.format = kStoreFormatVersion + 1;
  ASSERT_TRUE(WriteManifest(Root(), m).ok());
  EXPECT_EQ(LocalStore::Open(Root(), LocalStoreOptions{}).err(), EPROTO);
}

// A store an older build made (store format 1) keeps its objects; a
// read-only open (fsck) leaves its manifest as it is, a writable one
// upgrades it to format 2, the layout kept.
TEST_F(LocalStoreTest, AFormatOneStoreIsUpgradedByAWritableOpenOnly) {
  std::string loc;
  {
    auto store = OpenStore(Root());
    ASSERT_TRUE(store);
    ASSERT_TRUE(PublishObject(*store, "kept", testing::Pattern(4, 3000), 1, &loc).ok());
  }
  StoreManifest old = StoreManifest::Current();
  old.format = 1;
  ASSERT_TRUE(WriteManifest(Root(), old).ok());
  {
    LocalStoreOptions ro;
    ro.read_only = true;
    ro.create_if_missing = false;
    Result<std::unique_ptr<LocalStore>> store = LocalStore::Open(Root(), ro);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    Result<StoreManifest> m = ReadManifest(Root());
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m->format, 1u) << "a read-only open rewrote the manifest";
  }
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  Result<StoreManifest> m = ReadManifest(Root());
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->format, kStoreFormatVersion);
  EXPECT_EQ(m->layout, old.layout);
  EXPECT_TRUE(PathExists(Root() + "/" + loc));
  EXPECT_FALSE(PathExists(Root() + "/" + kManifestFileName + ".tmp." + std::to_string(::getpid())));
}

// A new store gets the one-level layout with all 256 fan-out directories,
// so no publish waits for a mkdir.
TEST_F(LocalStoreTest, NewStoreHasEveryFanOutDirectory) {
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  Result<StoreManifest> m = ReadManifest(Root());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->layout, kStoreLayout);
  EXPECT_EQ(m->FanOutLevels(), 1);
  size_t dirs = 0;
  for (const auto& e : std::filesystem::directory_iterator(Root() + "/objects")) {
    EXPECT_TRUE(e.is_directory()) << e.path();
    EXPECT_EQ(e.path().filename().string().size(), 2u) << e.path();
    ++dirs;
  }
  EXPECT_EQ(dirs, 256u);
  std::string loc;
  ASSERT_TRUE(PublishObject(*store, "one/level", testing::Pattern(1, 5000), 1, &loc).ok());
  std::string hex = HashKey("one/level").Hex();
  EXPECT_EQ(loc, "objects/" + hex.substr(0, 2) + "/" + hex);
  EXPECT_TRUE(PathExists(Root() + "/" + loc));
}

// A store made by an earlier build (two fan-out levels) keeps its layout:
// its objects are found, new ones land in objects/xx/yy/, and a reopen
// finds both.
TEST_F(LocalStoreTest, TwoLevelStoreKeepsItsLayout) {
  StoreManifest old = StoreManifest::Current();
  old.layout = kTwoLevelStoreLayout;
  std::filesystem::create_directories(Root());
  ASSERT_TRUE(WriteManifest(Root(), old).ok());
  std::vector<uint8_t> a = testing::Pattern(2, 7000), b = testing::Pattern(3, 300);
  std::string loc_a, loc_b;
  {
    auto store = OpenStore(Root());
    ASSERT_TRUE(store);
    ASSERT_TRUE(PublishObject(*store, "legacy/a", a, 1, &loc_a).ok());
    std::string hex = HashKey("legacy/a").Hex();
    EXPECT_EQ(loc_a, "objects/" + hex.substr(0, 2) + "/" + hex.substr(2, 2) + "/" + hex);
    EXPECT_TRUE(PathExists(Root() + "/" + loc_a));
  }
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  ASSERT_TRUE(PublishObject(*store, "legacy/b", b, 1, &loc_b).ok());
  std::mutex mu;  // Scan calls back from several threads
  std::map<std::string, std::string> keys;
  ASSERT_TRUE(store->Scan([&](const ScannedObject& o) {
                       std::lock_guard<std::mutex> g(mu);
                       ASSERT_TRUE(o.header.ok()) << o.location << " " << o.header.status().ToString();
                       keys[o.location] = o.header->key;
                     },
                     2)
                  .ok());
  EXPECT_EQ(keys, (std::map<std::string, std::string>{{loc_a, "legacy/a"}, {loc_b, "legacy/b"}}));
  Result<int> fd = store->OpenForRead(loc_a);
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  ReadBack got = ReadObjectFd(*fd, a.size());
  ::close(*fd);
  EXPECT_EQ(got.data, a);
  Result<StoreManifest> m = ReadManifest(Root());
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->layout, kTwoLevelStoreLayout) << "the manifest must not be rewritten";
}

TEST_F(LocalStoreTest, ObjectsWithoutManifestIsEproto) {
  std::filesystem::create_directories(Root() + "/objects/ab/cd");
  Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(Root(), LocalStoreOptions{});
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.err(), EPROTO);
  EXPECT_FALSE(PathExists(Root() + "/" + kManifestFileName)) << "must not guess and write a manifest";
}

TEST_F(LocalStoreTest, StagingLeftoversAreSweptOnOpen) {
  {
    auto store = OpenStore(Root());
    ASSERT_TRUE(store);
    // Simulate a crash: staging files whose owner never published them.
    ASSERT_TRUE(testing::WriteFile(Root() + "/staging/99999-0.tmp", "partial"));
    ASSERT_TRUE(testing::WriteFile(Root() + "/staging/99999-1.tmp", "partial too"));
    ASSERT_TRUE(testing::WriteFile(Root() + "/staging/12-7.tmp", std::string(10000, 'x')));
    // A removed object the background had not unlinked yet.
    ASSERT_TRUE(testing::WriteFile(Root() + "/staging/12-8.gone", std::string(5000, 'y')));
  }
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  EXPECT_EQ(store->swept_staging_files(), 4u);
  EXPECT_TRUE(std::filesystem::is_empty(Root() + "/staging"));
}

TEST_F(LocalStoreTest, LocationForIsObjectsXxHex) {
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  for (const std::string key : {"a", "a/b/chunk-7", "model/layer-0/kv-000123"}) {
    KeyHash h = HashKey(key);
    std::string hex = h.Hex();
    EXPECT_EQ(store->LocationFor(h), "objects/" + hex.substr(0, 2) + "/" + hex);
  }
  KeyHash fixed{0x1ULL, 0xABCDEF0123456789ULL};
  EXPECT_EQ(store->LocationFor(fixed), "objects/ab/abcdef01234567890000000000000001");
}

TEST_F(LocalStoreTest, CreateStagingGivesDistinctFilesInStaging) {
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  auto a = store->CreateStaging(Store::kUnknownSize);
  auto b = store->CreateStaging(Store::kUnknownSize);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE((*a)->path(), (*b)->path());
  EXPECT_GE((*a)->fd(), 0);
  EXPECT_EQ((*a)->path().rfind(Root() + "/staging/", 0), 0u) << (*a)->path();
  EXPECT_TRUE(PathExists((*a)->path()));
  std::string path = (*a)->path();
  a->reset();
  EXPECT_FALSE(PathExists(path)) << "an unpublished staging file must be removed when dropped";
}

TEST_F(LocalStoreTest, PublishThenOpenForReadReadsSameBytes) {
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  for (size_t size : {size_t{0}, size_t{1}, size_t{4096}, size_t{3 * 4096 + 123}, size_t{2 << 20}}) {
    std::string key = "obj/size-" + std::to_string(size);
    std::vector<uint8_t> data = testing::Pattern(size + 11, size);
    Result<std::unique_ptr<StagingFile>> staging = store->CreateStaging(Store::kUnknownSize);
    ASSERT_TRUE(staging.ok()) << staging.status().ToString();
    std::string staging_path = (*staging)->path();
    AlignedBuffer buf(kHeaderSize + Padded(size));
    ObjectHeader h = FileHeader(key, size, testing::DataChecksum(data), 7);
    ASSERT_TRUE(EncodeHeader(h, buf.data()).ok());
    // The header block and the data as separate aligned writes.
    ASSERT_EQ(::pwrite((*staging)->fd(), buf.data(), kHeaderSize, 0), static_cast<ssize_t>(kHeaderSize));
    if (size > 0) {
      std::memcpy(buf.data() + kHeaderSize, data.data(), size);
      ASSERT_EQ(::pwrite((*staging)->fd(), buf.data() + kHeaderSize, Padded(size), kHeaderSize),
                static_cast<ssize_t>(Padded(size)));
    }
    std::string loc = store->LocationFor(HashKey(key));
    Status p = store->Publish(**staging, loc);
    ASSERT_TRUE(p.ok()) << p.ToString();
    EXPECT_FALSE(PathExists(staging_path));
    staging->reset();  // dropping a published staging file must not remove the object
    struct stat st;
    ASSERT_EQ(::stat((Root() + "/" + loc).c_str(), &st), 0) << loc;
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), kHeaderSize + Padded(size));

    Result<int> fd = store->OpenForRead(loc);
    ASSERT_TRUE(fd.ok()) << fd.status().ToString();
    ReadBack rb = ReadObjectFd(*fd, size);
    ::close(*fd);
    ASSERT_TRUE(rb.header.ok()) << rb.header.status().ToString();
    EXPECT_EQ(rb.header->key, key);
    EXPECT_EQ(rb.header->size, size);
    EXPECT_EQ(rb.header->generation, 7u);
    EXPECT_EQ(rb.data, data) << "size " << size;
  }
}

TEST_F(LocalStoreTest, OpenForReadOfMissingIsEnoent) {
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  Result<int> fd = store->OpenForRead(store->LocationFor(HashKey("never-written")));
  EXPECT_FALSE(fd.ok());
  EXPECT_EQ(fd.err(), ENOENT);
}

TEST_F(LocalStoreTest, PublishOverExistingReplacesWhileOldFdReadsOldBytes) {
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  std::vector<uint8_t> v1 = testing::Pattern(100, 20000);
  std::vector<uint8_t> v2 = testing::Pattern(200, 9000);
  std::string loc;
  ASSERT_TRUE(PublishObject(*store, "same/key", v1, 1, &loc).ok());
  Result<int> old_fd = store->OpenForRead(loc);
  ASSERT_TRUE(old_fd.ok());
  ASSERT_TRUE(PublishObject(*store, "same/key", v2, 2).ok());

  Result<int> new_fd = store->OpenForRead(loc);
  ASSERT_TRUE(new_fd.ok());
  ReadBack now = ReadObjectFd(*new_fd, v2.size());
  ::close(*new_fd);
  ASSERT_TRUE(now.header.ok());
  EXPECT_EQ(now.header->generation, 2u);
  EXPECT_EQ(now.data, v2);

  ReadBack before = ReadObjectFd(*old_fd, v1.size());
  ::close(*old_fd);
  ASSERT_TRUE(before.header.ok());
  EXPECT_EQ(before.header->generation, 1u);
  EXPECT_EQ(before.data, v1);

  // Exactly one object file: the replaced one is gone from the directory.
  size_t files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(Root() + "/objects")) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);
}

TEST_F(LocalStoreTest, MoveRenamesAndReplaces) {
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  std::vector<uint8_t> a = testing::Pattern(1, 7000);
  std::vector<uint8_t> b = testing::Pattern(2, 3000);
  std::string loc_a, loc_b;
  ASSERT_TRUE(PublishObject(*store, "key/a", a, 1, &loc_a).ok());
  std::string loc_new = store->LocationFor(HashKey("key/renamed"));
  Status m = store->Move(loc_a, loc_new, true);
  ASSERT_TRUE(m.ok()) << m.ToString();
  EXPECT_EQ(store->OpenForRead(loc_a).err(), ENOENT);
  Result<int> fd = store->OpenForRead(loc_new);
  ASSERT_TRUE(fd.ok());
  ReadBack rb = ReadObjectFd(*fd, a.size());
  ::close(*fd);
  EXPECT_EQ(rb.data, a);

  // Move over an existing object replaces it.
  ASSERT_TRUE(PublishObject(*store, "key/b", b, 1, &loc_b).ok());
  ASSERT_TRUE(store->Move(loc_new, loc_b, true).ok());
  EXPECT_EQ(store->OpenForRead(loc_new).err(), ENOENT);
  fd = store->OpenForRead(loc_b);
  ASSERT_TRUE(fd.ok());
  rb = ReadObjectFd(*fd, a.size());
  ::close(*fd);
  EXPECT_EQ(rb.data, a);

  // Moving something that does not exist fails with ENOENT.
  EXPECT_EQ(store->Move(store->LocationFor(HashKey("ghost")), loc_a, true).err(), ENOENT);
}

TEST_F(LocalStoreTest, RemoveDeletesAndSecondRemoveIsEnoent) {
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  std::string loc;
  ASSERT_TRUE(PublishObject(*store, "to/remove", testing::Pattern(3, 100), 1, &loc).ok());
  Result<int> fd = store->OpenForRead(loc);
  ASSERT_TRUE(fd.ok());
  ASSERT_TRUE(store->Remove(loc).ok());
  EXPECT_FALSE(PathExists(Root() + "/" + loc));
  EXPECT_EQ(store->OpenForRead(loc).err(), ENOENT);
  EXPECT_EQ(store->Remove(loc).err(), ENOENT);
  // The open descriptor still reads the removed bytes.
  ReadBack rb = ReadObjectFd(*fd, 100);
  ::close(*fd);
  EXPECT_EQ(rb.data, testing::Pattern(3, 100));
}

// Removed, replaced and moved-over objects leave objects/ at once and the
// store altogether once their background unlinks are done; an old
// descriptor still reads them, and the live objects keep one name each.
TEST_F(LocalStoreTest, RemovedAndReplacedObjectsAreUnlinkedInTheBackground) {
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  std::string removed, replaced, moved, target;
  ASSERT_TRUE(PublishObject(*store, "removed", testing::Pattern(5, 300000), 1, &removed).ok());
  ASSERT_TRUE(PublishObject(*store, "replaced", testing::Pattern(6, 200000), 1, &replaced).ok());
  ASSERT_TRUE(PublishObject(*store, "moved", testing::Pattern(7, 5000), 1, &moved).ok());
  ASSERT_TRUE(PublishObject(*store, "target", testing::Pattern(8, 6000), 1, &target).ok());
  Result<int> old_fd = store->OpenForRead(replaced);
  ASSERT_TRUE(old_fd.ok());

  ASSERT_TRUE(store->Remove(removed, false).ok());
  ASSERT_TRUE(PublishObject(*store, "replaced", testing::Pattern(9, 100), 2).ok());
  ASSERT_TRUE(store->Move(moved, target, false).ok());
  EXPECT_FALSE(PathExists(Root() + "/" + removed));
  EXPECT_FALSE(PathExists(Root() + "/" + moved));
  EXPECT_EQ(store->Remove(removed, false).err(), ENOENT);

  store->SettleRemovals(std::chrono::seconds(30));
  EXPECT_TRUE(std::filesystem::is_empty(Root() + "/staging")) << "removed objects were not unlinked";
  size_t files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(Root() + "/objects")) {
    if (!e.is_regular_file()) continue;
    ++files;
    EXPECT_EQ(std::filesystem::hard_link_count(e.path()), 1u) << e.path();
  }
  EXPECT_EQ(files, 2u);
  ReadBack before = ReadObjectFd(*old_fd, 200000);
  ::close(*old_fd);
  EXPECT_EQ(before.data, testing::Pattern(6, 200000));
  Result<int> fd = store->OpenForRead(target);
  ASSERT_TRUE(fd.ok());
  ReadBack now = ReadObjectFd(*fd, 5000);
  ::close(*fd);
  EXPECT_EQ(now.data, testing::Pattern(7, 5000));
}

// Closing the store unlinks what is still queued.
TEST_F(LocalStoreTest, ClosingTheStoreFinishesItsRemovals) {
  {
    auto store = OpenStore(Root());
    ASSERT_TRUE(store);
    for (int i = 0; i < 50; ++i) {
      std::string loc;
      ASSERT_TRUE(PublishObject(*store, "k" + std::to_string(i), testing::Pattern(i, 8192), 1, &loc).ok());
      ASSERT_TRUE(store->Remove(loc, false).ok());
    }
  }
  EXPECT_TRUE(std::filesystem::is_empty(Root() + "/staging"));
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  EXPECT_EQ(store->swept_staging_files(), 0u);
}

TEST_F(LocalStoreTest, RemoveWithoutSyncAlsoRemoves) {
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  std::string loc;
  ASSERT_TRUE(PublishObject(*store, "to/remove/nosync", testing::Pattern(4, 10), 1, &loc).ok());
  ASSERT_TRUE(store->Remove(loc, /*sync=*/false).ok());
  EXPECT_EQ(store->OpenForRead(loc).err(), ENOENT);
  EXPECT_EQ(store->Remove(loc, false).err(), ENOENT);
}

TEST_F(LocalStoreTest, QuarantineMovesTheObjectOutOfTheNamespace) {
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  std::vector<uint8_t> data = testing::Pattern(5, 6000);
  std::string loc, keep_loc;
  ASSERT_TRUE(PublishObject(*store, "bad/object", data, 1, &loc).ok());
  ASSERT_TRUE(PublishObject(*store, "good/object", data, 1, &keep_loc).ok());
  Status q = store->Quarantine(loc);
  ASSERT_TRUE(q.ok()) << q.ToString();
  EXPECT_EQ(store->OpenForRead(loc).err(), ENOENT);
  // It is kept for operators under quarantine/, named after the object.
  std::string hex = HashKey("bad/object").Hex();
  size_t found = 0;
  ASSERT_TRUE(std::filesystem::is_directory(Root() + "/quarantine"));
  for (const auto& e : std::filesystem::directory_iterator(Root() + "/quarantine")) {
    if (e.path().filename().string().rfind(hex, 0) == 0) {
      ++found;
      EXPECT_EQ(e.file_size(), kHeaderSize + Padded(data.size()));
    }
  }
  EXPECT_EQ(found, 1u);
  // A rescan no longer sees it; the other object is untouched.
  std::set<std::string> scanned;
  std::mutex mu;
  ASSERT_TRUE(store->Scan([&](const ScannedObject& o) {
    std::lock_guard<std::mutex> g(mu);
    scanned.insert(o.location);
  }, 2).ok());
  EXPECT_EQ(scanned, std::set<std::string>{keep_loc});
  EXPECT_EQ(store->Quarantine(loc).err(), ENOENT);
  // It survives a reopen (quarantine is not swept like staging).
  store.reset();
  store = OpenStore(Root());
  ASSERT_TRUE(store);
  size_t after = 0;
  for (const auto& e : std::filesystem::directory_iterator(Root() + "/quarantine")) {
    after += e.path().filename().string().rfind(hex, 0) == 0;
  }
  EXPECT_EQ(after, 1u);
}

TEST_F(LocalStoreTest, WriteHeaderBlockUpdatesHeaderAndKeepsData) {
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  std::vector<uint8_t> data = testing::Pattern(9, 12345);
  std::string loc;
  ASSERT_TRUE(PublishObject(*store, "hdr/old", data, 4, &loc).ok());

  Result<int> fd = store->OpenForRead(loc);
  ASSERT_TRUE(fd.ok());
  ReadBack rb = ReadObjectFd(*fd, data.size());
  ::close(*fd);
  ASSERT_TRUE(rb.header.ok());

  // Re-read the raw block so the update keeps the old slot as it was.
  std::vector<uint8_t> block(kHeaderSize);
  {
    int rfd = ::open((Root() + "/" + loc).c_str(), O_RDONLY);
    ASSERT_GE(rfd, 0);
    ASSERT_EQ(::pread(rfd, block.data(), kHeaderSize, 0), static_cast<ssize_t>(kHeaderSize));
    ::close(rfd);
  }
  ObjectHeader updated = *rb.header;
  updated.generation = 5;
  updated.key = "hdr/new";
  updated.mode = S_IFREG | 0600;
  updated.slot = 1 - rb.header->slot;
  ASSERT_TRUE(EncodeHeader(updated, block.data()).ok());
  // Pass a deliberately unaligned copy: the store must cope.
  std::vector<uint8_t> unaligned(kHeaderSize + 1);
  std::memcpy(unaligned.data() + 1, block.data(), kHeaderSize);
  Status w = store->WriteHeaderBlock(loc, unaligned.data() + 1, true);
  ASSERT_TRUE(w.ok()) << w.ToString();

  fd = store->OpenForRead(loc);
  ASSERT_TRUE(fd.ok());
  ReadBack after = ReadObjectFd(*fd, data.size());
  ::close(*fd);
  ASSERT_TRUE(after.header.ok()) << after.header.status().ToString();
  EXPECT_EQ(after.header->generation, 5u);
  EXPECT_EQ(after.header->key, "hdr/new");
  EXPECT_EQ(after.header->mode, static_cast<uint32_t>(S_IFREG | 0600));
  EXPECT_EQ(after.data, data);
  struct stat st;
  ASSERT_EQ(::stat((Root() + "/" + loc).c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kHeaderSize + Padded(data.size()));

  EXPECT_EQ(store->WriteHeaderBlock(store->LocationFor(HashKey("ghost")), block.data(), true).err(), ENOENT);
}

TEST_F(LocalStoreTest, ScanFindsEveryObjectWithHeadersUsingThreads) {
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  std::map<std::string, std::vector<uint8_t>> objects;  // location -> data
  std::map<std::string, std::string> keys;               // location -> key
  for (int i = 0; i < 200; ++i) {
    std::string key = "scan/dir-" + std::to_string(i % 7) + "/chunk-" + std::to_string(i);
    std::vector<uint8_t> data = testing::Pattern(i, static_cast<size_t>(i * 97));
    std::string loc;
    ASSERT_TRUE(PublishObject(*store, key, data, 100 + i, &loc).ok());
    objects[loc] = data;
    keys[loc] = key;
  }
  // A file that is not an object, dropped into a leaf directory.
  std::string garbage_loc = "objects/ab/not-an-object";
  std::filesystem::create_directories(Root() + "/objects/ab");
  ASSERT_TRUE(testing::WriteFile(Root() + "/" + garbage_loc, std::string(5000, 'g')));
  std::string short_loc = "objects/ab/short";
  ASSERT_TRUE(testing::WriteFile(Root() + "/" + short_loc, "tiny"));

  for (int threads : {1, 4, 16}) {
    std::mutex mu;
    std::map<std::string, ScannedObject> seen;
    std::set<std::thread::id> thread_ids;
    size_t duplicates = 0;
    Status s = store->Scan(
        [&](const ScannedObject& o) {
          std::lock_guard<std::mutex> g(mu);
          thread_ids.insert(std::this_thread::get_id());
          if (!seen.emplace(o.location, o).second) ++duplicates;
        },
        threads);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(duplicates, 0u);
    EXPECT_EQ(seen.size(), objects.size() + 2) << threads << " threads";
    for (const auto& [loc, data] : objects) {
      auto it = seen.find(loc);
      ASSERT_NE(it, seen.end()) << "scan missed " << loc;
      const ScannedObject& o = it->second;
      ASSERT_TRUE(o.header.ok()) << loc << ": " << o.header.status().ToString();
      EXPECT_EQ(o.header->key, keys[loc]);
      EXPECT_EQ(o.header->size, data.size());
      EXPECT_EQ(o.header->checksum, testing::DataChecksum(data));
      EXPECT_EQ(o.file_bytes, kHeaderSize + Padded(data.size()));
      Result<FileStatus> st = StatPath(Root() + "/" + loc, false);
      ASSERT_TRUE(st.ok()) << loc;
      EXPECT_EQ(o.file_id, st->file_id()) << loc;
    }
    for (const std::string& bad : {garbage_loc, short_loc}) {
      auto it = seen.find(bad);
      ASSERT_NE(it, seen.end()) << "scan skipped the garbage file " << bad;
      EXPECT_FALSE(it->second.header.ok()) << bad;
      EXPECT_NE(it->second.header.err(), 0);
    }
    EXPECT_EQ(seen[garbage_loc].file_bytes, 5000u);
    EXPECT_EQ(seen[short_loc].file_bytes, 4u);
    EXPECT_LE(thread_ids.size(), static_cast<size_t>(threads));
  }
}

TEST_F(LocalStoreTest, ScanOfEmptyStoreCallsNothing) {
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  int calls = 0;
  ASSERT_TRUE(store->Scan([&](const ScannedObject&) { ++calls; }, 4).ok());
  EXPECT_EQ(calls, 0);
}

TEST_F(LocalStoreTest, SpaceIsNonzero) {
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  Result<StoreSpace> space = store->Space();
  ASSERT_TRUE(space.ok()) << space.status().ToString();
  EXPECT_GT(space->total_bytes, 0u);
  EXPECT_GT(space->free_bytes, 0u);
  EXPECT_LE(space->free_bytes, space->total_bytes);
}

TEST_F(LocalStoreTest, ConcurrentPublishesOfDistinctKeys) {
  auto store = OpenStore(Root());
  ASSERT_TRUE(store);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        std::string key = "t" + std::to_string(t) + "/k" + std::to_string(i);
        if (!PublishObject(*store, key, testing::Pattern(t * 1000 + i, 4096 + i)).ok()) failures++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (int t = 0; t < 8; ++t) {
    for (int i = 0; i < 25; ++i) {
      std::string key = "t" + std::to_string(t) + "/k" + std::to_string(i);
      Result<int> fd = store->OpenForRead(store->LocationFor(HashKey(key)));
      ASSERT_TRUE(fd.ok()) << key;
      ReadBack rb = ReadObjectFd(*fd, 4096 + i);
      ::close(*fd);
      ASSERT_TRUE(rb.header.ok());
      EXPECT_EQ(rb.header->key, key);
      EXPECT_EQ(rb.data, testing::Pattern(t * 1000 + i, 4096 + i)) << key;
    }
  }
}

}  // namespace
}  // namespace kvfs
