// Unit tests of kvfs::DfsStore, the store in a directory that several hosts
// share. "Hosts" are DfsStore instances with different host ids opened on one
// scratch directory in this process: creation and checking of the manifest
// (exactly once, incompatible ones refused), host ids, staging names unique
// per host, objects published by one instance seen by another (StatObject,
// ReadObject, List, Scan, OpenForRead), replacement and removal, the sweep of
// this host's dead staging files at open, and the startup probe, including a
// filesystem (an FsClient wrapper) that loses writes or returns wrong bytes.
#include "adapters/dfs_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "adapters/file_identity.h"
#include "adapters/key_hash.h"
#include "adapters/manifest.h"
#include "adapters/object_header.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

using testing::AlignedBuffer;
using testing::CountFiles;
using testing::PathExists;
using testing::TempDir;

using testing::ErrText;

DfsStoreOptions Options(const std::string& host) {
  DfsStoreOptions o;
  o.host_id = host;
  return o;
}

std::unique_ptr<DfsStore> OpenAs(const std::string& root, const std::string& host) {
  Result<std::unique_ptr<DfsStore>> s = DfsStore::Open(root, Options(host));
  EXPECT_TRUE(s.ok()) << host << ": " << ErrText(s.status());
  if (!s.ok()) return nullptr;
  return std::move(*s);
}

std::string Basename(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// Names of the entries directly in dir (empty when it does not exist).
std::set<std::string> Entries(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) out.insert(e.path().filename().string());
  return out;
}

// A pid no process has (so a staging file named after it is a dead writer's).
pid_t DeadPid() {
  for (pid_t p = 999999;; ++p) {
    if (::kill(p, 0) != 0 && errno == ESRCH) return p;
  }
}

ObjectHeader FileHeader(const std::string& key, const std::vector<uint8_t>& data, uint64_t generation) {
  ObjectHeader h;
  h.kind = ObjectKind::kFile;
  h.generation = generation;
  h.size = data.size();
  h.checksum = testing::DataChecksum(data);
  h.mode = S_IFREG | 0644;
  h.key = key;
  return h;
}

// Writes [header][data padded to 4 KiB] into a staging file of `store` with
// aligned writes (the descriptor may be O_DIRECT) and publishes it (unsynced) at the key's
// location. Returns the location.
Result<std::string> PutObject(Store& store, const std::string& key, const std::vector<uint8_t>& data,
                              uint64_t generation = 1) {
  Result<std::unique_ptr<StagingFile>> staging = store.CreateStaging(Store::kUnknownSize);
  if (!staging.ok()) return staging.status();
  size_t total = kHeaderSize + RoundUp4K(data.size());
  AlignedBuffer buf(total);
  KVFS_RETURN_IF_ERROR(EncodeHeader(FileHeader(key, data, generation), buf.data()));
  if (!data.empty()) std::memcpy(buf.data() + kHeaderSize, data.data(), data.size());
  if (::pwrite((*staging)->fd(), buf.data(), total, 0) != static_cast<ssize_t>(total)) {
    return Status::FromErrno("pwrite staging");
  }
  std::string location = store.LocationFor(HashKey(key));
  KVFS_RETURN_IF_ERROR(store.PublishUnsynced(**staging, location));
  return location;
}

// Reads the data bytes of an object through OpenForRead.
Result<std::vector<uint8_t>> ReadData(Store& store, const std::string& location, size_t size) {
  Result<int> fd = store.OpenForRead(location);
  if (!fd.ok()) return fd.status();
  size_t total = kHeaderSize + RoundUp4K(size);
  AlignedBuffer buf(total);
  ssize_t n = ::pread(*fd, buf.data(), total, 0);
  ::close(*fd);
  if (n != static_cast<ssize_t>(total)) return Status::Error(EIO, "short read");
  return std::vector<uint8_t>(buf.data() + kHeaderSize, buf.data() + kHeaderSize + size);
}

std::map<std::string, ListedObject> ListAll(Store& store) {
  std::map<std::string, ListedObject> out;
  Status s = store.List([&](const ListedObject& o) { out[o.location] = o; }, 4);
  EXPECT_TRUE(s.ok()) << ErrText(s);
  return out;
}

std::map<std::string, ScannedObject> ScanAll(Store& store) {
  std::map<std::string, ScannedObject> out;
  std::mutex mu;
  Status s = store.Scan(
      [&](const ScannedObject& o) {
        std::lock_guard<std::mutex> g(mu);
        out.emplace(o.location, o);
      },
      4);
  EXPECT_TRUE(s.ok()) << ErrText(s);
  return out;
}

// An FsClient that forwards every call to the real (POSIX) one; tests
// override the calls they want to disturb.
class ForwardingFs : public FsClient {
 public:
  ForwardingFs() : real_(MakePosixFsClient()) {}
  std::string Describe() const override { return "forwarding"; }
  Result<int> Open(const std::string& path, int flags, mode_t mode) override { return real_->Open(path, flags, mode); }
  Result<FsStat> Stat(const std::string& path) override { return real_->Stat(path); }
  Result<FsStat> StatFd(int fd) override { return real_->StatFd(fd); }
  Status Mkdir(const std::string& path) override { return real_->Mkdir(path); }
  Status Rename(const std::string& from, const std::string& to) override { return real_->Rename(from, to); }
  Status Link(const std::string& from, const std::string& to) override { return real_->Link(from, to); }
  Status Unlink(const std::string& path) override { return real_->Unlink(path); }
  Result<std::vector<std::string>> ListDir(const std::string& path) override { return real_->ListDir(path); }
  Status SyncDir(const std::string& path) override { return real_->SyncDir(path); }
  Result<StoreSpace> StatFs(const std::string& path) override { return real_->StatFs(path); }
  Result<int> TryLockExclusive(const std::string& path) override { return real_->TryLockExclusive(path); }

