// Fault injection: kvfs::Engine driven directly over LocalStores wrapped in
// FaultyStore (and DeadlineStore), showing what the engine does when a store
// fails, lies or stops answering:
//  - a commit whose staging file cannot be created (ENOSPC, EIO), whose data
//    writes fail, or whose publish fails reports the error from Flush, leaves
//    the previous version intact and readable, leaves no staging file
//    behind, and succeeds when retried once the fault is gone;
//  - a torn publish (a lying disk) is caught at read time: EIO, never wrong
//    bytes, and the key disappears into the store's quarantine;
//  - a store that does not answer within its DeadlineStore deadline gives an
//    error within about the deadline, and the engine works again as soon as
//    the store answers, without being reopened;
//  - with several stores, a faulty or slow one does not take the healthy
//    ones down;
//  - data I/O (the reads and writes of object bytes) goes through the store:
//    an injected EIO on data reads fails the read with EIO (no quarantine:
//    the device failed, not the object), one on the commit's data writes
//    fails the flush and keeps the previous version; a data read or write
//    stuck past the deadline fails within about the deadline while other
//    keys are served, and the buffers it used return to the pool only when
//    the stuck I/O really ends;
//  - a rename whose header rewrite reached the disk but whose file move
//    failed (the state a crash between the two steps leaves) resolves to one
//    name after a reopen, and later overwrites and unlinks of that name stick.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "adapters/deadline_store.h"
#include "tests/unit/faulty_store.h"
#include "adapters/key_hash.h"
#include "adapters/local_store.h"
#include "core/engine.h"
#include "core/fsck.h"
#include "tests/unit/engine_driver.h"
#include "tests/unit/test_util.h"
#include "fuse/debug_xattrs.h"
#include "fuse/stats_format.h"

namespace kvfs {
namespace {

using std::chrono::milliseconds;
using testing::Pattern;
using testing::TempDir;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kRoot = 1;  // FUSE_ROOT_ID, the mount root's inode
constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;

using testing::ErrText;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

using testing::CountFiles;
using testing::kTimingScale;

// The stuck-store tests: the store's deadline, a stall well past it, the
// time within which a call meeting the stall must fail, and the time before
// which it must not (all scaled for sanitizer builds: test_util.h).
constexpr milliseconds kDeadline{200 * kTimingScale};
constexpr milliseconds kStall{1500 * kTimingScale};
constexpr double kWithinDeadline = 1.2 * kTimingScale;
constexpr double kBeforeDeadline = 0.15 * kTimingScale;

// The store index a key lands on among n stores (the engine's placement rule).
uint32_t StoreOf(const std::string& key, uint32_t n) { return JumpConsistentHash(HashKey(key).low, n); }

// A key name with the given prefix that lands on store `want` of n.
std::string KeyOnStore(const std::string& prefix, uint32_t want, uint32_t n) {
  for (int i = 0;; ++i) {
    std::string key = prefix + std::to_string(i);
    if (StoreOf(key, n) == want) return key;
  }
}

class FaultInjectionTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  void TearDown() override { CloseEngine(); }

  // Opens an engine over n stores (store0..store{n-1} in the scratch dir),
  // each LocalStore wrapped in a FaultyStore and, with a deadline > 0, in a
  // DeadlineStore around that. Reopening uses the same directories.
  Status OpenEngine(size_t n = 1, milliseconds deadline = milliseconds(0)) {
    CloseEngine();
    std::vector<std::unique_ptr<Store>> stores;
    for (size_t i = 0; i < n; ++i) {
      Result<std::unique_ptr<LocalStore>> local = LocalStore::Open(Root(i), LocalStoreOptions{});
      if (!local.ok()) return local.status();
      auto faulty = std::make_unique<FaultyStore>(std::move(*local));
      faulty_.push_back(faulty.get());
      if (deadline.count() > 0) {
        stores.push_back(std::make_unique<DeadlineStore>(std::move(faulty), deadline));
      } else {
        stores.push_back(std::move(faulty));
      }
    }
    EngineOptions options;
    options.space.capacity_bytes = 1ULL << 30;
    options.buffer_count = 16;
    options.use_io_uring = use_io_uring_;
    options.read_ahead_bytes = read_ahead_bytes_;
    options.background_eviction = false;
    Result<std::unique_ptr<Engine>> e = Engine::Start(options, std::move(stores));
    if (!e.ok()) return e.status();
    engine_ = std::move(*e);
    return Status::Ok();
  }

  void CloseEngine() {
    engine_.reset();
    faulty_.clear();
  }

  std::string Root(size_t i) const { return dir_.Sub("store" + std::to_string(i)); }
  Engine& E() { return *engine_; }
  FaultyStore& F(size_t i = 0) { return *faulty_.at(i); }

  // How these tests write: pieces of an odd size.
  static constexpr testing::PutOptions kPut = {.piece = 300 * kKiB + 7};

  // Opens name for writing (O_TRUNC) and writes data; the handle stays open.
  Result<FileHandle*> StartWrite(const std::string& name, const std::vector<uint8_t>& data) {
    Result<OpenResult> c = testing::CreateAndWrite(E(), kRoot, name, data, kPut);
    if (!c.ok()) return c.status();
    return c->handle;
  }

  // Create/O_TRUNC + write + Flush + Release: the commit's status.
  Status Put(const std::string& name, const std::vector<uint8_t>& data) {
    return testing::PutFile(E(), kRoot, name, data, kPut).status();
  }

  // Lookup + Open(O_RDONLY) + read all + Release.
  Result<std::vector<uint8_t>> Get(const std::string& name, size_t chunk = 128 * kKiB) {
    return testing::GetFile(E(), kRoot, name, chunk);
  }

