// CheckStore (`kvfs fsck`) on a LocalStore filled by a real Engine: a clean
// store is clean; each kind of damage (a flipped data byte, a bad header, a
// truncated object file, a staging leftover, a second copy of a key) is
// found and counted; a check without repair changes nothing; repair fixes
// everything, so that the next check is clean and a mount serves exactly
// the undamaged objects.
#include "core/fsck.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "adapters/key_hash.h"
#include "adapters/local_store.h"
#include "core/engine.h"
#include "tests/unit/engine_driver.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

using testing::Pattern;
using testing::TempDir;

constexpr uint64_t kRoot = 1;
constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;

using testing::ErrText;

using testing::CountFiles;

bool FlipByte(const std::string& path, off_t offset) {
  int fd = ::open(path.c_str(), O_RDWR);
  if (fd < 0) return false;
  uint8_t b = 0;
  bool ok = ::pread(fd, &b, 1, offset) == 1;
  b ^= 0x5a;
  ok = ok && ::pwrite(fd, &b, 1, offset) == 1 && ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

bool CopyFile(const std::string& from, const std::string& to) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(to).parent_path(), ec);
  return std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing, ec) && !ec;
}

class FsckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    root_ = dir_.Sub("store");
  }

  // Files the tests start from: key -> bytes.
  static const std::map<std::string, std::vector<uint8_t>>& Files() {
    static const auto* files = new std::map<std::string, std::vector<uint8_t>>{
        {"empty", {}},
        {"small", Pattern(1, 17)},
        {"aligned", Pattern(2, 256 * kKiB)},
        {"multi-chunk", Pattern(3, kMiB + 12345)},
        {"big", Pattern(4, 3 * kMiB)},
        {"dir/nested", Pattern(5, 70 * kKiB)},
        {"dir/sub/deeper", Pattern(6, 300 * kKiB + 1)},
    };
    return *files;
  }

  // Opens an engine on the store, runs fn, closes it (releasing the lock).
  void WithEngine(const std::function<void(Engine&)>& fn) {
    Result<std::unique_ptr<LocalStore>> store = LocalStore::Open(root_, LocalStoreOptions{});
    ASSERT_TRUE(store.ok()) << ErrText(store.status());
    std::vector<std::unique_ptr<Store>> stores;
    stores.push_back(std::move(*store));
    EngineOptions options;
    options.space.capacity_bytes = 1ULL << 30;
    options.buffer_count = 8;
    options.background_eviction = false;
    Result<std::unique_ptr<Engine>> e = Engine::Start(options, std::move(stores));
    ASSERT_TRUE(e.ok()) << ErrText(e.status());
    fn(**e);
  }

  static Result<uint64_t> Resolve(Engine& e, const std::string& key, bool make_dirs) {
    uint64_t parent = kRoot;
    size_t start = 0;
    while (true) {
      size_t slash = key.find('/', start);
      if (slash == std::string::npos) break;
      std::string dir = key.substr(start, slash - start);
      Result<Attr> a = e.Lookup(parent, dir);
      if (!a.ok() && make_dirs) a = e.Mkdir(parent, dir, 0755, 0, 0);
      if (!a.ok()) return a.status();
      parent = a->ino;
      start = slash + 1;
    }
    return parent;
  }

  // The last part of a key: its file name.
  static std::string BaseName(const std::string& key) {
    return key.substr(key.rfind('/') == std::string::npos ? 0 : key.rfind('/') + 1);
  }

  // Commits key (its directories made as needed) in one write.
  static Status Put(Engine& e, const std::string& key, const std::vector<uint8_t>& data) {
    Result<uint64_t> parent = Resolve(e, key, true);
    if (!parent.ok()) return parent.status();
    return testing::PutFile(e, *parent, BaseName(key), data, {.piece = testing::kOneWrite}).status();
  }

  // Reads key through the engine: its bytes, or the error.
  static Result<std::vector<uint8_t>> Get(Engine& e, const std::string& key) {
    Result<uint64_t> parent = Resolve(e, key, false);
    if (!parent.ok()) return parent.status();
    return testing::GetFile(e, *parent, BaseName(key), 1 << 20);
  }

  void Populate() {
    WithEngine([&](Engine& e) {
      for (const auto& [key, data] : Files()) ASSERT_EQ(ErrText(Put(e, key, data)), "OK") << key;
      Result<Attr> empty_dir = e.Mkdir(kRoot, "empty-dir", 0755, 0, 0);
      ASSERT_TRUE(empty_dir.ok());
    });
  }

  // Opens the store the way `kvfs fsck` does (no creation, no sweep).
  std::unique_ptr<LocalStore> OpenStore() {
    LocalStoreOptions so;
    so.create_if_missing = false;
    so.sweep_staging = false;
    Result<std::unique_ptr<LocalStore>> s = LocalStore::Open(root_, so);
    EXPECT_TRUE(s.ok()) << ErrText(s.status());
    return s.ok() ? std::move(*s) : nullptr;
  }

  FsckReport Check(bool repair) {
    std::unique_ptr<LocalStore> store = OpenStore();
    if (!store) return FsckReport{};
    Result<FsckReport> r = CheckStore(*store, repair);
    EXPECT_TRUE(r.ok()) << ErrText(r.status());
    return r.ok() ? *r : FsckReport{};
  }

  std::string Location(const std::string& key) const {
    std::string hex = HashKey(key).Hex();
    return "objects/" + hex.substr(0, 2) + "/" + hex;
  }
  std::string ObjectPath(const std::string& key) const { return root_ + "/" + Location(key); }

  uint64_t TotalBytes() const {
    uint64_t n = 0;
    for (const auto& [key, data] : Files()) n += data.size();
    return n;
  }

  TempDir dir_;
  std::string root_;
};

