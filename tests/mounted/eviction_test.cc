// Eviction through a real mount: concurrent writers push three times the
// capacity through the mount while a sampler watches the store's bytes on
// disk; a file held open survives byte-exact; with everything pinned a new
// write fails with ENOSPC at close(); evicted names are gone from stat and
// readdir; deleting everything returns used_bytes to 0; and on a small tmpfs
// the free-space floor holds while another process fills the drive.
//
// All processes synchronise through pipes (Channel). The only timed waits are
// bounded polls for the background evictor and for the daemon to process a
// RELEASE that the kernel sends after close() has returned.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

constexpr uint64_t kKiB = 1024;

// Upper bound of the bytes one object of `size` data bytes takes on a store:
// a header block, the data rounded up to 4 KiB, and room for per-chunk
// metadata (generous, so the bound does not depend on the exact layout).
uint64_t FootprintBound(uint64_t size) { return 4096 + (size + 4095) / 4096 * 4096 + 64 * kKiB; }

// Bytes the files under store/objects and store/staging occupy on the
// filesystem (st_blocks x 512). Files that vanish during the walk are skipped.
uint64_t StoreDiskBytes(const std::string& store) {
  uint64_t total = 0;
  // staging first, then objects: a file renamed from staging into objects
  // during the walk is missed rather than counted twice.
  for (const char* sub : {"/staging", "/objects"}) {
    std::error_code ec;
    std::filesystem::recursive_directory_iterator it(store + sub, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      struct stat st;
      if (lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) total += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  return total;
}

uint64_t FsFree(const std::string& path) {
  struct statvfs sv;
  if (statvfs(path.c_str(), &sv) != 0) return 0;
  return static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
}

// Writes path (O_CREAT|O_TRUNC) and closes it. Returns 0, or the errno of the
// first failing call; *stage says which call.
int WriteObject(const std::string& path, const std::vector<uint8_t>& data, std::string* stage) {
  Fd fd(open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) {
    *stage = "open";
    return errno;
  }
  for (size_t off = 0; off < data.size();) {
    size_t n = std::min<size_t>(kMiB, data.size() - off);
    ssize_t w = write(fd.get(), data.data() + off, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      *stage = "write at " + std::to_string(off);
      return w < 0 ? errno : EIO;
    }
    off += static_cast<size_t>(w);
  }
  if (fd.Close() != 0) {
    *stage = "close";
    return errno;
  }
  *stage = "";
  return 0;
}

uint64_t Member(const JsonValue& v, std::string_view key) {
  const JsonValue* m = v.Find(key);
  return m ? m->AsU64() : ~0ULL;
}

// A child that opens every path (checking its bytes), reports "holding", and
// re-checks them through the open descriptors on every "check" until "done".
ChildProcess::Body HoldFiles(std::vector<std::string> paths, std::vector<std::vector<uint8_t>> want) {
  return [paths = std::move(paths), want = std::move(want)](Channel& ch) -> std::string {
    std::vector<Fd> fds;
    for (size_t i = 0; i < paths.size(); ++i) {
      Fd fd(open(paths[i].c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid()) return ErrnoMessage("open " + paths[i]);
      std::string err = CheckFd(fd.get(), want[i]);
      if (!err.empty()) return paths[i] + ": " + err;
      fds.push_back(std::move(fd));
    }
    ch.Send("holding");
    for (;;) {
      auto msg = ch.Recv();
      if (!msg) return "no message from the parent";
      if (*msg == "done") break;
      std::string result = "same";
      for (size_t i = 0; i < fds.size() && result == "same"; ++i) {
        std::string err = CheckFd(fds[i].get(), want[i]);
        if (!err.empty()) result = paths[i] + " through the held descriptor: " + err;
      }
      ch.Send(result);
    }
    return "ok";
  };
}

// ---------------------------------------------------------------------------
// (a) + (b): a write storm of 3x the capacity.

constexpr uint64_t kStormCapacity = 64 * kMiB;
constexpr int kWriters = 3;
constexpr uint64_t kMaxObject = 4 * kMiB;

class EvictionStormTest : public MountedTest {
 protected:
  std::vector<std::string> ExtraMountArgs() const override { return {"--capacity", "64M"}; }
};

// Object i of writer w: sizes from 64 KiB to 4 MiB, some unaligned.
size_t StormSize(int w, int i) {
  static const size_t kSizes[] = {64 * kKiB,      256 * kKiB + 13, kMiB,          kMaxObject,      512 * kKiB + 1,
                                  2 * kMiB + 4095, 3 * kMiB,        128 * kKiB - 1, kMaxObject - 7, 768 * kKiB};
  return kSizes[(i * 7 + w * 3) % std::size(kSizes)];
}
uint64_t StormSeed(int w, int i) { return 100000 + w * 1000 + i; }
std::string StormName(int w, int i) { return "w" + std::to_string(w) + "-" + std::to_string(i); }

TEST_F(EvictionStormTest, ThreeWritersThreeTimesCapacityStayWithinCapacity) {
  // (b) A file opened before the storm by another process.
  const std::vector<uint8_t> held = MakeData(7, 3 * kMiB + 7);
  ASSERT_EQ(WriteFile(P("held"), held), "");
  ChildProcess holder(HoldFiles({P("held")}, {held}));
  ASSERT_EQ(holder.channel().Expect("holding"), "");

  // The sampler measures the store's bytes on disk until told to stop.
  const std::string store = store_path();
  const uint64_t bound = kStormCapacity + kWriters * FootprintBound(kMaxObject);
  ChildProcess sampler([store, bound](Channel& ch) -> std::string {
    uint64_t max_seen = 0, samples = 0;
    std::string violation;
    ch.Send("sampling");
    for (;;) {
      uint64_t bytes = StoreDiskBytes(store);
      ++samples;
      max_seen = std::max(max_seen, bytes);
      if (bytes > bound && violation.empty()) {
        violation = "store held " + std::to_string(bytes) + " bytes > bound " + std::to_string(bound) +
                    " at sample " + std::to_string(samples);
      }
      // Waits up to 2 ms for "stop": the pace of sampling, not a synchronisation.
      auto msg = ch.Recv(2);
      if (msg && *msg == "stop") break;
    }
    ch.Send(std::to_string(max_seen) + " " + std::to_string(samples));
    return violation.empty() ? "ok" : violation;
  });
  ASSERT_EQ(sampler.channel().Expect("sampling"), "");

  // Three writers, each writing a third of 3x the capacity.
  std::vector<std::unique_ptr<ChildProcess>> writers;
  std::vector<int> counts(kWriters, 0);
  for (int w = 0; w < kWriters; ++w) {
    uint64_t share = 0;
    int n = 0;
    while (share < kStormCapacity) share += StormSize(w, n++);
    counts[w] = n;
    std::string mnt_dir = mnt();
    writers.push_back(std::make_unique<ChildProcess>([w, n, mnt_dir](Channel& ch) -> std::string {
      if (auto go = ch.Recv(); !go || *go != "go") return "no go";
      for (int i = 0; i < n; ++i) {
        std::string stage;
        int err = WriteObject(mnt_dir + "/" + StormName(w, i), MakeData(StormSeed(w, i), StormSize(w, i)), &stage);
        if (err != 0) return StormName(w, i) + ": " + stage + ": " + ErrnoName(err);
      }
      return "ok";
    }));
  }
  auto start = std::chrono::steady_clock::now();
  for (auto& w : writers) w->channel().Send("go");
  for (int w = 0; w < kWriters; ++w) EXPECT_EQ(writers[w]->Wait().Summary(), "ok") << "writer " << w;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  sampler.channel().Send("stop");
  std::string sampled = sampler.channel().Recv().value_or("?");
  EXPECT_EQ(sampler.Wait().Summary(), "ok") << "capacity " << kStormCapacity;
  uint64_t total = 0;
  for (int w = 0; w < kWriters; ++w) {
    for (int i = 0; i < counts[w]; ++i) total += StormSize(w, i);
  }
  std::cout << "[ storm    ] " << total / kMiB << " MiB in " << secs << " s; sampler max bytes / samples: " << sampled
            << std::endl;

  JsonValue stats;
  ASSERT_NO_FATAL_FAILURE(Stats(&stats));
  EXPECT_LE(Member(stats, "used_bytes"), kStormCapacity);
  EXPECT_EQ(Member(stats, "capacity_bytes"), kStormCapacity);
  const JsonValue* ev = stats.Find("evictions");
  ASSERT_NE(ev, nullptr);
  EXPECT_GT(Member(*ev, "total"), 0u);
  EXPECT_EQ(Member(stats, "enospc"), 0u) << "nothing was pinned but one 3 MiB file";
  EXPECT_LE(StoreDiskBytes(store), kStormCapacity);

  // (b) The held file, through its descriptor and by name.
  holder.channel().Send("check");
  EXPECT_EQ(holder.channel().Recv().value_or("timeout"), "same");
  EXPECT_EQ(CheckFile(P("held"), held), "");
  holder.channel().Send("done");
  EXPECT_EQ(holder.Wait().Summary(), "ok");

  // Let the background evictor finish its pass (it starts above the 0.95
  // high watermark and goes down to 0.90), so that the listing below stays
  // valid while it is checked: quiet means under the high watermark with no
  // eviction for 300 ms (three evictor periods).
  auto eviction_total = [](const JsonValue& v) {
    const JsonValue* e = v.Find("evictions");
    return e ? Member(*e, "total") : ~0ULL;
  };
  EXPECT_TRUE(PollUntil(
      [&] {
        JsonValue a, b;
        Stats(&a);
        if (Member(a, "used_bytes") > kStormCapacity * 95 / 100) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        Stats(&b);
        return eviction_total(a) == eviction_total(b);
      },
      30000))
      << "the background evictor did not settle";
  ASSERT_NO_FATAL_FAILURE(Stats(&stats));

  // Every survivor is byte-exact; everything else is gone.
  std::vector<std::string> names;
  ASSERT_EQ(ListDir(mnt(), &names), "");
  std::set<std::string> listed(names.begin(), names.end());
  size_t survivors = 0;
  for (int w = 0; w < kWriters; ++w) {
    for (int i = 0; i < counts[w]; ++i) {
      std::string name = StormName(w, i);
      if (!listed.count(name)) {
        EXPECT_EQ(ErrnoName(StatErrno(P(name))), "ENOENT") << name;
        continue;
      }
      ++survivors;
      EXPECT_EQ(CheckFile(P(name), MakeData(StormSeed(w, i), StormSize(w, i))), "") << name;
    }
  }
  EXPECT_GT(survivors, 0u);
  EXPECT_EQ(Member(stats, "objects"), survivors + 1) << "survivors plus the held file";
}

// ---------------------------------------------------------------------------
// (c), (d), (e): no background eviction (watermarks at 1.0), so that what is
// evicted is decided by the writes alone and the state is stable once they
// stop.

constexpr uint64_t kSmallCapacity = 16 * kMiB;

class EvictionStableTest : public MountedTest {
 protected:
  std::vector<std::string> ExtraMountArgs() const override {
    return {"--capacity", "16M", "--high-watermark", "1.0", "--low-watermark", "1.0"};
  }
  JsonValue St() {
    JsonValue s;
    Stats(&s);
    return s;
  }
  uint64_t Evictions() {
    JsonValue s = St();
    const JsonValue* ev = s.Find("evictions");
    return ev ? Member(*ev, "total") : ~0ULL;
  }
};

std::vector<uint8_t> Obj(int i) { return MakeData(5000 + i, kMiB); }

// (c) Every object that fits is held open: a new write's close() fails with
// ENOSPC, the pinned objects are intact, and after they are closed a write
// succeeds.
TEST_F(EvictionStableTest, AllPinnedWriteFailsWithEnospcAtClose) {
  int n = 0;
  while (Evictions() == 0) {
    ASSERT_LT(n, 64) << "no eviction after " << n << " MiB in a 16 MiB mount";
    ASSERT_EQ(WriteFile(P("p" + std::to_string(n)), Obj(n)), "") << n;
    ++n;
  }
  // Hold open every object still there.
  std::vector<std::string> names;
  ASSERT_EQ(ListDir(mnt(), &names), "");
  std::vector<std::string> paths;
  std::vector<std::vector<uint8_t>> want;
  for (const std::string& name : names) {
    paths.push_back(P(name));
    want.push_back(Obj(std::stoi(name.substr(1))));
  }
  ASSERT_GE(paths.size(), 10u);
  ChildProcess holder(HoldFiles(paths, want));
  ASSERT_EQ(holder.channel().Expect("holding"), "");
  JsonValue before = St();
  EXPECT_GE(Member(before, "pinned_bytes"), Member(before, "used_bytes"));
  EXPECT_GE(Member(before, "leased_bytes"), paths.size() * kMiB);

  std::string stage;
  int err = WriteObject(P("new"), MakeData(6000, kMiB), &stage);
  EXPECT_EQ(ErrnoName(err), "ENOSPC") << "stage: " << stage;
  EXPECT_EQ(stage, "close") << "the write fits the capacity; its commit at close() must be what fails";
  EXPECT_EQ(ErrnoName(StatErrno(P("new"))), "ENOENT");
  JsonValue after = St();
  EXPECT_GT(Member(after, "enospc"), Member(before, "enospc"));
  EXPECT_LE(Member(after, "used_bytes"), kSmallCapacity);

  // Replacing a pinned object fails the same way and leaves it intact.
  err = WriteObject(paths[0], MakeData(6001, kMiB), &stage);
  EXPECT_EQ(ErrnoName(err), "ENOSPC") << "stage: " << stage;

  holder.channel().Send("check");
  EXPECT_EQ(holder.channel().Recv().value_or("timeout"), "same");
  for (size_t i = 0; i < paths.size(); ++i) EXPECT_EQ(CheckFile(paths[i], want[i]), "") << paths[i];
  std::vector<std::string> names_after;
  ASSERT_EQ(ListDir(mnt(), &names_after), "");
  EXPECT_EQ(std::set<std::string>(names_after.begin(), names_after.end()),
            std::set<std::string>(names.begin(), names.end()));
  holder.channel().Send("done");
  EXPECT_EQ(holder.Wait().Summary(), "ok");

  // Unpinned (the daemon sees the RELEASEs shortly after the holder exits).
  ASSERT_TRUE(PollUntil([&] { return Member(St(), "leased_bytes") == 0; }, 10000)) << "leases never went away";
  EXPECT_EQ(WriteFile(P("new"), MakeData(6002, kMiB)), "");
  EXPECT_EQ(CheckFile(P("new"), MakeData(6002, kMiB)), "");
  EXPECT_LE(Member(St(), "used_bytes"), kSmallCapacity);
}

// (d) Once evictions happened, a name is listed by readdir exactly when stat
// finds it; evicted names give ENOENT, also in a subdirectory and after the
// kernel has cached them. (e) Deleting everything returns used_bytes to 0.
TEST_F(EvictionStableTest, EvictedNamesAreGoneAndDeletingEverythingReturnsUsedToZero) {
  ASSERT_EQ(mkdir(P("sub").c_str(), 0755), 0) << ErrnoMessage("mkdir sub");
  std::vector<std::string> written;
  auto path_of = [&](int i) { return (i % 2 ? P("sub/k") : P("k")) + std::to_string(i); };
  int i = 0;
  for (; i < 64; ++i) {
    ASSERT_EQ(WriteFile(path_of(i), Obj(i)), "") << i;
    written.push_back(path_of(i));
    // Every name written so far is looked up again, so that the kernel holds
    // positive entries for names that get evicted later.
    for (int j = 0; j <= i; ++j) (void)StatErrno(path_of(j));
    if (i >= 24 && Evictions() > 0) break;
  }
  ASSERT_LT(i, 64) << "no evictions";
  uint64_t evictions = Evictions();
  ASSERT_GT(evictions, 0u);

  std::set<std::string> listed;
  for (const std::string& dir : {mnt(), P("sub")}) {
    std::vector<std::string> names;
    ASSERT_EQ(ListDir(dir, &names), "");
    for (const std::string& n : names) listed.insert(dir + "/" + n);
  }
  size_t missing = 0;
  for (size_t k = 0; k < written.size(); ++k) {
    const std::string& path = written[k];
    int err = StatErrno(path);
    if (listed.count(path)) {
      EXPECT_EQ(ErrnoName(err), "OK") << path << " is listed but stat fails";
      EXPECT_EQ(CheckFile(path, Obj(static_cast<int>(k))), "") << path;
    } else {
      ++missing;
      EXPECT_EQ(ErrnoName(err), "ENOENT") << path << " is not listed but stat finds it";
      Fd fd(open(path.c_str(), O_RDONLY));
      EXPECT_FALSE(fd.valid()) << path << " is not listed but opens";
    }
  }
  for (const std::string& path : listed) {
    if (path == P("sub")) continue;
    EXPECT_TRUE(std::find(written.begin(), written.end(), path) != written.end()) << "unexpected name " << path;
  }
  EXPECT_EQ(missing, evictions) << "every missing name should be one eviction";
  EXPECT_GT(missing, 0u);

  // (e) Delete everything, with one file held open while it is unlinked.
  std::string held_path;
  for (const std::string& path : listed) {
    if (path != P("sub")) held_path = path;
  }
  ASSERT_FALSE(held_path.empty());
  int held_index = static_cast<int>(std::find(written.begin(), written.end(), held_path) - written.begin());
  ChildProcess holder(HoldFiles({held_path}, {Obj(held_index)}));
  ASSERT_EQ(holder.channel().Expect("holding"), "");
  for (const std::string& path : listed) {
    if (path == P("sub")) continue;
    EXPECT_EQ(unlink(path.c_str()), 0) << ErrnoMessage("unlink " + path);
  }
  EXPECT_EQ(rmdir(P("sub").c_str()), 0) << ErrnoMessage("rmdir sub");
  std::vector<std::string> left;
  ASSERT_EQ(ListDir(mnt(), &left), "");
  EXPECT_TRUE(left.empty()) << left.size() << " names left, first " << left.front();
  JsonValue s = St();
  EXPECT_GT(Member(s, "used_bytes"), 0u) << "the held, unlinked file still takes its space";
  holder.channel().Send("check");
  EXPECT_EQ(holder.channel().Recv().value_or("timeout"), "same");
  holder.channel().Send("done");
  EXPECT_EQ(holder.Wait().Summary(), "ok");
  EXPECT_TRUE(PollUntil([&] { return Member(St(), "used_bytes") == 0; }, 10000))
      << "used_bytes stayed at " << Member(St(), "used_bytes") << " after everything was deleted";
  s = St();
  EXPECT_EQ(Member(s, "objects"), 0u);
  EXPECT_EQ(Member(s, "leased_bytes"), 0u);
  // A removed object's file leaves objects/ at once and is unlinked by the
  // store's background unlinker (its bytes count against the capacity
  // until then): the store's disk use reaches zero shortly after.
  EXPECT_TRUE(PollUntil([&] { return StoreDiskBytes(store_path()) == 0; }, 10000))
      << "the store still holds " << StoreDiskBytes(store_path()) << " bytes after everything was deleted";
  char buf[64] = {};
  ssize_t n = getxattr(mnt().c_str(), "user.kvfs.used", buf, sizeof(buf) - 1);
  ASSERT_GT(n, 0) << ErrnoMessage("getxattr user.kvfs.used");
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "0");
}

// ---------------------------------------------------------------------------
// (f) The free-space floor, with the store on a 64 MiB tmpfs.

constexpr uint64_t kFsBytes = 64 * kMiB;
constexpr uint64_t kFloor = 16 * kMiB;

class EvictionFloorTest : public MountedTest {
 protected:
  std::vector<std::string> ExtraMountArgs() const override {
    // The log goes outside the tmpfs, so that only kvfs's objects and the
    // filler take its space.
    return {"--capacity", "32M", "--min-free", "16M", "--log-file", root() + "/kvfs.log"};
  }
  void SetUp() override {
    // The fixture mounts on a store folder on the ordinary disk; put a tmpfs
    // over that folder and mount again on an empty store there.
    ASSERT_NO_FATAL_FAILURE(MountedTest::SetUp());
    ASSERT_EQ(Unmount(), "");
    if (mount("tmpfs", store_path().c_str(), "tmpfs", 0, "size=64m") != 0) {
      int err = errno;
      ASSERT_EQ(Mount(), "");
      GTEST_SKIP() << "cannot mount a tmpfs here: " << strerror(err);
    }
    tmpfs_mounted_ = true;
    ASSERT_EQ(Mount(), "");
  }
  void TearDown() override {
    if (IsKvfsMounted(mnt())) {
      std::string err = Unmount();
      if (!err.empty()) ADD_FAILURE() << err;
    }
    if (tmpfs_mounted_ && umount2(store_path().c_str(), 0) != 0) {
      ADD_FAILURE() << ErrnoMessage("umount " + store_path());
      umount2(store_path().c_str(), MNT_DETACH);
    }
    MountedTest::TearDown();
  }
  uint64_t Free() const { return FsFree(store_path()); }
  std::string FillerPath() const { return store_path() + "/filler.plain"; }

  bool tmpfs_mounted_ = false;
};

// Progress of the filler, shared with the writer through anonymous shared
// memory: `started` grows before each chunk is written, `done` after.
struct FillerProgress {
  std::atomic<uint64_t> started{0};
  std::atomic<uint64_t> done{0};
};

TEST_F(EvictionFloorTest, FloorHoldsWhileAnotherProcessFillsTheDrive) {
  JsonValue s;
  ASSERT_NO_FATAL_FAILURE(Stats(&s));
  ASSERT_NE(s.Find("stores"), nullptr);
  ASSERT_EQ(s.Find("stores")->items.size(), 1u);
  EXPECT_EQ(Member(s.Find("stores")->items[0], "floor_bytes"), kFloor);
  EXPECT_EQ(Member(s.Find("stores")->items[0], "fs_total_bytes"), kFsBytes);

  // kvfs holds 16 MiB before the filler starts.
  for (int i = 0; i < 16; ++i) ASSERT_EQ(WriteFile(P("pre" + std::to_string(i)), Obj(i)), "") << i;
  ASSERT_GT(Free(), kFloor + 16 * kMiB);

  void* shared = mmap(nullptr, sizeof(FillerProgress), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(shared, MAP_FAILED) << ErrnoMessage("mmap");
  auto* progress = new (shared) FillerProgress;

  // The writer paces the filler through a pipe of its own: one tick as it
  // starts each object, and the filler writes one chunk per tick while the
  // writer goes on with that object (the writer never waits for the filler).
  int ticks[2];
  ASSERT_EQ(pipe2(ticks, O_CLOEXEC), 0) << ErrnoMessage("pipe2");

  // The filler writes 28 MiB into a plain file on the tmpfs, 1 MiB per tick.
  constexpr uint64_t kFill = 28 * kMiB;
  const std::string filler_path = FillerPath();
  ChildProcess filler([progress, filler_path, ticks](Channel& ch) -> std::string {
    Channel from_writer(ticks[0], -1);
    close(ticks[1]);
    if (auto go = ch.Recv(); !go || *go != "go") return "no go";
    Fd fd(open(filler_path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid()) return ErrnoMessage("open filler");
    std::vector<uint8_t> chunk = MakeData(1, kMiB);
    for (uint64_t off = 0; off < kFill; off += kMiB) {
      if (!from_writer.Recv()) return "no tick from the writer at " + std::to_string(off);
      progress->started.store(off + kMiB);
      if (pwrite(fd.get(), chunk.data(), kMiB, static_cast<off_t>(off)) != static_cast<ssize_t>(kMiB)) {
        return ErrnoMessage("filler pwrite at " + std::to_string(off));
      }
      progress->done.store(off + kMiB);
    }
    return "ok";
  });

  // One kvfs writer, concurrently: after every close(), free space is at or
  // above the floor, give or take what the filler wrote meanwhile.
  const std::string mnt_path = mnt();
  const std::string fs = store_path();
  ChildProcess writer([progress, mnt_path, fs, ticks](Channel& ch) -> std::string {
    Channel to_filler(-1, ticks[1]);
    close(ticks[0]);
    if (auto go = ch.Recv(); !go || *go != "go") return "no go";
    int ok = 0, enospc = 0, overlapped = 0;
    uint64_t min_free = UINT64_MAX;
    for (int i = 0; i < 40; ++i) {
      uint64_t done_before = progress->done.load();
      to_filler.Send("tick");  // fails quietly once the filler is done
      std::string stage;
      int err = WriteObject(mnt_path + "/f" + std::to_string(i), Obj(100 + i), &stage);
      uint64_t free_after = FsFree(fs);
      uint64_t started_after = progress->started.load();
      if (err == ENOSPC && stage == "close") {
        ++enospc;
      } else if (err != 0) {
        return "f" + std::to_string(i) + ": " + stage + ": " + ErrnoName(err);
      } else {
        ++ok;
      }
      uint64_t filler_growth = started_after - done_before;
      min_free = std::min(min_free, free_after);
      if (filler_growth > 0) ++overlapped;
      if (free_after + filler_growth < kFloor) {
        return "after f" + std::to_string(i) + " free space is " + std::to_string(free_after) +
               ", below the floor by more than the filler's " + std::to_string(filler_growth) + " bytes";
      }
    }
    ch.Send(std::to_string(ok) + " written, " + std::to_string(enospc) + " ENOSPC, " + std::to_string(overlapped) +
            " overlapped the filler, min free after a close " + std::to_string(min_free >> 10) + " KiB");
    return "ok";
  });

  close(ticks[0]);
  close(ticks[1]);
  filler.channel().Send("go");
  writer.channel().Send("go");
  EXPECT_EQ(filler.Wait().Summary(), "ok");
  std::string writer_counts = writer.channel().Recv().value_or("?");
  EXPECT_EQ(writer.Wait().Summary(), "ok");
  std::cout << "[ floor    ] writer: " << writer_counts << std::endl;

  // The filler is done: the background evictor brings free space back to the
  // floor by evicting kvfs's own objects.
  EXPECT_TRUE(PollUntil([&] { return Free() >= kFloor; }, 20000)) << "free space stayed at " << Free();
  ASSERT_NO_FATAL_FAILURE(Stats(&s));
  EXPECT_LE(Member(s, "used_bytes"), kFsBytes - kFill - kFloor);
  uint64_t floor_evictions = Member(*s.Find("evictions"), "floor");
  EXPECT_GT(floor_evictions, 0u);
  std::cout << "[ floor    ] floor evictions " << floor_evictions << ", used " << Member(s, "used_bytes") / kKiB
            << " KiB, free " << Free() / kKiB << " KiB (floor " << kFloor / kKiB << " KiB)" << std::endl;

  // The filler grows by 6 MiB more: free space drops under the floor, and
  // kvfs evicts its own objects to restore it (the background evictor may
  // already be at work while the filler writes).
  const uint64_t free_before = Free();
  const uint64_t used_before = Member(s, "used_bytes");
  ASSERT_GE(free_before, kFloor);
  ASSERT_LT(free_before - kFloor, 6 * kMiB);
  {
    Fd fd(open(FillerPath().c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    std::vector<uint8_t> chunk = MakeData(2, 6 * kMiB);
    ASSERT_EQ(write(fd.get(), chunk.data(), chunk.size()), static_cast<ssize_t>(chunk.size()));
  }
  EXPECT_TRUE(PollUntil([&] { return Free() >= kFloor; }, 20000)) << "free space stayed at " << Free();
  ASSERT_NO_FATAL_FAILURE(Stats(&s));
  EXPECT_GT(Member(*s.Find("evictions"), "floor"), floor_evictions);
  EXPECT_GE(used_before - Member(s, "used_bytes"), 6 * kMiB - (free_before - kFloor))
      << "kvfs must have given back what the filler took below the floor";

  // Whatever kvfs still holds is byte-exact.
  std::vector<std::string> names;
  ASSERT_EQ(ListDir(mnt(), &names), "");
  EXPECT_FALSE(names.empty());
  for (const std::string& n : names) {
    int idx = std::stoi(n.substr(n[0] == 'p' ? 3 : 1));
    EXPECT_EQ(CheckFile(P(n), Obj(n[0] == 'p' ? idx : 100 + idx)), "") << n;
  }
  munmap(shared, sizeof(FillerProgress));
}

}  // namespace
}  // namespace kvfs::mounted_test
