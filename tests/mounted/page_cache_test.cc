// The kernel's page cache over committed versions (the default): readers of
// two versions of one key never share bytes or sizes (read, pread and mmap),
// a new open never gets an older version's cached bytes, writers see their
// own draft's size, and a re-read of a just-written key is served from the
// kernel without reaching the daemon. Every step runs in its own process.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

class PageCacheTest : public MountedTest {
 protected:
  // The daemon's count of READ requests served.
  uint64_t DaemonReads() {
    JsonValue st;
    Stats(&st);
    const JsonValue* r = st.Find("reads");
    return r ? r->AsU64() : ~0ULL;
  }
  // The daemon's count of open file handles.
  uint64_t DaemonOpenHandles() {
    JsonValue st;
    Stats(&st);
    const JsonValue* r = st.Find("open_handles");
    return r ? r->AsU64() : ~0ULL;
  }
};

// Checks through fd (open on a file of want.size() bytes): fstat's size,
// read() from the start, pread() at an offset, and a shared read-only mmap.
std::string CheckAllWays(int fd, const std::vector<uint8_t>& want) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return ErrnoMessage("fstat");
  if (static_cast<size_t>(st.st_size) != want.size()) {
    return "fstat size " + std::to_string(st.st_size) + ", expected " + std::to_string(want.size());
  }
  if (lseek(fd, 0, SEEK_SET) != 0) return ErrnoMessage("lseek");
  std::vector<uint8_t> got;
  std::string err = ReadAllFd(fd, &got);
  if (!err.empty()) return "read: " + err;
  if (got != want) return "read: " + CompareBytes(got, want);
  const size_t off = want.size() / 3;
  std::vector<uint8_t> part(want.size() - off + 4096);
  ssize_t n = pread(fd, part.data(), part.size(), static_cast<off_t>(off));
  if (n != static_cast<ssize_t>(want.size() - off)) return "pread gave " + std::to_string(n);
  if (std::memcmp(part.data(), want.data() + off, want.size() - off) != 0) return "pread: wrong bytes";
  void* m = mmap(nullptr, want.size(), PROT_READ, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) return ErrnoMessage("mmap");
  bool same = std::memcmp(m, want.data(), want.size()) == 0;
  munmap(m, want.size());
  return same ? "" : "mmap: wrong bytes";
}

// A child that opens path, checks it holds `want` in every way, says
// "open", waits for "again" and checks the same descriptor once more.
ChildProcess::Body KeepsReading(const std::string& path, const std::vector<uint8_t>& want) {
  return [path, want](Channel& ch) -> std::string {
    Fd fd(open(path.c_str(), O_RDONLY));
    if (!fd.valid()) return ErrnoMessage("open");
    if (std::string e = CheckAllWays(fd.get(), want); !e.empty()) return "before: " + e;
    ch.Send("open");
    if (std::string e = ch.Expect("again"); !e.empty()) return e;
    if (std::string e = CheckAllWays(fd.get(), want); !e.empty()) return "after the key changed: " + e;
    return "ok";
  };
}

// "ok" when a new open of path, in another process, sees `want` in every way.
std::string NewOpenSeesInEveryWay(const std::string& path, const std::vector<uint8_t>& want) {
  return RunInChild([&] {
           Fd fd(open(path.c_str(), O_RDONLY));
           if (!fd.valid()) return ErrnoMessage("open");
           std::string e = CheckAllWays(fd.get(), want);
           return e.empty() ? std::string("ok") : e;
         })
      .Summary();
}

