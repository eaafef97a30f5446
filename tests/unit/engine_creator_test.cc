// Engine: what the process that created a key sees before its commit, and
// which flushes of a handle nothing was written through commit (the two
// places the engine asks a ProcessTable), with a scripted ProcessTable.
// fuse/proc_process_table.h's /proc answers are tested on this process.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/engine.h"
#include "core/process_table.h"
#include "fuse/proc_process_table.h"
#include "tests/unit/engine_driver.h"
#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

constexpr uint64_t kMiB = 1 << 20;
// Thread identities as the FUSE layer passes them (the kernel's thread id in
// the low 32 bits).
constexpr uint64_t kTag = 1ULL << 63;
constexpr uint32_t kCreator = 100, kCreatorSibling = 101, kStranger = 200;

// Threads 100-199 form one process, 200-299 another; every answer is counted.
class ScriptedProcesses : public ProcessTable {
 public:
  bool SameProcess(uint32_t a, uint32_t b) override {
    std::lock_guard<std::mutex> g(mu_);
    same_process_calls++;
    return a / 100 == b / 100;
  }
  bool HoldsWritableDescriptor(uint32_t thread, uint64_t ino) override {
    std::lock_guard<std::mutex> g(mu_);
    descriptor_calls++;
    return holders.count({thread / 100, ino}) > 0;
  }
  void SetHolds(uint32_t thread, uint64_t ino, bool holds) {
    std::lock_guard<std::mutex> g(mu_);
    if (holds) holders.insert({thread / 100, ino});
    else holders.erase({thread / 100, ino});
  }
  int same_process_calls = 0, descriptor_calls = 0;

 private:
  std::mutex mu_;
  std::set<std::pair<uint32_t, uint64_t>> holders;  // (process, ino)
};

class EngineCreatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineOptions o = testing::EngineDriver::TestDefaults();
    o.background_eviction = false;
    o.buffer_count = 4;
    ASSERT_OK(driver_.Open(1, 64 * kMiB, o));
    engine_ = &driver_.engine();
    engine_->SetProcessTable(&processes_);
  }
  void TearDown() override {
    if (engine_) engine_->SetProcessTable(nullptr);
  }

  Result<OpenResult> CreateAs(uint32_t thread, const std::string& name, int flags = O_WRONLY | O_CREAT | O_TRUNC) {
    return engine_->Create(kRootIno, name, 0644, flags, 0, 0, kTag | thread);
  }
  // Lookup as thread; on success the reference is dropped again.
  int LookupErrno(uint32_t thread, const std::string& name, bool* refused_pending = nullptr) {
    Result<Attr> a = engine_->Lookup(kRootIno, name, kTag | thread, refused_pending);
    if (!a.ok()) return a.err();
    engine_->Forget(a->ino, 1);
    return 0;
  }
  std::vector<uint8_t> Get(const std::string& name) {
    Result<std::vector<uint8_t>> r = testing::GetFile(*engine_, kRootIno, name);
    return r.ok() ? std::move(*r) : std::vector<uint8_t>{'?'};
  }

  ScriptedProcesses processes_;
  testing::EngineDriver driver_;
  Engine* engine_ = nullptr;  // driver_'s
};

TEST_F(EngineCreatorTest, PendingKeyIsFoundByItsCreatorsProcessOnly) {
  Result<OpenResult> c = CreateAs(kCreator, "k");
  ASSERT_TRUE(c.ok());
  const std::vector<uint8_t> data(5000, 7);
  ASSERT_OK(testing::WriteData(*engine_, c->handle, data));

  Result<Attr> mine = engine_->Lookup(kRootIno, "k", kTag | kCreatorSibling);
  ASSERT_TRUE(mine.ok()) << mine.status().message();
  EXPECT_EQ(mine->ino, c->attr.ino);
  EXPECT_TRUE(mine->pending);
  EXPECT_TRUE(mine->size_in_flux);
  engine_->Forget(mine->ino, 1);
  EXPECT_EQ(LookupErrno(kCreator, "k"), 0);

  bool refused = false;
  EXPECT_EQ(LookupErrno(kStranger, "k", &refused), ENOENT);
  EXPECT_TRUE(refused) << "a refusal of a pending key must be marked, so that the kernel does not keep it";
  EXPECT_EQ(LookupErrno(0, "k"), ENOENT) << "an unknown thread is nobody's";

  // A key that does not exist at all is a plain miss.
  refused = false;
  EXPECT_EQ(LookupErrno(kCreator, "absent", &refused), ENOENT);
  EXPECT_FALSE(refused);

  ASSERT_OK(engine_->Flush(c->handle, 0, kTag | kCreator));
  engine_->Release(c->handle);
  engine_->Forget(c->attr.ino, 1);
  // Committed: everyone finds it, and a committed key's answer is cacheable.
  Result<Attr> now = engine_->Lookup(kRootIno, "k", kTag | kStranger);
  ASSERT_TRUE(now.ok());
  EXPECT_FALSE(now->pending);
  engine_->Forget(now->ino, 1);
  EXPECT_EQ(Get("k"), data);
}