  // "" when name reads back exactly want.
  std::string Check(const std::string& name, const std::vector<uint8_t>& want) {
    Result<std::vector<uint8_t>> got = Get(name);
    if (!got.ok()) return name + ": " + ErrText(got.status());
    if (got->size() != want.size()) {
      return name + ": size " + std::to_string(got->size()) + ", want " + std::to_string(want.size());
    }
    if (*got != want) return name + ": wrong bytes";
    return "";
  }

  int LookupErr(const std::string& name) {
    Result<Attr> a = E().Lookup(kRoot, name);
    if (!a.ok()) return a.err();
    E().Forget(a->ino, 1);
    return 0;
  }

  size_t StagingFiles(size_t i = 0) { return CountFiles(Root(i) + "/staging"); }
  size_t QuarantinedFiles(size_t i = 0) { return CountFiles(Root(i) + "/quarantine"); }

  // Runs one failing commit of `next` over the committed `prev` of key with
  // the fault in place, checks what the contract promises, then clears the
  // fault and retries the commit on the same handle.
  // next_bytes: the size of the version whose commit fails (a small one
  // takes the one-call staging path, Store::CreateStagingWith).
  void FailedCommitKeepsPrevious(StoreOp op, const Fault& fault, int want_err, size_t next_bytes = 2 * kMiB + 77) {
    const std::string key = "chunk";
    const std::vector<uint8_t> prev = Pattern(1, 3 * kMiB + 123);
    const std::vector<uint8_t> next = Pattern(2, next_bytes);
    ASSERT_TRUE(OpenEngine().ok());
    ASSERT_EQ(ErrText(Put(key, prev)), "OK");

    F().Inject(op, fault);
    Result<FileHandle*> h = StartWrite(key, next);
    ASSERT_TRUE(h.ok()) << ErrText(h.status());
    Status flushed = E().Flush(*h);
    EXPECT_EQ(flushed.err(), want_err) << ErrText(flushed);
    EXPECT_GE(F().hits(), 1u) << "the fault was never hit";
    // The previous version is intact and readable from another handle.
    EXPECT_EQ(Check(key, prev), "");
    EXPECT_EQ(StagingFiles(), 0u) << "a failed commit left its staging file";
    EXPECT_GE(E().Stats().commit_failures, 1u);

    // The store is healthy again: retrying the commit (a second close/fsync)
    // publishes the new version.
    F().Clear();
    Status retried = E().Flush(*h);
    EXPECT_EQ(ErrText(retried), "OK");
    E().Release(*h);
    EXPECT_EQ(Check(key, next), "");

    // A fresh commit works too, and everything survives a reopen.
    const std::vector<uint8_t> third = Pattern(3, 5 * kKiB);
    EXPECT_EQ(ErrText(Put(key, third)), "OK");
    ASSERT_TRUE(OpenEngine().ok());
    EXPECT_EQ(Check(key, third), "");
    EXPECT_EQ(StagingFiles(), 0u);
  }

  // A read stuck in the store past its deadline (see the tests below).
  void StuckDataReadFailsWithinDeadline();

  // The commit of a next_bytes version meets one stuck call of `op`
  // (kDeadline, kStall): its Flush fails within about the deadline, the
  // previous version stays, a retried Flush lands once the store answers,
  // no staging file is left, and the new version survives a reopen.
  void StuckCommitFailsWithinDeadlineAndRetryLands(StoreOp op, size_t next_bytes) {
    ASSERT_TRUE(OpenEngine(1, kDeadline).ok());
    const std::vector<uint8_t> prev = Pattern(94, 300 * kKiB);
    const std::vector<uint8_t> next = Pattern(95, next_bytes);
    ASSERT_EQ(ErrText(Put("k", prev)), "OK");

    Fault f;
    f.delay = kStall;
    f.count = 1;
    F().Inject(op, f);
    Result<FileHandle*> h = StartWrite("k", next);
    ASSERT_TRUE(h.ok()) << ErrText(h.status());
    auto start = Clock::now();
    Status s = E().Flush(*h);
    double elapsed = SecondsSince(start);
    EXPECT_TRUE(s.err() == ETIMEDOUT || s.err() == EIO) << ErrText(s);
    EXPECT_LT(elapsed, kWithinDeadline) << "Flush blocked on a stuck store instead of failing at its deadline";
    EXPECT_GE(F().hits(), 1u) << "the fault was never hit";
    EXPECT_EQ(Check("k", prev), "");

    F().WaitForCallsToReturn();
    F().Clear();
    EXPECT_EQ(ErrText(E().Flush(*h)), "OK");
    E().Release(*h);
    EXPECT_EQ(Check("k", next), "");
    // Closing waits until a late call's worker let go of its result (the
    // store's sweep at the next open would hide a leftover).
    CloseEngine();
    EXPECT_EQ(StagingFiles(), 0u) << "the timed-out call left its staging file";
    ASSERT_TRUE(OpenEngine(1).ok());
    EXPECT_EQ(Check("k", next), "");
  }

