// Capacity and eviction of kvfs::Engine, driven directly (no FUSE) over a
// LocalStore in a scratch directory: the capacity is never exceeded, leased
// objects are never evicted and stay byte-exact, a commit that cannot get
// room fails with ENOSPC and harms nothing, unlinked or replaced leased
// versions give their space back at the last release, EvictNow() restores the
// low watermark and the free-space floor, and Stats() counts evictions by
// cause. The floor tests put the store on a small tmpfs mounted by the test
// (skipped when mounting is not permitted).

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "adapters/local_store.h"
#include "adapters/object_header.h"
#include "core/engine.h"
#include "tests/unit/engine_driver.h"
#include "tests/unit/test_util.h"
#include "fuse/debug_xattrs.h"
#include "fuse/stats_format.h"

namespace kvfs {
namespace {

using testing::Pattern;
using testing::TempDir;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kOwner = 7;

std::vector<uint8_t> Data(uint64_t seed, size_t size) { return Pattern(seed, size); }

// Bytes that files under root/objects and root/staging occupy on the
// filesystem (st_blocks x 512). Files vanishing during the walk are skipped.
uint64_t StoreDiskBytes(const std::string& root) {
  uint64_t total = 0;
  for (const char* sub : {"/objects", "/staging"}) {
    std::error_code ec;
    std::filesystem::recursive_directory_iterator it(root + sub, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      struct stat st;
      if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) total += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  return total;
}

// Number of regular files under root/objects.
size_t StoreObjectFiles(const std::string& root) {
  size_t n = 0;
  std::error_code ec;
  std::filesystem::recursive_directory_iterator it(root + "/objects", ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) ++n;
  }
  return n;
}

uint64_t FsFreeBytes(const std::string& path) {
  struct statvfs sv;
  if (::statvfs(path.c_str(), &sv) != 0) return 0;
  return static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
}

// An engine over one LocalStore, plus the small file toolkit the tests use.
class EngineCapacityTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  void TearDown() override { engine_.reset(); }

  static EngineOptions Options(uint64_t capacity, const std::string& policy = "s3fifo") {
    EngineOptions o;
    o.space.capacity_bytes = capacity;
    o.space.eviction_policy = policy;
    o.background_eviction = false;  // tests call EvictNow() themselves
    o.buffer_count = 8;
    return o;
  }

  // Opens the engine on store_root (default: <tmp>/store).
  void OpenEngine(const EngineOptions& options, std::string store_root = "") {
    if (store_root.empty()) store_root = dir_.Sub("store");
    store_root_ = store_root;
    Result<std::unique_ptr<LocalStore>> store = LocalStore::Open(store_root, LocalStoreOptions{});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = store->get();
    std::vector<std::unique_ptr<Store>> stores;
    stores.push_back(std::move(*store));
    Result<std::unique_ptr<Engine>> e = Engine::Start(options, std::move(stores));
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(*e);
  }

  // StoreDiskBytes once the store's background removals are done: a
  // removed or replaced object's file is unlinked by a background thread
  // (see LocalStore), and its space counts as free from the removal on.
  uint64_t SettledDiskBytes() {
    store_->SettleRemovals(std::chrono::seconds(10));
    return StoreDiskBytes(store_root_);
  }

  // How these tests write: 1 MiB pieces as lock owner kOwner; Put drops the
  // lookup reference its create took.
  static constexpr testing::PutOptions kPut = {.piece = kMiB, .owner = kOwner, .forget = true};
  static constexpr size_t kReadChunk = 3 * kMiB / 2;

  // Creates (or truncates) parent/name, writes data, flushes (the commit),
  // releases the handle. Returns the flush's status (or an earlier error).
  Status Put(const std::string& name, const std::vector<uint8_t>& data, uint64_t parent = kRootIno) {
    return testing::PutFile(*engine_, parent, name, data, kPut).status();
  }

  Status WriteAll(FileHandle* h, const std::vector<uint8_t>& data) {
    return testing::WriteData(*engine_, h, data, kPut);
  }

  // "" when got is exactly want, else what differs.
  static std::string Differences(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want) {
    if (got.size() != want.size()) {
      return "size " + std::to_string(got.size()) + ", want " + std::to_string(want.size());
    }
    auto mismatch = std::mismatch(got.begin(), got.end(), want.begin());
    if (mismatch.first != got.end()) return "bytes differ at offset " + std::to_string(mismatch.first - got.begin());
    return "";
  }

  // "" when the handle reads exactly want.
  std::string CheckHandle(FileHandle* h, const std::vector<uint8_t>& want) {
    Result<std::vector<uint8_t>> got = testing::ReadAll(*engine_, h, kReadChunk);
    if (!got.ok()) return "read: " + got.status().ToString();
    return Differences(*got, want);
  }

  // Holds a read handle (a lease) on parent/name.
  struct Held {
    FileHandle* handle = nullptr;
    uint64_t ino = 0;
  };
  Result<Held> Hold(const std::string& name, uint64_t parent = kRootIno, int flags = O_RDONLY) {
    Result<Attr> a = engine_->Lookup(parent, name);
    if (!a.ok()) return a.status();
    Result<OpenResult> r = engine_->Open(a->ino, flags);
    if (!r.ok()) {
      engine_->Forget(a->ino, 1);
      return r.status();
    }
    return Held{r->handle, a->ino};
  }
  void Drop(Held& h) {
    if (!h.handle) return;
    engine_->Release(h.handle);
    engine_->Forget(h.ino, 1);
    h.handle = nullptr;
  }