TEST_F(EngineCreatorTest, WithoutAProcessTableNobodyFindsAPendingKey) {
  engine_->SetProcessTable(nullptr);
  Result<OpenResult> c = CreateAs(kCreator, "k");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(LookupErrno(kCreator, "k"), ENOENT);
  EXPECT_EQ(processes_.same_process_calls, 0);
  ASSERT_OK(engine_->Flush(c->handle, 0, kTag | kCreator));
  engine_->Release(c->handle);
  engine_->Forget(c->attr.ino, 1);
  EXPECT_EQ(LookupErrno(kStranger, "k"), 0);
}

TEST_F(EngineCreatorTest, CreatorRenamesAndUnlinksItsPendingKeyByName) {
  Result<OpenResult> c = CreateAs(kCreator, "draft");
  ASSERT_TRUE(c.ok());
  const std::vector<uint8_t> data(3000, 9);
  ASSERT_OK(testing::WriteData(*engine_, c->handle, data));
  ASSERT_EQ(LookupErrno(kCreator, "draft"), 0);
  ASSERT_OK(engine_->Rename(kRootIno, "draft", kRootIno, "final", 0));
  EXPECT_EQ(LookupErrno(kCreator, "draft"), ENOENT);
  EXPECT_EQ(LookupErrno(kCreator, "final"), 0);
  EXPECT_EQ(LookupErrno(kStranger, "final"), ENOENT);
  ASSERT_OK(engine_->Flush(c->handle, 0, kTag | kCreator));
  engine_->Release(c->handle);
  engine_->Forget(c->attr.ino, 1);
  EXPECT_EQ(Get("final"), data);
  EXPECT_EQ(LookupErrno(kStranger, "draft"), ENOENT);

  Result<OpenResult> d = CreateAs(kCreator, "gone");
  ASSERT_TRUE(d.ok());
  ASSERT_OK(testing::WriteData(*engine_, d->handle, data));
  ASSERT_EQ(LookupErrno(kCreatorSibling, "gone"), 0);
  ASSERT_OK(engine_->Unlink(kRootIno, "gone"));
  EXPECT_EQ(LookupErrno(kCreator, "gone"), ENOENT);
  ASSERT_OK(engine_->Flush(d->handle, 0, kTag | kCreator));
  engine_->Release(d->handle);
  engine_->Forget(d->attr.ino, 1);
  EXPECT_EQ(LookupErrno(kCreator, "gone"), ENOENT);
  EXPECT_EQ(LookupErrno(kStranger, "gone"), ENOENT);
}

// A shell's `> key`: open, dup2, close before anything is written, then the
// command writes through the duplicate and the last close commits.
TEST_F(EngineCreatorTest, CloseOfADuplicateBeforeAnyWriteDoesNotPublishAnEmptyVersion) {
  Result<OpenResult> c = CreateAs(kCreator, "k");
  ASSERT_TRUE(c.ok());
  const uint64_t ino = c->attr.ino;
  processes_.SetHolds(kCreator, ino, true);  // the duplicate
  ASSERT_OK(engine_->Flush(c->handle, /*owner=*/7, kTag | kCreator));
  EXPECT_EQ(processes_.descriptor_calls, 1);
  EXPECT_EQ(LookupErrno(kStranger, "k"), ENOENT) << "the close of one of two descriptors published the empty file";
  const std::vector<uint8_t> data(4096, 3);
  ASSERT_OK(testing::WriteData(*engine_, c->handle, data, {.owner = 7}));
  processes_.SetHolds(kCreator, ino, false);
  ASSERT_OK(engine_->Flush(c->handle, 7, kTag | kCreator));
  EXPECT_EQ(LookupErrno(kStranger, "k"), 0) << "the last close did not commit";
  engine_->Release(c->handle);
  engine_->Forget(ino, 1);
  EXPECT_EQ(Get("k"), data);
}