  TempDir dir_;
  std::unique_ptr<Engine> engine_;
  std::vector<FaultyStore*> faulty_;  // owned by the engine's stores
  bool use_io_uring_ = true;
  uint64_t read_ahead_bytes_ = EngineOptions{}.read_ahead_bytes;
};

TEST_F(FaultInjectionTest, PublishFailureKeepsPreviousVersion) {
  Fault f;
  f.err = EIO;
  FailedCommitKeepsPrevious(StoreOp::kPublish, f, EIO);
}

TEST_F(FaultInjectionTest, FailingDataWritesKeepPreviousVersion) {
  Fault f;
  f.bad_fd = true;
  FailedCommitKeepsPrevious(StoreOp::kCreateStaging, f, EIO);
}

TEST_F(FaultInjectionTest, StagingEnospcKeepsPreviousVersion) {
  Fault f;
  f.err = ENOSPC;
  FailedCommitKeepsPrevious(StoreOp::kCreateStaging, f, ENOSPC);
}

TEST_F(FaultInjectionTest, StagingEioKeepsPreviousVersion) {
  Fault f;
  f.err = EIO;
  FailedCommitKeepsPrevious(StoreOp::kCreateStaging, f, EIO);
}

// A new key whose first commit fails never becomes visible, even after its
// handle is released (the commit at release fails too), and can be written
// once the store recovers.
TEST_F(FaultInjectionTest, FailedFirstCommitLeavesNoKey) {
  ASSERT_TRUE(OpenEngine().ok());
  Fault f;
  f.err = EIO;
  F().Inject(StoreOp::kPublish, f);
  const std::vector<uint8_t> data = Pattern(7, kMiB + 5);
  Result<FileHandle*> h = StartWrite("fresh", data);
  ASSERT_TRUE(h.ok()) << ErrText(h.status());
  EXPECT_EQ(E().Flush(*h).err(), EIO);
  E().Release(*h);
  EXPECT_EQ(LookupErr("fresh"), ENOENT);
  size_t listed = 0;
  ASSERT_TRUE(E().ReadDir(kRoot, 0, false, [&](const DirEntry& e) {
                   if (e.name != "." && e.name != "..") ++listed;
                   return true;
                 }).ok());
  EXPECT_EQ(listed, 0u);
  EXPECT_EQ(StagingFiles(), 0u);

  F().Clear();
  EXPECT_EQ(ErrText(Put("fresh", data)), "OK");
  EXPECT_EQ(Check("fresh", data), "");
}

// Only the second of three commits fails (skip = 1, count = 1): the first
// lands; the second reports EIO from Flush (close) and must not land later
// behind the writer's back (e.g. when its handle is released and the store
// works again); the third lands.
TEST_F(FaultInjectionTest, FailedCloseIsNotPublishedAtRelease) {
  ASSERT_TRUE(OpenEngine().ok());
  Fault f;
  f.err = EIO;
  f.skip = 1;
  f.count = 1;
  F().Inject(StoreOp::kPublish, f);
  const std::vector<uint8_t> a = Pattern(11, 100 * kKiB);
  const std::vector<uint8_t> b = Pattern(12, 200 * kKiB);
  const std::vector<uint8_t> c = Pattern(13, 300 * kKiB);
  EXPECT_EQ(ErrText(Put("k", a)), "OK");
  EXPECT_EQ(Put("k", b).err(), EIO);
  EXPECT_EQ(Check("k", a), "") << "the version whose close() failed with EIO was published anyway";
  EXPECT_EQ(ErrText(Put("k", c)), "OK");  // count exhausted
  EXPECT_EQ(Check("k", c), "");
}

// The same for a new key: its first commit fails at close, and the key must
// not appear afterwards.
TEST_F(FaultInjectionTest, FailedFirstCloseIsNotPublishedAtRelease) {
  ASSERT_TRUE(OpenEngine().ok());
  Fault f;
  f.err = ENOSPC;
  f.count = 1;
  F().Inject(StoreOp::kCreateStaging, f);
  EXPECT_EQ(Put("new", Pattern(14, 50 * kKiB)).err(), ENOSPC);
  EXPECT_EQ(LookupErr("new"), ENOENT) << "the key whose close() failed with ENOSPC appeared anyway";
}

// A lying disk: the published object is cut in half but Publish says OK.
// Reading it must fail with EIO (never return wrong bytes), and the key must
// then be gone from the namespace, its file moved to quarantine/.

TEST_F(FaultInjectionTest, TornPublishGivesEioAndQuarantinesOnFullRead) {
  ASSERT_TRUE(OpenEngine().ok());
  const std::vector<uint8_t> good = Pattern(21, 700 * kKiB);
  ASSERT_EQ(ErrText(Put("neighbour", good)), "OK");
  Fault f;
  f.torn = true;
  f.count = 1;
  F().Inject(StoreOp::kPublish, f);
  const std::vector<uint8_t> data = Pattern(22, 2 * kMiB + 4321);
  ASSERT_EQ(ErrText(Put("torn", data)), "OK") << "a torn publish reports success (the disk lies)";
  ASSERT_EQ(F().hits(), 1u);

  Result<Attr> a = E().Lookup(kRoot, "torn");
  ASSERT_TRUE(a.ok());
  E().Forget(a->ino, 1);
  Result<OpenResult> o = E().Open(a->ino, O_RDONLY);
  if (o.ok()) {
    // One read of the whole object.
    ReadReply reply;
    Status s = E().Read(o->handle, 0, data.size(), &reply);
    EXPECT_EQ(s.err(), EIO) << "read of a torn object: " << ErrText(s) << ", " << reply.bytes() << " bytes";
    E().Release(o->handle);
  } else {
    EXPECT_EQ(o.err(), EIO) << ErrText(o.status());
  }
  EXPECT_EQ(LookupErr("torn"), ENOENT) << "the torn object is still served after EIO";
  EXPECT_EQ(QuarantinedFiles(), 1u);
  EXPECT_EQ(Check("neighbour", good), "");
  // The name can be written again.
  EXPECT_EQ(ErrText(Put("torn", data)), "OK");
  EXPECT_EQ(Check("torn", data), "");
}

// Same lie, but the reader starts with a small read at offset 0, whose chunk
// is still on the disk while the chunk checksum table is not.
TEST_F(FaultInjectionTest, TornPublishGivesEioAndQuarantinesOnSmallRead) {
  ASSERT_TRUE(OpenEngine().ok());
  Fault f;
  f.torn = true;
  f.count = 1;
  F().Inject(StoreOp::kPublish, f);
  const std::vector<uint8_t> data = Pattern(23, 2 * kMiB);
  ASSERT_EQ(ErrText(Put("torn", data)), "OK");

  Result<Attr> a = E().Lookup(kRoot, "torn");
  ASSERT_TRUE(a.ok());
  E().Forget(a->ino, 1);
  Result<OpenResult> o = E().Open(a->ino, O_RDONLY);
  ASSERT_TRUE(o.ok()) << ErrText(o.status());
  // Read the whole file in 4 KiB requests: every request either fails with
  // EIO or returns the right bytes; at least one fails.
  bool failed = false;
  for (size_t off = 0; off < data.size(); off += 4096) {
    Result<std::vector<uint8_t>> read = testing::ReadOnce(E(), o->handle, off, 4096);
    if (!read.ok()) {
      EXPECT_EQ(read.err(), EIO) << "at offset " << off << ": " << ErrText(read.status());
      failed = true;
      break;
    }
    const std::vector<uint8_t>& got = *read;
    ASSERT_EQ(got.size(), 4096u) << "at offset " << off;
    ASSERT_EQ(0, std::memcmp(got.data(), data.data() + off, 4096)) << "wrong bytes at offset " << off;
  }
  E().Release(o->handle);
  EXPECT_TRUE(failed) << "a torn object read back whole";
  EXPECT_EQ(LookupErr("torn"), ENOENT) << "the torn object is still served after EIO";
  EXPECT_EQ(QuarantinedFiles(), 1u);
}

// The engine's figures count the checksum failure and the quarantine of a
// corrupt object, per store.
TEST_F(FaultInjectionTest, CorruptionIsCountedInStats) {
  ASSERT_TRUE(OpenEngine().ok());
  const std::vector<uint8_t> data = Pattern(31, 600 * kKiB);
  ASSERT_EQ(ErrText(Put("victim", data)), "OK");
  Result<Attr> a = E().Lookup(kRoot, "victim");
  ASSERT_TRUE(a.ok());
  Result<std::string> location = GetDebugXattr(E(), a->ino, "user.kvfs.location");
  E().Forget(a->ino, 1);
  ASSERT_TRUE(location.ok()) << ErrText(location.status());
  // Flip one data byte on the store.
  std::string path = Root(0) + "/" + *location;
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path;
  uint8_t b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, 4096 + 300000), 1);
  b ^= 0x40;
  ASSERT_EQ(::pwrite(fd, &b, 1, 4096 + 300000), 1);
  ::fsync(fd);
  ::close(fd);

  Result<std::vector<uint8_t>> got = Get("victim");
  EXPECT_EQ(got.err(), EIO) << (got.ok() ? "read returned corrupt bytes" : ErrText(got.status()));
  EXPECT_EQ(LookupErr("victim"), ENOENT);
  EXPECT_EQ(QuarantinedFiles(), 1u);
  EngineStats st = E().Stats();
  ASSERT_EQ(st.stores.size(), 1u);
  EXPECT_EQ(st.stores[0].checksum_failures, 1u) << "per-store checksum_failures";
  EXPECT_EQ(st.stores[0].quarantined, 1u) << "per-store quarantined";
  EXPECT_EQ(st.checksum_failures, 1u) << "total checksum_failures";
  EXPECT_EQ(st.quarantined, 1u) << "total quarantined";
  std::string json = FormatStatsJson(st);
  EXPECT_NE(json.find("\"checksum_failures\":1"), std::string::npos) << json;
  EXPECT_NE(json.find("\"quarantined\":1"), std::string::npos) << json;
}

