// The rest of the POSIX surface an engine or an operator touches: a
// read-write handle sees its own writes, ftruncate and truncate, read-only
// mmap, statfs.

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

class PosixSurfaceTest : public MountedTest {};

std::string PwriteAll(int fd, const std::vector<uint8_t>& data, size_t offset) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) return ErrnoMessage("pwrite at " + std::to_string(offset + done));
    done += static_cast<size_t>(n);
  }
  return "";
}

// open(O_CREAT) without write access creates the (empty) file, as POSIX
// says; an existing key opened that way keeps its bytes.
TEST_F(PosixSurfaceTest, CreateWithoutWriteAccessCreatesAnEmptyFile) {
  const std::string path = P("made-read-only");
  Fd fd(open(path.c_str(), O_CREAT | O_RDONLY, 0640));
  ASSERT_TRUE(fd.valid()) << ErrnoMessage("open(O_CREAT|O_RDONLY)");
  char c;
  EXPECT_EQ(read(fd.get(), &c, 1), 0);
  ASSERT_EQ(fd.Close(), 0);
  EXPECT_EQ(RunInChild([&] {
              struct stat st {};
              if (stat(path.c_str(), &st) != 0) return ErrnoMessage("stat");
              if (st.st_size != 0) return "size " + std::to_string(st.st_size);
              if ((st.st_mode & 07777) != 0640) return "mode " + std::to_string(st.st_mode & 07777);
              return std::string("ok");
            }).Summary(),
            "ok");
  const std::vector<uint8_t> data = MakeData(31, 5000);
  ASSERT_EQ(WriteFile(path, data), "");
  Fd again(open(path.c_str(), O_CREAT | O_RDONLY, 0640));
  ASSERT_TRUE(again.valid()) << ErrnoMessage("open existing with O_CREAT|O_RDONLY");
  ASSERT_EQ(again.Close(), 0);
  EXPECT_EQ(CheckFile(path, data), "");
}

// A descriptor keeps its file after an unlink, also for the kernel's own
// reopens of the inode: /proc/self/fd/N, and the open behind FS_IOC_GETFLAGS
// (lsattr, chattr), which kvfs answers with ENOTTY, never ESTALE.
TEST_F(PosixSurfaceTest, UnlinkedFileStaysOpenableThroughItsDescriptor) {
  struct Case {
    std::string name;
    int flags;
    std::vector<uint8_t> data;  // committed before the open; empty: created by it
  };
  const std::vector<Case> cases = {{"made-read-only", O_CREAT | O_RDONLY, {}},
                                   {"existing-read-only", O_RDONLY, MakeData(41, 3000)},
                                   {"existing-read-write", O_CREAT | O_RDWR, MakeData(42, 3000)},
                                   {"existing-write-only", O_WRONLY, MakeData(44, 3000)},
                                   {"existing-write-only-created", O_CREAT | O_WRONLY, MakeData(45, 3000)}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = P(c.name);
    if (!c.data.empty()) {
      ASSERT_EQ(WriteFile(path, c.data), "");
    }
    Fd fd(open(path.c_str(), c.flags, 0600));
    ASSERT_TRUE(fd.valid()) << ErrnoMessage("open");
    ASSERT_EQ(RunInChild([&] { return unlink(path.c_str()) == 0 ? std::string("ok") : ErrnoMessage("unlink"); }).Summary(),
              "ok");
    long flags = 0;
    ASSERT_EQ(ioctl(fd.get(), FS_IOC_GETFLAGS, &flags), -1);
    EXPECT_EQ(errno, ENOTTY) << ErrnoMessage("FS_IOC_GETFLAGS");
    const std::string again_path = "/proc/self/fd/" + std::to_string(fd.get());
    Fd again(open(again_path.c_str(), O_RDONLY));
    ASSERT_TRUE(again.valid()) << ErrnoMessage("reopen through " + again_path);
    std::vector<uint8_t> got(c.data.size() + 1);
    ssize_t n = pread(again.get(), got.data(), got.size(), 0);
    ASSERT_EQ(n, static_cast<ssize_t>(c.data.size())) << ErrnoMessage("pread");
    got.resize(static_cast<size_t>(n));
    EXPECT_EQ(got, c.data);
  }
}