std::string ProblemsText(const FsckReport& r) { return r.ToText(); }

TEST_F(FsckTest, CleanStoreIsClean) {
  Populate();
  FsckReport r = Check(false);
  EXPECT_TRUE(r.clean()) << ProblemsText(r);
  EXPECT_EQ(r.files, Files().size()) << ProblemsText(r);
  EXPECT_GE(r.directories, 3u) << "dir, dir/sub and empty-dir have records";
  EXPECT_EQ(r.objects, r.files + r.directories);
  EXPECT_EQ(r.bytes, TotalBytes());
  EXPECT_EQ(r.corrupt, 0u);
  EXPECT_EQ(r.duplicates, 0u);
  EXPECT_EQ(r.staging_leftovers, 0u);
  EXPECT_EQ(r.repaired, 0u);
  EXPECT_TRUE(r.problems.empty());
  EXPECT_NE(r.ToJson().find("\"clean\":true"), std::string::npos) << r.ToJson();
  // Repairing a clean store changes nothing.
  FsckReport again = Check(true);
  EXPECT_TRUE(again.clean());
  EXPECT_EQ(again.repaired, 0u);
  EXPECT_EQ(again.files, Files().size());
}

TEST_F(FsckTest, EmptyStoreIsClean) {
  WithEngine([](Engine&) {});
  FsckReport r = Check(false);
  EXPECT_TRUE(r.clean()) << ProblemsText(r);
  EXPECT_EQ(r.files, 0u);
}

TEST_F(FsckTest, CorruptDataByteIsFoundAndQuarantined) {
  Populate();
  ASSERT_TRUE(FlipByte(ObjectPath("multi-chunk"), 4096 + kMiB + 100));  // in the last chunk
  FsckReport r = Check(false);
  EXPECT_FALSE(r.clean());
  EXPECT_EQ(r.corrupt, 1u) << ProblemsText(r);
  EXPECT_EQ(r.files, Files().size() - 1);
  ASSERT_EQ(r.problems.size(), 1u) << ProblemsText(r);
  EXPECT_NE(r.problems[0].find(Location("multi-chunk")), std::string::npos) << r.problems[0];
  EXPECT_NE(r.ToJson().find("\"corrupt\":1"), std::string::npos) << r.ToJson();

  FsckReport fixed = Check(true);
  EXPECT_EQ(fixed.corrupt, 1u);
  EXPECT_EQ(fixed.repaired, 1u);
  EXPECT_FALSE(std::filesystem::exists(ObjectPath("multi-chunk")));
  EXPECT_EQ(CountFiles(root_ + "/quarantine"), 1u);
  FsckReport after = Check(false);
  EXPECT_TRUE(after.clean()) << ProblemsText(after);
  EXPECT_EQ(after.files, Files().size() - 1);
}