// A store that stops answering OpenForRead: with a 200 ms deadline, Open
// fails with ETIMEDOUT or EIO well before the stuck call returns (2 s; both
// scaled in sanitizer builds), and
// works again once the fault is gone, without reopening the engine.
TEST_F(FaultInjectionTest, StuckOpenFailsWithinDeadlineAndRecovers) {
  ASSERT_TRUE(OpenEngine(1, kDeadline).ok());
  const std::vector<uint8_t> data = Pattern(41, kMiB + 3);
  ASSERT_EQ(ErrText(Put("slow", data)), "OK");
  Result<Attr> a = E().Lookup(kRoot, "slow");
  ASSERT_TRUE(a.ok());

  Fault f;
  f.delay = kStall + milliseconds(500 * kTimingScale);
  f.count = 1;
  F().Inject(StoreOp::kOpenForRead, f);
  auto start = Clock::now();
  Result<OpenResult> o = E().Open(a->ino, O_RDONLY);
  double elapsed = SecondsSince(start);
  EXPECT_FALSE(o.ok());
  if (o.ok()) {
    E().Release(o->handle);
  } else {
    EXPECT_TRUE(o.err() == ETIMEDOUT || o.err() == EIO) << ErrText(o.status());
  }
  EXPECT_LT(elapsed, kWithinDeadline + 0.3 * kTimingScale) << "Open blocked on a stuck store instead of failing at its deadline";
  EXPECT_GE(elapsed, kBeforeDeadline) << "Open failed before the deadline passed";

  // The store answers again (the fault was one call): the engine recovers.
  F().Clear();
  EXPECT_EQ(Check("slow", data), "");
  const std::vector<uint8_t> next = Pattern(42, 77 * kKiB);
  EXPECT_EQ(ErrText(Put("slow", next)), "OK");
  EXPECT_EQ(Check("slow", next), "");
  E().Forget(a->ino, 1);
  // Let the stuck call end before the stores are destroyed (a DeadlineStore
  // destroyed with a call stuck inside leaks its store on purpose).
  F().WaitForCallsToReturn();
}