// fallocate(2) through the mount: posix_fallocate grows a new file (one
// request, not glibc's byte-per-block emulation), a punched hole reads as
// zeros at once through the writer's page cache, and another process sees
// the result after the close.
TEST_F(PosixSurfaceTest, FallocateGrowsAndPunches) {
  const std::string path = P("preallocated");
  Fd fd(open(path.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0644));
  ASSERT_TRUE(fd.valid()) << ErrnoMessage("open");
  std::vector<uint8_t> want = MakeData(43, 300000);
  ASSERT_EQ(PwriteAll(fd.get(), want, 0), "");
  ASSERT_EQ(posix_fallocate(fd.get(), 0, 16 << 20), 0);
  want.resize(16 << 20, 0);
  struct stat st {};
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, 16 << 20);
  ASSERT_EQ(fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1000, 9000), 0) << ErrnoMessage("punch");
  std::fill(want.begin() + 1000, want.begin() + 10000, 0);
  std::vector<uint8_t> got(12000);
  ASSERT_EQ(pread(fd.get(), got.data(), got.size(), 0), static_cast<ssize_t>(got.size()));
  EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin())) << "the writer reads stale bytes over the hole";
  EXPECT_EQ(fallocate(fd.get(), FALLOC_FL_COLLAPSE_RANGE, 0, 4096), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  ASSERT_EQ(fd.Close(), 0);
  EXPECT_EQ(RunInChild([&] { return CheckFile(path, want).empty() ? std::string("ok") : CheckFile(path, want); }).Summary(),
            "ok");
}

