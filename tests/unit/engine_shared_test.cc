// Unit tests of kvfs::Engine over a shared store: two engines ("hosts" A and
// B), each with its own DfsStore instance on one scratch directory, as two
// machines mounting one DFS directory would be:
//  - a key committed on A is found by a lookup on B at once (read-through);
//  - a replacement on A is followed by B's next open (revalidation), while a
//    handle B opened before keeps reading the old bytes;
//  - an unlink on A makes the key disappear on B (at open, or at the next
//    reconcile pass for lookups and listings);
//  - keys and directories written on A show up in B's listings after a
//    reconcile pass;
//  - concurrent writers of one key on A and B end with one complete version,
//    the same on both hosts;
//  - only the evictor-lease holder evicts: the store comes back under its
//    capacity through the holder, the other host never evicts, and a commit
//    of the other host that cannot fit gets ENOSPC when nothing can be
//    evicted (everything pinned, or the holder gone), or succeeds once it
//    has taken the lease over from a holder that stopped; a holder whose
//    reconciler stalls past the lease ttl stops evicting once another host
//    took over; the holder never removes a newer version it has not seen;
//  - WaitForReconcile waits for a pass that started after the call;
//  - a shared store behind a DeadlineStore that stops answering gives errors
//    (not "no such key") and is counted in the store's health.
//
// Timing: waits are Engine::WaitForReconcile or polling loops with short
// pauses and generous deadlines; no sleep is used as synchronisation.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "adapters/deadline_store.h"
#include "adapters/dfs_store.h"
#include "adapters/fs_client.h"
#include "adapters/key_hash.h"
#include "adapters/local_store.h"
#include "core/engine.h"
#include "tests/unit/engine_driver.h"
#include "tests/unit/test_util.h"
#include "fuse/stats_format.h"

namespace kvfs {
namespace {

using std::chrono::milliseconds;
using testing::Pattern;
using testing::TempDir;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * 1024;
constexpr milliseconds kRefresh{100};
constexpr milliseconds kLongTtl{5000};  // no takeover within a test unless it wants one

using testing::ErrText;
using testing::GetFile;
using testing::PutFile;
using testing::ReadAll;

// An FsClient over the real one that can hold the first listing of the
// objects/ directory once armed: the reconciler is then stuck inside a pass
// whose listing is already taken.
class PausingFs final : public FsClient {
 public:
  PausingFs() : real_(MakePosixFsClient()) {}
  // The next listing of the directory whose path ends with `dir` (objects/
  // for the reconciler, cluster/ for the lease) is taken, then held for `hold`.
  void Arm(milliseconds hold, std::string dir = "/objects") {
    std::lock_guard<std::mutex> g(mu_);
    armed_ = true;
    armed_rename_ = false;
    hold_ = hold;
    armed_dir_ = std::move(dir);
  }
  bool WaitUntilHeld(milliseconds timeout) {
    std::unique_lock<std::mutex> lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return held_; });
  }
  // Ends a hold before its time.
  void ReleaseHold() {
    std::lock_guard<std::mutex> g(mu_);
    released_ = true;
    cv_.notify_all();
  }
  // While hung, Open and Stat of object files do not return (a DFS that
  // stopped answering), until Unhang.
  void Hang() {
    std::lock_guard<std::mutex> g(mu_);
    hung_ = true;
  }
  void Unhang() {
    std::lock_guard<std::mutex> g(mu_);
    hung_ = false;
    cv_.notify_all();
  }

  std::string Describe() const override { return "pausing"; }
  Result<int> Open(const std::string& path, int flags, mode_t mode) override {
    WaitWhileHung(path);
    return real_->Open(path, flags, mode);
  }
  Result<FsStat> Stat(const std::string& path) override {
    WaitWhileHung(path);
    return real_->Stat(path);
  }
  Result<FsStat> StatFd(int fd) override { return real_->StatFd(fd); }
  Status Mkdir(const std::string& path) override { return real_->Mkdir(path); }
  Status Rename(const std::string& from, const std::string& to) override {
    Status s = real_->Rename(from, to);
    std::unique_lock<std::mutex> lk(mu_);
    if (armed_rename_ && to.find(armed_dir_) != std::string::npos) Hold(lk);
    return s;
  }
  Status Link(const std::string& from, const std::string& to) override { return real_->Link(from, to); }
  Status Unlink(const std::string& path) override { return real_->Unlink(path); }
  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    Result<std::vector<std::string>> r = real_->ListDir(path);
    std::unique_lock<std::mutex> lk(mu_);
    bool match = path.size() >= armed_dir_.size() &&
                 path.compare(path.size() - armed_dir_.size(), armed_dir_.size(), armed_dir_) == 0;
    if (match && !armed_rename_) Hold(lk);
    return r;
  }
  // Like Arm, for the next rename onto a path containing `part` (the lease
  // thread's renewal renames onto cluster/evictor.<epoch>).
  void ArmRename(milliseconds hold, std::string part) {
    std::lock_guard<std::mutex> g(mu_);
    armed_ = true;
    armed_rename_ = true;
    hold_ = hold;
    armed_dir_ = std::move(part);
  }
  Status SyncDir(const std::string& path) override { return real_->SyncDir(path); }
  Result<StoreSpace> StatFs(const std::string& path) override { return real_->StatFs(path); }
  Result<int> TryLockExclusive(const std::string& path) override { return real_->TryLockExclusive(path); }

 private:
  // Holds the calling thread when armed (lk holds mu_).
  void Hold(std::unique_lock<std::mutex>& lk) {
    if (!armed_) return;
    armed_ = false;
    armed_rename_ = false;
    held_ = true;
    cv_.notify_all();
    // The stall being simulated (not synchronisation): until ReleaseHold or
    // the end of the hold.
    cv_.wait_for(lk, hold_, [&] { return released_; });
    released_ = false;
  }
  void WaitWhileHung(const std::string& path) {
    if (path.find("/objects/") == std::string::npos) return;
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return !hung_; });
  }

  std::unique_ptr<FsClient> real_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false;  // guarded by mu_
  std::string armed_dir_ = "/objects";  // guarded by mu_
  bool armed_rename_ = false;           // guarded by mu_
  bool held_ = false;   // guarded by mu_
  bool hung_ = false;   // guarded by mu_
  bool released_ = false;  // guarded by mu_
  milliseconds hold_{0};
};

struct HostConfig {
  uint64_t capacity = 1ULL << 30;
  milliseconds lease_ttl = kLongTtl;
  bool deadline = false;       // wrap the store in a DeadlineStore
  milliseconds deadline_ms{2000};
  bool background_eviction = true;
  std::string eviction_policy = "s3fifo";
  milliseconds refresh = kRefresh;
  PausingFs** pausing = nullptr;  // set: the store uses a PausingFs, returned here
};

class EngineSharedTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }

  std::string Root() const { return dir_.Sub("shared"); }

  Result<std::unique_ptr<Engine>> OpenHost(const std::string& host, const HostConfig& cfg = HostConfig()) {
    DfsStoreOptions so;
    so.host_id = host;
    so.lease_ttl = cfg.lease_ttl;
    std::unique_ptr<FsClient> fs;
    if (cfg.pausing) {
      auto p = std::make_unique<PausingFs>();
      *cfg.pausing = p.get();
      fs = std::move(p);
    }
    Result<std::unique_ptr<DfsStore>> store = DfsStore::Open(Root(), so, std::move(fs));
    if (!store.ok()) return store.status();
    std::vector<std::unique_ptr<Store>> stores;
    if (cfg.deadline) {
      stores.push_back(std::make_unique<DeadlineStore>(std::move(*store), cfg.deadline_ms));
    } else {
      stores.push_back(std::move(*store));
    }
    EngineOptions o;
    o.buffer_count = 16;
    o.scan_threads = 4;
    o.shared_refresh = cfg.refresh;
    o.space.capacity_bytes = cfg.capacity;
    o.space.store_limits = {StoreLimits{cfg.capacity, 0, 0.0}};
    o.background_eviction = cfg.background_eviction;
    o.space.eviction_policy = cfg.eviction_policy;
    return Engine::Start(o, std::move(stores));
  }

  void OpenBoth(const HostConfig& cfg = HostConfig()) {
    Result<std::unique_ptr<Engine>> a = OpenHost("hostA", cfg);
    ASSERT_TRUE(a.ok()) << ErrText(a.status());
    a_ = std::move(*a);
    Result<std::unique_ptr<Engine>> b = OpenHost("hostB", cfg);
    ASSERT_TRUE(b.ok()) << ErrText(b.status());
    b_ = std::move(*b);
  }

  // Both hosts over pausing filesystems; once one holds the lease: the
  // holder, the other host and the holder's filesystem.
  struct PausingPair {
    Engine* holder = nullptr;
    Engine* other = nullptr;
    PausingFs* holder_fs = nullptr;
  };
  void OpenPausingPair(HostConfig cfg, PausingPair* out) {
    PausingFs* pa = nullptr;
    PausingFs* pb = nullptr;
    cfg.pausing = &pa;
    Result<std::unique_ptr<Engine>> a = OpenHost("hostA", cfg);
    ASSERT_TRUE(a.ok()) << ErrText(a.status());
    a_ = std::move(*a);
    cfg.pausing = &pb;
    Result<std::unique_ptr<Engine>> b = OpenHost("hostB", cfg);
    ASSERT_TRUE(b.ok()) << ErrText(b.status());
    b_ = std::move(*b);
    out->holder = WaitForHolder();
    ASSERT_NE(out->holder, nullptr);
    out->other = out->holder == a_.get() ? b_.get() : a_.get();
    out->holder_fs = out->holder == a_.get() ? pa : pb;
  }

  void TearDown() override {
    if (hung_) hung_->Unhang();  // let stuck store calls finish before the engines go
    a_.reset();
    b_.reset();
  }

  // A full reconcile pass that started after this call. (Two waits: the first
  // may end with a pass that was already under way, see
  // WaitForReconcileWaitsForAPassStartedAfterTheCall.)
  static bool Reconciled(Engine& e) {
    return e.WaitForReconcile(milliseconds(5000)) && e.WaitForReconcile(milliseconds(5000));
  }

  static std::vector<std::string> ListNames(Engine& e, uint64_t ino) {
    std::vector<std::string> names;
    Status s = e.ReadDir(ino, 0, false, [&](const DirEntry& d) {
      if (d.name != "." && d.name != "..") names.push_back(d.name);
      return true;
    });
    EXPECT_TRUE(s.ok()) << ErrText(s);
    std::sort(names.begin(), names.end());
    return names;
  }

  // Object files on the store now and their total size (footprints).
  uint64_t StoreBytes(size_t* objects = nullptr) {
    DfsStoreOptions so;
    so.host_id = "observer";
    so.sweep_staging = false;
    Result<std::unique_ptr<DfsStore>> s = DfsStore::Open(Root(), so);
    EXPECT_TRUE(s.ok()) << ErrText(s.status());
    if (!s.ok()) return 0;
    uint64_t total = 0;
    size_t n = 0;
    Status l = (*s)->List(
        [&](const ListedObject& o) {
          total += o.file_bytes;
          ++n;
        },
        4);
    EXPECT_TRUE(l.ok()) << ErrText(l);
    if (objects) *objects = n;
    return total;
  }

  static StoreStats StoreStatsOf(Engine& e) { return e.Stats().stores.at(0); }

  // Waits until exactly one of the engines holds the evictor lease and both
  // name it; returns it (or null on timeout).
  Engine* WaitForHolder(milliseconds timeout = milliseconds(5000)) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      StoreStats sa = StoreStatsOf(*a_), sb = StoreStatsOf(*b_);
      if (sa.holds_evictor != sb.holds_evictor && !sa.evictor_holder.empty() &&
          sa.evictor_holder == sb.evictor_holder) {
        return sa.holds_evictor ? a_.get() : b_.get();
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    return nullptr;
  }

  TempDir dir_;
  PausingFs* hung_ = nullptr;  // a PausingFs a test hangs: released at TearDown
  std::unique_ptr<Engine> a_, b_;
};

// ---------------------------------------------------------------------------
// Visibility across hosts.

TEST_F(EngineSharedTest, KeyCommittedOnOneHostIsFoundByLookupOnTheOther) {
  OpenBoth();
  ASSERT_TRUE(Reconciled(*b_));  // B's passes so far saw an empty store
  std::vector<uint8_t> data = Pattern(1, 300 * kKiB + 17);
  ASSERT_TRUE(PutFile(*a_, kRootIno, "k1", data).ok());
  uint64_t rt_before = StoreStatsOf(*b_).read_through;

  // At once, without waiting for B's reconciler.
  Result<Attr> attr = b_->Lookup(kRootIno, "k1");
  ASSERT_TRUE(attr.ok()) << ErrText(attr.status());
  EXPECT_EQ(attr->size, data.size());
  EXPECT_TRUE(S_ISREG(attr->mode));
  Result<std::vector<uint8_t>> got = GetFile(*b_, kRootIno, "k1");
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == data) << "B read other bytes than A wrote";
  StoreStats sb = StoreStatsOf(*b_);
  EXPECT_TRUE(sb.shared);
  EXPECT_EQ(sb.host_id, "hostB");
  EXPECT_GE(sb.read_through + sb.remote_added, 1u);
  EXPECT_LE(rt_before, sb.read_through);

  // A key nobody wrote is still ENOENT, and stays a negative lookup.
  EXPECT_EQ(b_->Lookup(kRootIno, "nobody").err(), ENOENT);
  // A sees its own key, and B's write is seen the other way round too.
  ASSERT_TRUE(PutFile(*b_, kRootIno, "k2", Pattern(2, 5000)).ok());
  Result<std::vector<uint8_t>> back = GetFile(*a_, kRootIno, "k2");
  ASSERT_TRUE(back.ok()) << ErrText(back.status());
  EXPECT_TRUE(*back == Pattern(2, 5000));
}