// A publish that hangs past its deadline: Flush fails within about the
// deadline; when the store answers again, a retried commit lands.
TEST_F(FaultInjectionTest, StuckPublishFailsWithinDeadlineAndRecovers) {
  ASSERT_TRUE(OpenEngine(1, kDeadline).ok());
  const std::vector<uint8_t> prev = Pattern(51, 300 * kKiB);
  const std::vector<uint8_t> next = Pattern(52, 400 * kKiB);
  ASSERT_EQ(ErrText(Put("k", prev)), "OK");

  Fault f;
  f.delay = kStall;
  f.count = 1;
  F().Inject(StoreOp::kPublish, f);
  Result<FileHandle*> h = StartWrite("k", next);
  ASSERT_TRUE(h.ok());
  auto start = Clock::now();
  Status s = E().Flush(*h);
  double elapsed = SecondsSince(start);
  EXPECT_TRUE(s.err() == ETIMEDOUT || s.err() == EIO) << ErrText(s);
  EXPECT_LT(elapsed, kWithinDeadline) << "Flush blocked on a stuck store instead of failing at its deadline";

  // Wait for the stuck publish to land (DeadlineStore's documented caveat:
  // it may still complete), then retry the commit with the store healthy.
  F().WaitForCallsToReturn();
  F().Clear();
  EXPECT_EQ(ErrText(E().Flush(*h)), "OK");
  E().Release(*h);
  EXPECT_EQ(Check("k", next), "");
  // The reopen checks what is on the store, not the deadline: none, so that
  // a slow rebuild on a loaded machine cannot fail it.
  ASSERT_TRUE(OpenEngine(1).ok());
  EXPECT_EQ(Check("k", next), "");
}

// Two stores, one of them failing every operation: keys on the healthy store
// keep working (read, overwrite, create), keys on the faulty one fail with
// EIO, and everything works once the fault is cleared.
TEST_F(FaultInjectionTest, FaultyStoreDoesNotAffectHealthyStore) {
  ASSERT_TRUE(OpenEngine(2).ok());
  const std::string good_key = KeyOnStore("good-", 0, 2);
  const std::string bad_key = KeyOnStore("bad-", 1, 2);
  const std::vector<uint8_t> g1 = Pattern(61, 900 * kKiB), b1 = Pattern(62, 800 * kKiB);
  ASSERT_EQ(ErrText(Put(good_key, g1)), "OK");
  ASSERT_EQ(ErrText(Put(bad_key, b1)), "OK");
  // Placement as the engine reports it.
  for (auto [key, store] : {std::pair{good_key, 0}, std::pair{bad_key, 1}}) {
    Result<Attr> a = E().Lookup(kRoot, key);
    ASSERT_TRUE(a.ok());
    Result<std::string> where = GetDebugXattr(E(), a->ino, "user.kvfs.store");
    E().Forget(a->ino, 1);
    ASSERT_TRUE(where.ok());
    EXPECT_NE(where->find(Root(store)), std::string::npos) << key << " is on " << *where;
  }
  EngineStats st = E().Stats();
  ASSERT_EQ(st.stores.size(), 2u);
  EXPECT_EQ(st.stores[0].objects, 1u);
  EXPECT_EQ(st.stores[1].objects, 1u);

  Fault f;
  f.err = EIO;
  for (StoreOp op : {StoreOp::kCreateStaging, StoreOp::kPublish, StoreOp::kOpenForRead, StoreOp::kRemove,
                     StoreOp::kMove, StoreOp::kWriteHeaderBlock}) {
    F(1).Inject(op, f);
  }
  // Healthy store: everything works.
  EXPECT_EQ(Check(good_key, g1), "");
  const std::vector<uint8_t> g2 = Pattern(63, 1500 * kKiB);
  EXPECT_EQ(ErrText(Put(good_key, g2)), "OK");
  EXPECT_EQ(Check(good_key, g2), "");
  const std::string good_new = KeyOnStore("good-new-", 0, 2);
  EXPECT_EQ(ErrText(Put(good_new, g1)), "OK");
  EXPECT_EQ(Check(good_new, g1), "");
  // Faulty store: errors, never wrong bytes, the old version stays.
  Result<std::vector<uint8_t>> r = Get(bad_key);
  EXPECT_EQ(r.err(), EIO) << (r.ok() ? "read succeeded on a failing store" : ErrText(r.status()));
  EXPECT_EQ(Put(bad_key, Pattern(64, 10 * kKiB)).err(), EIO);
  const std::string bad_new = KeyOnStore("bad-new-", 1, 2);
  EXPECT_EQ(Put(bad_new, b1).err(), EIO);
  EXPECT_EQ(LookupErr(bad_new), ENOENT);
  EXPECT_EQ(E().Unlink(kRoot, bad_key).err(), EIO);
  // The healthy store's data is still fine after all that.
  EXPECT_EQ(Check(good_key, g2), "");

  F(1).Clear();
  EXPECT_EQ(Check(bad_key, b1), "");
  EXPECT_EQ(ErrText(Put(bad_new, b1)), "OK");
  EXPECT_EQ(Check(bad_new, b1), "");
  EXPECT_EQ(StagingFiles(0) + StagingFiles(1), 0u);
}

// Two stores behind deadlines, one of them slow (each open takes 1.5 s, less
// than its 5 s deadline): while an open on the slow store is waiting, keys on
// the healthy store are served without waiting for it.
TEST_F(FaultInjectionTest, SlowStoreDoesNotStallHealthyStore) {
  ASSERT_TRUE(OpenEngine(2, milliseconds(5000)).ok());
  const std::string fast_key = KeyOnStore("fast-", 0, 2);
  const std::string slow_key = KeyOnStore("slow-", 1, 2);
  const std::vector<uint8_t> fd = Pattern(71, 256 * kKiB), sd = Pattern(72, 256 * kKiB);
  ASSERT_EQ(ErrText(Put(fast_key, fd)), "OK");
  ASSERT_EQ(ErrText(Put(slow_key, sd)), "OK");
  Result<Attr> slow = E().Lookup(kRoot, slow_key);
  ASSERT_TRUE(slow.ok());

  Fault f;
  f.delay = milliseconds(1500);
  f.count = 1;
  F(1).Inject(StoreOp::kOpenForRead, f);
  std::atomic<bool> slow_done{false};
  Status slow_status;
  std::thread slow_reader([&] {
    Result<OpenResult> o = E().Open(slow->ino, O_RDONLY);
    if (o.ok()) {
      Result<std::vector<uint8_t>> got = testing::ReadAll(E(), o->handle, 128 * kKiB);
      slow_status = !got.ok() ? got.status() : (*got == sd ? Status::Ok() : Status::Error(EIO, "wrong bytes"));
      E().Release(o->handle);
    } else {
      slow_status = o.status();
    }
    slow_done = true;
  });
  // Wait until the slow open is under way.
  for (int i = 0; i < 200 && F(1).hits() == 0; ++i) std::this_thread::sleep_for(milliseconds(5));
  std::this_thread::sleep_for(milliseconds(100));
  auto start = Clock::now();
  EXPECT_EQ(Check(fast_key, fd), "");
  double elapsed = SecondsSince(start);
  EXPECT_FALSE(slow_done.load()) << "the slow open finished too early for this test to mean anything";
  EXPECT_LT(elapsed, 0.5) << "a read on the healthy store waited " << elapsed << " s for the slow store";
  slow_reader.join();
  EXPECT_EQ(ErrText(slow_status), "OK");
  E().Forget(slow->ino, 1);
}