TEST_F(FsckTest, CorruptFirstChunkOfSmallObjectIsFound) {
  Populate();
  ASSERT_TRUE(FlipByte(ObjectPath("small"), 4096 + 16));
  FsckReport r = Check(false);
  EXPECT_EQ(r.corrupt, 1u) << ProblemsText(r);
}

TEST_F(FsckTest, CorruptChecksumTableIsFound) {
  Populate();
  // The table of a 3 MiB object starts right after its data.
  ASSERT_TRUE(FlipByte(ObjectPath("big"), ChecksumTableOffset(3 * kMiB) + 9));
  FsckReport r = Check(false);
  EXPECT_EQ(r.corrupt, 1u) << ProblemsText(r);
}

TEST_F(FsckTest, BadHeaderIsFound) {
  Populate();
  ASSERT_TRUE(FlipByte(ObjectPath("aligned"), 40));  // inside header slot 0
  FsckReport r = Check(false);
  EXPECT_EQ(r.corrupt, 1u) << ProblemsText(r);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_NE(r.problems[0].find(Location("aligned")), std::string::npos) << r.problems[0];
  Check(true);
  FsckReport after = Check(false);
  EXPECT_TRUE(after.clean()) << ProblemsText(after);
  EXPECT_EQ(after.files, Files().size() - 1);
}

TEST_F(FsckTest, TruncatedFileIsFound) {
  Populate();
  ASSERT_EQ(::truncate(ObjectPath("big").c_str(), 4096 + kMiB), 0);
  FsckReport r = Check(false);
  EXPECT_EQ(r.corrupt, 1u) << ProblemsText(r);
  Check(true);
  EXPECT_TRUE(Check(false).clean());
}

TEST_F(FsckTest, FileCutInsideChecksumTableIsFound) {
  Populate();
  // All data is there, the checksum table is not.
  ASSERT_EQ(::truncate(ObjectPath("multi-chunk").c_str(), ChecksumTableOffset(kMiB + 12345)), 0);
  FsckReport r = Check(false);
  EXPECT_EQ(r.corrupt, 1u) << ProblemsText(r);
}

TEST_F(FsckTest, StagingLeftoverIsFoundAndRemoved) {
  Populate();
  ASSERT_TRUE(testing::WriteFile(root_ + "/staging/4242-7.tmp", "half a commit"));
  FsckReport r = Check(false);
  EXPECT_FALSE(r.clean());
  EXPECT_EQ(r.staging_leftovers, 1u) << ProblemsText(r);
  EXPECT_EQ(r.corrupt, 0u);
  EXPECT_TRUE(std::filesystem::exists(root_ + "/staging/4242-7.tmp")) << "a check without --repair changed the store";
  FsckReport fixed = Check(true);
  EXPECT_EQ(fixed.repaired, 1u);
  EXPECT_EQ(CountFiles(root_ + "/staging"), 0u);
  EXPECT_TRUE(Check(false).clean());
}

// An exact copy of an object at another place in objects/ (same key, same
// generation): one of the two is superseded.
TEST_F(FsckTest, DuplicateCopyIsFoundAndRemoved) {
  Populate();
  std::string copy = root_ + "/objects/00/0000000000000000000000000000beef";
  ASSERT_TRUE(CopyFile(ObjectPath("small"), copy));
  FsckReport r = Check(false);
  EXPECT_EQ(r.duplicates, 1u) << ProblemsText(r);
  EXPECT_EQ(r.files, Files().size()) << "a duplicate counts once";
  EXPECT_EQ(r.corrupt, 0u);
  FsckReport fixed = Check(true);
  EXPECT_EQ(fixed.repaired, 1u);
  EXPECT_EQ(std::filesystem::exists(copy) + std::filesystem::exists(ObjectPath("small")), 1)
      << "exactly one copy must remain";
  EXPECT_TRUE(Check(false).clean());
  WithEngine([&](Engine& e) {
    Result<std::vector<uint8_t>> got = Get(e, "small");
    ASSERT_TRUE(got.ok()) << ErrText(got.status());
    EXPECT_EQ(*got, Files().at("small"));
  });
}