TEST_F(PosixSurfaceTest, ReadWriteHandleReadsItsOwnUnflushedWrites) {
  const std::string path = P("rw");
  Fd fd(open(path.c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.valid()) << ErrnoMessage("open O_RDWR");
  auto expected = MakeData(1, 2 * kMiB + 100);
  ASSERT_EQ(PwriteAll(fd.get(), expected, 0), "");
  EXPECT_EQ(CheckFd(fd.get(), expected), "") << "after the first write";

  // Overwrite a range straddling a 1 MiB boundary, and write past the end
  // (leaving a hole that reads as zeros).
  const auto patch = MakeData(2, 9000);
  ASSERT_EQ(PwriteAll(fd.get(), patch, kMiB - 4000), "");
  std::copy(patch.begin(), patch.end(), expected.begin() + (kMiB - 4000));
  const auto tail = MakeData(3, 555);
  const size_t tail_at = expected.size() + 10000;
  ASSERT_EQ(PwriteAll(fd.get(), tail, tail_at), "");
  expected.resize(tail_at, 0);
  expected.insert(expected.end(), tail.begin(), tail.end());
  EXPECT_EQ(CheckFd(fd.get(), expected), "") << "after patch and sparse append";
  struct stat st {};
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_EQ(static_cast<size_t>(st.st_size), expected.size());

  // ftruncate shrinks and grows the draft.
  ASSERT_EQ(ftruncate(fd.get(), 3000), 0) << ErrnoMessage("ftruncate shrink");
  expected.resize(3000);
  EXPECT_EQ(CheckFd(fd.get(), expected), "") << "after ftruncate(3000)";
  ASSERT_EQ(ftruncate(fd.get(), 9000), 0) << ErrnoMessage("ftruncate grow");
  expected.resize(9000, 0);
  EXPECT_EQ(CheckFd(fd.get(), expected), "") << "after ftruncate(9000)";

  // Still invisible to others; after close, everyone sees the final bytes.
  EXPECT_EQ(RunInChild([&] { return ErrnoName(StatErrno(path)); }).Summary(), "ENOENT");
  ASSERT_EQ(fd.Close(), 0) << ErrnoMessage("close");
  EXPECT_EQ(RunInChild([&] {
              std::string e = CheckFile(path, expected);
              return e.empty() ? "ok" : e;
            }).Summary(),
            "ok");
}

TEST_F(PosixSurfaceTest, AppendAndTruncateOfCommittedObject) {
  const std::string path = P("grow");
  auto expected = MakeData(10, 70000);
  ASSERT_EQ(WriteFile(path, expected), "");
  // O_APPEND onto a committed object makes a new version (copy-on-write).
  {
    Fd fd(open(path.c_str(), O_WRONLY | O_APPEND));
    ASSERT_TRUE(fd.valid()) << ErrnoMessage("open O_APPEND");
    const auto extra = MakeData(12, 12345);
    ASSERT_EQ(write(fd.get(), extra.data(), extra.size()), static_cast<ssize_t>(extra.size()));
    ASSERT_EQ(fd.Close(), 0);
    expected.insert(expected.end(), extra.begin(), extra.end());
  }
  EXPECT_EQ(RunInChild([&] {
              std::string e = CheckFile(path, expected);
              return e.empty() ? "ok" : e;
            }).Summary(),
            "ok");
  // truncate(path) of a committed object.
  ASSERT_EQ(truncate(path.c_str(), 4097), 0) << ErrnoMessage("truncate");
  expected.resize(4097);
  EXPECT_EQ(RunInChild([&] {
              std::string e = CheckFile(path, expected);
              if (e.empty()) e = CheckFileDirect(path, expected);
              return e.empty() ? "ok" : e;
            }).Summary(),
            "ok");
  ASSERT_EQ(truncate(path.c_str(), 0), 0) << ErrnoMessage("truncate 0");
  EXPECT_EQ(CheckFile(path, {}), "");
}

TEST_F(PosixSurfaceTest, ReadOnlyMmapReturnsCommittedBytes) {
  for (size_t size : {size_t{1}, size_t{4096}, kMiB + 123, 9 * kMiB + 4095}) {
    SCOPED_TRACE("size " + std::to_string(size));
    const std::string path = P("mapped_" + std::to_string(size));
    const auto data = MakeData(20 + size, size);
    ASSERT_EQ(WriteFile(path, data), "");
    auto check_maps = [&]() -> std::string {
      Fd fd(open(path.c_str(), O_RDONLY));
      if (!fd.valid()) return ErrnoMessage("open");
      for (int flags : {MAP_SHARED, MAP_PRIVATE}) {
        const char* kind = flags == MAP_SHARED ? "MAP_SHARED" : "MAP_PRIVATE";
        void* p = mmap(nullptr, size, PROT_READ, flags, fd.get(), 0);
        if (p == MAP_FAILED) return ErrnoMessage(std::string("mmap ") + kind);
        std::string err = CompareBytes(static_cast<const uint8_t*>(p), size, data.data(), size);
        munmap(p, size);
        if (!err.empty()) return std::string(kind) + ": " + err;
      }
      // A mapping at a nonzero page offset.
      if (size > 2 * 4096) {
        void* p = mmap(nullptr, size - 4096, PROT_READ, MAP_SHARED, fd.get(), 4096);
        if (p == MAP_FAILED) return ErrnoMessage("mmap at offset 4096");
        std::string err = CompareBytes(static_cast<const uint8_t*>(p), size - 4096, data.data() + 4096, size - 4096);
        munmap(p, size - 4096);
        if (!err.empty()) return "offset mapping: " + err;
      }
      return "ok";
    };
    EXPECT_EQ(check_maps(), "ok") << "in the test process";
    EXPECT_EQ(RunInChild(check_maps).Summary(), "ok") << "in another process";
  }
}

TEST_F(PosixSurfaceTest, StatfsReportsCapacity) {
  struct statfs fs {};
  ASSERT_EQ(statfs(mnt().c_str(), &fs), 0) << ErrnoMessage("statfs");
  EXPECT_GT(fs.f_blocks, 0u);
  EXPECT_GT(fs.f_bsize, 0);
  EXPECT_LE(fs.f_bfree, fs.f_blocks);
  EXPECT_LE(fs.f_bavail, fs.f_blocks);
  struct statvfs vfs {};
  ASSERT_EQ(statvfs(mnt().c_str(), &vfs), 0) << ErrnoMessage("statvfs");
  EXPECT_GT(vfs.f_blocks, 0u);
  EXPECT_GE(vfs.f_namemax, 255u);

  // Free space goes down as objects are written.
  const uint64_t free_before = static_cast<uint64_t>(fs.f_bfree) * fs.f_bsize;
  ASSERT_EQ(WriteFile(P("big"), MakeData(30, 16 * kMiB)), "");
  ASSERT_EQ(statfs(mnt().c_str(), &fs), 0);
  const uint64_t free_after = static_cast<uint64_t>(fs.f_bfree) * fs.f_bsize;
  EXPECT_LT(free_after, free_before) << "statfs free bytes did not go down after a 16 MiB write";
}

TEST_F(PosixSurfaceTest, StatShowsSizeModeOwnerAndCommitTime) {
  const std::string path = P("stat-me");
  timespec before {};
  clock_gettime(CLOCK_REALTIME, &before);
  ASSERT_EQ(WriteFile(path, MakeData(40, 54321), kMiB, 0640), "");
  timespec after {};
  clock_gettime(CLOCK_REALTIME, &after);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_size, 54321);
  EXPECT_EQ(st.st_mode & 0777, 0640u);  // umask of the test is 022 at most
  EXPECT_EQ(st.st_uid, getuid());
  EXPECT_EQ(st.st_gid, getgid());
  EXPECT_EQ(st.st_nlink, 1u);
  EXPECT_GE(st.st_mtim.tv_sec, before.tv_sec - 1);
  EXPECT_LE(st.st_mtim.tv_sec, after.tv_sec + 1);
  EXPECT_GT(st.st_blocks, 0) << "du would report 0 for a 54321-byte object";

  struct stat dst {};
  ASSERT_EQ(stat(mnt().c_str(), &dst), 0);
  EXPECT_TRUE(S_ISDIR(dst.st_mode));
}

}  // namespace
}  // namespace kvfs::mounted_test