TEST_F(PageCacheTest, ReadersOfTwoVersionsEachSeeTheirOwnBytesAndSize) {
  const std::string path = P("k");
  const std::vector<uint8_t> v1 = MakeData(1, 5 * kMiB + 123), v2 = MakeData(2, 2 * kMiB + 7);
  ASSERT_EQ(WriteFile(path, v1), "");
  // Reader A opens the first version and keeps it open.
  ChildProcess reader(KeepsReading(path, v1));
  ASSERT_EQ(reader.channel().Expect("open"), "");
  // Another process rewrites the key in place (O_TRUNC) with a shorter version.
  EXPECT_EQ(RunInChild([&] { return WriteFile(path, v2).empty() ? "ok" : "rewrite failed"; }).Summary(), "ok");
  // Reader B sees the new version in every way; reader A still its own.
  EXPECT_EQ(NewOpenSeesInEveryWay(path, v2), "ok");
  reader.channel().Send("again");
  EXPECT_EQ(reader.Wait().Summary(), "ok");
  // With the reader gone, the name still gives the new version.
  EXPECT_EQ(CheckFile(path, v2), "");
}

TEST_F(PageCacheTest, TruncateByPathAndRewriteInPlaceLeaveTheOpenReaderItsVersion) {
  const std::string path = P("k");
  const std::vector<uint8_t> v1 = MakeData(21, 3 * kMiB + 99);
  ASSERT_EQ(WriteFile(path, v1), "");
  ChildProcess reader(KeepsReading(path, v1));
  ASSERT_EQ(reader.channel().Expect("open"), "");
  // truncate(2) by path, then a rewrite of the middle without O_TRUNC, from
  // another process each, while the reader holds the first version.
  EXPECT_EQ(RunInChild([&] { return truncate(path.c_str(), kMiB) == 0 ? std::string("ok") : ErrnoMessage("truncate"); })
                .Summary(),
            "ok");
  std::vector<uint8_t> v2(v1.begin(), v1.begin() + kMiB);
  std::vector<uint8_t> patch = MakeData(22, 4096);
  std::copy(patch.begin(), patch.end(), v2.begin() + 8192);
  EXPECT_EQ(RunInChild([&] {
              Fd fd(open(path.c_str(), O_RDWR));
              if (!fd.valid()) return ErrnoMessage("open O_RDWR");
              if (pwrite(fd.get(), patch.data(), patch.size(), 8192) != static_cast<ssize_t>(patch.size())) {
                return ErrnoMessage("pwrite");
              }
              return fd.Close() == 0 ? std::string("ok") : ErrnoMessage("close");
            }).Summary(),
            "ok");
  EXPECT_EQ(NewOpenSeesInEveryWay(path, v2), "ok");
  reader.channel().Send("again");
  EXPECT_EQ(reader.Wait().Summary(), "ok");
}

TEST_F(PageCacheTest, ReplacementThroughATempFileKeepsTheOldReadersVersion) {
  const std::string path = P("k");
  const std::vector<uint8_t> v1 = MakeData(3, 3 * kMiB), v2 = MakeData(4, 7 * kMiB + 1);
  ASSERT_EQ(WriteFile(path, v1), "");
  ChildProcess reader(KeepsReading(path, v1));
  ASSERT_EQ(reader.channel().Expect("open"), "");
  EXPECT_EQ(RunInChild([&] {
              if (!WriteFile(path + ".tmp", v2).empty()) return std::string("write tmp failed");
              return rename((path + ".tmp").c_str(), path.c_str()) == 0 ? std::string("ok") : ErrnoMessage("rename");
            }).Summary(),
            "ok");
  EXPECT_EQ(NewOpenSeesInEveryWay(path, v2), "ok");
  reader.channel().Send("again");
  EXPECT_EQ(reader.Wait().Summary(), "ok");
}