TEST_F(EngineSharedTest, ReplacementOnOneHostIsFollowedAtOpenOnTheOther) {
  OpenBoth();
  std::vector<uint8_t> v1 = Pattern(1, 200 * kKiB + 3), v2 = Pattern(2, 600 * kKiB + 11);
  ASSERT_TRUE(PutFile(*a_, kRootIno, "k", v1).ok());
  Result<Attr> attr = b_->Lookup(kRootIno, "k");
  ASSERT_TRUE(attr.ok()) << ErrText(attr.status());
  Result<OpenResult> old_handle = b_->Open(attr->ino, O_RDONLY);
  ASSERT_TRUE(old_handle.ok()) << ErrText(old_handle.status());
  EXPECT_EQ(old_handle->attr.size, v1.size());

  ASSERT_TRUE(PutFile(*a_, kRootIno, "k", v2).ok());

  // A new open on B reads the new version, without waiting for a reconcile.
  Result<OpenResult> fresh = b_->Open(attr->ino, O_RDONLY);
  ASSERT_TRUE(fresh.ok()) << ErrText(fresh.status());
  EXPECT_EQ(fresh->attr.size, v2.size());
  Result<std::vector<uint8_t>> now = ReadAll(*b_, fresh->handle);
  b_->Release(fresh->handle);
  ASSERT_TRUE(now.ok()) << ErrText(now.status());
  EXPECT_TRUE(*now == v2) << "B's open did not follow A's replacement";
  Result<Attr> after = b_->GetAttr(attr->ino, nullptr);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->size, v2.size());

  // The handle opened before keeps reading the old version.
  Result<std::vector<uint8_t>> old_bytes = ReadAll(*b_, old_handle->handle);
  ASSERT_TRUE(old_bytes.ok()) << ErrText(old_bytes.status());
  EXPECT_TRUE(*old_bytes == v1) << "an open handle saw the replacement";
  Result<Attr> handle_attr = b_->GetAttr(attr->ino, old_handle->handle);
  ASSERT_TRUE(handle_attr.ok());
  EXPECT_EQ(handle_attr->size, v1.size());
  b_->Release(old_handle->handle);

  EXPECT_GE(StoreStatsOf(*b_).remote_replaced, 1u);
  // And the other way round: B replaces, A follows.
  std::vector<uint8_t> v3 = Pattern(3, 4096);
  ASSERT_TRUE(PutFile(*b_, kRootIno, "k", v3).ok());
  Result<std::vector<uint8_t>> on_a = GetFile(*a_, kRootIno, "k");
  ASSERT_TRUE(on_a.ok()) << ErrText(on_a.status());
  EXPECT_TRUE(*on_a == v3);
}

TEST_F(EngineSharedTest, ReplacementIsPickedUpByTheReconcilerWithoutAnOpen) {
  OpenBoth();
  ASSERT_TRUE(PutFile(*a_, kRootIno, "k", Pattern(1, 1000)).ok());
  ASSERT_TRUE(b_->Lookup(kRootIno, "k").ok());
  ASSERT_TRUE(PutFile(*a_, kRootIno, "k", Pattern(2, 777 * kKiB)).ok());
  ASSERT_TRUE(Reconciled(*b_));
  Result<Attr> attr = b_->Lookup(kRootIno, "k");
  ASSERT_TRUE(attr.ok());
  EXPECT_EQ(attr->size, 777 * kKiB) << "the reconciler did not pick up the new version";
  EXPECT_GE(StoreStatsOf(*b_).remote_replaced, 1u);
}

TEST_F(EngineSharedTest, UnlinkOnOneHostRemovesTheKeyOnTheOther) {
  OpenBoth();
  std::vector<uint8_t> data = Pattern(7, 100 * kKiB);
  for (const char* name : {"looked-up", "opened", "listed", "kept"}) {
    ASSERT_TRUE(PutFile(*a_, kRootIno, name, data).ok()) << name;
  }
  Result<Attr> looked = b_->Lookup(kRootIno, "looked-up");
  ASSERT_TRUE(looked.ok()) << ErrText(looked.status());
  Result<Attr> opened = b_->Lookup(kRootIno, "opened");
  ASSERT_TRUE(opened.ok()) << ErrText(opened.status());
  Result<OpenResult> handle = b_->Open(opened->ino, O_RDONLY);
  ASSERT_TRUE(handle.ok());
  ASSERT_TRUE(Reconciled(*b_));
  std::vector<std::string> want_before = {"kept", "listed", "looked-up", "opened"};
  ASSERT_EQ(ListNames(*b_, kRootIno), want_before);

  for (const char* name : {"looked-up", "opened", "listed"}) ASSERT_OK(a_->Unlink(kRootIno, name));

  // An open by inode (the kernel's lookup was before the unlink) notices at
  // once: ENOENT, or ESTALE (the kernel then looks the name up again).
  Result<OpenResult> again = b_->Open(looked->ino, O_RDONLY);
  if (again.ok()) b_->Release(again->handle);
  EXPECT_FALSE(again.ok()) << "B opened a key A had removed";
  if (!again.ok()) {
    EXPECT_TRUE(again.err() == ENOENT || again.err() == ESTALE) << ErrText(again.status());
  }
  EXPECT_EQ(b_->Lookup(kRootIno, "looked-up").err(), ENOENT);
  // The name of the key B has open goes too; the open handle keeps reading
  // the bytes (POSIX unlink semantics across hosts).
  Result<OpenResult> reopen = b_->Open(opened->ino, O_RDONLY);  // revalidates: the name is gone
  if (reopen.ok()) b_->Release(reopen->handle);
  EXPECT_EQ(b_->Lookup(kRootIno, "opened").err(), ENOENT);
  Result<std::vector<uint8_t>> old_bytes = ReadAll(*b_, handle->handle);
  ASSERT_TRUE(old_bytes.ok()) << ErrText(old_bytes.status());
  EXPECT_TRUE(*old_bytes == data);
  b_->Release(handle->handle);

  // The key B never touched goes at the next reconcile pass.
  ASSERT_TRUE(Reconciled(*b_));
  EXPECT_EQ(b_->Lookup(kRootIno, "listed").err(), ENOENT);
  EXPECT_EQ(ListNames(*b_, kRootIno), std::vector<std::string>{"kept"});
  EXPECT_GE(StoreStatsOf(*b_).remote_removed, 3u);
  Result<std::vector<uint8_t>> kept = GetFile(*b_, kRootIno, "kept");
  ASSERT_TRUE(kept.ok());
  EXPECT_TRUE(*kept == data);
}

TEST_F(EngineSharedTest, LookupOfAKeyRemovedElsewhereIsStaleOnlyUntilTheNextPass) {
  OpenBoth();
  ASSERT_TRUE(PutFile(*a_, kRootIno, "k", Pattern(1, 1000)).ok());
  ASSERT_TRUE(Reconciled(*b_));
  ASSERT_TRUE(b_->Lookup(kRootIno, "k").ok());
  ASSERT_OK(a_->Unlink(kRootIno, "k"));
  ASSERT_TRUE(Reconciled(*b_));
  EXPECT_EQ(b_->Lookup(kRootIno, "k").err(), ENOENT);
  EXPECT_TRUE(ListNames(*b_, kRootIno).empty());
  // And a new key of the same name from B is seen on A.
  ASSERT_TRUE(PutFile(*b_, kRootIno, "k", Pattern(2, 2000)).ok());
  Result<std::vector<uint8_t>> got = GetFile(*a_, kRootIno, "k");
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == Pattern(2, 2000));
}

TEST_F(EngineSharedTest, ReadDirListsKeysWrittenOnTheOtherHost) {
  OpenBoth();
  std::vector<std::string> want;
  for (int i = 0; i < 12; ++i) {
    std::string name = "key-" + std::to_string(i);
    ASSERT_TRUE(PutFile(*a_, kRootIno, name, Pattern(i, 1000 + i)).ok());
    want.push_back(name);
  }
  std::sort(want.begin(), want.end());
  ASSERT_TRUE(Reconciled(*b_));
  EXPECT_EQ(ListNames(*b_, kRootIno), want);
  EXPECT_GE(StoreStatsOf(*b_).remote_added, want.size());
  EXPECT_GE(StoreStatsOf(*b_).reconcile_passes, 2u);
  EXPECT_EQ(StoreStatsOf(*b_).reconcile_failures, 0u);
  // The attributes in the listing are the objects'.
  std::map<std::string, uint64_t> sizes;
  ASSERT_OK(b_->ReadDir(kRootIno, 0, true, [&](const DirEntry& d) {
    sizes[d.name] = d.attr.size;
    return true;
  }));
  for (int i = 0; i < 12; ++i) EXPECT_EQ(sizes["key-" + std::to_string(i)], 1000u + i);
}