  // "" when parent/name exists and reads exactly want through a fresh handle;
  // "ENOENT" when it does not exist.
  std::string Check(const std::string& name, const std::vector<uint8_t>& want, uint64_t parent = kRootIno) {
    Result<std::vector<uint8_t>> got = testing::GetFile(*engine_, parent, name, kReadChunk);
    if (!got.ok()) return got.err() == ENOENT ? "ENOENT" : got.status().ToString();
    return Differences(*got, want);
  }

  bool Exists(const std::string& name, uint64_t parent = kRootIno) {
    Result<Attr> a = engine_->Lookup(parent, name);
    if (!a.ok()) return false;
    engine_->Forget(a->ino, 1);
    return true;
  }

  // Visible names in a directory, in listing order.
  std::vector<std::string> List(uint64_t dir = kRootIno) {
    std::vector<std::string> names;
    Status s = engine_->ReadDir(dir, 0, false, [&](const DirEntry& e) {
      if (e.name != "." && e.name != "..") names.push_back(e.name);
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return names;
  }

  EngineStats St() const { return engine_->Stats(); }

  TempDir dir_;
  std::string store_root_;
  LocalStore* store_ = nullptr;  // owned by engine_
  std::unique_ptr<Engine> engine_;
};

class EngineCapacityPolicyTest : public EngineCapacityTest, public ::testing::WithParamInterface<std::string> {};

// Many commits of mixed sizes through an 8 MiB engine: after every commit the
// accounted usage and the store's bytes on disk stay within the capacity,
// objects are evicted, every survivor is byte-exact, and the eviction counters
// add up to exactly what disappeared.
TEST_P(EngineCapacityPolicyTest, CapacityIsNeverExceeded) {
  constexpr uint64_t kCapacity = 8 * kMiB;
  ASSERT_NO_FATAL_FAILURE(OpenEngine(Options(kCapacity, GetParam())));
  EXPECT_EQ(St().capacity_bytes, kCapacity);
  EXPECT_EQ(St().eviction_policy, GetParam());

  const size_t sizes[] = {4096, 1, 300000, kMiB, 65536 + 17, 2 * kMiB - 1, 700000, 12345, 3 * kMiB / 2, 0, 999999};
  std::map<std::string, std::vector<uint8_t>> written;
  uint64_t written_footprint = 0;
  for (int i = 0; i < 80; ++i) {
    std::string name = "obj-" + std::to_string(i);
    std::vector<uint8_t> data = Data(1000 + i, sizes[i % std::size(sizes)] + i * 61);
    ASSERT_TRUE(Put(name, data).ok()) << name;
    written_footprint += ObjectFootprint(data.size());
    written[name] = std::move(data);
    // Touch a few older objects now and then, as readers would.
    if (i % 5 == 0 && i >= 5) (void)Check("obj-" + std::to_string(i - 3), written["obj-" + std::to_string(i - 3)]);
    EngineStats st = St();
    ASSERT_LE(st.used_bytes, kCapacity) << "after " << name;
    ASSERT_LE(SettledDiskBytes(), kCapacity) << "after " << name;
    ASSERT_EQ(Check(name, written[name]), "") << "the object just committed must be there";
  }

  EngineStats st = St();
  std::vector<std::string> present = List();
  uint64_t present_footprint = 0;
  for (const std::string& name : present) {
    ASSERT_TRUE(written.count(name)) << name;
    EXPECT_EQ(Check(name, written[name]), "") << name;
    present_footprint += ObjectFootprint(written[name].size());
  }
  EXPECT_LT(present.size(), written.size()) << "nothing was evicted";
  EXPECT_EQ(st.objects, present.size());
  EXPECT_EQ(st.used_bytes, present_footprint);
  EXPECT_EQ(StoreObjectFiles(store_root_), present.size());
  // Every object that is gone was evicted for capacity, and counted so.
  EXPECT_EQ(st.evictions.capacity, written.size() - present.size());
  EXPECT_EQ(st.evictions.watermark, 0u);
  EXPECT_EQ(st.evictions.floor, 0u);
  EXPECT_EQ(st.evictions.total(), written.size() - present.size());
  EXPECT_EQ(st.evictions.bytes, written_footprint - present_footprint);
  // Each eviction belongs to one batch (the commit that made room).
  EXPECT_GT(st.eviction_batch_objects.count, 0u);
  EXPECT_LE(st.eviction_batch_objects.count, st.evictions.total());
  EXPECT_EQ(st.eviction_batch_objects.sum, st.evictions.total());
  EXPECT_EQ(st.enospc, 0u);
  ASSERT_EQ(st.stores.size(), 1u);
  EXPECT_EQ(st.stores[0].capacity_bytes, kCapacity);
  EXPECT_EQ(st.stores[0].used_bytes, st.used_bytes);
  EXPECT_EQ(st.stores[0].evictions.capacity, st.evictions.capacity);
  EXPECT_EQ(st.stores[0].evictions.bytes, st.evictions.bytes);
  for (const auto& [name, data] : written) {
    if (std::find(present.begin(), present.end(), name) == present.end()) {
      EXPECT_FALSE(Exists(name)) << name;
    }
  }
}

// An open handle is a lease: its object survives any amount of eviction
// pressure and reads byte-exact, through the handle and by name.
TEST_P(EngineCapacityPolicyTest, LeasedObjectIsNeverEvicted) {
  constexpr uint64_t kCapacity = 8 * kMiB;
  ASSERT_NO_FATAL_FAILURE(OpenEngine(Options(kCapacity, GetParam())));
  const std::vector<uint8_t> pinned = Data(1, 2 * kMiB + 5);
  ASSERT_TRUE(Put("pinned", pinned).ok());
  Result<Held> held = Hold("pinned");
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  EXPECT_GE(St().leased_bytes, ObjectFootprint(pinned.size()));
  EXPECT_GE(St().pinned_bytes, ObjectFootprint(pinned.size()));

  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(Put("filler-" + std::to_string(i), Data(100 + i, kMiB)).ok()) << i;
    ASSERT_TRUE(Exists("pinned")) << "the leased object was evicted after " << i << " commits";
    ASSERT_LE(St().used_bytes, kCapacity);
  }
  EXPECT_GT(St().evictions.total(), 0u);
  EXPECT_EQ(CheckHandle(held->handle, pinned), "");
  EXPECT_EQ(Check("pinned", pinned), "");
  Drop(*held);
  EXPECT_EQ(St().leased_bytes, 0u);
}

// With every committed object leased, a commit that needs room fails with
// ENOSPC, quickly; nothing else is harmed (new key absent, the replaced key
// keeps its old bytes, pinned objects intact); once the handles are released
// commits succeed again.
TEST_P(EngineCapacityPolicyTest, AllPinnedCommitFailsWithEnospc) {
  constexpr uint64_t kCapacity = 8 * kMiB;
  ASSERT_NO_FATAL_FAILURE(OpenEngine(Options(kCapacity, GetParam())));
  const uint64_t fp = ObjectFootprint(kMiB);
  const int fit = static_cast<int>(kCapacity / fp);
  ASSERT_GE(fit, 2);
  std::vector<std::vector<uint8_t>> data;
  std::vector<Held> held;
  for (int i = 0; i < fit; ++i) {
    data.push_back(Data(200 + i, kMiB));
    ASSERT_TRUE(Put("p" + std::to_string(i), data.back()).ok()) << i;
  }
  ASSERT_EQ(St().evictions.total(), 0u);
  for (int i = 0; i < fit; ++i) {
    Result<Held> h = Hold("p" + std::to_string(i));
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    held.push_back(*h);
  }
  EXPECT_EQ(St().leased_bytes, fit * fp);
  EXPECT_GE(St().pinned_bytes, fit * fp);

  // A new key.
  auto start = std::chrono::steady_clock::now();
  Status s = Put("new", Data(300, kMiB));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(s.err(), ENOSPC) << s.ToString();
  EXPECT_LT(secs, 5.0) << "an all-pinned commit must fail fast";
  EXPECT_FALSE(Exists("new"));
  EXPECT_GE(St().enospc, 1u);

  // Replacing a pinned key (O_TRUNC) cannot get room either; the old version stays.
  s = Put("p1", Data(301, kMiB));
  EXPECT_EQ(s.err(), ENOSPC) << s.ToString();
  EXPECT_EQ(Check("p1", data[1]), "");

  EXPECT_EQ(St().evictions.total(), 0u);
  EXPECT_LE(St().used_bytes, kCapacity);
  for (int i = 0; i < fit; ++i) {
    EXPECT_EQ(CheckHandle(held[i].handle, data[i]), "") << i;
    EXPECT_EQ(Check("p" + std::to_string(i), data[i]), "") << i;
  }

  // A small object that fits in what is left still commits.
  uint64_t left = kCapacity - St().used_bytes;
  if (left >= ObjectFootprint(4096)) {
    EXPECT_TRUE(Put("small", Data(302, 4096)).ok());
  }

  for (Held& h : held) Drop(h);
  EXPECT_EQ(St().leased_bytes, 0u);
  const std::vector<uint8_t> again = Data(303, kMiB);
  s = Put("new", again);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Check("new", again), "");
  EXPECT_GT(St().evictions.total(), 0u);
  EXPECT_LE(St().used_bytes, kCapacity);
}

INSTANTIATE_TEST_SUITE_P(Policies, EngineCapacityPolicyTest, ::testing::Values("lru", "s3fifo", "sieve"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// close() that failed with ENOSPC told the writer its version was not stored.
// The handle's release that follows must not publish it after all, even when
// room has appeared in between (the pins went away), and must not replace the
// previous version of the key.
TEST_F(EngineCapacityTest, FailedCommitIsNotPublishedAtRelease) {
  constexpr uint64_t kCapacity = 4 * kMiB;
  ASSERT_NO_FATAL_FAILURE(OpenEngine(Options(kCapacity)));
  const std::vector<uint8_t> a = Data(1, 3 * kMiB);
  ASSERT_TRUE(Put("a", a).ok());
  Result<Held> pin = Hold("a");
  ASSERT_TRUE(pin.ok());

  // A new key.
  Result<OpenResult> w = engine_->Create(kRootIno, "b", 0644, O_CREAT | O_WRONLY | O_TRUNC, 0, 0);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(WriteAll(w->handle, Data(2, 2 * kMiB)).ok());
  Status s = engine_->Flush(w->handle, kOwner);
  EXPECT_EQ(s.err(), ENOSPC) << s.ToString();
  Drop(*pin);  // room appears
  engine_->Release(w->handle);
  engine_->Forget(w->attr.ino, 1);
  EXPECT_FALSE(Exists("b")) << "a version whose close() failed with ENOSPC was published at release";
  EXPECT_EQ(Check("a", a), "") << "the object that was pinned was evicted for a version whose commit had failed";

  // A replacement of an existing key (starting again from an empty engine).
  for (const std::string& n : List()) ASSERT_TRUE(engine_->Unlink(kRootIno, n).ok());
  const std::vector<uint8_t> c_old = Data(3, 256 * 1024);
  ASSERT_TRUE(Put("c", c_old).ok());
  const std::vector<uint8_t> p = Data(5, 3 * kMiB);
  ASSERT_TRUE(Put("p", p).ok());
  pin = Hold("p");
  ASSERT_TRUE(pin.ok());
  Result<Held> wc = Hold("c", kRootIno, O_WRONLY | O_TRUNC);
  ASSERT_TRUE(wc.ok());
  ASSERT_TRUE(WriteAll(wc->handle, Data(4, 2 * kMiB)).ok());
  s = engine_->Flush(wc->handle, kOwner);
  EXPECT_EQ(s.err(), ENOSPC) << s.ToString();
  Drop(*pin);
  Drop(*wc);
  EXPECT_EQ(Check("c", c_old), "") << "the previous version of a key was replaced after close() failed";
  EXPECT_EQ(Check("p", p), "");
}

// Directory and special-file records take room like files: at capacity, a
// mkdir or a symlink evicts to make it, and when everything is leased it
// fails with ENOSPC instead of going over.
TEST_F(EngineCapacityTest, RecordsAreReservedAgainstTheCapacity) {
  constexpr uint64_t kCapacity = 4 * kMiB;
  ASSERT_NO_FATAL_FAILURE(OpenEngine(Options(kCapacity)));
  // Fill to the last byte: 4 MiB of objects, each a 4 KiB header and data.
  const size_t data_bytes = kMiB - 2 * 4096;  // footprint: header + data + checksum table = 1 MiB
  ASSERT_EQ(ObjectFootprint(data_bytes), kMiB);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Put("f" + std::to_string(i), Data(400 + i, data_bytes)).ok());
  ASSERT_EQ(St().used_bytes, kCapacity);
  Result<Attr> d = engine_->Mkdir(kRootIno, "dir", 0755, 0, 0);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_LE(St().used_bytes, kCapacity);
  EXPECT_GT(St().evictions.total(), 0u) << "the record went over the capacity instead of evicting";
  Result<Attr> l = engine_->Symlink(kRootIno, "link", "f3", 0, 0);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_LE(St().used_bytes, kCapacity);

  // Everything left leased: no room can be made.
  std::vector<Held> held;
  for (const std::string& n : List()) {
    if (n.rfind("f", 0) != 0) continue;
    Result<Held> h = Hold(n);
    ASSERT_TRUE(h.ok());
    held.push_back(*h);
  }
  const uint64_t before = St().used_bytes;
  for (int i = 0; St().used_bytes + ObjectFootprint(0) <= kCapacity && i < 1000; ++i) {
    ASSERT_TRUE(engine_->Mkdir(kRootIno, "fill" + std::to_string(i), 0755, 0, 0).ok());
  }
  Result<Attr> full = engine_->Mkdir(kRootIno, "one-too-many", 0755, 0, 0);
  EXPECT_EQ(full.err(), ENOSPC) << "used " << St().used_bytes << " of " << kCapacity << " (was " << before << ")";
  EXPECT_LE(St().used_bytes, kCapacity);
  for (Held& h : held) Drop(h);
}

// Unlinking a leased object removes the name at once; its bytes stay readable
// and its space stays used until the last handle is released.
TEST_F(EngineCapacityTest, UnlinkOfLeasedObjectFreesSpaceAtLastRelease) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(Options(64 * kMiB)));
  const std::vector<uint8_t> data = Data(5, 3 * kMiB + 123);
  const uint64_t fp = ObjectFootprint(data.size());
  ASSERT_TRUE(Put("victim", data).ok());
  EXPECT_EQ(St().used_bytes, fp);
  Result<Held> h1 = Hold("victim");
  Result<Held> h2 = Hold("victim");
  ASSERT_TRUE(h1.ok() && h2.ok());
  EXPECT_EQ(St().leased_bytes, fp);

