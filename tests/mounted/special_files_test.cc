// Symbolic links, FIFOs, sockets and device nodes through a real mount:
// made by one process, seen by others (lstat type, mode, rdev; readlink;
// readdir), renamed, removed, and found again after a remount on the same
// stores. Device nodes cannot be opened (the mount is nodev); FIFOs work
// between processes (the kernel serves them). Hard links stay refused.

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

class SpecialFilesTest : public MountedTest {
 protected:
  // Two stores, so that renames move some records from one store to the other.
  std::vector<std::string> StoreNames() const override { return {"store-a", "store-b"}; }
};

// "" when path is (lstat) of type `type` with permission bits `perm` and rdev.
std::string CheckNode(const std::string& path, mode_t type, mode_t perm, dev_t rdev = 0) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return ErrnoMessage("lstat " + path);
  if ((st.st_mode & S_IFMT) != type) return path + ": type " + std::to_string(st.st_mode & S_IFMT);
  if ((st.st_mode & 07777) != perm) return path + ": mode " + std::to_string(st.st_mode & 07777);
  if (st.st_rdev != rdev) return path + ": rdev " + std::to_string(st.st_rdev);
  return "";
}

std::string CheckLink(const std::string& path, const std::string& want) {
  std::vector<char> buf(8192);
  ssize_t n = readlink(path.c_str(), buf.data(), buf.size());
  if (n < 0) return ErrnoMessage("readlink " + path);
  std::string got(buf.data(), static_cast<size_t>(n));
  if (got != want) return path + ": target '" + got.substr(0, 64) + "' (" + std::to_string(got.size()) + " bytes)";
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return ErrnoMessage("lstat " + path);
  if (!S_ISLNK(st.st_mode)) return path + ": not a link";
  if (static_cast<size_t>(st.st_size) != want.size()) return path + ": st_size " + std::to_string(st.st_size);
  return "";
}

std::string MakeSocket(const std::string& path) {
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  if (s < 0) return ErrnoMessage("socket");
  sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return "socket path too long";
  std::strcpy(addr.sun_path, path.c_str());
  int rc = bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  std::string err = rc == 0 ? "" : ErrnoMessage("bind " + path);
  close(s);
  return err;
}

const dev_t kChr = makedev(1, 3);
const dev_t kBlk = makedev(7, 42);

// Makes one of each kind under dir (a path inside the mount).
std::string MakeAll(const std::string& dir) {
  if (symlink("../some/target", (dir + "/lnk").c_str()) != 0) return ErrnoMessage("symlink");
  if (mkfifo((dir + "/fifo").c_str(), 0640) != 0) return ErrnoMessage("mkfifo");
  if (mknod((dir + "/chr").c_str(), S_IFCHR | 0600, kChr) != 0) return ErrnoMessage("mknod chr");
  if (mknod((dir + "/blk").c_str(), S_IFBLK | 0640, kBlk) != 0) return ErrnoMessage("mknod blk");
  return MakeSocket(dir + "/sock");
}

std::string CheckAll(const std::string& dir) {
  for (const std::string& err : {CheckLink(dir + "/lnk", "../some/target"), CheckNode(dir + "/fifo", S_IFIFO, 0640),
                                 CheckNode(dir + "/chr", S_IFCHR, 0600, kChr),
                                 CheckNode(dir + "/blk", S_IFBLK, 0640, kBlk)}) {
    if (!err.empty()) return err;
  }
  struct stat st {};
  if (lstat((dir + "/sock").c_str(), &st) != 0) return ErrnoMessage("lstat sock");
  if (!S_ISSOCK(st.st_mode)) return "sock: not a socket";
  std::vector<std::string> names;
  std::string err = ListDir(dir, &names);
  if (!err.empty()) return err;
  std::sort(names.begin(), names.end());
  std::vector<std::string> want = {"blk", "chr", "fifo", "lnk", "sock"};
  if (names != want) return "listing has " + std::to_string(names.size()) + " names";
  return "ok";
}