TEST_F(PageCacheTest, ANewOpenNeverGetsAnOlderVersionsCachedBytes) {
  const std::string path = P("k");
  auto check_in_child = [&](const std::vector<uint8_t>& want) {
    return RunInChild([&] {
             std::string e = CheckFile(path, want);
             return e.empty() ? std::string("ok") : e;
           })
        .Summary();
  };
  const std::vector<uint8_t> v1 = MakeData(5, 4 * kMiB);
  ASSERT_EQ(WriteFile(path, v1), "");
  ASSERT_EQ(check_in_child(v1), "ok");
  ASSERT_EQ(check_in_child(v1), "ok");  // now surely cached
  // Replaced in place, same size: only the bytes tell the versions apart.
  const std::vector<uint8_t> v2 = MakeData(6, 4 * kMiB);
  ASSERT_EQ(RunInChild([&] { return WriteFile(path, v2).empty() ? "ok" : "rewrite failed"; }).Summary(), "ok");
  EXPECT_EQ(check_in_child(v2), "ok");
  // Replaced by a rename.
  const std::vector<uint8_t> v3 = MakeData(7, 4 * kMiB);
  ASSERT_EQ(WriteFile(path + ".tmp", v3), "");
  ASSERT_EQ(rename((path + ".tmp").c_str(), path.c_str()), 0) << ErrnoMessage("rename");
  EXPECT_EQ(check_in_child(v3), "ok");
  // Rewritten in the middle without O_TRUNC (copy-on-write of the version).
  std::vector<uint8_t> v4 = v3;
  std::vector<uint8_t> patch = MakeData(8, 5000);
  std::memcpy(v4.data() + kMiB + 11, patch.data(), patch.size());
  ASSERT_EQ(RunInChild([&] {
              Fd fd(open(path.c_str(), O_WRONLY));
              if (!fd.valid()) return ErrnoMessage("open");
              if (pwrite(fd.get(), patch.data(), patch.size(), kMiB + 11) != static_cast<ssize_t>(patch.size())) {
                return ErrnoMessage("pwrite");
              }
              return fd.Close() == 0 ? std::string("ok") : ErrnoMessage("close");
            }).Summary(),
            "ok");
  EXPECT_EQ(check_in_child(v4), "ok");
  // Unlinked and written again.
  ASSERT_EQ(unlink(path.c_str()), 0);
  const std::vector<uint8_t> v5 = MakeData(9, 4 * kMiB);
  ASSERT_EQ(WriteFile(path, v5), "");
  EXPECT_EQ(check_in_child(v5), "ok");
}

TEST_F(PageCacheTest, WritersSeeTheirOwnDraftsSize) {
  const std::string path = P("k");
  ASSERT_EQ(WriteFile(path, MakeData(1, 100000)), "");
  for (int flags : {O_CREAT | O_WRONLY | O_TRUNC, O_RDWR}) {
    for (const std::string& p : {path, P("new-" + std::to_string(flags))}) {
      EXPECT_EQ(RunInChild([&] {
                  Fd fd(open(p.c_str(), flags | O_CREAT, 0644));
                  if (!fd.valid()) return ErrnoMessage("open " + p);
                  std::vector<uint8_t> d = MakeData(2, 3 * kMiB + 5);
                  if (pwrite(fd.get(), d.data(), d.size(), 0) != static_cast<ssize_t>(d.size())) return ErrnoMessage("pwrite");
                  struct stat st {};
                  if (fstat(fd.get(), &st) != 0 || st.st_size != static_cast<off_t>(d.size())) {
                    return "size after writing: " + std::to_string(st.st_size);
                  }
                  if (ftruncate(fd.get(), 10) != 0) return ErrnoMessage("ftruncate");
                  if (fstat(fd.get(), &st) != 0 || st.st_size != 10) return "size after ftruncate: " + std::to_string(st.st_size);
                  if (pwrite(fd.get(), d.data(), 100, 20) != 100) return ErrnoMessage("pwrite");
                  if (fstat(fd.get(), &st) != 0 || st.st_size != 120) return "size after the last write: " + std::to_string(st.st_size);
                  return fd.Close() == 0 ? std::string("ok") : ErrnoMessage("close");
                }).Summary(),
                "ok")
          << p << " flags " << flags;
      struct stat st {};
      ASSERT_EQ(stat(p.c_str(), &st), 0);
      EXPECT_EQ(st.st_size, 120);
    }
  }
}