  ASSERT_TRUE(engine_->Unlink(kRootIno, "victim").ok());
  EXPECT_FALSE(Exists("victim"));
  EXPECT_TRUE(List().empty());
  EXPECT_EQ(St().used_bytes, fp) << "space of a leased, unlinked object was returned early";
  EXPECT_EQ(CheckHandle(h1->handle, data), "");
  Drop(*h1);
  EXPECT_EQ(St().used_bytes, fp) << "space returned while a handle is still open";
  EXPECT_EQ(CheckHandle(h2->handle, data), "");
  Drop(*h2);
  EXPECT_EQ(St().used_bytes, 0u);
  EXPECT_EQ(St().leased_bytes, 0u);
  EXPECT_EQ(St().objects, 0u);
  EXPECT_EQ(SettledDiskBytes(), 0u);

  // The key can be written again and accounts normally.
  ASSERT_TRUE(Put("victim", Data(6, 4096)).ok());
  EXPECT_EQ(St().used_bytes, ObjectFootprint(4096));
}

// Replacing a leased object with O_TRUNC publishes the new version; the old
// version's bytes stay readable and counted until its last lease ends.
TEST_F(EngineCapacityTest, TruncReplaceOfLeasedObjectFreesOldSpaceAtLastRelease) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(Options(64 * kMiB)));
  const std::vector<uint8_t> old_data = Data(7, 2 * kMiB + 1);
  const std::vector<uint8_t> new_data = Data(8, 5 * kMiB + 3);
  const uint64_t old_fp = ObjectFootprint(old_data.size());
  const uint64_t new_fp = ObjectFootprint(new_data.size());
  ASSERT_TRUE(Put("k", old_data).ok());
  Result<Held> reader = Hold("k");
  ASSERT_TRUE(reader.ok());

  ASSERT_TRUE(Put("k", new_data).ok());
  EXPECT_EQ(Check("k", new_data), "");
  EXPECT_EQ(St().used_bytes, old_fp + new_fp);
  EXPECT_EQ(St().objects, 2u) << "the replaced, leased version is still an object on the store";
  EXPECT_EQ(CheckHandle(reader->handle, old_data), "");

  // A second replacement while the first reader still holds the oldest.
  Result<Held> reader2 = Hold("k");
  ASSERT_TRUE(reader2.ok());
  const std::vector<uint8_t> newest = Data(9, kMiB);
  ASSERT_TRUE(Put("k", newest).ok());
  EXPECT_EQ(St().used_bytes, old_fp + new_fp + ObjectFootprint(newest.size()));
  Drop(*reader);
  EXPECT_EQ(St().used_bytes, new_fp + ObjectFootprint(newest.size()));
  EXPECT_EQ(CheckHandle(reader2->handle, new_data), "");
  Drop(*reader2);
  EXPECT_EQ(St().used_bytes, ObjectFootprint(newest.size()));
  EXPECT_EQ(St().leased_bytes, 0u);
  EXPECT_EQ(St().objects, 1u);
  EXPECT_EQ(SettledDiskBytes(), ObjectFootprint(newest.size()));
}