TEST_F(EngineCreatorTest, CloseOfADuplicateKeepsTheOldVersionOfATruncatedKey) {
  const std::vector<uint8_t> old_data(10000, 1);
  ASSERT_TRUE(testing::PutFile(*engine_, kRootIno, "k", old_data, {.forget = true}).ok());
  Result<OpenResult> c = CreateAs(kCreator, "k");  // O_TRUNC of an existing key
  ASSERT_TRUE(c.ok());
  processes_.SetHolds(kCreator, c->attr.ino, true);
  ASSERT_OK(engine_->Flush(c->handle, 7, kTag | kCreator));
  EXPECT_EQ(Get("k"), old_data) << "the close of one of two descriptors published the truncation";
  processes_.SetHolds(kCreator, c->attr.ino, false);
  const std::vector<uint8_t> data(100, 2);
  ASSERT_OK(testing::WriteData(*engine_, c->handle, data, {.owner = 7}));
  ASSERT_OK(engine_->Flush(c->handle, 7, kTag | kCreator));
  engine_->Release(c->handle);
  engine_->Forget(c->attr.ino, 1);
  EXPECT_EQ(Get("k"), data);
}

// Two handles on one new version in one process: the one nothing was written
// through closes first while the other is still open for writing. It must
// not publish, nor hold up the commit at the other's close.
TEST_F(EngineCreatorTest, UnwrittenSecondHandleClosedFirstDoesNotHoldUpTheCommit) {
  Result<OpenResult> first = CreateAs(kCreator, "k");
  ASSERT_TRUE(first.ok());
  const uint64_t ino = first->attr.ino;
  Result<OpenResult> second = engine_->Open(ino, O_WRONLY, kTag | kCreator);  // joins the version
  ASSERT_TRUE(second.ok());
  processes_.SetHolds(kCreator, ino, true);  // the second descriptor
  ASSERT_OK(engine_->Flush(first->handle, 7, kTag | kCreator));
  EXPECT_EQ(LookupErrno(kStranger, "k"), ENOENT);
  // The kernel's release of the first handle may come after the second's
  // close: the commit must not wait for it.
  const std::vector<uint8_t> data(2048, 4);
  ASSERT_OK(testing::WriteData(*engine_, second->handle, data, {.owner = 7}));
  processes_.SetHolds(kCreator, ino, false);
  ASSERT_OK(engine_->Flush(second->handle, 7, kTag | kCreator));
  EXPECT_EQ(LookupErrno(kStranger, "k"), 0) << "the last writer's close did not commit";
  engine_->Release(first->handle);
  engine_->Release(second->handle);
  engine_->Forget(ino, 1);
  EXPECT_EQ(Get("k"), data);
}

// The shell's case without any write: `: > key` through a duplicate. The
// last close publishes the empty file.
TEST_F(EngineCreatorTest, LastCloseOfAnUnwrittenDuplicatePublishesTheEmptyFile) {
  Result<OpenResult> c = CreateAs(kCreator, "k");
  ASSERT_TRUE(c.ok());
  processes_.SetHolds(kCreator, c->attr.ino, true);
  ASSERT_OK(engine_->Flush(c->handle, 7, kTag | kCreator));
  EXPECT_EQ(LookupErrno(kStranger, "k"), ENOENT);
  processes_.SetHolds(kCreator, c->attr.ino, false);
  ASSERT_OK(engine_->Flush(c->handle, 7, kTag | kCreator));
  EXPECT_EQ(LookupErrno(kStranger, "k"), 0);
  engine_->Release(c->handle);
  engine_->Forget(c->attr.ino, 1);
}