TEST_F(SpecialFilesTest, CreatedRecordsAreSeenByOtherProcessesWithTypeModeAndRdev) {
  ASSERT_EQ(mkdir(P("d").c_str(), 0755), 0) << ErrnoMessage("mkdir");
  ASSERT_EQ(MakeAll(P("d")), "");
  EXPECT_EQ(RunInChild([&] { return CheckAll(P("d")); }).Summary(), "ok");
  // A link to a committed file leads other processes to its bytes.
  const std::vector<uint8_t> data = MakeData(5, 10000);
  ASSERT_EQ(WriteFile(P("file"), data), "");
  ASSERT_EQ(symlink("file", P("to-file").c_str()), 0) << ErrnoMessage("symlink");
  ASSERT_EQ(symlink("d/lnk", P("to-link").c_str()), 0) << ErrnoMessage("symlink");
  EXPECT_EQ(RunInChild([&] {
              std::string err = CheckFile(P("to-file"), data);
              return err.empty() ? std::string("ok") : err;
            }).Summary(),
            "ok");
}

TEST_F(SpecialFilesTest, SymlinkTargetLengths) {
  const std::string longest(4095, 'a');
  ASSERT_EQ(symlink(longest.c_str(), P("longest").c_str()), 0) << ErrnoMessage("symlink of 4095 bytes");
  const std::string too_long(4096, 'b');
  EXPECT_EQ(symlink(too_long.c_str(), P("too-long").c_str()), -1);
  EXPECT_EQ(errno, ENAMETOOLONG);
  EXPECT_EQ(symlink("", P("empty").c_str()), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(RunInChild([&] {
              std::string err = CheckLink(P("longest"), longest);
              if (!err.empty()) return err;
              if (StatErrno(P("too-long")) != ENOENT || StatErrno(P("empty")) != ENOENT) return std::string("refused link exists");
              return std::string("ok");
            }).Summary(),
            "ok");
}

TEST_F(SpecialFilesTest, RenameAndUnlinkOfRecords) {
  ASSERT_EQ(mkdir(P("a").c_str(), 0755), 0);
  ASSERT_EQ(mkdir(P("b").c_str(), 0755), 0);
  // Enough names that some renames move records to the other store.
  for (int i = 0; i < 8; ++i) {
    std::string n = std::to_string(i);
    ASSERT_EQ(symlink(("t" + n).c_str(), P("a/l" + n).c_str()), 0) << ErrnoMessage("symlink");
    ASSERT_EQ(mknod(P("a/c" + n).c_str(), S_IFCHR | 0600, kChr), 0) << ErrnoMessage("mknod");
    ASSERT_EQ(rename(P("a/l" + n).c_str(), P("b/link-" + n).c_str()), 0) << ErrnoMessage("rename link");
    ASSERT_EQ(rename(P("a/c" + n).c_str(), P("b/dev-" + n).c_str()), 0) << ErrnoMessage("rename node");
  }
  // A record renamed over a file replaces it; unlink removes records.
  ASSERT_EQ(WriteFile(P("b/over"), MakeData(1, 100)), "");
  ASSERT_EQ(mkfifo(P("a/fifo").c_str(), 0600), 0);
  ASSERT_EQ(rename(P("a/fifo").c_str(), P("b/over").c_str()), 0) << ErrnoMessage("rename over a file");
  ASSERT_EQ(unlink(P("b/link-7").c_str()), 0) << ErrnoMessage("unlink link");
  ASSERT_EQ(unlink(P("b/dev-7").c_str()), 0) << ErrnoMessage("unlink node");
  ASSERT_EQ(rename(P("b").c_str(), P("c").c_str()), 0) << ErrnoMessage("rename directory");
  auto check = [&] {
    for (int i = 0; i < 7; ++i) {
      std::string n = std::to_string(i);
      std::string err = CheckLink(P("c/link-" + n), "t" + n);
      if (err.empty()) err = CheckNode(P("c/dev-" + n), S_IFCHR, 0600, kChr);
      if (!err.empty()) return err;
    }
    std::string err = CheckNode(P("c/over"), S_IFIFO, 0600);
    if (!err.empty()) return err;
    if (StatErrno(P("c/link-7")) != ENOENT || StatErrno(P("c/dev-7")) != ENOENT) return std::string("unlinked record still there");
    std::vector<std::string> names;
    err = ListDir(P("a"), &names);
    if (!err.empty()) return err;
    if (!names.empty()) return "a/ still lists " + names[0];
    return std::string("ok");
  };
  EXPECT_EQ(RunInChild(check).Summary(), "ok");
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(RunInChild(check).Summary(), "ok") << "after remount";
}

TEST_F(SpecialFilesTest, RecordsSurviveRemountWithOwnerAndTimes) {
  ASSERT_EQ(mkdir(P("d").c_str(), 0755), 0);
  ASSERT_EQ(MakeAll(P("d")), "");
  ASSERT_EQ(lchown(P("d/lnk").c_str(), 1234, 5678), 0) << ErrnoMessage("lchown link");
  ASSERT_EQ(chown(P("d/chr").c_str(), 4321, 8765), 0) << ErrnoMessage("chown node");
  const timespec times[2] = {{1000000, 0}, {1600000000, 123}};
  ASSERT_EQ(utimensat(AT_FDCWD, P("d/fifo").c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << ErrnoMessage("utimensat");
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(RunInChild([&] {
              std::string all = CheckAll(P("d"));
              if (all != "ok") return all;
              struct stat st {};
              if (lstat(P("d/lnk").c_str(), &st) != 0) return ErrnoMessage("lstat lnk");
              if (st.st_uid != 1234 || st.st_gid != 5678) return std::string("link owner lost");
              if (lstat(P("d/chr").c_str(), &st) != 0) return ErrnoMessage("lstat chr");
              if (st.st_uid != 4321 || st.st_gid != 8765) return std::string("node owner lost");
              if (lstat(P("d/fifo").c_str(), &st) != 0) return ErrnoMessage("lstat fifo");
              if (st.st_mtim.tv_sec != 1600000000) return "fifo mtime " + std::to_string(st.st_mtim.tv_sec);
              return std::string("ok");
            }).Summary(),
            "ok");
}

TEST_F(SpecialFilesTest, FifoCarriesBytesBetweenProcesses) {
  ASSERT_EQ(mkfifo(P("pipe").c_str(), 0600), 0) << ErrnoMessage("mkfifo");
  ChildProcess writer([&](Channel&) {
    Fd fd(open(P("pipe").c_str(), O_WRONLY));
    if (!fd.valid()) return ErrnoMessage("open fifo for writing");
    if (write(fd.get(), "through the fifo", 16) != 16) return ErrnoMessage("write fifo");
    return std::string("ok");
  });
  Fd fd(open(P("pipe").c_str(), O_RDONLY));
  ASSERT_TRUE(fd.valid()) << ErrnoMessage("open fifo for reading");
  std::string got;
  char buf[64];
  ssize_t n;
  while ((n = read(fd.get(), buf, sizeof(buf))) > 0) got.append(buf, static_cast<size_t>(n));
  EXPECT_EQ(got, "through the fifo");
  EXPECT_EQ(writer.Wait().Summary(), "ok");
}

// The mount is nodev (libfuse's default): the kernel refuses to open a
// device node on it before kvfs is asked.
TEST_F(SpecialFilesTest, DeviceNodesCannotBeOpened) {
  ASSERT_EQ(mknod(P("null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0) << ErrnoMessage("mknod");
  EXPECT_EQ(RunInChild([&] {
              int fd = open(P("null").c_str(), O_RDWR);
              if (fd >= 0) {
                close(fd);
                return std::string("opened a device node");
              }
              return ErrnoName(errno);
            }).Summary(),
            "EACCES");
}

TEST_F(SpecialFilesTest, HardLinksAreRefusedWithEperm) {
  ASSERT_EQ(WriteFile(P("file"), MakeData(2, 10)), "");
  ASSERT_EQ(symlink("file", P("lnk").c_str()), 0);
  EXPECT_EQ(link(P("file").c_str(), P("hard").c_str()), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(link(P("lnk").c_str(), P("hard2").c_str()), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(StatErrno(P("hard")), ENOENT);
  EXPECT_EQ(StatErrno(P("hard2")), ENOENT);
}

// mknod(S_IFREG) makes an empty file that is committed at once.
TEST_F(SpecialFilesTest, MknodOfARegularFileCommitsAnEmptyFile) {
  ASSERT_EQ(mknod(P("plain").c_str(), S_IFREG | 0600, 0), 0) << ErrnoMessage("mknod S_IFREG");
  EXPECT_EQ(RunInChild([&] {
              std::string err = CheckNode(P("plain"), S_IFREG, 0600);
              if (!err.empty()) return err;
              err = CheckFile(P("plain"), {});
              return err.empty() ? std::string("ok") : err;
            }).Summary(),
            "ok");
}

}  // namespace
}  // namespace kvfs::mounted_test