 protected:
  std::unique_ptr<FsClient> real_;
};

// Misbehaves on the startup probe's files only.
class FlakyProbeFs final : public ForwardingFs {
 public:
  enum class Mode {
    kPassThrough,
    kCreateFails,   // creating a probe file fails (EROFS)
    kWriteFails,    // the probe file's descriptor is read-only: writes fail
    kCorruptRead,   // reading the probe file back gives other bytes
    kShortRead,     // reading the probe file back gives an empty file
    kUnlinkFails,   // the probe file cannot be removed
  };
  explicit FlakyProbeFs(Mode mode) : mode_(mode) {}

  std::string Describe() const override { return "flaky-probe"; }
  Result<int> Open(const std::string& path, int flags, mode_t mode) override {
    if (IsProbe(path)) {
      bool creating = (flags & O_CREAT) != 0;
      if (creating && mode_ == Mode::kCreateFails) return Status::Error(EROFS, "injected: read-only");
      if (creating && mode_ == Mode::kWriteFails) {
        return real_->Open(path, flags & ~(O_ACCMODE | O_DIRECT), mode);  // O_RDONLY: writes fail
      }
      if (!creating && (flags & O_ACCMODE) == O_RDONLY && (mode_ == Mode::kCorruptRead || mode_ == Mode::kShortRead)) {
        // The filesystem answers with other bytes (a memfd, so O_DIRECT does not matter).
        int fd = ::memfd_create("flaky-probe", MFD_CLOEXEC);
        if (fd < 0) return Status::FromErrno("memfd_create");
        if (mode_ == Mode::kCorruptRead) {
          std::vector<uint8_t> junk(4096, 0x5a);
          if (::pwrite(fd, junk.data(), junk.size(), 0) != 4096) {
            ::close(fd);
            return Status::FromErrno("pwrite memfd");
          }
        }
        return fd;
      }
    }
    return real_->Open(path, flags, mode);
  }
  Status Unlink(const std::string& path) override {
    if (IsProbe(path) && mode_ == Mode::kUnlinkFails) return Status::Error(EACCES, "injected: unlink refused");
    return real_->Unlink(path);
  }

 private:
  static bool IsProbe(const std::string& path) { return path.find("/probe/") != std::string::npos; }
  Mode mode_;
};

// Runs `hook` once, right after the first read of the manifest found none:
// what another host finishing its whole first open at that moment looks like.
class ManifestMissHookFs final : public ForwardingFs {
 public:
  explicit ManifestMissHookFs(std::function<void()> hook) : hook_(std::move(hook)) {}
  Result<int> Open(const std::string& path, int flags, mode_t mode) override {
    Result<int> r = real_->Open(path, flags, mode);
    bool manifest = path.size() >= std::strlen(kManifestFileName) &&
                    path.compare(path.size() - std::strlen(kManifestFileName), std::string::npos, kManifestFileName) == 0;
    if (manifest && !r.ok() && r.err() == ENOENT && hook_) {
      auto hook = std::move(hook_);
      hook_ = nullptr;
      hook();
    }
    return r;
  }

 private:
  std::function<void()> hook_;
};

class DfsStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  std::string Root() const { return dir_.Sub("shared"); }
  TempDir dir_;
};

// ---------------------------------------------------------------------------
// Opening, the manifest, host ids.

TEST_F(DfsStoreTest, OpenCreatesLayoutInMissingDirectory) {
  std::string root = dir_.Sub("a/b/shared");
  auto store = OpenAs(root + "//", "hostA");
  ASSERT_TRUE(store);
  EXPECT_EQ(store->root(), root);
  EXPECT_EQ(store->Describe(), "dfs:" + root);
  EXPECT_EQ(store->host_id(), "hostA");
  EXPECT_TRUE(store->Shared());
  ASSERT_NE(store->cluster(), nullptr);
  EXPECT_EQ(store->cluster()->host_id(), "hostA");
  for (const char* sub : {"objects", "staging", "quarantine", "cluster", "probe"}) {
    struct stat st;
    ASSERT_EQ(::stat((root + "/" + sub).c_str(), &st), 0) << sub;
    EXPECT_TRUE(S_ISDIR(st.st_mode)) << sub;
  }
  Result<StoreManifest> m = ReadManifest(root);
  ASSERT_TRUE(m.ok()) << ErrText(m.status());
  EXPECT_TRUE(m->CheckCompatible().ok());
  EXPECT_EQ(store->swept_staging_files(), 0u);
  EXPECT_TRUE(ListAll(*store).empty());
  Result<StoreSpace> space = store->Space();
  ASSERT_TRUE(space.ok());
  EXPECT_GT(space->total_bytes, 0u);
}