// An older version of a key left at another place (an interrupted rename):
// the older generation is the superseded one, whatever the scan order.
TEST_F(FsckTest, OlderDuplicateIsTheOneRemoved) {
  const std::vector<uint8_t> v1 = Pattern(91, 90 * kKiB), v2 = Pattern(92, 120 * kKiB);
  WithEngine([&](Engine& e) { ASSERT_EQ(ErrText(Put(e, "key", v1)), "OK"); });
  std::string saved = dir_.Sub("saved-v1");
  ASSERT_TRUE(CopyFile(ObjectPath("key"), saved));
  WithEngine([&](Engine& e) { ASSERT_EQ(ErrText(Put(e, "key", v2)), "OK"); });
  // Put the old version in front of and behind the new one in scan order.
  std::string before = root_ + "/objects/00/00000000000000000000000000000001";
  std::string after = root_ + "/objects/ff/ffffffffffffffffffffffffffffffff";
  ASSERT_TRUE(CopyFile(saved, before));
  ASSERT_TRUE(CopyFile(saved, after));
  FsckReport r = Check(false);
  EXPECT_EQ(r.duplicates, 2u) << ProblemsText(r);
  FsckReport fixed = Check(true);
  EXPECT_EQ(fixed.repaired, 2u);
  EXPECT_FALSE(std::filesystem::exists(before));
  EXPECT_FALSE(std::filesystem::exists(after));
  EXPECT_TRUE(std::filesystem::exists(ObjectPath("key")));
  EXPECT_TRUE(Check(false).clean());
  WithEngine([&](Engine& e) {
    Result<std::vector<uint8_t>> got = Get(e, "key");
    ASSERT_TRUE(got.ok()) << ErrText(got.status());
    EXPECT_EQ(*got, v2);
  });
}

// Every kind of problem at once: each counted, a plain check changes
// nothing, one repair fixes all, and a mount then serves exactly the
// undamaged objects with the right bytes.
TEST_F(FsckTest, AllProblemsAtOnceThenRepair) {
  Populate();
  ASSERT_TRUE(FlipByte(ObjectPath("multi-chunk"), 4096 + 5));
  ASSERT_TRUE(FlipByte(ObjectPath("aligned"), 100));
  ASSERT_EQ(::truncate(ObjectPath("big").c_str(), 4096 + 2 * kMiB), 0);
  ASSERT_TRUE(testing::WriteFile(root_ + "/staging/1-0.tmp", std::string(8192, 'x')));
  ASSERT_TRUE(testing::WriteFile(root_ + "/staging/1-1.tmp", ""));
  ASSERT_TRUE(CopyFile(ObjectPath("dir/nested"), root_ + "/objects/ab/abcd0000000000000000000000000000"));

  FsckReport r = Check(false);
  EXPECT_EQ(r.corrupt, 3u) << ProblemsText(r);
  EXPECT_EQ(r.duplicates, 1u) << ProblemsText(r);
  EXPECT_EQ(r.staging_leftovers, 2u) << ProblemsText(r);
  EXPECT_EQ(r.problems.size(), 6u) << ProblemsText(r);
  EXPECT_EQ(r.files, Files().size() - 3);
  EXPECT_EQ(r.repaired, 0u);
  // Unchanged by a check without repair.
  FsckReport same = Check(false);
  EXPECT_EQ(same.corrupt, 3u);
  EXPECT_EQ(same.duplicates, 1u);
  EXPECT_EQ(same.staging_leftovers, 2u);

  FsckReport fixed = Check(true);
  EXPECT_EQ(fixed.repaired, 6u) << ProblemsText(fixed);
  EXPECT_NE(fixed.ToText().find("repaired"), std::string::npos) << fixed.ToText();
  EXPECT_EQ(CountFiles(root_ + "/quarantine"), 3u);
  EXPECT_EQ(CountFiles(root_ + "/staging"), 0u);

  FsckReport after = Check(false);
  EXPECT_TRUE(after.clean()) << ProblemsText(after);
  EXPECT_EQ(after.files, Files().size() - 3);

  WithEngine([&](Engine& e) {
    for (const auto& [key, data] : Files()) {
      Result<std::vector<uint8_t>> got = Get(e, key);
      if (key == "multi-chunk" || key == "aligned" || key == "big") {
        EXPECT_EQ(got.err(), ENOENT) << key << " should have been quarantined";
      } else {
        ASSERT_TRUE(got.ok()) << key << ": " << ErrText(got.status());
        EXPECT_EQ(*got, data) << key;
      }
    }
  });
}

