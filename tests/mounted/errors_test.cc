// Wrong input gets the errno POSIX (and the contract) asks for, and leaves
// the namespace as it was.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

class ErrnoTest : public MountedTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(MountedTest::SetUp());
    ASSERT_EQ(WriteFile(P("file"), MakeData(1, 1234)), "");
    ASSERT_EQ(mkdir(P("dir").c_str(), 0755), 0) << ErrnoMessage("mkdir dir");
    ASSERT_EQ(mkdir(P("full").c_str(), 0755), 0) << ErrnoMessage("mkdir full");
    ASSERT_EQ(WriteFile(P("full/inside"), MakeData(2, 10)), "");
  }
  // Nothing the error cases tried may have changed the namespace.
  void TearDown() override {
    EXPECT_EQ(CheckFile(P("file"), MakeData(1, 1234)), "");
    EXPECT_EQ(CheckFile(P("full/inside"), MakeData(2, 10)), "");
    MountedTest::TearDown();
  }
};

// errno of a call that must fail, or "succeeded".
#define ERRNO_OF(call) ((call) == -1 ? ErrnoName(errno) : std::string("succeeded"))

int OpenAndClose(const std::string& path, int flags, mode_t mode = 0644) {
  int fd = open(path.c_str(), flags, mode);
  if (fd >= 0) close(fd);
  return fd >= 0 ? 0 : -1;
}

TEST_F(ErrnoTest, NameTooLong) {
  const std::string long_name(300, 'n');
  EXPECT_EQ(ERRNO_OF(OpenAndClose(P(long_name), O_CREAT | O_WRONLY)), "ENAMETOOLONG");
  EXPECT_EQ(ERRNO_OF(mkdir(P(long_name).c_str(), 0755)), "ENAMETOOLONG");
  struct stat st {};
  EXPECT_EQ(ERRNO_OF(stat(P(long_name).c_str(), &st)), "ENAMETOOLONG");
  EXPECT_EQ(ERRNO_OF(rename(P("file").c_str(), P(long_name).c_str())), "ENAMETOOLONG");
  EXPECT_EQ(ERRNO_OF(OpenAndClose(P("dir/" + long_name), O_CREAT | O_WRONLY)), "ENAMETOOLONG");
  // One byte over the limit.
  EXPECT_EQ(ERRNO_OF(OpenAndClose(P(std::string(256, 'x')), O_CREAT | O_WRONLY)), "ENAMETOOLONG");
  EXPECT_EQ(ERRNO_OF(mkdir(P(std::string(256, 'y')).c_str(), 0755)), "ENAMETOOLONG");
  // And nothing was created.
  std::vector<std::string> names;
  ASSERT_EQ(ListDir(mnt(), &names), "");
  EXPECT_EQ(names.size(), 3u);
}