// On a distributed filesystem every host lists each fan-out directory at
// every reconcile pass: a new shared store makes them on first use only,
// one level deep.
TEST_F(DfsStoreTest, FanOutDirectoriesAreMadeOnFirstUse) {
  auto entries = [](const std::string& dir) {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) n += e.is_directory() ? 1 : 0;
    return n;
  };
  auto a = OpenAs(Root(), "hostA");
  ASSERT_TRUE(a);
  EXPECT_EQ(entries(Root() + "/objects"), 0u) << "empty fan-out directories were made at open";
  Result<std::string> loc = PutObject(*a, "first", testing::Pattern(3, 5000));
  ASSERT_TRUE(loc.ok()) << ErrText(loc.status());
  std::string hex = HashKey("first").Hex();
  EXPECT_EQ(*loc, "objects/" + hex.substr(0, 2) + "/" + hex);
  EXPECT_EQ(entries(Root() + "/objects"), 1u);
}

TEST_F(DfsStoreTest, OpenOnExistingEmptyDirectory) {
  // The scratch directory itself: exists, empty.
  auto store = OpenAs(dir_.path(), "hostA");
  ASSERT_TRUE(store);
  EXPECT_TRUE(PathExists(dir_.Sub(kManifestFileName)));
  EXPECT_TRUE(PathExists(dir_.Sub("objects")));
}

TEST_F(DfsStoreTest, MissingRootWithoutCreateIsEnoent) {
  DfsStoreOptions o = Options("hostA");
  o.create_if_missing = false;
  EXPECT_EQ(DfsStore::Open(Root(), o).err(), ENOENT);
  // An existing directory without a manifest is not adopted either.
  ASSERT_TRUE(std::filesystem::create_directories(Root()));
  EXPECT_EQ(DfsStore::Open(Root(), o).err(), ENOENT);
  EXPECT_FALSE(PathExists(Root() + "/" + kManifestFileName));
}

TEST_F(DfsStoreTest, RootThatIsAFileIsEnotdir) {
  ASSERT_TRUE(testing::WriteFile(Root(), "x"));
  EXPECT_EQ(DfsStore::Open(Root(), Options("hostA")).err(), ENOTDIR);
}

TEST_F(DfsStoreTest, TwoHostsOpenTheSameDirectoryAtOnce) {
  auto a = OpenAs(Root(), "hostA");
  auto b = OpenAs(Root(), "hostB");
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);  // no exclusive lock: not EBUSY
  auto c = OpenAs(Root(), "hostC");
  ASSERT_TRUE(c);
  // Even a second instance with the same host id opens (different processes
  // of one host do so in practice).
  auto a2 = OpenAs(Root(), "hostA");
  EXPECT_TRUE(a2);
}

TEST_F(DfsStoreTest, ManifestIsCreatedOnceAndKeptByLaterHosts) {
  auto a = OpenAs(Root(), "hostA");
  ASSERT_TRUE(a);
  std::string path = Root() + "/" + kManifestFileName;
  Result<FileStatus> before = StatPath(path, false);
  ASSERT_TRUE(before.ok());
  auto b = OpenAs(Root(), "hostB");
  ASSERT_TRUE(b);
  struct stat after;
  ASSERT_EQ(::stat(path.c_str(), &after), 0);
  // By identity: a rewritten manifest can have the old file's inode number.
  Result<FileStatus> now = StatPath(path, false);
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(before->file_id(), now->file_id()) << "the second host rewrote the manifest";
  EXPECT_EQ(after.st_nlink, 1u) << "the creating host's temporary name is still linked";
  // Only the manifest and the layout directories at the root: no temporaries.
  std::set<std::string> want = {kManifestFileName, "objects", "staging", "quarantine", "cluster", "probe"};
  EXPECT_EQ(Entries(Root()), want);
}

// A store an older build made (store format 1) is upgraded to format 2 by
// the next host that opens it, layout, hash and seed kept, with no
// temporary name left; later hosts leave it as it is.
TEST_F(DfsStoreTest, AFormatOneStoreIsUpgradedByTheNextHost) {
  { ASSERT_TRUE(OpenAs(Root(), "hostA")); }
  Result<StoreManifest> made = ReadManifest(Root());
  ASSERT_TRUE(made.ok());
  StoreManifest old = *made;
  old.format = 1;
  ASSERT_TRUE(WriteManifest(Root(), old).ok());
  auto b = OpenAs(Root(), "hostB");
  ASSERT_TRUE(b);
  Result<StoreManifest> now = ReadManifest(Root());
  ASSERT_TRUE(now.ok()) << ErrText(now.status());
  EXPECT_EQ(now->format, kStoreFormatVersion);
  EXPECT_EQ(now->layout, old.layout);
  EXPECT_EQ(now->hash, old.hash);
  EXPECT_EQ(now->seed, old.seed);
  std::string path = Root() + "/" + kManifestFileName;
  struct stat before;
  ASSERT_EQ(::stat(path.c_str(), &before), 0);
  EXPECT_EQ(before.st_nlink, 1u);
  Result<FileStatus> id_before = StatPath(path, false);
  ASSERT_TRUE(id_before.ok());
  auto c = OpenAs(Root(), "hostC");
  ASSERT_TRUE(c);
  Result<FileStatus> id_after = StatPath(path, false);
  ASSERT_TRUE(id_after.ok());
  EXPECT_EQ(id_before->file_id(), id_after->file_id()) << "an upgraded manifest was rewritten again";
  std::set<std::string> want = {kManifestFileName, "objects", "staging", "quarantine", "cluster", "probe"};
  EXPECT_EQ(Entries(Root()), want);
}