// A forked child that inherited the descriptor exits first (`cmd > key`
// where the shell forks before the command writes): its close is another
// process's and does not commit; the release of the last one does.
TEST_F(EngineCreatorTest, CloseFromAnotherProcessBeforeAnyWriteDoesNotCommit) {
  Result<OpenResult> c = CreateAs(kCreator, "k");
  ASSERT_TRUE(c.ok());
  ASSERT_OK(engine_->Flush(c->handle, 8, kTag | kStranger));
  EXPECT_EQ(processes_.descriptor_calls, 0);
  EXPECT_EQ(LookupErrno(kStranger, "k"), ENOENT);
  engine_->Release(c->handle);  // the last descriptor went without a flush of the opener
  engine_->Forget(c->attr.ino, 1);
  EXPECT_EQ(LookupErrno(kStranger, "k"), 0);
  EXPECT_EQ(Get("k"), std::vector<uint8_t>{});
}

// creat() + close(): the ordinary case still commits at the flush, so the
// empty key is there when close returns.
TEST_F(EngineCreatorTest, CreateAndCloseCommitsAtTheFlush) {
  Result<OpenResult> c = CreateAs(kCreator, "marker");
  ASSERT_TRUE(c.ok());
  ASSERT_OK(engine_->Flush(c->handle, 7, kTag | kCreatorSibling));
  EXPECT_EQ(processes_.descriptor_calls, 1);
  EXPECT_EQ(LookupErrno(kStranger, "marker"), 0);
  engine_->Release(c->handle);
  engine_->Forget(c->attr.ino, 1);
}

// Many descriptors of one new key, nothing written, closed one by one (a
// process holding thousands of them): only the close that could commit asks
// the ProcessTable, which walks the closer's whole descriptor table.
TEST_F(EngineCreatorTest, OnlyTheLastUnwrittenCloseAsksAboutDescriptors) {
  Result<OpenResult> first = CreateAs(kCreator, "k");
  ASSERT_TRUE(first.ok());
  const uint64_t ino = first->attr.ino;
  std::vector<FileHandle*> handles{first->handle};
  for (int i = 0; i < 50; ++i) {
    Result<OpenResult> more = engine_->Open(ino, O_RDWR, kTag | kCreator);  // joins the version
    ASSERT_TRUE(more.ok());
    handles.push_back(more->handle);
  }
  for (size_t i = 0; i + 1 < handles.size(); ++i) {
    ASSERT_OK(engine_->Flush(handles[i], 7, kTag | kCreator));
    engine_->Release(handles[i]);
    EXPECT_EQ(LookupErrno(kStranger, "k"), ENOENT) << "published while " << handles.size() - i - 1 << " writers were open";
  }
  EXPECT_EQ(processes_.descriptor_calls, 0);
  ASSERT_OK(engine_->Flush(handles.back(), 7, kTag | kCreator));
  EXPECT_EQ(processes_.descriptor_calls, 1);
  EXPECT_EQ(LookupErrno(kStranger, "k"), 0) << "the last close did not commit";
  engine_->Release(handles.back());
  engine_->Forget(ino, 1);
  EXPECT_EQ(Get("k"), std::vector<uint8_t>{});
}

// A close() that reported a failed commit (ENOSPC) leaves nothing its
// creator can find, even before the kernel's RELEASE of the handle arrives.
TEST_F(EngineCreatorTest, AKeyWhoseCommitFailedIsGoneForItsCreatorToo) {
  // Everything else in the capacity (64 MiB) is leased: the commit cannot evict.
  ASSERT_TRUE(testing::PutFile(*engine_, kRootIno, "pinned", std::vector<uint8_t>(40 * kMiB, 1), {.forget = true}).ok());
  Result<Attr> pinned = engine_->Lookup(kRootIno, "pinned");
  ASSERT_TRUE(pinned.ok());
  Result<OpenResult> lease = engine_->Open(pinned->ino, O_RDONLY);
  ASSERT_TRUE(lease.ok());

  Result<OpenResult> c = CreateAs(kCreator, "k");
  ASSERT_TRUE(c.ok());
  ASSERT_OK(testing::WriteData(*engine_, c->handle, std::vector<uint8_t>(30 * kMiB, 2), {.owner = 7}));
  ASSERT_EQ(LookupErrno(kCreatorSibling, "k"), 0);
  EXPECT_EQ(engine_->Flush(c->handle, 7, kTag | kCreator).err(), ENOSPC);
  EXPECT_EQ(LookupErrno(kCreatorSibling, "k"), ENOENT) << "the creator still finds a key whose close() failed";
  engine_->Release(c->handle);
  engine_->Forget(c->attr.ino, 1);
  EXPECT_EQ(LookupErrno(kCreator, "k"), ENOENT);

  engine_->Release(lease->handle);
  engine_->Forget(pinned->ino, 1);
}