// Builds dir "d" holding files a, b, c (and a subdirectory "s" with one
// file), all committed; returns their contents by key.
std::map<std::string, std::vector<uint8_t>> MakeTree(Engine& e) {
  std::map<std::string, std::vector<uint8_t>> files;
  Result<Attr> d = e.Mkdir(kRoot, "d", 0755, 0, 0);
  EXPECT_TRUE(d.ok());
  Result<Attr> sub = e.Mkdir(d->ino, "s", 0755, 0, 0);
  EXPECT_TRUE(sub.ok());
  int seed = 90;
  for (const char* name : {"a", "b", "c"}) {
    files[std::string("d/") + name] = Pattern(seed++, 70 * kKiB);
    EXPECT_EQ(ErrText(testing::PutFile(e, d->ino, name, files[std::string("d/") + name]).status()), "OK");
  }
  files["d/s/f"] = Pattern(seed, 90 * kKiB);
  EXPECT_EQ(ErrText(testing::PutFile(e, sub->ino, "f", files["d/s/f"]).status()), "OK");
  e.Forget(sub->ino, 1);
  e.Forget(d->ino, 1);
  return files;
}

// Reads every file of MakeTree under the directory `top` (instead of "d").
std::string CheckTree(Engine& e, const std::string& top, const std::map<std::string, std::vector<uint8_t>>& files) {
  for (const auto& [key, want] : files) {
    std::string path = top + key.substr(1);
    uint64_t parent = kRoot;
    std::vector<uint64_t> looked_up;
    size_t start = 0;
    std::string err;
    while (true) {
      size_t slash = path.find('/', start);
      std::string part = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      if (slash == std::string::npos) {
        Result<std::vector<uint8_t>> got = testing::GetFile(e, parent, part);
        if (!got.ok()) err = path + ": " + ErrText(got.status());
        else if (*got != want) err = path + ": wrong bytes";
        break;
      }
      Result<Attr> a = e.Lookup(parent, part);
      if (!a.ok()) {
        err = path + ": " + ErrText(a.status());
        break;
      }
      looked_up.push_back(a->ino);
      parent = a->ino;
      start = slash + 1;
    }
    for (uint64_t ino : looked_up) e.Forget(ino, 1);
    if (!err.empty()) return err;
  }
  return "";
}

// A directory rename whose store moves fail part way: what had moved is
// moved back, so the tree stays whole under its old name, now and after a
// restart, and the store is clean.
TEST_F(FaultInjectionTest, FailedDirectoryRenameMovesNothing) {
  ASSERT_TRUE(OpenEngine().ok());
  const auto files = MakeTree(E());
  ASSERT_EQ(CheckTree(E(), "d", files), "");
  Fault f;
  f.err = EIO;
  f.skip = 2;  // the directory's record and its first child move, then a move fails
  f.count = 1;
  F().Inject(StoreOp::kMove, f);
  Status renamed = E().Rename(kRoot, "d", kRoot, "e", 0);
  EXPECT_EQ(renamed.err(), EIO) << ErrText(renamed);
  EXPECT_EQ(F().hits(), 1u);
  F().Clear();
  EXPECT_EQ(CheckTree(E(), "d", files), "");
  EXPECT_EQ(LookupErr("e"), ENOENT);

  ASSERT_TRUE(OpenEngine().ok());
  EXPECT_EQ(CheckTree(E(), "d", files), "") << "after a restart";
  EXPECT_EQ(LookupErr("e"), ENOENT) << "after a restart";
  // The same rename works once the store does.
  ASSERT_EQ(ErrText(E().Rename(kRoot, "d", kRoot, "e", 0)), "OK");
  EXPECT_EQ(CheckTree(E(), "e", files), "");
  ASSERT_TRUE(OpenEngine().ok());
  EXPECT_EQ(CheckTree(E(), "e", files), "");
  EXPECT_EQ(LookupErr("d"), ENOENT);
  CloseEngine();
  LocalStoreOptions so;
  so.create_if_missing = false;
  so.sweep_staging = false;
  Result<std::unique_ptr<LocalStore>> store = LocalStore::Open(Root(0), so);
  ASSERT_TRUE(store.ok());
  Result<FsckReport> report = CheckStore(**store, false);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->clean()) << report->ToText();
}

