#include "adapters/file_identity.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <set>
#include <string>

#include "tests/unit/test_util.h"

namespace kvfs {
namespace {

using testing::TempDir;

TEST(FileIdentityTest, PairsTheInodeNumberWithTheBirthTime) {
  EXPECT_EQ(FileIdentity(42, 0), 42u) << "without a birth time the identity is the inode number";
  EXPECT_EQ(FileIdentity(0, 0), 0u);
  EXPECT_EQ(FileIdentity(0, 123), 0u) << "no inode number: unknown";
  EXPECT_EQ(FileIdentity(42, 1000), FileIdentity(42, 1000));
  EXPECT_NE(FileIdentity(42, 1000), FileIdentity(42, 1001)) << "a recycled number with another birth time";
  EXPECT_NE(FileIdentity(42, 1000), FileIdentity(43, 1000));
  EXPECT_NE(FileIdentity(42, 1000), 42u);
  std::set<uint64_t> ids;
  for (uint64_t ino = 1; ino <= 64; ++ino) {
    for (int64_t birth = 1; birth <= 64; ++birth) {
      uint64_t id = FileIdentity(ino, birth * 1000000007LL);
      EXPECT_NE(id, 0u);
      ids.insert(id);
    }
  }
  EXPECT_EQ(ids.size(), 64u * 64u);
}

std::string WriteNew(const std::string& path, const std::string& bytes) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) return "fopen " + path;
  size_t n = std::fwrite(bytes.data(), 1, bytes.size(), f);
  if (std::fclose(f) != 0 || n != bytes.size()) return "write " + path;
  return "";
}

TEST(FileIdentityTest, OneFileHasOneIdentityByPathAndByDescriptor) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.Sub("object");
  ASSERT_EQ(WriteNew(path, "twelve bytes"), "");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  Result<FileStatus> by_fd = StatDescriptor(fd);
  ::close(fd);
  Result<FileStatus> by_path = StatPath(path, true), by_lpath = StatPath(path, false);
  ASSERT_TRUE(by_fd.ok() && by_path.ok() && by_lpath.ok());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  for (const FileStatus* s : {&*by_fd, &*by_path, &*by_lpath}) {
    EXPECT_EQ(s->ino, static_cast<uint64_t>(st.st_ino));
    EXPECT_EQ(s->size, 12u);
    EXPECT_TRUE(S_ISREG(s->mode));
    EXPECT_EQ(s->mtime_ns, static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec);
    EXPECT_EQ(s->birth_ns, by_fd->birth_ns);
    EXPECT_EQ(s->file_id(), by_fd->file_id());
  }
  EXPECT_NE(by_fd->file_id(), 0u);
  if (by_fd->birth_ns != 0) {
    EXPECT_NE(by_fd->file_id(), by_fd->ino);
  }

  // A symbolic link is described itself without following, its target with.
  const std::string link = dir.Sub("link");
  ASSERT_EQ(::symlink(path.c_str(), link.c_str()), 0);
  Result<FileStatus> l = StatPath(link, false), t = StatPath(link, true);
  ASSERT_TRUE(l.ok() && t.ok());
  EXPECT_TRUE(S_ISLNK(l->mode));
  EXPECT_EQ(t->file_id(), by_fd->file_id());

  Result<FileStatus> missing = StatPath(dir.Sub("missing"), true);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.err(), ENOENT);
  EXPECT_NE(missing.status().message().find(dir.Sub("missing")), std::string::npos) << missing.status().message();
  EXPECT_EQ(StatDescriptor(-1).err(), EBADF);
}

// Files made one after another at one path: each has an identity of its
// own, also when the file system hands the next file the inode number of
// the one deleted before it (which the loop looks for; ext4 and XFS do it
// when a group's free inodes run out of recently deleted ones).
TEST(FileIdentityTest, FilesThatFollowEachOtherAtOnePathHaveTheirOwnIdentities) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.Sub("object");
  std::set<uint64_t> inos, ids;
  size_t recycled = 0;
  bool births = true;
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(WriteNew(path, "version " + std::to_string(i)), "");
    Result<FileStatus> s = StatPath(path, true);
    ASSERT_TRUE(s.ok());
    births = births && s->birth_ns != 0;
    if (!inos.insert(s->ino).second) ++recycled;
    ids.insert(s->file_id());
    ASSERT_EQ(::unlink(path.c_str()), 0);
  }
  if (births) {
    EXPECT_EQ(ids.size(), 200u) << recycled << " of 200 files reused an earlier file's inode number";
  } else {
    EXPECT_EQ(ids.size(), inos.size());
  }
  std::printf("[     info ] %zu of 200 files reused an inode number; birth times %s\n", recycled,
              births ? "reported" : "not reported");
}

}  // namespace
}  // namespace kvfs