TEST_F(EngineSharedTest, DirectoriesAreVisibleOnTheOtherHost) {
  OpenBoth();
  Result<Attr> d = a_->Mkdir(kRootIno, "d", 0750, 0, 0);
  ASSERT_TRUE(d.ok()) << ErrText(d.status());
  std::vector<uint8_t> data = Pattern(9, 70 * kKiB);
  ASSERT_TRUE(PutFile(*a_, d->ino, "f", data).ok());
  ASSERT_TRUE(a_->Mkdir(kRootIno, "empty", 0755, 0, 0).ok());

  // Read-through, one level at a time.
  Result<Attr> bd = b_->Lookup(kRootIno, "d");
  ASSERT_TRUE(bd.ok()) << ErrText(bd.status());
  EXPECT_TRUE(S_ISDIR(bd->mode));
  EXPECT_EQ(bd->mode & 07777, 0750u);
  Result<std::vector<uint8_t>> f = GetFile(*b_, bd->ino, "f");
  ASSERT_TRUE(f.ok()) << ErrText(f.status());
  EXPECT_TRUE(*f == data);
  Result<Attr> be = b_->Lookup(kRootIno, "empty");
  ASSERT_TRUE(be.ok()) << ErrText(be.status());
  EXPECT_TRUE(S_ISDIR(be->mode));

  // Nested directories only reach B through the reconciler.
  Result<Attr> x = a_->Mkdir(kRootIno, "x", 0755, 0, 0);
  ASSERT_TRUE(x.ok());
  Result<Attr> y = a_->Mkdir(x->ino, "y", 0755, 0, 0);
  ASSERT_TRUE(y.ok());
  ASSERT_TRUE(PutFile(*a_, y->ino, "z", Pattern(10, 10)).ok());
  ASSERT_TRUE(Reconciled(*b_));
  EXPECT_EQ(ListNames(*b_, kRootIno), (std::vector<std::string>{"d", "empty", "x"}));
  EXPECT_EQ(ListNames(*b_, bd->ino), std::vector<std::string>{"f"});
  EXPECT_TRUE(ListNames(*b_, be->ino).empty());
  Result<Attr> bx = b_->Lookup(kRootIno, "x");
  ASSERT_TRUE(bx.ok());
  EXPECT_EQ(ListNames(*b_, bx->ino), std::vector<std::string>{"y"});
  Result<Attr> by = b_->Lookup(bx->ino, "y");
  ASSERT_TRUE(by.ok());
  EXPECT_TRUE(S_ISDIR(by->mode));
  Result<std::vector<uint8_t>> z = GetFile(*b_, by->ino, "z");
  ASSERT_TRUE(z.ok()) << ErrText(z.status());
  EXPECT_TRUE(*z == Pattern(10, 10));
}

// A directory another host made reaches this host by its record or, when a
// pass meets a key inside it first, as an implicit directory. Either way the
// kernel must hear that the name appeared in the parent: a listing of the
// parent it cached would lack the directory otherwise. Here the records are
// taken off the store, so B meets only the key x/y/z.
TEST_F(EngineSharedTest, DirectoriesLearnedFromTheirKeysAreAnnounced) {
  OpenBoth();
  testing::RecordingObserver obs;
  b_->SetObserver(&obs);
  Result<Attr> x = a_->Mkdir(kRootIno, "x", 0755, 0, 0);
  ASSERT_TRUE(x.ok());
  Result<Attr> y = a_->Mkdir(x->ino, "y", 0755, 0, 0);
  ASSERT_TRUE(y.ok());
  ASSERT_TRUE(PutFile(*a_, y->ino, "z", Pattern(11, 100)).ok());
  {
    DfsStoreOptions so;
    so.host_id = "observer";
    so.sweep_staging = false;
    Result<std::unique_ptr<DfsStore>> s = DfsStore::Open(Root(), so);
    ASSERT_TRUE(s.ok()) << ErrText(s.status());
    for (const char* record : {"x", "x/y"}) ASSERT_OK((*s)->Remove((*s)->LocationFor(HashKey(record))));
  }
  ASSERT_TRUE(Reconciled(*b_));
  Result<Attr> bx = b_->Lookup(kRootIno, "x");
  ASSERT_TRUE(bx.ok()) << ErrText(bx.status());
  Result<Attr> by = b_->Lookup(bx->ino, "y");
  ASSERT_TRUE(by.ok()) << ErrText(by.status());
  b_->SetObserver(nullptr);
  b_.reset();  // no pass may call the observer past this scope
  std::set<std::pair<uint64_t, std::string>> appeared(obs.appeared.begin(), obs.appeared.end());
  EXPECT_TRUE(appeared.count({kRootIno, "x"})) << "x appeared in the root";
  EXPECT_TRUE(appeared.count({bx->ino, "y"})) << "y appeared in x";
  EXPECT_TRUE(appeared.count({by->ino, "z"})) << "z appeared in x/y";
}