// A replaced version that is leased still counts against the capacity: the
// next commits evict other objects, never the leased old bytes, and usage
// stays within the capacity throughout.
TEST_F(EngineCapacityTest, ReplacedLeasedVersionCountsAgainstCapacity) {
  constexpr uint64_t kCapacity = 8 * kMiB;
  ASSERT_NO_FATAL_FAILURE(OpenEngine(Options(kCapacity)));
  const std::vector<uint8_t> old_data = Data(10, 3 * kMiB);
  ASSERT_TRUE(Put("k", old_data).ok());
  Result<Held> reader = Hold("k");
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE(Put("k", Data(11, 3 * kMiB)).ok());
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(Put("o" + std::to_string(i), Data(20 + i, kMiB)).ok()) << i;
    ASSERT_LE(St().used_bytes, kCapacity) << i;
  }
  EXPECT_EQ(CheckHandle(reader->handle, old_data), "");
  Drop(*reader);
  EXPECT_LE(St().used_bytes, kCapacity - ObjectFootprint(old_data.size()));
}

// After everything is deleted (files unlinked, directories removed), used
// bytes and objects are exactly zero, and nothing is left on the store.
TEST_F(EngineCapacityTest, DeletingEverythingReturnsUsedToZero) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(Options(6 * kMiB)));
  Result<Attr> a = engine_->Mkdir(kRootIno, "a", 0755, 0, 0);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  Result<Attr> ab = engine_->Mkdir(a->ino, "b", 0755, 0, 0);
  ASSERT_TRUE(ab.ok());
  Result<Attr> c = engine_->Mkdir(kRootIno, "c", 0755, 0, 0);
  ASSERT_TRUE(c.ok());
  const uint64_t dir_bytes = 3 * ObjectFootprint(0);
  EXPECT_EQ(St().used_bytes, dir_bytes) << "each directory record takes one footprint of an empty object";

  const uint64_t parents[] = {kRootIno, a->ino, ab->ino, c->ino};
  for (int i = 0; i < 24; ++i) {
    ASSERT_TRUE(Put("f" + std::to_string(i), Data(40 + i, 100000 + i * 30000), parents[i % 4]).ok()) << i;
  }
  EXPECT_GT(St().evictions.total(), 0u) << "the test wants some evicted objects too";

  // One object is held open while it is unlinked.
  std::string held_name;
  uint64_t held_parent = 0;
  for (uint64_t p : parents) {
    std::vector<std::string> names = List(p);
    for (const std::string& n : names) {
      if (n[0] == 'f') {
        held_name = n;
        held_parent = p;
        break;
      }
    }
    if (!held_name.empty()) break;
  }
  ASSERT_FALSE(held_name.empty());
  Result<Held> held = Hold(held_name, held_parent);
  ASSERT_TRUE(held.ok());

  for (uint64_t p : parents) {
    for (const std::string& n : List(p)) {
      if (n[0] == 'f') {
        ASSERT_TRUE(engine_->Unlink(p, n).ok()) << n;
      }
    }
  }
  EXPECT_GT(St().used_bytes, dir_bytes) << "the held, unlinked object still counts";
  Drop(*held);
  EXPECT_EQ(St().used_bytes, dir_bytes);
  EXPECT_EQ(St().objects, 0u);

  ASSERT_TRUE(engine_->Rmdir(a->ino, "b").ok());
  ASSERT_TRUE(engine_->Rmdir(kRootIno, "a").ok());
  ASSERT_TRUE(engine_->Rmdir(kRootIno, "c").ok());
  engine_->Forget(ab->ino, 1);
  engine_->Forget(a->ino, 1);
  engine_->Forget(c->ino, 1);
  EngineStats st = St();
  EXPECT_EQ(st.used_bytes, 0u);
  EXPECT_EQ(st.objects, 0u);
  EXPECT_EQ(st.leased_bytes, 0u);
  EXPECT_EQ(st.pinned_bytes, 0u);
  ASSERT_EQ(st.stores.size(), 1u);
  EXPECT_EQ(st.stores[0].used_bytes, 0u);
  EXPECT_EQ(StoreObjectFiles(store_root_), 0u);
  EXPECT_EQ(SettledDiskBytes(), 0u);
  EXPECT_TRUE(List().empty());
}