TEST_F(PageCacheTest, AChildClosingAnInheritedDescriptorDoesNotCommitTheWritersDraft) {
  const std::string path = P("k");
  Fd fd(open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644));
  ASSERT_TRUE(fd.valid()) << ErrnoMessage("open");
  std::vector<uint8_t> d = MakeData(3, 2 * kMiB);
  ASSERT_EQ(write(fd.get(), d.data(), kMiB), static_cast<ssize_t>(kMiB));
  // The child inherits the descriptor and closes it when it exits.
  EXPECT_EQ(RunInChild([&] { return std::string("ok"); }).Summary(), "ok");
  EXPECT_EQ(RunInChild([&] { return StatErrno(path) == ENOENT ? std::string("ok") : std::string("visible"); }).Summary(),
            "ok")
      << "a forked child's close published the writer's half-written version";
  ASSERT_EQ(write(fd.get(), d.data() + kMiB, kMiB), static_cast<ssize_t>(kMiB));
  ASSERT_EQ(fd.Close(), 0) << ErrnoMessage("close");
  EXPECT_EQ(RunInChild([&] {
              std::string e = CheckFile(path, d);
              return e.empty() ? std::string("ok") : e;
            }).Summary(),
            "ok");
}

TEST_F(PageCacheTest, AJustWrittenKeyIsReadBackFromTheKernelsCache) {
  const std::string path = P("k");
  const std::vector<uint8_t> v = MakeData(10, 8 * kMiB);  // whole pages: the writer leaves every page cached
  ASSERT_EQ(WriteFile(path, v), "");
  auto read_in_child = [&] {
    return RunInChild([&] {
             std::string e = CheckFile(path, v);
             return e.empty() ? std::string("ok") : e;
           })
        .Summary();
  };
  // The writer's pages are the version's bytes, so the re-reads stay in the
  // kernel. (A reader that opens before the kernel's RELEASE of the writer's
  // file reaches the engine reads through the daemon instead, see
  // docs/contract.md; the kernel sends RELEASE after close() returns, so on
  // a busy machine it may still be on its way: wait for it.)
  ASSERT_TRUE(PollUntil([&] { return DaemonOpenHandles() == 0; }, 10000))
      << "the writer's handle is still open in the daemon 10 s after its close";
  uint64_t before = DaemonReads();
  EXPECT_EQ(read_in_child(), "ok");
  EXPECT_EQ(DaemonReads(), before) << "the first re-read went to the daemon: the writer's pages were not kept";
  EXPECT_EQ(read_in_child(), "ok");
  EXPECT_EQ(DaemonReads(), before) << "a re-read of a cached key went to the daemon";
  // O_DIRECT still reads through the daemon.
  EXPECT_EQ(RunInChild([&] {
              std::string e = CheckFileDirect(path, v);
              return e.empty() ? std::string("ok") : e;
            }).Summary(),
            "ok");
  EXPECT_GT(DaemonReads(), before) << "an O_DIRECT read was served from the page cache";
}

// --page-cache false: every read reaches the daemon.
class NoPageCacheTest : public PageCacheTest {
 protected:
  std::vector<std::string> ExtraMountArgs() const override { return {"--page-cache", "false"}; }
};

TEST_F(NoPageCacheTest, EveryReadReachesTheDaemon) {
  const std::string path = P("k");
  const std::vector<uint8_t> v = MakeData(11, 2 * kMiB);
  ASSERT_EQ(WriteFile(path, v), "");
  uint64_t before = DaemonReads();
  EXPECT_EQ(CheckFile(path, v), "");
  uint64_t once = DaemonReads();
  EXPECT_GT(once, before);
  EXPECT_EQ(CheckFile(path, v), "");
  EXPECT_GT(DaemonReads(), once);
}

}  // namespace
}  // namespace kvfs::mounted_test