// fsck refuses a store that is in use (the store lock): it cannot check.
// Objects written by an older build (format 1) carry XXH3-64 of all data
// bytes as their checksum; this build's (format 2) carry XXH3-64 of the chunk
// checksum table. fsck verifies each by its own rule, and a checksum of the
// wrong kind is damage.
TEST_F(FsckTest, EachObjectFormatIsVerifiedByItsOwnChecksumRule) {
  Populate();
  const std::vector<uint8_t>& data = Files().at("multi-chunk");
  Result<ObjectHeader> h = testing::ReadObjectHeader(ObjectPath("multi-chunk"));
  ASSERT_TRUE(h.ok()) << ErrText(h.status());
  EXPECT_EQ(h->format, kObjectFormatVersion);
  EXPECT_EQ(h->checksum, testing::DataChecksum(data)) << "a new object's checksum is not its table's";

  // As an older build wrote it.
  ObjectHeader old = *h;
  old.format = 1;
  old.checksum = XXH3_64bits(data.data(), data.size());
  ASSERT_TRUE(testing::RewriteObjectHeader(ObjectPath("multi-chunk"), old));
  FsckReport r = Check(false);
  EXPECT_TRUE(r.clean()) << ProblemsText(r);
  EXPECT_EQ(r.files, Files().size());

  // A format-1 header with a table checksum, and a format-2 header with a
  // whole-data checksum: both wrong.
  for (uint32_t format : {1u, 2u}) {
    ObjectHeader wrong = *h;
    wrong.format = format;
    wrong.checksum = format == 1 ? testing::DataChecksum(data) : XXH3_64bits(data.data(), data.size());
    ASSERT_TRUE(testing::RewriteObjectHeader(ObjectPath("multi-chunk"), wrong));
    FsckReport bad = Check(false);
    EXPECT_EQ(bad.corrupt, 1u) << "format " << format << ": " << ProblemsText(bad);
    ASSERT_EQ(bad.problems.size(), 1u) << ProblemsText(bad);
    EXPECT_NE(bad.problems[0].find("whole-object checksum"), std::string::npos) << bad.problems[0];
  }
}

// A read verifies a format-2 object's chunk checksum table against its
// header before it trusts the table: a header whose data checksum does not
// match fails the read (EIO) as damage.
TEST_F(FsckTest, AReadRefusesATableThatDoesNotMatchItsHeader) {
  Populate();
  Result<ObjectHeader> h = testing::ReadObjectHeader(ObjectPath("big"));
  ASSERT_TRUE(h.ok()) << ErrText(h.status());
  ObjectHeader wrong = *h;
  wrong.checksum ^= 1;
  ASSERT_TRUE(testing::RewriteObjectHeader(ObjectPath("big"), wrong));
  WithEngine([&](Engine& e) {
    EXPECT_EQ(Get(e, "big").err(), EIO);
    EXPECT_EQ(e.Stats().quarantined, 1u) << "damage, as a short object is";
    Result<std::vector<uint8_t>> other = Get(e, "multi-chunk");
    ASSERT_TRUE(other.ok()) << ErrText(other.status());
    EXPECT_TRUE(*other == Files().at("multi-chunk"));
  });
}

