// Shared writable mmap under kvfs's commit rules: a writer's stores into a
// MAP_SHARED mapping that it msyncs or unmaps before close() reach its
// version (the dirty pages are written back to the draft before the FLUSH
// of close() commits it), its own fstat
// and reads see them together with plain writes that extend the file, other
// processes see the previous version until the close, and exactly the
// writer's bytes after it. Both for a new key (served through the page
// cache) and for a rewrite of a committed key (served with FOPEN_DIRECT_IO,
// mmap allowed by FUSE_DIRECT_IO_ALLOW_MMAP), with the page cache on and off.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

constexpr size_t kPage = 4096;

class SharedMmapTest : public MountedTest {};

class SharedMmapNoPageCacheTest : public MountedTest {
 protected:
  std::vector<std::string> ExtraMountArgs() const override { return {"--page-cache", "false"}; }
};

std::string CheckFdSize(int fd, size_t want, const std::string& when) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return ErrnoMessage("fstat " + when);
  if (static_cast<size_t>(st.st_size) != want) {
    return when + ": fstat size " + std::to_string(st.st_size) + ", want " + std::to_string(want);
  }
  return "";
}

// What the basic scenario leaves: the previous bytes (if any) grown to three
// pages, 2 pages + 500 bytes stored through the mapping at offset 300, and
// 777 bytes written with pwrite at 5 pages + 100 (past the mapping).
std::vector<uint8_t> ExpectedAfterMappedWrite(const std::vector<uint8_t>& before) {
  std::vector<uint8_t> want = before;
  if (want.size() < 3 * kPage) want.resize(3 * kPage, 0);
  const std::vector<uint8_t> mapped = MakeData(71, 2 * kPage + 500);
  std::memcpy(want.data() + 300, mapped.data(), mapped.size());
  const std::vector<uint8_t> tail = MakeData(72, 777);
  want.resize(5 * kPage + 100, 0);
  want.insert(want.end(), tail.begin(), tail.end());
  return want;
}