// EvictNow() runs the background pass: above the high watermark it evicts
// until usage is under the low watermark, leased objects excepted, and counts
// those evictions as "watermark".
TEST_F(EngineCapacityTest, EvictNowBringsUsageUnderLowWatermark) {
  constexpr uint64_t kCapacity = 16 * kMiB;
  EngineOptions o = Options(kCapacity);
  o.space.high_watermark = 0.8;
  o.space.low_watermark = 0.5;
  ASSERT_NO_FATAL_FAILURE(OpenEngine(o));
  const uint64_t fp = ObjectFootprint(kMiB);

  // Below the high watermark nothing happens.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(Put("o" + std::to_string(i), Data(50 + i, kMiB)).ok());
  ASSERT_LT(St().used_bytes, kCapacity * 8 / 10);
  EXPECT_EQ(engine_->EvictNow(), 0u);
  EXPECT_EQ(St().evictions.total(), 0u);

  for (int i = 10; i < 15; ++i) ASSERT_TRUE(Put("o" + std::to_string(i), Data(50 + i, kMiB)).ok());
  ASSERT_GT(St().used_bytes, kCapacity * 8 / 10);
  ASSERT_EQ(St().evictions.total(), 0u) << "no commit needed to evict yet";
  Result<Held> held = Hold("o0");  // the oldest, first in line under FIFO policies
  ASSERT_TRUE(held.ok());

  size_t evicted = engine_->EvictNow();
  EngineStats st = St();
  EXPECT_GT(evicted, 0u);
  EXPECT_LE(st.used_bytes, kCapacity / 2);
  EXPECT_GT(st.used_bytes + fp, kCapacity / 2) << "evicted more than needed";
  EXPECT_EQ(st.evictions.watermark, evicted);
  EXPECT_EQ(st.evictions.capacity, 0u);
  EXPECT_EQ(st.evictions.floor, 0u);
  EXPECT_EQ(st.evictions.bytes, evicted * fp);
  EXPECT_EQ(st.objects, 15 - evicted);
  EXPECT_EQ(List().size(), 15 - evicted);
  EXPECT_TRUE(Exists("o0")) << "a leased object was evicted by the background pass";
  EXPECT_EQ(CheckHandle(held->handle, Data(50, kMiB)), "");
  EXPECT_EQ(engine_->EvictNow(), 0u) << "already under the low watermark";
  Drop(*held);
}