// A directory rename that would give a key below it more than the longest
// key allowed fails with ENAMETOOLONG before anything moves.
TEST_F(FaultInjectionTest, DirectoryRenameWithATooLongKeyBelowMovesNothing) {
  ASSERT_TRUE(OpenEngine().ok());
  const auto files = MakeTree(E());
  // d/<250>/<250>/<250>/<250>/<250>/<250>/file: 1,512 bytes of key.
  Result<Attr> d = E().Lookup(kRoot, "d");
  ASSERT_TRUE(d.ok());
  uint64_t parent = d->ino;
  std::vector<uint64_t> made = {d->ino};
  std::string deep_key = "d";
  for (int i = 0; i < 6; ++i) {
    std::string name(250, static_cast<char>('p' + i));
    Result<Attr> sub = E().Mkdir(parent, name, 0755, 0, 0);
    ASSERT_TRUE(sub.ok()) << ErrText(sub.status());
    made.push_back(sub->ino);
    parent = sub->ino;
    deep_key += "/" + name;
  }
  const std::vector<uint8_t> deep = Pattern(99, 5000);
  ASSERT_EQ(ErrText(testing::PutFile(E(), parent, "file", deep).status()), "OK");
  for (uint64_t ino : made) E().Forget(ino, 1);
  // The new top name fits on its own, but the deep file's key would grow
  // past the longest allowed.
  const std::string long_top(100, 'n');
  ASSERT_GT(deep_key.size() + 5 - 1 + long_top.size(), kMaxKeyLength);
  // Any store move now fails: the rename must not even try one.
  Fault f;
  f.err = EIO;
  F().Inject(StoreOp::kMove, f);
  Status renamed = E().Rename(kRoot, "d", kRoot, long_top, 0);
  EXPECT_EQ(renamed.err(), ENAMETOOLONG) << ErrText(renamed);
  EXPECT_EQ(F().hits(), 0u) << "the rename moved objects before refusing";
  F().Clear();
  EXPECT_EQ(CheckTree(E(), "d", files), "");
  ASSERT_TRUE(OpenEngine().ok());
  EXPECT_EQ(CheckTree(E(), "d", files), "") << "after a restart";
  EXPECT_EQ(LookupErr(long_top), ENOENT);
}

// A rename whose header rewrite reached the disk but whose move did not (the
// state a crash between rename's two steps leaves; here the move fails).
// After a reopen exactly one of the two names holds the object. An overwrite
// and then an unlink of that name must stick across the next reopen: no older
// copy of the key may come back.
TEST_F(FaultInjectionTest, InterruptedRenameResolvesAndLaterUnlinkSticks) {
  ASSERT_TRUE(OpenEngine().ok());
  const std::vector<uint8_t> v1 = Pattern(81, 500 * kKiB);
  const std::vector<uint8_t> v2 = Pattern(82, 600 * kKiB);
  ASSERT_EQ(ErrText(Put("src", v1)), "OK");
  Fault f;
  f.err = EIO;
  F().Inject(StoreOp::kMove, f);
  Status renamed = E().Rename(kRoot, "src", kRoot, "dst", 0);
  EXPECT_FALSE(renamed.ok()) << "the injected move failure was not reported";
  F().Clear();

  ASSERT_TRUE(OpenEngine().ok());
  int src_err = LookupErr("src"), dst_err = LookupErr("dst");
  ASSERT_TRUE((src_err == 0) != (dst_err == 0)) << "src: " << src_err << ", dst: " << dst_err;
  const std::string name = src_err == 0 ? "src" : "dst";
  EXPECT_EQ(Check(name, v1), "");

  // Overwrite the surviving name and unlink it in the same session, then
  // reopen: it stays deleted, no older copy comes back.
  ASSERT_EQ(ErrText(Put(name, v2)), "OK");
  EXPECT_EQ(Check(name, v2), "");
  ASSERT_EQ(ErrText(E().Unlink(kRoot, name)), "OK");
  ASSERT_TRUE(OpenEngine().ok());
  EXPECT_EQ(LookupErr(name), ENOENT) << "an acknowledged unlink of '" << name << "' came back after a reopen";
  EXPECT_EQ(LookupErr("src"), ENOENT);
  EXPECT_EQ(LookupErr("dst"), ENOENT);
  CloseEngine();

  // And the store is clean for fsck.
  LocalStoreOptions so;
  so.create_if_missing = false;
  so.sweep_staging = false;
  Result<std::unique_ptr<LocalStore>> store = LocalStore::Open(Root(0), so);
  ASSERT_TRUE(store.ok());
  Result<FsckReport> report = CheckStore(**store, false);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->clean()) << report->ToText();
  EXPECT_EQ(report->files, 0u) << report->ToText();
}

// Data reads fail with EIO on the device: the read reports EIO (never other
// bytes), the object is not quarantined (the device failed, not the object),
// and the key reads back whole once the device works again.
TEST_F(FaultInjectionTest, DataReadEioFailsReadButKeepsKey) {
  ASSERT_TRUE(OpenEngine().ok());
  const std::vector<uint8_t> data = Pattern(91, 3 * kMiB + 11);
  ASSERT_EQ(ErrText(Put("k", data)), "OK");
  Fault f;
  f.err = EIO;
  F().Inject(StoreOp::kReadData, f);
  Result<std::vector<uint8_t>> got = Get("k");
  EXPECT_EQ(got.err(), EIO) << (got.ok() ? "read returned bytes while every data read failed" : ErrText(got.status()));
  EXPECT_GE(F().hits(), 1u) << "the data read never went through the store";
  EXPECT_EQ(LookupErr("k"), 0) << "a device error removed the key";
  EXPECT_EQ(QuarantinedFiles(), 0u) << "a device error quarantined the object";
  EXPECT_EQ(E().Stats().quarantined, 0u);
  F().Clear();
  EXPECT_EQ(Check("k", data), "");
}

// The commit's data writes fail with EIO: the flush (close) reports EIO, the
// previous version stays, a retry lands.
TEST_F(FaultInjectionTest, DataWriteEioKeepsPreviousVersion) {
  Fault f;
  f.err = EIO;
  FailedCommitKeepsPrevious(StoreOp::kWriteData, f, EIO);
}

// The same for a small version, whose staging file is created and written
// in one store call: a failing creation or write fails the close with EIO.
TEST_F(FaultInjectionTest, SmallObjectWriteOrCreationEioKeepsPreviousVersion) {
  Fault f;
  f.err = EIO;
  FailedCommitKeepsPrevious(StoreOp::kWriteData, f, EIO, 10 * kKiB + 3);
  if (HasFatalFailure()) return;
  FailedCommitKeepsPrevious(StoreOp::kCreateStaging, f, EIO, 10 * kKiB + 3);
}