// ---------------------------------------------------------------------------
// ProcProcessTable on this very process.

TEST(ProcProcessTableTest, ThreadsOfOneProcessAreOneProcess) {
  ProcProcessTable table("/nonexistent-mount");
  const uint32_t me = static_cast<uint32_t>(gettid());
  EXPECT_TRUE(table.SameProcess(me, me));
  EXPECT_TRUE(table.SameProcess(me, static_cast<uint32_t>(getpid())));
  // A live sibling thread: ask while it runs.
  std::mutex m;
  std::unique_lock<std::mutex> hold(m);
  uint32_t sibling = 0;
  std::thread s([&] {
    sibling = static_cast<uint32_t>(gettid());
    std::lock_guard<std::mutex> wait_until_asked(m);
  });
  while (__atomic_load_n(&sibling, __ATOMIC_SEQ_CST) == 0) std::this_thread::yield();
  EXPECT_TRUE(table.SameProcess(sibling, me));
  EXPECT_TRUE(table.SameProcess(me, sibling));
  hold.unlock();
  s.join();
  EXPECT_FALSE(table.SameProcess(me, 1)) << "init is not a thread of this test";
  EXPECT_FALSE(table.SameProcess(0, me));
}

TEST(ProcProcessTableTest, FindsWritableDescriptorsBelowTheMountpointOnly) {
  testing::TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string mount = dir.Sub("mnt");
  ASSERT_EQ(mkdir(mount.c_str(), 0700), 0);
  const std::string inside = mount + "/key";
  const std::string outside = dir.Sub("elsewhere");
  int w = open(inside.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(w, 0);
  int o = open(outside.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(o, 0);
  struct stat in_st {}, out_st {};
  ASSERT_EQ(fstat(w, &in_st), 0);
  ASSERT_EQ(fstat(o, &out_st), 0);
  char resolved[4096];
  ASSERT_NE(realpath(mount.c_str(), resolved), nullptr);
  // A bound far above this test process's descriptors (the engines of
  // earlier tests may leave it holding hundreds).
  ProcProcessTable table(resolved, "/proc", 1 << 20);
  const uint32_t me = static_cast<uint32_t>(gettid());
  EXPECT_TRUE(table.HoldsWritableDescriptor(me, in_st.st_ino));
  EXPECT_FALSE(table.HoldsWritableDescriptor(me, out_st.st_ino)) << "a file outside the mount counted";
  EXPECT_FALSE(table.HoldsWritableDescriptor(me, in_st.st_ino + 1000003));
  {
    // A table larger than the bound is not walked: "no", as for one that
    // cannot be read. (The bound is checked on the kernel's count, or by
    // the walk itself where the kernel does not report one.)
    std::vector<int> extra;
    for (int i = 0; i < 16; i++) extra.push_back(open("/dev/null", O_RDONLY));
    struct stat fds {};
    ASSERT_EQ(stat("/proc/self/fd", &fds), 0);
    // The kernel's count (Linux 6.2 and later; 0 before, where the walk
    // itself stops at the bound, past descriptor `w` or not).
    if (fds.st_size > 0) {
      ProcProcessTable bounded(resolved, "/proc", static_cast<uint64_t>(fds.st_size) - 8);
      EXPECT_FALSE(bounded.HoldsWritableDescriptor(me, in_st.st_ino)) << "a table past the bound was walked";
    }
    for (int fd : extra) close(fd);
  }
  close(w);
  EXPECT_FALSE(table.HoldsWritableDescriptor(me, in_st.st_ino)) << "a closed descriptor counted";
  int r = open(inside.c_str(), O_RDONLY);
  ASSERT_GE(r, 0);
  EXPECT_FALSE(table.HoldsWritableDescriptor(me, in_st.st_ino)) << "a read-only descriptor counted";
  int rw = open(inside.c_str(), O_RDWR);
  ASSERT_GE(rw, 0);
  EXPECT_TRUE(table.HoldsWritableDescriptor(me, in_st.st_ino));
  close(rw);
  close(r);
  close(o);
  EXPECT_FALSE(table.HoldsWritableDescriptor(0, in_st.st_ino));
}

}  // namespace
}  // namespace kvfs