TEST_F(DfsStoreTest, ConcurrentFirstOpensCreateOneManifest) {
  constexpr int kHosts = 8;
  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::string root = dir_.Sub("race" + std::to_string(round));
    std::vector<std::thread> threads;
    std::atomic<int> ready{0};
    std::vector<Status> results(kHosts);
    for (int i = 0; i < kHosts; ++i) {
      threads.emplace_back([&, i] {
        ready.fetch_add(1);
        while (ready.load() < kHosts) std::this_thread::yield();
        Result<std::unique_ptr<DfsStore>> s = DfsStore::Open(root, Options("host" + std::to_string(i)));
        results[i] = s.ok() ? Status::Ok() : s.status();
      });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kHosts; ++i) EXPECT_TRUE(results[i].ok()) << "host" << i << ": " << ErrText(results[i]);
    Result<StoreManifest> m = ReadManifest(root);
    ASSERT_TRUE(m.ok()) << ErrText(m.status());
    EXPECT_TRUE(m->CheckCompatible().ok());
    std::set<std::string> want = {kManifestFileName, "objects", "staging", "quarantine", "cluster", "probe"};
    EXPECT_EQ(Entries(root), want);
  }
}

// The window of the race above, made deterministic: host A finds no
// manifest, then host B completes its whole first open (manifest and layout)
// before A looks at the root. A must adopt B's manifest, not refuse the store
// as "objects but no manifest".
TEST_F(DfsStoreTest, HostLosingTheManifestRaceAdoptsTheWinnersManifest) {
  std::unique_ptr<DfsStore> b;
  Status b_status;
  auto fs = std::make_unique<ManifestMissHookFs>([&] {
    Result<std::unique_ptr<DfsStore>> s = DfsStore::Open(Root(), Options("hostB"));
    b_status = s.ok() ? Status::Ok() : s.status();
    if (s.ok()) b = std::move(*s);
  });
  Result<std::unique_ptr<DfsStore>> a = DfsStore::Open(Root(), Options("hostA"), std::move(fs));
  ASSERT_TRUE(b_status.ok()) << ErrText(b_status);
  ASSERT_TRUE(b);
  EXPECT_TRUE(a.ok()) << ErrText(a.status());
}

TEST_F(DfsStoreTest, IncompatibleManifestIsRefusedWithEproto) {
  ASSERT_TRUE(std::filesystem::create_directories(Root()));
  StoreManifest other_seed = StoreManifest::Current();
  other_seed.seed ^= 1;
  ASSERT_TRUE(WriteManifest(Root(), other_seed).ok());
  Result<std::unique_ptr<DfsStore>> s = DfsStore::Open(Root(), Options("hostA"));
  EXPECT_EQ(s.err(), EPROTO) << ErrText(s.status());
  // The foreign manifest is left as it was.
  Result<StoreManifest> kept = ReadManifest(Root());
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->seed, other_seed.seed);

  StoreManifest newer = StoreManifest::Current();
  newer.format = kStoreFormatVersion + 1;
  ASSERT_TRUE(WriteManifest(Root(), newer).ok());
  EXPECT_EQ(DfsStore::Open(Root(), Options("hostB")).err(), EPROTO);

  StoreManifest other_hash = StoreManifest::Current();
  other_hash.hash = "md5";
  ASSERT_TRUE(WriteManifest(Root(), other_hash).ok());
  EXPECT_EQ(DfsStore::Open(Root(), Options("hostB")).err(), EPROTO);

  StoreManifest other_layout = StoreManifest::Current();
  other_layout.layout = "flat";
  ASSERT_TRUE(WriteManifest(Root(), other_layout).ok());
  EXPECT_EQ(DfsStore::Open(Root(), Options("hostB")).err(), EPROTO);

  ASSERT_TRUE(testing::WriteFile(Root() + "/" + kManifestFileName, "garbage\n"));
  EXPECT_EQ(DfsStore::Open(Root(), Options("hostB")).err(), EPROTO);

  // A compatible one is accepted again.
  ASSERT_TRUE(WriteManifest(Root(), StoreManifest::Current()).ok());
  EXPECT_TRUE(OpenAs(Root(), "hostB"));
}

TEST_F(DfsStoreTest, ObjectsWithoutManifestAreRefused) {
  ASSERT_TRUE(std::filesystem::create_directories(Root() + "/objects/ab"));
  EXPECT_EQ(DfsStore::Open(Root(), Options("hostA")).err(), EPROTO);
  EXPECT_FALSE(PathExists(Root() + "/" + kManifestFileName));
}