// When everything is leased, EvictNow() evicts nothing and returns at once.
TEST_F(EngineCapacityTest, EvictNowWithEverythingLeasedEvictsNothing) {
  constexpr uint64_t kCapacity = 8 * kMiB;
  EngineOptions o = Options(kCapacity);
  o.space.high_watermark = 0.5;
  o.space.low_watermark = 0.25;
  ASSERT_NO_FATAL_FAILURE(OpenEngine(o));
  std::vector<Held> held;
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(Put("o" + std::to_string(i), Data(60 + i, kMiB)).ok());
    Result<Held> h = Hold("o" + std::to_string(i));
    ASSERT_TRUE(h.ok());
    held.push_back(*h);
  }
  uint64_t used = St().used_bytes;
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(engine_->EvictNow(), 0u);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
  EXPECT_EQ(St().used_bytes, used);
  for (Held& h : held) Drop(h);
  EXPECT_GT(engine_->EvictNow(), 0u);
  EXPECT_LE(St().used_bytes, kCapacity / 4);
}

// The background evictor thread (no EvictNow calls) brings usage under the
// low watermark on its own.
TEST_F(EngineCapacityTest, BackgroundEvictorRestoresLowWatermark) {
  constexpr uint64_t kCapacity = 16 * kMiB;
  EngineOptions o = Options(kCapacity);
  o.background_eviction = true;
  // Only the last put crosses the high watermark (11 objects stay below
  // 0.7 x 16 MiB, 12 do not): an evictor pass that ran between the puts
  // would leave usage between the watermarks, where no later pass starts.
  o.space.high_watermark = 0.7;
  o.space.low_watermark = 0.4;
  ASSERT_NO_FATAL_FAILURE(OpenEngine(o));
  ASSERT_LT(11 * ObjectFootprint(kMiB), kCapacity * 7 / 10);
  ASSERT_GT(12 * ObjectFootprint(kMiB), kCapacity * 7 / 10);
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(Put("o" + std::to_string(i), Data(70 + i, kMiB)).ok());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (St().used_bytes > kCapacity * 4 / 10 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling the evictor, bounded
  }
  EngineStats st = St();
  EXPECT_LE(st.used_bytes, kCapacity * 4 / 10);
  EXPECT_GT(st.evictions.watermark, 0u);
  EXPECT_EQ(st.evictions.capacity, 0u);
}

// Evictions of each cause are counted separately and add up, in the engine's
// totals, per store and in the JSON.
TEST_F(EngineCapacityTest, EvictionCountsByCauseAppearInStats) {
  constexpr uint64_t kCapacity = 8 * kMiB;
  EngineOptions o = Options(kCapacity);
  o.space.high_watermark = 0.7;
  o.space.low_watermark = 0.3;
  ASSERT_NO_FATAL_FAILURE(OpenEngine(o));
  const uint64_t fp = ObjectFootprint(kMiB);
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(Put("o" + std::to_string(i), Data(80 + i, kMiB)).ok());
  EngineStats st = St();
  const uint64_t by_capacity = st.evictions.capacity;
  EXPECT_EQ(by_capacity, 12 - kCapacity / fp);
  EXPECT_EQ(st.evictions.watermark, 0u);

  size_t by_watermark = engine_->EvictNow();
  EXPECT_GT(by_watermark, 0u);
  st = St();
  EXPECT_EQ(st.evictions.capacity, by_capacity);
  EXPECT_EQ(st.evictions.watermark, by_watermark);
  EXPECT_EQ(st.evictions.floor, 0u);
  EXPECT_EQ(st.evictions.total(), by_capacity + by_watermark);
  EXPECT_EQ(st.evictions.bytes, (by_capacity + by_watermark) * fp);
  ASSERT_EQ(st.stores.size(), 1u);
  EXPECT_EQ(st.stores[0].evictions.capacity, by_capacity);
  EXPECT_EQ(st.stores[0].evictions.watermark, by_watermark);
  EXPECT_EQ(st.stores[0].evictions.total(), st.evictions.total());
  std::string json = FormatStatsJson(st);
  EXPECT_NE(json.find("\"evictions\":{\"total\":" + std::to_string(st.evictions.total()) +
                      ",\"capacity\":" + std::to_string(by_capacity) + ",\"watermark\":" +
                      std::to_string(by_watermark)),
            std::string::npos)
      << json;

  Result<std::string> x = GetDebugXattr(*engine_, kRootIno, "user.kvfs.evictions");
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(*x, "capacity=" + std::to_string(by_capacity) + " watermark=" + std::to_string(by_watermark) + " floor=0");
  x = GetDebugXattr(*engine_, kRootIno, "user.kvfs.used");
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(*x, std::to_string(st.used_bytes));
  x = GetDebugXattr(*engine_, kRootIno, "user.kvfs.capacity");
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(*x, std::to_string(kCapacity));
}