// A lookup that reads another host's key through from the store adds the
// name to its directory while the kernel looks that name up: the kernel gets
// its entry from the lookup's answer, but a listing of the directory it
// cached before lacks the name, and no reconcile pass will announce a key
// that is indexed already. The lookup tells the observer that the listing
// changed (and nothing that would invalidate the entry being looked up).
TEST_F(EngineSharedTest, AKeyALookupReadsThroughChangesItsDirectorysListing) {
  HostConfig cfg;
  cfg.refresh = milliseconds(3600 * 1000);  // B's first pass only: the lookups find the keys
  OpenBoth(cfg);
  auto deadline = Clock::now() + milliseconds(5000);
  while (StoreStatsOf(*b_).reconcile_passes == 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_GE(StoreStatsOf(*b_).reconcile_passes, 1u) << "B's first reconcile pass did not end";
  testing::RecordingObserver obs;
  b_->SetObserver(&obs);
  Result<Attr> dir = a_->Mkdir(kRootIno, "dir", 0755, 0, 0);
  ASSERT_TRUE(dir.ok()) << ErrText(dir.status());
  ASSERT_TRUE(PutFile(*a_, dir->ino, "k", Pattern(12, 5000)).ok());
  ASSERT_TRUE(PutFile(*a_, kRootIno, "top", Pattern(13, 7000)).ok());

  Result<Attr> top = b_->Lookup(kRootIno, "top");
  ASSERT_TRUE(top.ok()) << ErrText(top.status());
  Result<Attr> bdir = b_->Lookup(kRootIno, "dir");
  ASSERT_TRUE(bdir.ok()) << ErrText(bdir.status());
  Result<Attr> k = b_->Lookup(bdir->ino, "k");
  ASSERT_TRUE(k.ok()) << ErrText(k.status());
  // Indexed now: looking them up again changes no listing.
  ASSERT_TRUE(b_->Lookup(kRootIno, "top").ok());
  ASSERT_TRUE(b_->Lookup(bdir->ino, "k").ok());
  b_->SetObserver(nullptr);
  EXPECT_EQ(StoreStatsOf(*b_).read_through, 3u);
  std::lock_guard<std::mutex> g(obs.mu);
  EXPECT_EQ(obs.listings_changed, (std::vector<uint64_t>{kRootIno, kRootIno, bdir->ino}));
  EXPECT_TRUE(obs.appeared.empty()) << "an entry invalidation from inside the lookup of that entry";
  EXPECT_EQ(ListNames(*b_, kRootIno), (std::vector<std::string>{"dir", "top"}));
}

TEST_F(EngineSharedTest, ConcurrentWritersOfOneKeyEndWithOneCompleteVersion) {
  OpenBoth();
  for (int round = 0; round < 6; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::string key = "contended-" + std::to_string(round);
    // Same size, so only the bytes tell the versions apart.
    std::vector<uint8_t> da = Pattern(100 + round, 512 * kKiB + 5), db = Pattern(200 + round, 512 * kKiB + 5);
    std::atomic<int> ready{0};
    Status sa, sb;
    auto writer = [&](Engine* e, const std::vector<uint8_t>* data, Status* out) {
      ready.fetch_add(1);
      while (ready.load() < 2) std::this_thread::yield();
      Result<uint64_t> r = PutFile(*e, kRootIno, key, *data);
      *out = r.ok() ? Status::Ok() : r.status();
    };
    std::thread ta(writer, a_.get(), &da, &sa), tb(writer, b_.get(), &db, &sb);
    ta.join();
    tb.join();
    ASSERT_OK(sa);
    ASSERT_OK(sb);
    ASSERT_TRUE(Reconciled(*a_));
    ASSERT_TRUE(Reconciled(*b_));
    Result<std::vector<uint8_t>> on_a = GetFile(*a_, kRootIno, key);
    Result<std::vector<uint8_t>> on_b = GetFile(*b_, kRootIno, key);
    ASSERT_TRUE(on_a.ok()) << ErrText(on_a.status());
    ASSERT_TRUE(on_b.ok()) << ErrText(on_b.status());
    EXPECT_TRUE(*on_a == da || *on_a == db) << "A reads a mix of the two versions";
    EXPECT_TRUE(*on_a == *on_b) << "the hosts disagree on the key's version";
    // The listing attributes agree too (without an open).
    Result<Attr> la = a_->Lookup(kRootIno, key), lb = b_->Lookup(kRootIno, key);
    ASSERT_TRUE(la.ok() && lb.ok());
    EXPECT_EQ(la->size, da.size());
    EXPECT_EQ(lb->size, db.size());
  }
  size_t objects = 0;
  StoreBytes(&objects);
  EXPECT_EQ(objects, 6u);
  EXPECT_EQ(testing::CountFiles(Root() + "/staging"), 0u) << "staging files left behind";
}

TEST_F(EngineSharedTest, RenameAndRmdirOnOneHostReachTheOther) {
  OpenBoth();
  std::vector<uint8_t> data = Pattern(5, 300 * kKiB);
  ASSERT_TRUE(PutFile(*a_, kRootIno, "old-name", data).ok());
  ASSERT_TRUE(a_->Mkdir(kRootIno, "dir", 0755, 0, 0).ok());
  ASSERT_TRUE(Reconciled(*b_));
  ASSERT_EQ(ListNames(*b_, kRootIno), (std::vector<std::string>{"dir", "old-name"}));

  ASSERT_OK(a_->Rename(kRootIno, "old-name", kRootIno, "new-name", 0));
  ASSERT_OK(a_->Rmdir(kRootIno, "dir"));
  ASSERT_TRUE(Reconciled(*b_));
  EXPECT_EQ(ListNames(*b_, kRootIno), std::vector<std::string>{"new-name"});
  EXPECT_EQ(b_->Lookup(kRootIno, "old-name").err(), ENOENT);
  EXPECT_EQ(b_->Lookup(kRootIno, "dir").err(), ENOENT);
  Result<std::vector<uint8_t>> got = GetFile(*b_, kRootIno, "new-name");
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == data);
}

TEST_F(EngineSharedTest, HostOpenedLaterIndexesWhatOthersWrote) {
  Result<std::unique_ptr<Engine>> a = OpenHost("hostA");
  ASSERT_TRUE(a.ok());
  a_ = std::move(*a);
  Result<Attr> d = a_->Mkdir(kRootIno, "d", 0755, 0, 0);
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(PutFile(*a_, d->ino, "f", Pattern(1, 12345)).ok());
  ASSERT_TRUE(PutFile(*a_, kRootIno, "g", Pattern(2, 1)).ok());
  Result<std::unique_ptr<Engine>> b = OpenHost("hostB");
  ASSERT_TRUE(b.ok()) << ErrText(b.status());
  b_ = std::move(*b);
  // Indexed by the rebuild at open: listed before any reconcile pass.
  EXPECT_EQ(ListNames(*b_, kRootIno), (std::vector<std::string>{"d", "g"}));
  EXPECT_EQ(b_->Stats().objects, 2u);
  Result<Attr> bd = b_->Lookup(kRootIno, "d");
  ASSERT_TRUE(bd.ok());
  Result<std::vector<uint8_t>> f = GetFile(*b_, bd->ino, "f");
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(*f == Pattern(1, 12345));
}

TEST_F(EngineSharedTest, EvictionByTheHolderKeepsOtherHostsOpenHandlesReadable) {
  HostConfig cfg;
  cfg.capacity = 8 * kMiB;
  cfg.eviction_policy = "lru";
  OpenBoth(cfg);
  Engine* holder = WaitForHolder();
  ASSERT_NE(holder, nullptr);
  Engine* other = holder == a_.get() ? b_.get() : a_.get();
  std::vector<uint8_t> victim = Pattern(1, kMiB);
  ASSERT_TRUE(PutFile(*holder, kRootIno, "victim", victim).ok());  // the least recently used
  Result<Attr> attr = other->Lookup(kRootIno, "victim");
  ASSERT_TRUE(attr.ok());
  Result<OpenResult> h = other->Open(attr->ino, O_RDONLY);
  ASSERT_TRUE(h.ok());
  // The holder fills the store until the victim goes (the other host's
  // handle does not pin it on the holder). How many fills that takes
  // depends on whether the other host's open reached the holder's policy as
  // an access before they started (the access exchange runs on its own
  // clock); within twice the capacity it must have gone either way.
  bool evicted = false;
  for (int i = 0; i < 16 && !evicted; ++i) {
    ASSERT_TRUE(PutFile(*holder, kRootIno, "fill" + std::to_string(i), Pattern(10 + i, kMiB)).ok());
    Result<Attr> still = holder->Lookup(kRootIno, "victim");
    evicted = still.err() == ENOENT;
    if (still.ok()) holder->Forget(still->ino, 1);
  }
  ASSERT_TRUE(evicted) << "the victim was never evicted";
  Result<std::vector<uint8_t>> got = ReadAll(*other, h->handle);
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == victim) << "an open handle lost its bytes to another host's eviction";
  other->Release(h->handle);
  ASSERT_TRUE(Reconciled(*other));
  EXPECT_EQ(other->Lookup(kRootIno, "victim").err(), ENOENT);
  EXPECT_EQ(StoreStatsOf(*other).evictions.total(), 0u);
}

TEST_F(EngineSharedTest, HolderDoesNotEvictANewerVersionItHasNotSeen) {
  // The holder's index has v1 of a key; the other host replaces it with v2;
  // before the holder's reconciler looks again (slow refresh here), the
  // holder evicts the key. The file at the location is v2, not the victim:
  // it must stay.
  HostConfig cfg;
  cfg.capacity = 8 * kMiB;
  cfg.eviction_policy = "lru";
  cfg.background_eviction = false;
  cfg.refresh = milliseconds(1500);
  OpenBoth(cfg);
  Engine* holder = WaitForHolder();
  ASSERT_NE(holder, nullptr);
  Engine* other = holder == a_.get() ? b_.get() : a_.get();
  ASSERT_TRUE(PutFile(*holder, kRootIno, "k", Pattern(1, kMiB)).ok());  // least recently used
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(PutFile(*holder, kRootIno, "fill" + std::to_string(i), Pattern(10 + i, kMiB)).ok());
  }
  std::vector<uint8_t> v2 = Pattern(2, 100 * kKiB);
  ASSERT_TRUE(PutFile(*other, kRootIno, "k", v2).ok());
  // 8 x 1 MiB do not fit: the holder evicts its least recently used, "k" (v1 in its index).
  ASSERT_TRUE(PutFile(*holder, kRootIno, "fill6", Pattern(16, kMiB)).ok());
  EXPECT_GT(StoreStatsOf(*holder).evictions.total(), 0u);
  Result<std::vector<uint8_t>> got = GetFile(*other, kRootIno, "k");
  ASSERT_TRUE(got.ok()) << "the other host's newer version was removed: " << ErrText(got.status());
  EXPECT_TRUE(*got == v2);
  Result<std::vector<uint8_t>> on_holder = GetFile(*holder, kRootIno, "k");
  ASSERT_TRUE(on_holder.ok()) << ErrText(on_holder.status());
  EXPECT_TRUE(*on_holder == v2);
}