TEST_F(DfsStoreTest, InvalidHostIdIsEinval) {
  for (const std::string& bad : {std::string(""), std::string("a/b"), std::string("a~b"), std::string(".hidden"),
                                std::string("with space"), std::string("tab\t"), std::string("nl\n"),
                                std::string("colon:x"), std::string(129, 'h'), std::string("ü")}) {
    SCOPED_TRACE("'" + bad + "'");
    EXPECT_FALSE(ValidHostId(bad));
    Result<std::unique_ptr<DfsStore>> s = DfsStore::Open(Root(), Options(bad));
    EXPECT_EQ(s.err(), EINVAL) << ErrText(s.status());
  }
  EXPECT_FALSE(PathExists(Root())) << "a refused open created the store";
  for (const std::string& good : {std::string("a"), std::string("host-1.example.com"), std::string("node_07"),
                                 std::string("A.b-C_9"), std::string(128, 'h')}) {
    EXPECT_TRUE(ValidHostId(good)) << good;
  }
  EXPECT_TRUE(OpenAs(Root(), std::string(128, 'h')));
}

// ---------------------------------------------------------------------------
// Staging files.

TEST_F(DfsStoreTest, StagingNamesCarryTheHostAndAreUniqueAcrossHosts) {
  auto a = OpenAs(Root(), "hostA");
  auto b = OpenAs(Root(), "hostB");
  ASSERT_TRUE(a && b);
  constexpr int kPerHost = 40;
  std::vector<std::unique_ptr<StagingFile>> files_a, files_b;
  std::mutex mu;
  auto make = [&](DfsStore* store, std::vector<std::unique_ptr<StagingFile>>* out) {
    for (int i = 0; i < kPerHost; ++i) {
      Result<std::unique_ptr<StagingFile>> f = store->CreateStaging(Store::kUnknownSize);
      ASSERT_TRUE(f.ok()) << ErrText(f.status());
      std::lock_guard<std::mutex> g(mu);
      out->push_back(std::move(*f));
    }
  };
  // Two threads per host, so the per-instance counter is raced too.
  std::thread t1(make, a.get(), &files_a), t2(make, a.get(), &files_a);
  std::thread t3(make, b.get(), &files_b), t4(make, b.get(), &files_b);
  t1.join();
  t2.join();
  t3.join();
  t4.join();
  ASSERT_EQ(files_a.size(), 2u * kPerHost);
  ASSERT_EQ(files_b.size(), 2u * kPerHost);
  std::set<std::string> names;
  const std::string pid = std::to_string(::getpid());
  for (auto* list : {&files_a, &files_b}) {
    const std::string host = list == &files_a ? "hostA" : "hostB";
    for (const auto& f : *list) {
      EXPECT_GE(f->fd(), 0);
      EXPECT_EQ(f->path().rfind(Root() + "/staging/", 0), 0u) << f->path();
      std::string name = Basename(f->path());
      EXPECT_EQ(name.rfind(host + "~" + pid + "~", 0), 0u) << name;
      EXPECT_EQ(name.substr(name.size() - 4), ".tmp") << name;
      names.insert(name);
    }
  }
  EXPECT_EQ(names.size(), 4u * kPerHost) << "staging names collided";
  Result<std::vector<std::string>> listed = a->ListStaging();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(std::set<std::string>(listed->begin(), listed->end()), names);
  // Dropped without publishing: removed.
  files_a.clear();
  files_b.clear();
  EXPECT_EQ(CountFiles(Root() + "/staging"), 0u);
}

TEST_F(DfsStoreTest, RemoveStagingRefusesPaths) {
  auto a = OpenAs(Root(), "hostA");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->RemoveStaging("../kvfs-manifest.toml").err(), EINVAL);
  EXPECT_TRUE(PathExists(Root() + "/" + kManifestFileName));
  ASSERT_TRUE(testing::WriteFile(Root() + "/staging/hostZ~1~0.tmp", "x"));
  EXPECT_TRUE(a->RemoveStaging("hostZ~1~0.tmp").ok());
  EXPECT_EQ(a->RemoveStaging("hostZ~1~0.tmp").err(), ENOENT);
}

// ---------------------------------------------------------------------------
// Objects across hosts.