// A format-1 object is served as it is; a change of its attributes or name
// rewrites its header in format 1 with the checksum it had; a new version
// of its key is written in format 2.
TEST_F(FsckTest, AnOlderFormatObjectKeepsItsFormatUntilItsKeyIsWrittenAgain) {
  Populate();
  const std::vector<uint8_t>& data = Files().at("big");
  Result<ObjectHeader> h = testing::ReadObjectHeader(ObjectPath("big"));
  ASSERT_TRUE(h.ok()) << ErrText(h.status());
  ObjectHeader old = *h;
  old.format = 1;
  old.checksum = XXH3_64bits(data.data(), data.size());
  ASSERT_TRUE(testing::RewriteObjectHeader(ObjectPath("big"), old));

  WithEngine([&](Engine& e) {
    Result<std::vector<uint8_t>> got = Get(e, "big");
    ASSERT_TRUE(got.ok()) << ErrText(got.status());
    EXPECT_TRUE(*got == data);
    Result<Attr> a = e.Lookup(kRoot, "big");
    ASSERT_TRUE(a.ok());
    SetAttrRequest chmod;
    chmod.mode = 0600;
    ASSERT_TRUE(e.SetAttr(a->ino, chmod, nullptr).ok());
    Result<ObjectHeader> changed = testing::ReadObjectHeader(ObjectPath("big"));
    ASSERT_TRUE(changed.ok()) << ErrText(changed.status());
    EXPECT_EQ(changed->format, 1u) << "a chmod rewrote the header in another format";
    EXPECT_EQ(changed->checksum, old.checksum);
    ASSERT_TRUE(e.Rename(kRoot, "big", kRoot, "moved", 0).ok());
    e.Forget(a->ino, 1);
  });
  Result<ObjectHeader> moved = testing::ReadObjectHeader(ObjectPath("moved"));
  ASSERT_TRUE(moved.ok()) << ErrText(moved.status());
  EXPECT_EQ(moved->format, 1u);
  EXPECT_EQ(moved->checksum, old.checksum);
  EXPECT_EQ(moved->mode & 07777, 0600u);
  FsckReport r = Check(false);
  EXPECT_TRUE(r.clean()) << ProblemsText(r);

  const std::vector<uint8_t> next = Pattern(9, 2 * kMiB + 5);
  WithEngine([&](Engine& e) { ASSERT_EQ(ErrText(Put(e, "moved", next)), "OK"); });
  Result<ObjectHeader> rewritten = testing::ReadObjectHeader(ObjectPath("moved"));
  ASSERT_TRUE(rewritten.ok()) << ErrText(rewritten.status());
  EXPECT_EQ(rewritten->format, kObjectFormatVersion);
  EXPECT_EQ(rewritten->checksum, testing::DataChecksum(next));
  r = Check(false);
  EXPECT_TRUE(r.clean()) << ProblemsText(r);
}

// An object a newer kvfs wrote (a format this build does not read) is
// listed, not taken for damage, and never quarantined by a repair.
TEST_F(FsckTest, AnObjectOfANewerFormatIsLeftAlone) {
  Populate();
  const std::string path = ObjectPath("small");
  std::vector<uint8_t> block(kHeaderSize);
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pread(fd, block.data(), kHeaderSize, 0), static_cast<ssize_t>(kHeaderSize));
  Result<ObjectHeader> h = DecodeHeader(block.data(), block.size());
  ASSERT_TRUE(h.ok());
  uint8_t* slot = block.data() + h->slot * kHeaderSlotSize;
  const uint32_t future = kObjectFormatVersion + 1;
  std::memcpy(slot + 8, &future, 4);  // after the 8-byte magic
  const uint64_t seal = XXH3_64bits(slot, kHeaderSlotSize - 8);
  std::memcpy(slot + kHeaderSlotSize - 8, &seal, 8);
  ASSERT_EQ(::pwrite(fd, block.data(), kHeaderSize, 0), static_cast<ssize_t>(kHeaderSize));
  ::close(fd);
  ASSERT_EQ(DecodeHeader(block.data(), block.size()).err(), EPROTO);

  for (bool repair : {false, true}) {
    FsckReport r = Check(repair);
    EXPECT_TRUE(r.clean()) << ProblemsText(r);
    EXPECT_EQ(r.newer_format, 1u) << ProblemsText(r);
    EXPECT_EQ(r.corrupt, 0u);
    EXPECT_EQ(r.repaired, 0u);
    EXPECT_EQ(r.files, Files().size() - 1);
    EXPECT_NE(r.ToJson().find("\"newer_format\":1"), std::string::npos) << r.ToJson();
    EXPECT_TRUE(std::filesystem::exists(path)) << "a repair removed an object of a newer format";
  }
}

TEST_F(FsckTest, StoreInUseCannotBeChecked) {
  Populate();
  Result<std::unique_ptr<LocalStore>> held = LocalStore::Open(root_, LocalStoreOptions{});
  ASSERT_TRUE(held.ok());
  LocalStoreOptions so;
  so.create_if_missing = false;
  so.sweep_staging = false;
  Result<std::unique_ptr<LocalStore>> second = LocalStore::Open(root_, so);
  EXPECT_FALSE(second.ok());
  EXPECT_EQ(second.err(), EBUSY);
}

}  // namespace
}  // namespace kvfs