TEST_F(EngineSharedTest, AccessesOnTheOtherHostKeepItsHotKeys) {
  HostConfig cfg;
  cfg.capacity = 8 * kMiB;
  cfg.eviction_policy = "lru";
  OpenBoth(cfg);
  Engine* holder = WaitForHolder();
  ASSERT_NE(holder, nullptr);
  Engine* other = holder == a_.get() ? b_.get() : a_.get();
  const size_t kSize = 512 * kKiB;
  for (int i = 0; i < 10; ++i) {  // h0 is the least recently used on the holder
    ASSERT_TRUE(PutFile(*holder, kRootIno, "h" + std::to_string(i), Pattern(i, kSize)).ok());
  }
  // The other host reads h0 (only): its access counts reach the holder.
  for (int n = 0; n < 3; ++n) {
    Result<std::vector<uint8_t>> got = GetFile(*other, kRootIno, "h0");
    ASSERT_TRUE(got.ok()) << ErrText(got.status());
  }
  ASSERT_TRUE(Reconciled(*other));   // published
  ASSERT_TRUE(Reconciled(*holder));  // collected
  // The holder writes more: the least recently used go, but not h0.
  for (int i = 10; i < 16; ++i) {
    ASSERT_TRUE(PutFile(*holder, kRootIno, "h" + std::to_string(i), Pattern(i, kSize)).ok());
  }
  EXPECT_GT(StoreStatsOf(*holder).evictions.total(), 0u);
  EXPECT_EQ(holder->Lookup(kRootIno, "h1").err(), ENOENT) << "h1 should have been evicted first";
  EXPECT_TRUE(holder->Lookup(kRootIno, "h0").ok()) << "a key hot on another host was evicted";
}

// ---------------------------------------------------------------------------
// The reconciler's contract.

TEST_F(EngineSharedTest, WaitForReconcileWaitsForAPassStartedAfterTheCall) {
  // B's reconciler is held inside a pass whose listing of objects/ was taken
  // while the store was empty. A commits a key; then B's WaitForReconcile is
  // called. It must not return before a pass that started after the call
  // (one that can see the key) has completed.
  PausingFs* pausing = nullptr;
  HostConfig cfg_b;
  cfg_b.pausing = &pausing;
  Result<std::unique_ptr<Engine>> a = OpenHost("hostA");
  ASSERT_TRUE(a.ok());
  a_ = std::move(*a);
  Result<std::unique_ptr<Engine>> b = OpenHost("hostB", cfg_b);
  ASSERT_TRUE(b.ok());
  b_ = std::move(*b);
  ASSERT_NE(pausing, nullptr);
  pausing->Arm(milliseconds(1000));
  ASSERT_TRUE(pausing->WaitUntilHeld(milliseconds(5000)));
  ASSERT_TRUE(PutFile(*a_, kRootIno, "late", Pattern(1, 100)).ok());
  ASSERT_TRUE(b_->WaitForReconcile(milliseconds(5000)));
  // Listing only: no lookup (which would read through).
  EXPECT_EQ(ListNames(*b_, kRootIno), std::vector<std::string>{"late"})
      << "WaitForReconcile returned after a pass that started before the call";
}

TEST_F(EngineSharedTest, WaitForReconcileWithoutSharedStoreIsFalse) {
  // An engine over a local store has no reconciler to wait for.
  Result<std::unique_ptr<LocalStore>> local = LocalStore::Open(dir_.Sub("local"), LocalStoreOptions{});
  ASSERT_TRUE(local.ok()) << ErrText(local.status());
  std::vector<std::unique_ptr<Store>> stores;
  stores.push_back(std::move(*local));
  EngineOptions o;
  o.buffer_count = 16;
  o.space.capacity_bytes = 1ULL << 30;
  Result<std::unique_ptr<Engine>> e = Engine::Start(o, std::move(stores));
  ASSERT_TRUE(e.ok()) << ErrText(e.status());
  EXPECT_FALSE((*e)->WaitForReconcile(milliseconds(50)));
  EXPECT_FALSE((*e)->Stats().stores.at(0).shared);
}

TEST_F(EngineSharedTest, ZeroRefreshIntervalIsRefused) {
  DfsStoreOptions so;
  so.host_id = "solo";
  Result<std::unique_ptr<DfsStore>> s = DfsStore::Open(Root(), so);
  ASSERT_TRUE(s.ok());
  std::vector<std::unique_ptr<Store>> stores;
  stores.push_back(std::move(*s));
  EngineOptions o;
  o.buffer_count = 16;
  o.space.capacity_bytes = 1ULL << 30;
  o.shared_refresh = milliseconds(0);
  EXPECT_EQ(Engine::Start(o, std::move(stores)).err(), EINVAL) << "a zero refresh interval was accepted";
}

TEST_F(EngineSharedTest, StatsNameTheHolderOnBothHosts) {
  OpenBoth();
  Engine* holder = WaitForHolder();
  ASSERT_NE(holder, nullptr) << "no single evictor-lease holder";
  Engine* other = holder == a_.get() ? b_.get() : a_.get();
  StoreStats sh = StoreStatsOf(*holder), so = StoreStatsOf(*other);
  EXPECT_TRUE(sh.holds_evictor);
  EXPECT_FALSE(so.holds_evictor);
  EXPECT_EQ(sh.evictor_holder, sh.host_id);
  EXPECT_EQ(so.evictor_holder, sh.host_id);
  EXPECT_NE(sh.host_id, so.host_id);
  std::string json = FormatStatsJson(holder->Stats());
  EXPECT_NE(json.find("\"holds_evictor\":true"), std::string::npos) << json;
}

TEST_F(EngineSharedTest, DeadlineStoreCountsTheSharedStoresCalls) {
  HostConfig cfg;
  cfg.deadline = true;
  OpenBoth(cfg);
  ASSERT_TRUE(PutFile(*a_, kRootIno, "k", Pattern(1, 5000)).ok());
  EXPECT_EQ(b_->Lookup(kRootIno, "missing").err(), ENOENT);  // a read-through that finds nothing
  Result<std::vector<uint8_t>> got = GetFile(*b_, kRootIno, "k");
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  StoreHealth h = StoreStatsOf(*b_).health;
  EXPECT_GT(h.calls, 0u);
  EXPECT_GE(h.failures, 1u) << "the ENOENT of the missing key was not counted";
  EXPECT_EQ(h.timeouts, 0u);
  EXPECT_EQ(h.errors_by_errno.count(ENOENT), 0u) << "ENOENT is an answer, not an error";
  EXPECT_TRUE(h.errors_by_errno.empty());
  // Without a DeadlineStore nothing is counted.
}