// S3-FIFO with the objects of its small (probationary) queue pinned, while
// unpinned objects sit in its main queue: a commit must evict one of those
// instead of failing with ENOSPC. Objects open for writing (no lease, no
// access) are pinned without ever being touched, which is how the small
// queue ends up all pinned.
TEST_F(EngineCapacityTest, S3FifoEvictsFromMainWhenSmallQueueIsPinned) {
  constexpr uint64_t kCapacity = 8 * kMiB;
  ASSERT_NO_FATAL_FAILURE(OpenEngine(Options(kCapacity, "s3fifo")));
  const uint64_t fp = ObjectFootprint(kMiB);
  const int fit = static_cast<int>(kCapacity / fp);
  // Two objects read right after their commit: promoted to the main queue at
  // the first eviction.
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(Put("hot" + std::to_string(i), Data(90 + i, kMiB)).ok());
    EXPECT_EQ(Check("hot" + std::to_string(i), Data(90 + i, kMiB)), "");
  }
  for (int i = 0; i < fit - 1; ++i) ASSERT_TRUE(Put("cold" + std::to_string(i), Data(100 + i, kMiB)).ok());
  ASSERT_GT(St().evictions.total(), 0u);
  ASSERT_TRUE(Exists("hot0") && Exists("hot1"));
  // Pin every cold object still there with a writer handle.
  std::vector<Held> writers;
  for (const std::string& n : List()) {
    if (n.rfind("cold", 0) != 0) continue;
    Result<Held> h = Hold(n, kRootIno, O_WRONLY);
    ASSERT_TRUE(h.ok());
    writers.push_back(*h);
  }
  ASSERT_FALSE(writers.empty());
  Status s = Put("new", Data(120, kMiB));
  EXPECT_TRUE(s.ok()) << "ENOSPC although hot0/hot1 are evictable: " << s.ToString();
  for (Held& h : writers) Drop(h);
  EXPECT_LE(St().used_bytes, kCapacity);
}

// ---------------------------------------------------------------------------
// The free-space floor, on a small tmpfs the test mounts.

class EngineFloorTest : public EngineCapacityTest {
 protected:
  static constexpr uint64_t kFsBytes = 64 * kMiB;
  static constexpr uint64_t kFloor = 16 * kMiB;

  void SetUp() override {
    EngineCapacityTest::SetUp();
    fs_ = dir_.Sub("fs");
    ASSERT_EQ(::mkdir(fs_.c_str(), 0755), 0);
    if (::mount("tmpfs", fs_.c_str(), "tmpfs", 0, "size=64m") != 0) {
      int err = errno;
      GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(err) << ")";
    }
    mounted_ = true;
    filler_ = fs_ + "/filler";
  }
  void TearDown() override {
    engine_.reset();  // closes the store before its filesystem goes
    if (mounted_ && ::umount2(fs_.c_str(), 0) != 0) {
      ADD_FAILURE() << "umount " << fs_ << ": " << std::strerror(errno);
      ::umount2(fs_.c_str(), MNT_DETACH);
    }
  }

  // Grows the plain file written straight into the tmpfs (not through kvfs)
  // to `bytes`. Returns false on a short write.
  bool GrowFiller(uint64_t bytes) {
    int fd = ::open(filler_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    struct stat st;
    ::fstat(fd, &st);
    std::vector<uint8_t> chunk = Data(999, kMiB);
    bool ok = true;
    for (uint64_t off = static_cast<uint64_t>(st.st_size); off < bytes && ok;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), bytes - off));
      ssize_t w = ::pwrite(fd, chunk.data(), n, static_cast<off_t>(off));
      ok = w == static_cast<ssize_t>(n);
      off += n;
    }
    ::close(fd);
    return ok;
  }
  bool ShrinkFiller(uint64_t bytes) { return ::truncate(filler_.c_str(), static_cast<off_t>(bytes)) == 0; }

  uint64_t Free() const { return FsFreeBytes(fs_); }

  void OpenOnTmpfs(uint64_t capacity) {
    EngineOptions o = Options(capacity);
    StoreLimits limits;
    limits.capacity_bytes = capacity;
    limits.min_free_bytes = kFloor;
    o.space.store_limits = {limits};
    ASSERT_NO_FATAL_FAILURE(OpenEngine(o, fs_ + "/store"));
    EngineStats st = St();
    ASSERT_EQ(st.stores.size(), 1u);
    EXPECT_EQ(st.stores[0].floor_bytes, kFloor);
    EXPECT_EQ(st.stores[0].fs_total_bytes, kFsBytes);
    EXPECT_EQ(st.capacity_bytes, capacity);
  }

  std::string fs_;
  std::string filler_;
  bool mounted_ = false;
};