TEST_F(DfsStoreTest, ObjectLinkedByOneHostIsVisibleToAnother) {
  auto a = OpenAs(Root(), "hostA");
  auto b = OpenAs(Root(), "hostB");
  ASSERT_TRUE(a && b);
  std::vector<uint8_t> data = testing::Pattern(1, 10000);
  Result<std::string> loc = PutObject(*a, "dir/key-1", data);
  ASSERT_TRUE(loc.ok()) << ErrText(loc.status());
  EXPECT_EQ(*loc, b->LocationFor(HashKey("dir/key-1"))) << "hosts disagree on the location";
  EXPECT_EQ(loc->rfind("objects/", 0), 0u);
  EXPECT_EQ(CountFiles(Root() + "/staging"), 0u) << "the staging file was not moved";
  uint64_t footprint_on_disk = kHeaderSize + RoundUp4K(data.size());

  Result<FileStatus> st = StatPath(Root() + "/" + *loc, false);
  ASSERT_TRUE(st.ok()) << ErrText(st.status());
  Result<ListedObject> stat_b = b->StatObject(*loc);
  ASSERT_TRUE(stat_b.ok()) << ErrText(stat_b.status());
  EXPECT_EQ(stat_b->location, *loc);
  EXPECT_EQ(stat_b->file_id, st->file_id());
  EXPECT_EQ(stat_b->file_bytes, footprint_on_disk);

  Result<ScannedObject> read_b = b->ReadObject(*loc);
  ASSERT_TRUE(read_b.ok()) << ErrText(read_b.status());
  ASSERT_TRUE(read_b->header.ok()) << ErrText(read_b->header.status());
  EXPECT_EQ(read_b->header->key, "dir/key-1");
  EXPECT_EQ(read_b->header->size, data.size());
  EXPECT_EQ(read_b->file_id, stat_b->file_id);
  EXPECT_EQ(read_b->file_bytes, footprint_on_disk);

  Result<std::vector<uint8_t>> bytes = ReadData(*b, *loc, data.size());
  ASSERT_TRUE(bytes.ok()) << ErrText(bytes.status());
  EXPECT_TRUE(*bytes == data);

  std::map<std::string, ListedObject> listed = ListAll(*b);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed.begin()->first, *loc);
  EXPECT_EQ(listed.begin()->second.file_id, stat_b->file_id);
  EXPECT_EQ(listed.begin()->second.file_bytes, footprint_on_disk);

  std::map<std::string, ScannedObject> scanned = ScanAll(*b);
  ASSERT_EQ(scanned.size(), 1u);
  ASSERT_TRUE(scanned.begin()->second.header.ok());
  EXPECT_EQ(scanned.begin()->second.header->key, "dir/key-1");
  EXPECT_EQ(scanned.begin()->second.file_id, stat_b->file_id);

  // Missing objects: ENOENT from both lookups.
  std::string missing = b->LocationFor(HashKey("nope"));
  EXPECT_EQ(b->StatObject(missing).err(), ENOENT);
  EXPECT_EQ(b->ReadObject(missing).err(), ENOENT);
  EXPECT_EQ(b->OpenForRead(missing).err(), ENOENT);
}

TEST_F(DfsStoreTest, ManyObjectsFromSeveralHostsAreAllListed) {
  auto a = OpenAs(Root(), "hostA");
  auto b = OpenAs(Root(), "hostB");
  ASSERT_TRUE(a && b);
  std::set<std::string> want;
  for (int i = 0; i < 60; ++i) {
    std::string key = "k" + std::to_string(i);
    Result<std::string> loc = PutObject(i % 2 ? *a : *b, key, testing::Pattern(i, 100 + i));
    ASSERT_TRUE(loc.ok()) << ErrText(loc.status());
    want.insert(*loc);
  }
  for (DfsStore* s : {a.get(), b.get()}) {
    std::map<std::string, ListedObject> listed = ListAll(*s);
    std::set<std::string> got;
    for (const auto& [l, o] : listed) got.insert(l);
    EXPECT_EQ(got, want);
    std::map<std::string, ScannedObject> scanned = ScanAll(*s);
    EXPECT_EQ(scanned.size(), want.size());
    for (const auto& [l, o] : scanned) {
      ASSERT_TRUE(o.header.ok()) << l;
      EXPECT_EQ(s->LocationFor(HashKey(o.header->key)), l);
    }
  }
}

TEST_F(DfsStoreTest, ReplaceByAnotherHostChangesFileId) {
  auto a = OpenAs(Root(), "hostA");
  auto b = OpenAs(Root(), "hostB");
  ASSERT_TRUE(a && b);
  std::vector<uint8_t> v1 = testing::Pattern(1, 5000), v2 = testing::Pattern(2, 9000);
  Result<std::string> loc = PutObject(*a, "key", v1, 1);
  ASSERT_TRUE(loc.ok()) << ErrText(loc.status());
  Result<ListedObject> before = a->StatObject(*loc);
  ASSERT_TRUE(before.ok());
  // A reader on A keeps its descriptor across the replacement.
  Result<int> old_fd = a->OpenForRead(*loc);
  ASSERT_TRUE(old_fd.ok());

  ASSERT_TRUE(PutObject(*b, "key", v2, 2).ok());
  Result<ListedObject> after = a->StatObject(*loc);
  ASSERT_TRUE(after.ok());
  EXPECT_NE(after->file_id, before->file_id);
  EXPECT_EQ(after->file_bytes, kHeaderSize + RoundUp4K(v2.size()));
  Result<ScannedObject> obj = a->ReadObject(*loc);
  ASSERT_TRUE(obj.ok() && obj->header.ok());
  EXPECT_EQ(obj->header->generation, 2u);
  EXPECT_EQ(obj->header->size, v2.size());
  Result<std::vector<uint8_t>> now = ReadData(*a, *loc, v2.size());
  ASSERT_TRUE(now.ok());
  EXPECT_TRUE(*now == v2);
  EXPECT_EQ(ListAll(*a).size(), 1u);

  // The old descriptor still reads the old bytes.
  AlignedBuffer buf(kHeaderSize + RoundUp4K(v1.size()));
  ASSERT_EQ(::pread(*old_fd, buf.data(), buf.size(), 0), static_cast<ssize_t>(buf.size()));
  ::close(*old_fd);
  EXPECT_TRUE(std::equal(v1.begin(), v1.end(), buf.data() + kHeaderSize));
}