TEST_F(EngineSharedTest, StoreThatStopsAnsweringGivesErrorsNotMissingKeys) {
  Result<std::unique_ptr<Engine>> a = OpenHost("hostA");
  ASSERT_TRUE(a.ok());
  a_ = std::move(*a);
  HostConfig cfg_b;
  cfg_b.deadline = true;
  cfg_b.deadline_ms = milliseconds(200 * testing::kTimingScale);
  cfg_b.pausing = &hung_;
  Result<std::unique_ptr<Engine>> b = OpenHost("hostB", cfg_b);
  ASSERT_TRUE(b.ok());
  b_ = std::move(*b);
  ASSERT_TRUE(PutFile(*a_, kRootIno, "indexed", Pattern(1, 1000)).ok());
  ASSERT_TRUE(Reconciled(*b_));
  Result<Attr> indexed = b_->Lookup(kRootIno, "indexed");
  ASSERT_TRUE(indexed.ok());
  ASSERT_TRUE(PutFile(*a_, kRootIno, "unseen", Pattern(2, 1000)).ok());

  hung_->Hang();
  // A lookup that must ask the store: an error within about the deadline,
  // not ENOENT (the key may well exist).
  auto start = Clock::now();
  Result<Attr> unseen = b_->Lookup(kRootIno, "unseen");
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_FALSE(unseen.ok());
  EXPECT_NE(unseen.err(), ENOENT) << "a store that did not answer was taken for a missing key";
  EXPECT_LT(seconds, 2.0 * testing::kTimingScale);
  // An open must revalidate: an error too, within about the deadline.
  start = Clock::now();
  Result<OpenResult> o = b_->Open(indexed->ino, O_RDONLY);
  seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (o.ok()) b_->Release(o->handle);
  EXPECT_FALSE(o.ok());
  if (!o.ok()) {
    EXPECT_EQ(o.err(), EIO) << ErrText(o.status());
  }
  EXPECT_LT(seconds, 2.0 * testing::kTimingScale);
  StoreHealth h = StoreStatsOf(*b_).health;
  EXPECT_GE(h.timeouts, 2u);
  EXPECT_GE(h.errors_by_errno[ETIMEDOUT], 2u);
  EXPECT_GE(h.failures, h.timeouts);

  // Once the store answers again, everything works without a remount.
  hung_->Unhang();
  Result<std::vector<uint8_t>> got = GetFile(*b_, kRootIno, "unseen");
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
  EXPECT_TRUE(*got == Pattern(2, 1000));
  got = GetFile(*b_, kRootIno, "indexed");
  ASSERT_TRUE(got.ok()) << ErrText(got.status());
}

// ---------------------------------------------------------------------------
// Capacity and the evictor lease.

TEST_F(EngineSharedTest, OnlyTheLeaseHolderEvictsAndTheStoreComesBackUnderCapacity) {
  HostConfig cfg;
  cfg.capacity = 8 * kMiB;
  OpenBoth(cfg);
  Engine* holder = WaitForHolder();
  ASSERT_NE(holder, nullptr);
  Engine* other = holder == a_.get() ? b_.get() : a_.get();
  const size_t kSize = 256 * kKiB;  // footprint 264 KiB: fits in the room below the low watermark
  // Both write more than the capacity in all, interleaved.
  for (int i = 0; i < 24; ++i) {
    Result<uint64_t> h = PutFile(*holder, kRootIno, "h" + std::to_string(i), Pattern(i, kSize));
    ASSERT_TRUE(h.ok()) << "holder commit " << i << ": " << ErrText(h.status());
    Result<uint64_t> o = PutFile(*other, kRootIno, "o" + std::to_string(i), Pattern(1000 + i, kSize));
    ASSERT_TRUE(o.ok()) << "non-holder commit " << i << ": " << ErrText(o.status());
  }
  // The holder evicts (its background evictor, or now) once it has seen
  // everything: the footprint on the store comes back under the capacity.
  auto deadline = Clock::now() + milliseconds(5000);
  uint64_t bytes = StoreBytes();
  while (bytes > cfg.capacity && Clock::now() < deadline) {
    ASSERT_TRUE(Reconciled(*holder));
    holder->EvictNow();
    bytes = StoreBytes();
  }
  EXPECT_LE(bytes, cfg.capacity) << "the store stays over its capacity";
  StoreStats sh = StoreStatsOf(*holder), so = StoreStatsOf(*other);
  EXPECT_GT(sh.evictions.total(), 0u);
  EXPECT_EQ(so.evictions.total(), 0u) << "the non-holder evicted";
  EXPECT_EQ(so.evictions.bytes, 0u);
  EXPECT_TRUE(sh.holds_evictor);
  EXPECT_FALSE(so.holds_evictor);
  // The non-holder's index follows the evictions.
  ASSERT_TRUE(Reconciled(*other));
  EXPECT_LE(StoreStatsOf(*other).used_bytes, cfg.capacity);
  size_t objects = 0;
  StoreBytes(&objects);
  EXPECT_EQ(ListNames(*other, kRootIno).size(), objects);
  // Nothing read back is wrong: every key still listed has its bytes.
  for (const std::string& name : ListNames(*other, kRootIno)) {
    Result<std::vector<uint8_t>> got = GetFile(*other, kRootIno, name);
    if (!got.ok() && got.err() == ENOENT) continue;  // evicted meanwhile
    ASSERT_TRUE(got.ok()) << name << ": " << ErrText(got.status());
    int n = std::stoi(name.substr(1));
    EXPECT_TRUE(*got == Pattern(name[0] == 'h' ? n : 1000 + n, kSize)) << name;
  }
}

TEST_F(EngineSharedTest, NonHolderCommitGetsEnospcWhenEverythingIsPinned) {
  HostConfig cfg;
  cfg.capacity = 8 * kMiB;
  OpenBoth(cfg);
  Engine* holder = WaitForHolder();
  ASSERT_NE(holder, nullptr);
  Engine* other = holder == a_.get() ? b_.get() : a_.get();
  std::vector<FileHandle*> pins;
  for (int i = 0; i < 7; ++i) {  // 7 x (1 MiB + 8 KiB): 88% of the capacity
    Result<uint64_t> ino = PutFile(*holder, kRootIno, "pinned" + std::to_string(i), Pattern(i, kMiB));
    ASSERT_TRUE(ino.ok()) << ErrText(ino.status());
    Result<OpenResult> o = holder->Open(*ino, O_RDONLY);
    ASSERT_TRUE(o.ok());
    pins.push_back(o->handle);
  }
  ASSERT_TRUE(Reconciled(*other));
  auto start = Clock::now();
  Result<uint64_t> big = PutFile(*other, kRootIno, "does-not-fit", Pattern(99, 2 * kMiB));
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_FALSE(big.ok());
  EXPECT_EQ(big.err(), ENOSPC) << ErrText(big.ok() ? Status::Ok() : big.status());
  EXPECT_LT(seconds, 3.0) << "the non-holder waited too long for room";
  StoreStats so = StoreStatsOf(*other), sh = StoreStatsOf(*holder);
  EXPECT_GE(so.enospc, 1u);
  EXPECT_EQ(so.evictions.total(), 0u);
  EXPECT_EQ(sh.evictions.total(), 0u) << "a pinned object was evicted";
  // Nothing of the failed commit is visible anywhere.
  EXPECT_EQ(holder->Lookup(kRootIno, "does-not-fit").err(), ENOENT);
  size_t objects = 0;
  StoreBytes(&objects);
  EXPECT_EQ(objects, 7u);
  // The holder itself gets ENOSPC at once: nothing it may evict is free.
  EXPECT_EQ(PutFile(*holder, kRootIno, "holder-big", Pattern(98, 2 * kMiB)).err(), ENOSPC);
  for (FileHandle* h : pins) holder->Release(h);
  // Small commits that fit are still admitted on the non-holder.
  EXPECT_TRUE(PutFile(*other, kRootIno, "small", Pattern(97, 100 * kKiB)).ok());
}