// The writer's side, in a child: maps three pages MAP_SHARED, stores into
// them, extends the file with pwrite, checks fstat and its own reads, then
// waits for "close" before munmap and close.
std::string MappedWriter(const std::string& path, bool create, Channel& ch) {
  Fd fd(open(path.c_str(), O_RDWR | (create ? O_CREAT | O_TRUNC : 0), 0644));
  if (!fd.valid()) return ErrnoMessage("open");
  std::vector<uint8_t> before;
  if (!create) {
    std::string err = ReadAllFd(fd.get(), &before);
    if (!err.empty()) return err;
  }
  const std::vector<uint8_t> want = ExpectedAfterMappedWrite(before);
  if (before.size() < 3 * kPage && ftruncate(fd.get(), 3 * kPage) != 0) return ErrnoMessage("ftruncate");
  void* m = mmap(nullptr, 3 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (m == MAP_FAILED) return ErrnoMessage("mmap MAP_SHARED PROT_WRITE");
  auto* p = static_cast<uint8_t*>(m);
  const std::vector<uint8_t> mapped = MakeData(71, 2 * kPage + 500);
  std::memcpy(p + 300, mapped.data(), mapped.size());
  const std::vector<uint8_t> tail = MakeData(72, 777);
  if (pwrite(fd.get(), tail.data(), tail.size(), 5 * kPage + 100) != static_cast<ssize_t>(tail.size())) {
    return ErrnoMessage("extending pwrite");
  }
  std::string err = CheckFdSize(fd.get(), want.size(), "after the extending write");
  if (err.empty()) err = CheckFd(fd.get(), want);
  if (!err.empty()) return "writer: " + err;
  if (!ch.Send("written")) return "channel closed";
  err = ch.Expect("close");
  if (!err.empty()) return err;
  if (munmap(m, 3 * kPage) != 0) return ErrnoMessage("munmap");
  if (fd.Close() != 0) return ErrnoMessage("close (the commit)");
  return "ok";
}

void RunMappedWriteScenario(const std::string& path, bool create) {
  std::vector<uint8_t> before;
  if (!create) {
    before = MakeData(70, 4 * kPage + 11);
    ASSERT_EQ(WriteFile(path, before), "");
  }
  const std::vector<uint8_t> want = ExpectedAfterMappedWrite(before);
  ChildProcess writer([&](Channel& ch) { return MappedWriter(path, create, ch); });
  ASSERT_EQ(writer.channel().Expect("written"), "") << writer.Wait().Summary();
  // Until the close, other processes see the previous version.
  EXPECT_EQ(RunInChild([&] {
              if (create) return StatErrno(path) == ENOENT ? std::string("ok") : std::string("new key visible early");
              std::string err = CheckFile(path, before);
              return err.empty() ? std::string("ok") : "before close: " + err;
            }).Summary(),
            "ok");
  ASSERT_TRUE(writer.channel().Send("close"));
  ASSERT_EQ(writer.Wait().Summary(), "ok");
  EXPECT_EQ(RunInChild([&] {
              std::string err = CheckFile(path, want);
              if (err.empty()) err = CheckFileDirect(path, want);
              return err.empty() ? std::string("ok") : "after close: " + err;
            }).Summary(),
            "ok");
}

TEST_F(SharedMmapTest, MappedWritesOfANewKeyCommitAtClose) { RunMappedWriteScenario(P("new"), true); }

TEST_F(SharedMmapTest, MappedWritesOfACommittedKeyCommitAtClose) { RunMappedWriteScenario(P("old"), false); }

TEST_F(SharedMmapNoPageCacheTest, MappedWritesCommitAtClose) {
  RunMappedWriteScenario(P("new"), true);
  RunMappedWriteScenario(P("old"), false);
}

// An fsx-style run: random plain writes, mapped writes (extending with
// ftruncate first, then msync), truncates, plain and mapped reads, each
// checked against a model, with fstat after every step; then another
// process reads exactly the model.
std::string RandomRun(const std::string& path, bool create, uint64_t seed, std::vector<uint8_t>* model) {
  constexpr size_t kMax = 256 * 1024;
  Fd fd(open(path.c_str(), O_RDWR | (create ? O_CREAT | O_TRUNC : 0), 0644));
  if (!fd.valid()) return ErrnoMessage("open");
  if (!create && ftruncate(fd.get(), 0) != 0) return ErrnoMessage("ftruncate 0");
  model->clear();
  uint64_t state = seed;
  auto next = [&state](uint64_t bound) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (state >> 33) % bound;
  };
  for (int i = 0; i < 400; ++i) {
    const std::string at = "step " + std::to_string(i) + ": ";
    size_t op = next(5), off = next(kMax), len = 1 + next(20000);
    if (op == 0) {  // plain write
      std::vector<uint8_t> data = MakeData(seed * 1000 + i, len);
      if (pwrite(fd.get(), data.data(), len, static_cast<off_t>(off)) != static_cast<ssize_t>(len)) {
        return at + ErrnoMessage("pwrite");
      }
      if (model->size() < off + len) model->resize(off + len, 0);
      std::memcpy(model->data() + off, data.data(), len);
    } else if (op == 1) {  // mapped write
      if (model->size() < off + len) {
        if (ftruncate(fd.get(), static_cast<off_t>(off + len)) != 0) return at + ErrnoMessage("ftruncate");
        model->resize(off + len, 0);
      }
      size_t start = off & ~(kPage - 1), span = off + len - start;
      void* m = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), static_cast<off_t>(start));
      if (m == MAP_FAILED) return at + ErrnoMessage("mmap");
      std::vector<uint8_t> data = MakeData(seed * 1000 + i, len);
      std::memcpy(static_cast<uint8_t*>(m) + (off - start), data.data(), len);
      std::memcpy(model->data() + off, data.data(), len);
      if (msync(m, span, MS_SYNC) != 0) return at + ErrnoMessage("msync");
      if (munmap(m, span) != 0) return at + ErrnoMessage("munmap");
    } else if (op == 2) {  // truncate
      size_t size = next(kMax);
      if (ftruncate(fd.get(), static_cast<off_t>(size)) != 0) return at + ErrnoMessage("ftruncate");
      model->resize(size, 0);
    } else if (!model->empty()) {  // plain or mapped read
      off %= model->size();
      len = std::min(len, model->size() - off);
      std::vector<uint8_t> got(len);
      if (op == 3) {
        if (pread(fd.get(), got.data(), len, static_cast<off_t>(off)) != static_cast<ssize_t>(len)) {
          return at + ErrnoMessage("pread");
        }
      } else {
        size_t start = off & ~(kPage - 1), span = off + len - start;
        void* m = mmap(nullptr, span, PROT_READ, MAP_SHARED, fd.get(), static_cast<off_t>(start));
        if (m == MAP_FAILED) return at + ErrnoMessage("mmap for reading");
        std::memcpy(got.data(), static_cast<uint8_t*>(m) + (off - start), len);
        munmap(m, span);
      }
      std::vector<uint8_t> want(model->begin() + off, model->begin() + off + len);
      std::string err = CompareBytes(got, want);
      if (!err.empty()) return at + (op == 3 ? "pread: " : "mapped read: ") + err;
    }
    std::string err = CheckFdSize(fd.get(), model->size(), at + "op " + std::to_string(op));
    if (!err.empty()) return err;
  }
  if (fd.Close() != 0) return ErrnoMessage("close");
  return "ok";
}

// Runs the same steps on the mount (in a writer child) and on the test
// folder's own filesystem (the reference), then checks from a third process
// that the committed key holds exactly the reference's bytes.
void RunRandom(const std::string& path, const std::string& reference, bool create, uint64_t seed) {
  if (!create) {
    ASSERT_EQ(WriteFile(path, MakeData(seed, 100000)), "");
    ASSERT_EQ(WriteFile(reference, MakeData(seed, 100000)), "");
  }
  ASSERT_EQ(RunInChild([&] {
              std::vector<uint8_t> model;
              return RandomRun(path, create, seed, &model);
            }).Summary(),
            "ok");
  std::vector<uint8_t> model;
  ASSERT_EQ(RandomRun(reference, create, seed, &model), "ok") << "the reference run";
  EXPECT_EQ(RunInChild([&] {
              std::string err = CheckFile(path, model);
              return err.empty() ? std::string("ok") : err;
            }).Summary(),
            "ok");
}

TEST_F(SharedMmapTest, RandomMappedAndPlainWritesMatchAReference) {
  RunRandom(P("new"), root() + "/ref-new", true, 1);
  RunRandom(P("old"), root() + "/ref-old", false, 2);
}

TEST_F(SharedMmapNoPageCacheTest, RandomMappedAndPlainWritesMatchAReference) {
  RunRandom(P("new"), root() + "/ref-new", true, 3);
  RunRandom(P("old"), root() + "/ref-old", false, 4);
}

}  // namespace
}  // namespace kvfs::mounted_test