TEST_F(EngineFloorTest, CommitsNeverPushFreeSpaceBelowTheFloor) {
  ASSERT_NO_FATAL_FAILURE(OpenOnTmpfs(48 * kMiB));
  std::map<std::string, std::vector<uint8_t>> written;
  auto put = [&](const std::string& name, uint64_t seed) {
    std::vector<uint8_t> d = Data(seed, kMiB);
    Status s = Put(name, d);
    if (s.ok()) written[name] = std::move(d);
    return s;
  };
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(put("k" + std::to_string(i), 500 + i).ok()) << i;
  EXPECT_EQ(St().evictions.total(), 0u);

  // Something else fills the drive until ~4 MiB are left above the floor.
  ASSERT_TRUE(GrowFiller(kFsBytes - St().used_bytes - kFloor - 4 * kMiB));
  ASSERT_GE(Free(), kFloor);
  ASSERT_LT(Free(), kFloor + 5 * kMiB);

  // Commits keep the floor: they evict kvfs's own objects (cause "floor").
  for (int i = 8; i < 20; ++i) {
    Status s = put("k" + std::to_string(i), 500 + i);
    ASSERT_TRUE(s.ok() || s.err() == ENOSPC) << s.ToString();
    ASSERT_GE(Free(), kFloor) << "commit of k" << i << " pushed free space below the floor";
  }
  EngineStats st = St();
  EXPECT_GT(st.evictions.floor, 0u);
  EXPECT_EQ(st.evictions.capacity, 0u);
  EXPECT_LE(st.used_bytes, 48 * kMiB);
  EXPECT_EQ(Check("k19", written["k19"]), "") << "the newest commit should have found room by evicting";

  // Everything kvfs holds is leased: a commit that needs room fails with
  // ENOSPC and free space does not move.
  std::vector<Held> held;
  for (const std::string& n : List()) {
    Result<Held> h = Hold(n);
    ASSERT_TRUE(h.ok());
    held.push_back(*h);
  }
  uint64_t free_before = Free();
  Status s = Put("big", Data(600, 6 * kMiB));
  EXPECT_EQ(s.err(), ENOSPC) << s.ToString();
  EXPECT_FALSE(Exists("big"));
  EXPECT_GE(Free(), kFloor);
  EXPECT_GE(Free() + 4096, free_before);
  EXPECT_GE(St().enospc, 1u);
  for (Held& h : held) Drop(h);
  for (const std::string& n : List()) EXPECT_EQ(Check(n, written[n]), "") << n;
}

TEST_F(EngineFloorTest, EvictNowRestoresTheFloorAsFarAsItCan) {
  ASSERT_NO_FATAL_FAILURE(OpenOnTmpfs(40 * kMiB));
  const uint64_t fp = ObjectFootprint(kMiB);
  std::map<std::string, std::vector<uint8_t>> written;
  for (int i = 0; i < 12; ++i) {
    written["k" + std::to_string(i)] = Data(700 + i, kMiB);
    ASSERT_TRUE(Put("k" + std::to_string(i), written["k" + std::to_string(i)]).ok()) << i;
  }
  ASSERT_EQ(St().evictions.total(), 0u);
  const uint64_t kvfs_bytes = St().used_bytes;
  EXPECT_EQ(kvfs_bytes, 12 * fp);

  // Another process pushes free space 5 MiB under the floor.
  uint64_t free_now = Free();
  ASSERT_TRUE(GrowFiller(free_now - kFloor + 5 * kMiB));
  ASSERT_LT(Free(), kFloor);
  size_t evicted = engine_->EvictNow();
  EngineStats st = St();
  EXPECT_GE(evicted, 5u);
  EXPECT_GE(Free(), kFloor) << "EvictNow() left the filesystem below the floor";
  EXPECT_LT(Free(), kFloor + 2 * fp) << "EvictNow() evicted far more than needed (" << evicted << " objects)";
  EXPECT_EQ(st.evictions.floor, evicted);
  EXPECT_EQ(st.evictions.watermark, 0u);
  EXPECT_EQ(st.evictions.bytes, evicted * fp);
  EXPECT_EQ(st.used_bytes, kvfs_bytes - evicted * fp);
  for (const std::string& n : List()) EXPECT_EQ(Check(n, written[n]), "") << n;

  // Now so much is taken that evicting everything cannot restore the floor:
  // kvfs evicts all it has (leased objects excepted) and stops.
  const std::string held_name = List().front();
  Result<Held> held = Hold(held_name);
  ASSERT_TRUE(held.ok());
  ASSERT_TRUE(GrowFiller(kFsBytes - kFloor / 2 - St().used_bytes));
  ASSERT_LT(Free(), kFloor);
  auto start = std::chrono::steady_clock::now();
  engine_->EvictNow();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
  st = St();
  EXPECT_EQ(st.objects, 1u) << "only the leased object should be left";
  EXPECT_EQ(st.used_bytes, fp);
  EXPECT_EQ(CheckHandle(held->handle, written[held_name]), "");
  EXPECT_EQ(List(), std::vector<std::string>{held_name});

  // Below the floor with nothing to evict, commits fail with ENOSPC.
  uint64_t enospc = st.enospc;
  Status s = Put("more", Data(800, kMiB));
  EXPECT_EQ(s.err(), ENOSPC) << s.ToString();
  EXPECT_GT(St().enospc, enospc);
  EXPECT_FALSE(Exists("more"));
  Drop(*held);

  // Once the other process gives its space back, commits work again.
  ASSERT_TRUE(ShrinkFiller(0));
  s = Put("more", Data(800, kMiB));
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Check("more", Data(800, kMiB)), "");
}

}  // namespace
}  // namespace kvfs