TEST_F(DfsStoreTest, RemoveByOneHostIsSeenByTheOther) {
  auto a = OpenAs(Root(), "hostA");
  auto b = OpenAs(Root(), "hostB");
  ASSERT_TRUE(a && b);
  Result<std::string> loc = PutObject(*a, "gone-soon", testing::Pattern(3, 4096));
  ASSERT_TRUE(loc.ok());
  ASSERT_TRUE(b->StatObject(*loc).ok());
  EXPECT_TRUE(b->Remove(*loc).ok());
  EXPECT_EQ(a->StatObject(*loc).err(), ENOENT);
  EXPECT_EQ(b->StatObject(*loc).err(), ENOENT);
  EXPECT_EQ(a->ReadObject(*loc).err(), ENOENT);
  EXPECT_TRUE(ListAll(*a).empty());
  EXPECT_TRUE(ScanAll(*a).empty());
  EXPECT_EQ(a->Remove(*loc).err(), ENOENT);
  EXPECT_EQ(a->Remove(*loc, false).err(), ENOENT);
}

TEST_F(DfsStoreTest, PublishMoveAndQuarantine) {
  auto a = OpenAs(Root(), "hostA");
  auto b = OpenAs(Root(), "hostB");
  ASSERT_TRUE(a && b);
  // Publish (durable variant of PublishUnsynced).
  Result<std::unique_ptr<StagingFile>> staging = a->CreateStaging(Store::kUnknownSize);
  ASSERT_TRUE(staging.ok());
  std::vector<uint8_t> data = testing::Pattern(4, 100);
  AlignedBuffer buf(kHeaderSize + 4096);
  ASSERT_TRUE(EncodeHeader(FileHeader("p", data, 1), buf.data()).ok());
  std::memcpy(buf.data() + kHeaderSize, data.data(), data.size());
  ASSERT_EQ(::pwrite((*staging)->fd(), buf.data(), buf.size(), 0), static_cast<ssize_t>(buf.size()));
  std::string loc = a->LocationFor(HashKey("p"));
  ASSERT_TRUE(a->Publish(**staging, loc).ok());
  staging->reset();
  ASSERT_TRUE(b->StatObject(loc).ok());
  EXPECT_TRUE(a->SyncAll().ok());

  // Move to another location (its parent directories are created).
  std::string to = a->LocationFor(HashKey("q"));
  ASSERT_TRUE(b->Move(loc, to, true).ok());
  EXPECT_EQ(a->StatObject(loc).err(), ENOENT);
  EXPECT_TRUE(a->StatObject(to).ok());

  // Quarantine: out of objects/, into quarantine/ with the host in the name.
  ASSERT_TRUE(b->Quarantine(to).ok());
  EXPECT_EQ(a->StatObject(to).err(), ENOENT);
  std::set<std::string> q = Entries(Root() + "/quarantine");
  ASSERT_EQ(q.size(), 1u);
  EXPECT_NE(q.begin()->find(".hostB."), std::string::npos) << *q.begin();
  EXPECT_TRUE(ListAll(*a).empty());
}

// Records renames and directory syncs, in order.
class SyncRecordingFs final : public ForwardingFs {
 public:
  Status Rename(const std::string& from, const std::string& to) override {
    calls.push_back("rename " + to);
    return real_->Rename(from, to);
  }
  Status SyncDir(const std::string& path) override {
    calls.push_back("syncdir " + path);
    return real_->SyncDir(path);
  }
  std::vector<std::string> calls;
};

// Every mode of commit flush leaves a DFS publish durable, rename included:
// PublishUnsynced (what `file`, `group` and background durability use; the
// SyncAll and SyncPublished after it reach no DFS server) syncs the
// object's directory after the rename, as Publish does.
TEST_F(DfsStoreTest, PublishedRenameIsMadeDurableByTheStoreItself) {
  auto recording = std::make_unique<SyncRecordingFs>();
  SyncRecordingFs* fs = recording.get();
  Result<std::unique_ptr<DfsStore>> opened = DfsStore::Open(Root(), Options("hostA"), std::move(recording));
  ASSERT_TRUE(opened.ok()) << ErrText(opened.status());
  DfsStore& store = **opened;
  for (bool unsynced : {true, false}) {
    SCOPED_TRACE(unsynced ? "PublishUnsynced" : "Publish");
    const std::string key = unsynced ? "u" : "p";
    Result<std::unique_ptr<StagingFile>> staging = store.CreateStaging(Store::kUnknownSize);
    ASSERT_TRUE(staging.ok());
    std::vector<uint8_t> data = testing::Pattern(5, 100);
    AlignedBuffer buf(kHeaderSize + 4096);
    ASSERT_TRUE(EncodeHeader(FileHeader(key, data, 1), buf.data()).ok());
    std::memcpy(buf.data() + kHeaderSize, data.data(), data.size());
    ASSERT_EQ(::pwrite((*staging)->fd(), buf.data(), buf.size(), 0), static_cast<ssize_t>(buf.size()));
    const std::string loc = store.LocationFor(HashKey(key));
    const std::string abs = Root() + "/" + loc;
    fs->calls.clear();
    Status published = unsynced ? store.PublishUnsynced(**staging, loc) : store.Publish(**staging, loc);
    ASSERT_TRUE(published.ok()) << ErrText(published);
    // (A first rename may fail: a fan-out directory is made on first use.)
    const std::vector<std::string>& c = fs->calls;
    ASSERT_GE(c.size(), 2u) << ::testing::PrintToString(c);
    EXPECT_EQ(c[c.size() - 2], "rename " + abs) << ::testing::PrintToString(c);
    EXPECT_EQ(c.back(), "syncdir " + abs.substr(0, abs.rfind('/'))) << "the rename's directory is synced after it";
  }
}