// Disabled: documents a gap, see the report. Nothing is pinned and the
// holder is alive, but the store sits between the low and high watermarks
// (88%), so the holder's background evictor never runs; a non-holder cannot
// evict and has no way to ask the holder for room, so its 2 MiB commit gets
// ENOSPC, where a single-host engine would evict synchronously and succeed.
TEST_F(EngineSharedTest, NonHolderCommitThatDoesNotFitGetsRoomFromALiveHolder) {
  HostConfig cfg;
  cfg.capacity = 8 * kMiB;
  OpenBoth(cfg);
  Engine* holder = WaitForHolder();
  ASSERT_NE(holder, nullptr);
  Engine* other = holder == a_.get() ? b_.get() : a_.get();
  for (int i = 0; i < 7; ++i) {  // 88% of the capacity, all evictable
    ASSERT_TRUE(PutFile(*holder, kRootIno, "f" + std::to_string(i), Pattern(i, kMiB)).ok());
  }
  ASSERT_TRUE(Reconciled(*other));
  Result<uint64_t> big = PutFile(*other, kRootIno, "needs-room", Pattern(99, 2 * kMiB));
  EXPECT_TRUE(big.ok()) << ErrText(big.ok() ? Status::Ok() : big.status());
}

TEST_F(EngineSharedTest, NonHolderCommitGetsEnospcWhenTheHolderIsGone) {
  HostConfig cfg;
  cfg.capacity = 8 * kMiB;  // and a long lease ttl: nobody takes over during the test
  OpenBoth(cfg);
  Engine* holder = WaitForHolder();
  ASSERT_NE(holder, nullptr);
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(PutFile(*holder, kRootIno, "f" + std::to_string(i), Pattern(i, kMiB)).ok());
  }
  std::unique_ptr<Engine>& holder_ptr = holder == a_.get() ? a_ : b_;
  std::unique_ptr<Engine>& other_ptr = holder == a_.get() ? b_ : a_;
  holder_ptr.reset();  // the holder's host goes away without handing the lease over
  Engine& other = *other_ptr;
  ASSERT_TRUE(Reconciled(other));
  auto start = Clock::now();
  Result<uint64_t> big = PutFile(other, kRootIno, "does-not-fit", Pattern(99, 2 * kMiB));
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(big.err(), ENOSPC) << ErrText(big.ok() ? Status::Ok() : big.status());
  EXPECT_LT(seconds, 3.0);
  StoreStats so = StoreStatsOf(other);
  EXPECT_FALSE(so.holds_evictor);
  EXPECT_EQ(so.evictions.total(), 0u);
  EXPECT_GE(so.enospc, 1u);
  size_t objects = 0;
  EXPECT_LE(StoreBytes(&objects), cfg.capacity);
  EXPECT_EQ(objects, 7u);
}

TEST_F(EngineSharedTest, StalledHolderStopsEvictingOnceAnotherHostTookTheLease) {
  // The holder's lease renewal stalls in DFS I/O (a slow rename of the
  // lease file) for several lease ttls: it cannot renew, so the other host
  // takes the lease over. From then on the stalled host must not evict (at
  // most one host evicts at a time), although its thread has not come back.
  HostConfig cfg;
  cfg.capacity = 8 * kMiB;
  cfg.lease_ttl = milliseconds(500);
  cfg.background_eviction = false;
  PausingPair pair;
  ASSERT_NO_FATAL_FAILURE(OpenPausingPair(cfg, &pair));
  Engine* holder = pair.holder;
  Engine* other = pair.other;
  PausingFs* stalled = pair.holder_fs;
  // Above the high watermark, under the capacity: the holder's evictor has work.
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(PutFile(*holder, kRootIno, "f" + std::to_string(i), Pattern(i, kMiB)).ok());
  }
  ASSERT_TRUE(PutFile(*holder, kRootIno, "f7", Pattern(7, 600 * kKiB)).ok());

  stalled->ArmRename(milliseconds(2500), "/cluster/evictor.");
  ASSERT_TRUE(stalled->WaitUntilHeld(milliseconds(5000)));
  auto deadline = Clock::now() + milliseconds(2000);
  while (!StoreStatsOf(*other).holds_evictor && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_TRUE(StoreStatsOf(*other).holds_evictor) << "the other host did not take the lease over";
  EXPECT_FALSE(StoreStatsOf(*holder).holds_evictor) << "two hosts claim the evictor lease";
  EXPECT_EQ(holder->EvictNow(), 0u) << "a host evicted after another host had taken its lease over";
  stalled->ReleaseHold();
}

TEST_F(EngineSharedTest, LongReconcilePassDoesNotCostTheLease) {
  // The lease is renewed by its own thread: a listing of objects/ that takes
  // several ttls (a big store on a slow DFS) must not hand eviction over.
  HostConfig cfg;
  cfg.capacity = 8 * kMiB;
  cfg.lease_ttl = milliseconds(500);
  PausingPair pair;
  ASSERT_NO_FATAL_FAILURE(OpenPausingPair(cfg, &pair));
  Engine* holder = pair.holder;
  Engine* other = pair.other;
  PausingFs* stalled = pair.holder_fs;
  stalled->Arm(milliseconds(2000));
  ASSERT_TRUE(stalled->WaitUntilHeld(milliseconds(5000)));
  auto end = Clock::now() + milliseconds(1500);  // three ttls into the stall
  while (Clock::now() < end) {
    ASSERT_TRUE(StoreStatsOf(*holder).holds_evictor) << "the holder lost the lease during a long listing";
    ASSERT_FALSE(StoreStatsOf(*other).holds_evictor) << "two hosts claim the evictor lease";
    std::this_thread::sleep_for(milliseconds(20));  // sampling interval
  }
  stalled->ReleaseHold();
}

TEST_F(EngineSharedTest, NonHolderTakesOverEvictionWhenTheHolderStops) {
  HostConfig cfg;
  cfg.capacity = 8 * kMiB;
  cfg.lease_ttl = milliseconds(600);  // >= 3 x the refresh interval
  OpenBoth(cfg);
  Engine* holder = WaitForHolder();
  ASSERT_NE(holder, nullptr);
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(PutFile(*holder, kRootIno, "f" + std::to_string(i), Pattern(i, kMiB)).ok());
  }
  std::unique_ptr<Engine>& holder_ptr = holder == a_.get() ? a_ : b_;
  std::unique_ptr<Engine>& other_ptr = holder == a_.get() ? b_ : a_;
  holder_ptr.reset();
  Engine& other = *other_ptr;
  auto deadline = Clock::now() + milliseconds(5000);
  while (!StoreStatsOf(other).holds_evictor && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  StoreStats so = StoreStatsOf(other);
  ASSERT_TRUE(so.holds_evictor) << "the remaining host never took the lease over";
  EXPECT_EQ(so.evictor_holder, so.host_id);
  // Now it may evict: a commit that does not fit makes room.
  ASSERT_TRUE(Reconciled(other));
  Result<uint64_t> big = PutFile(other, kRootIno, "fits-after-eviction", Pattern(99, 2 * kMiB));
  ASSERT_TRUE(big.ok()) << ErrText(big.status());
  EXPECT_GT(StoreStatsOf(other).evictions.total(), 0u);
  EXPECT_LE(StoreBytes(), cfg.capacity);
  Result<std::vector<uint8_t>> got = GetFile(other, kRootIno, "fits-after-eviction");
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(*got == Pattern(99, 2 * kMiB));
}

}  // namespace
}  // namespace kvfs