TEST_F(ErrnoTest, RmdirNonEmpty) {
  EXPECT_EQ(ERRNO_OF(rmdir(P("full").c_str())), "ENOTEMPTY");
  // A directory holding only an empty directory is not empty either.
  ASSERT_EQ(mkdir(P("outer").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(P("outer/inner").c_str(), 0755), 0);
  EXPECT_EQ(ERRNO_OF(rmdir(P("outer").c_str())), "ENOTEMPTY");
  EXPECT_EQ(rmdir(P("outer/inner").c_str()), 0) << ErrnoMessage("rmdir inner");
  EXPECT_EQ(rmdir(P("outer").c_str()), 0) << ErrnoMessage("rmdir outer");
  // Renaming a directory over a non-empty one.
  ASSERT_EQ(mkdir(P("other").c_str(), 0755), 0);
  EXPECT_EQ(ERRNO_OF(rename(P("other").c_str(), P("full").c_str())), "ENOTEMPTY");
}

TEST_F(ErrnoTest, OpenDirectoryForWriting) {
  EXPECT_EQ(ERRNO_OF(OpenAndClose(P("dir"), O_WRONLY)), "EISDIR");
  EXPECT_EQ(ERRNO_OF(OpenAndClose(P("dir"), O_RDWR)), "EISDIR");
  EXPECT_EQ(ERRNO_OF(OpenAndClose(P("dir"), O_WRONLY | O_CREAT)), "EISDIR");
  EXPECT_EQ(ERRNO_OF(unlink(P("dir").c_str())), "EISDIR");
  EXPECT_EQ(ERRNO_OF(rename(P("file").c_str(), P("dir").c_str())), "EISDIR");
}

TEST_F(ErrnoTest, FileUsedAsDirectory) {
  struct stat st {};
  EXPECT_EQ(ERRNO_OF(stat(P("file/x").c_str(), &st)), "ENOTDIR");
  EXPECT_EQ(ERRNO_OF(OpenAndClose(P("file/x"), O_CREAT | O_WRONLY | O_TRUNC)), "ENOTDIR");  // creat()
  EXPECT_EQ(ERRNO_OF(mkdir(P("file/x").c_str(), 0755)), "ENOTDIR");
  EXPECT_EQ(ERRNO_OF(rmdir(P("file").c_str())), "ENOTDIR");
  EXPECT_EQ(ERRNO_OF(OpenAndClose(P("file"), O_RDONLY | O_DIRECTORY)), "ENOTDIR");
  EXPECT_EQ(ERRNO_OF(rename(P("dir").c_str(), P("file").c_str())), "ENOTDIR");
}

TEST_F(ErrnoTest, AlreadyExists) {
  EXPECT_EQ(ERRNO_OF(mkdir(P("dir").c_str(), 0755)), "EEXIST");
  EXPECT_EQ(ERRNO_OF(mkdir(P("file").c_str(), 0755)), "EEXIST");
  EXPECT_EQ(ERRNO_OF(OpenAndClose(P("file"), O_CREAT | O_EXCL | O_WRONLY)), "EEXIST");
  EXPECT_EQ(ERRNO_OF(OpenAndClose(P("dir"), O_CREAT | O_EXCL | O_WRONLY)), "EEXIST");
}

// Hard links are refused (EPERM, as Linux documents for a filesystem
// without them); special files are records (special_files_test.cc).
TEST_F(ErrnoTest, HardLinksRefused) {
  EXPECT_EQ(ERRNO_OF(link(P("file").c_str(), P("hardlink").c_str())), "EPERM");
  EXPECT_EQ(ERRNO_OF(link(P("dir").c_str(), P("hardlink-dir").c_str())), "EPERM");
  for (const char* name : {"hardlink", "hardlink-dir"}) EXPECT_EQ(StatErrno(P(name)), ENOENT) << name;
}

TEST_F(ErrnoTest, MissingNames) {
  EXPECT_EQ(ERRNO_OF(unlink(P("missing").c_str())), "ENOENT");
  EXPECT_EQ(ERRNO_OF(rmdir(P("missing").c_str())), "ENOENT");
  EXPECT_EQ(ERRNO_OF(OpenAndClose(P("missing"), O_RDONLY)), "ENOENT");
  EXPECT_EQ(ERRNO_OF(OpenAndClose(P("missing-dir/x"), O_CREAT | O_WRONLY)), "ENOENT");
  EXPECT_EQ(ERRNO_OF(mkdir(P("missing-dir/x").c_str(), 0755)), "ENOENT");
  EXPECT_EQ(ERRNO_OF(rename(P("missing").c_str(), P("somewhere").c_str())), "ENOENT");
  EXPECT_EQ(ERRNO_OF(truncate(P("missing").c_str(), 10)), "ENOENT");
  EXPECT_EQ(StatErrno(P("somewhere")), ENOENT);
}

TEST_F(ErrnoTest, RmdirOfAFile) { EXPECT_EQ(ERRNO_OF(rmdir(P("file").c_str())), "ENOTDIR"); }

}  // namespace
}  // namespace kvfs::mounted_test