// ---------------------------------------------------------------------------
// The sweep of this host's dead staging files, and the probe.

TEST_F(DfsStoreTest, OpenSweepsOnlyThisHostsDeadStagingFiles) {
  { ASSERT_TRUE(OpenAs(Root(), "hostA")); }
  const std::string staging = Root() + "/staging/";
  const std::string dead = std::to_string(DeadPid());
  const std::string live = std::to_string(::getpid());
  const std::string mine_dead = "hostA~" + dead + "~0.tmp";
  const std::string mine_dead2 = "hostA~" + dead + "~17.tmp";
  const std::string mine_live = "hostA~" + live + "~90000.tmp";  // this process: alive
  const std::string other_dead = "hostB~" + dead + "~0.tmp";
  const std::string prefix_host = "hostAA~" + dead + "~0.tmp";  // another host whose id starts with hostA
  for (const std::string& n : {mine_dead, mine_dead2, mine_live, other_dead, prefix_host}) {
    ASSERT_TRUE(testing::WriteFile(staging + n, "partial"));
  }

  DfsStoreOptions no_sweep = Options("hostA");
  no_sweep.sweep_staging = false;
  {
    Result<std::unique_ptr<DfsStore>> s = DfsStore::Open(Root(), no_sweep);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ((*s)->swept_staging_files(), 0u);
    EXPECT_EQ(CountFiles(staging), 5u);
  }

  auto a = OpenAs(Root(), "hostA");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->swept_staging_files(), 2u);
  EXPECT_FALSE(PathExists(staging + mine_dead));
  EXPECT_FALSE(PathExists(staging + mine_dead2));
  EXPECT_TRUE(PathExists(staging + mine_live)) << "a live process's staging file was removed";
  EXPECT_TRUE(PathExists(staging + other_dead)) << "another host's staging file was removed";
  EXPECT_TRUE(PathExists(staging + prefix_host)) << "host hostAA's staging file was taken for hostA's";

  // Host B sweeps its own.
  auto b = OpenAs(Root(), "hostB");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->swept_staging_files(), 1u);
  EXPECT_FALSE(PathExists(staging + other_dead));
  EXPECT_TRUE(PathExists(staging + mine_live));
}

TEST_F(DfsStoreTest, ProbeLeavesNoFiles) {
  auto a = OpenAs(Root(), "hostA");
  auto b = OpenAs(Root(), "hostB");
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(PathExists(Root() + "/probe"));
  EXPECT_TRUE(Entries(Root() + "/probe").empty());
  EXPECT_TRUE(Entries(Root() + "/staging").empty());
  EXPECT_TRUE(ListAll(*a).empty());
}

TEST_F(DfsStoreTest, ProbeThroughAPassThroughFsClientSucceeds) {
  Result<std::unique_ptr<DfsStore>> s =
      DfsStore::Open(Root(), Options("hostA"), std::make_unique<FlakyProbeFs>(FlakyProbeFs::Mode::kPassThrough));
  ASSERT_TRUE(s.ok()) << ErrText(s.status());
  Result<std::string> loc = PutObject(**s, "through-wrapper", testing::Pattern(5, 333));
  ASSERT_TRUE(loc.ok()) << ErrText(loc.status());
  auto b = OpenAs(Root(), "hostB");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->StatObject(*loc).ok());
  EXPECT_TRUE(Entries(Root() + "/probe").empty());
}

TEST_F(DfsStoreTest, FailedProbeRefusesTheStoreWithEio) {
  using Mode = FlakyProbeFs::Mode;
  for (Mode mode : {Mode::kCreateFails, Mode::kWriteFails, Mode::kCorruptRead, Mode::kShortRead, Mode::kUnlinkFails}) {
    SCOPED_TRACE("mode " + std::to_string(static_cast<int>(mode)));
    for (bool direct : {true, false}) {
      SCOPED_TRACE(direct ? "direct" : "buffered");
      DfsStoreOptions o = Options("hostA");
      o.direct_io = direct;
      Result<std::unique_ptr<DfsStore>> s = DfsStore::Open(Root(), o, std::make_unique<FlakyProbeFs>(mode));
      EXPECT_FALSE(s.ok());
      EXPECT_EQ(s.err(), EIO) << ErrText(s.status());
      if (mode != Mode::kUnlinkFails) {
        EXPECT_TRUE(Entries(Root() + "/probe").empty()) << "a failed probe left its file";
      } else {
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator(Root() + "/probe", ec)) {
          std::filesystem::remove(e.path(), ec);
        }
      }
    }
  }
  // The same directory works with an honest filesystem.
  EXPECT_TRUE(OpenAs(Root(), "hostA"));
}

}  // namespace
}  // namespace kvfs