void FaultInjectionTest::StuckDataReadFailsWithinDeadline() {
  read_ahead_bytes_ = 0;  // so that every pool buffer on loan is this test's
  ASSERT_TRUE(OpenEngine(1, kDeadline).ok());
  const std::vector<uint8_t> stuck = Pattern(92, 2 * kMiB + 5);
  const std::vector<uint8_t> other = Pattern(93, 700 * kKiB);
  ASSERT_EQ(ErrText(Put("stuck", stuck)), "OK");
  ASSERT_EQ(ErrText(Put("other", other)), "OK");
  Result<Attr> a = E().Lookup(kRoot, "stuck");
  ASSERT_TRUE(a.ok());
  Result<OpenResult> o = E().Open(a->ino, O_RDONLY);
  ASSERT_TRUE(o.ok()) << ErrText(o.status());
  ASSERT_EQ(E().Stats().pool_in_use, 0u);

  // The next data read answers only after kStall.
  Fault f;
  f.delay = kStall;
  f.count = 1;
  F().Inject(StoreOp::kReadData, f);
  auto start = Clock::now();
  Result<std::vector<uint8_t>> r = testing::ReadOnce(E(), o->handle, 0, 2 * kMiB);
  double elapsed = SecondsSince(start);
  EXPECT_TRUE(r.err() == ETIMEDOUT || r.err() == EIO) << (r.ok() ? "the stuck read returned bytes" : ErrText(r.status()));
  EXPECT_LT(elapsed, kWithinDeadline) << "a read blocked on a stuck device instead of failing at its deadline";
  EXPECT_GE(elapsed, kBeforeDeadline) << "the read failed before the deadline passed";
  EXPECT_GE(F().hits(), 1u);
  // The stuck I/O still holds its pool buffers (2 MiB: two of them): none
  // went back to the pool for another read to reuse.
  EXPECT_GE(E().Stats().pool_in_use, 2u) << "buffers of a read still in flight went back to the pool";

  // Other keys are served meanwhile (their reads go through the same store).
  EXPECT_EQ(Check("other", other), "");
  EXPECT_EQ(E().Stats().quarantined, 0u);
  E().Release(o->handle);

  // Once the stuck call has ended, every buffer is back and the key reads whole.
  F().WaitForCallsToReturn();
  F().Clear();
  EXPECT_EQ(Check("stuck", stuck), "");
  EXPECT_EQ(E().Stats().pool_in_use, 0u) << "a pool buffer was lost";
  EXPECT_EQ(LookupErr("stuck"), 0);
  EXPECT_EQ(QuarantinedFiles(), 0u);
  E().Forget(a->ino, 1);
}

// A data read stuck past the deadline, with io_uring (the deadline is kept
// on the caller's thread) and with pread (a worker thread runs it).
TEST_F(FaultInjectionTest, StuckDataReadFailsWithinDeadlineUring) { StuckDataReadFailsWithinDeadline(); }

TEST_F(FaultInjectionTest, StuckDataReadFailsWithinDeadlineSyscalls) {
  use_io_uring_ = false;
  StuckDataReadFailsWithinDeadline();
}

// The commit's data write hangs past its deadline: Flush fails within about
// the deadline, the previous version stays; once the device answers, a
// retried commit lands.
TEST_F(FaultInjectionTest, StuckDataWriteFailsFlushWithinDeadlineAndRetryLands) {
  StuckCommitFailsWithinDeadlineAndRetryLands(StoreOp::kWriteData, 2 * kMiB + 9);
}

// The same for a small version, whose staging file is created and written
// as one call on a DeadlineStore worker: a stuck creation or a stuck write.
TEST_F(FaultInjectionTest, StuckSmallObjectStagingFailsWithinDeadlineAndRetryLands) {
  for (StoreOp op : {StoreOp::kCreateStaging, StoreOp::kWriteData}) {
    SCOPED_TRACE(op == StoreOp::kCreateStaging ? "stuck creation" : "stuck write");
    StuckCommitFailsWithinDeadlineAndRetryLands(op, 20 * kKiB + 1);
    if (HasFatalFailure()) return;
  }
}

// A large version spills to its staging file while it is written; that spill
// write hangs past the deadline. The write fails within about the deadline,
// the version can no longer be committed (a late write could still change
// its staging file), the previous version stays, and once the device
// answers the key can be written again.
TEST_F(FaultInjectionTest, StuckSpillWriteFailsTheVersionAndKeepsPrevious) {
  ASSERT_TRUE(OpenEngine(1, kDeadline).ok());
  const std::vector<uint8_t> prev = Pattern(96, 300 * kKiB);
  const std::vector<uint8_t> big = Pattern(97, 12 * kMiB + 5);  // more than a draft keeps in memory
  ASSERT_EQ(ErrText(Put("k", prev)), "OK");

  Fault f;
  f.delay = kStall;
  f.count = 1;
  F().Inject(StoreOp::kWriteData, f);
  auto start = Clock::now();
  Status s = Put("k", big);
  double elapsed = SecondsSince(start);
  EXPECT_EQ(s.err(), EIO) << ErrText(s);
  EXPECT_LT(elapsed, kWithinDeadline) << "a write blocked on a stuck device instead of failing at its deadline";
  EXPECT_GE(F().hits(), 1u) << "the spill write never went through the store";
  EXPECT_EQ(Check("k", prev), "");

  F().WaitForCallsToReturn();
  F().Clear();
  EXPECT_EQ(Check("k", prev), "") << "a late spill write changed the published version";
  EXPECT_EQ(StagingFiles(), 0u);
  EXPECT_EQ(ErrText(Put("k", big)), "OK");
  EXPECT_EQ(Check("k", big), "");
}

}  // namespace
}  // namespace kvfs
