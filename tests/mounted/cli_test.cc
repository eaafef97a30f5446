// The kvfs command line: bad input to `kvfs mount` exits non-zero with one
// line on stderr and leaves nothing mounted; the mount is listed as
// fuse.kvfs; umount of something that is not a kvfs mount fails cleanly.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/mounted/mount_fixture.h"

namespace kvfs::mounted_test {
namespace {

class CliTest : public MountedTest {
 protected:
  // Runs a `kvfs mount` that must fail, and checks the failure is clean.
  // Anything it did mount at `mountpoint` is taken down (and reported).
  void ExpectCleanMountFailure(const std::vector<std::string>& args, const std::string& mountpoint,
                               int mounts_before = 0) {
    std::vector<std::string> argv = {kvfs_binary(), "mount"};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = RunCommand(argv);
    EXPECT_NE(r.exit_code, 0) << r.Describe();
    EXPECT_FALSE(r.timed_out) << r.Describe();
    EXPECT_FALSE(r.err.empty()) << "no error message: " << r.Describe();
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr must be exactly one line: [" << r.err << "]";
    EXPECT_TRUE(!r.err.empty() && r.err.back() == '\n') << "stderr line not terminated: [" << r.err << "]";
    int mounts_after = CountMountsAt(mountpoint);
    EXPECT_EQ(mounts_after, mounts_before) << "a failed mount left something mounted at " << mountpoint;
    while (mounts_after-- > mounts_before) RunCommand({"/bin/umount", "-l", mountpoint});
  }

  std::string MakeDir(const std::string& name) {
    std::string path = root() + "/" + name;
    EXPECT_EQ(mkdir(path.c_str(), 0755), 0) << ErrnoMessage("mkdir " + path);
    return path;
  }
};

TEST_F(CliTest, MountIsListedAsFuseKvfs) {
  EXPECT_TRUE(IsKvfsMounted(mnt()));
  EXPECT_EQ(CountMountsAt(mnt()), 1);
}

TEST_F(CliTest, MissingMountpoint) {
  const std::string store = MakeDir("store2");
  const std::string missing = root() + "/does-not-exist";
  ExpectCleanMountFailure({missing, "--store", store}, missing);
  EXPECT_EQ(StatErrno(missing), ENOENT) << "the mountpoint must not be created";
}

TEST_F(CliTest, BusyMountpoint) {
  // mnt() is already mounted by the fixture; mounting on it again fails and
  // leaves the existing mount working.
  const std::string store = MakeDir("store2");
  ASSERT_EQ(WriteFile(P("before"), MakeData(1, 5000)), "");
  ExpectCleanMountFailure({mnt(), "--store", store}, mnt(), /*mounts_before=*/1);
  EXPECT_TRUE(IsKvfsMounted(mnt()));
  EXPECT_EQ(CheckFile(P("before"), MakeData(1, 5000)), "");
  ASSERT_EQ(WriteFile(P("after"), MakeData(2, 6000)), "");
  EXPECT_EQ(CheckFile(P("after"), MakeData(2, 6000)), "");
}

TEST_F(CliTest, StoreIsARegularFile) {
  const std::string mnt2 = MakeDir("mnt2");
  const std::string file = root() + "/store-file";
  ASSERT_EQ(WriteFile(file, MakeData(3, 10)), "");
  ExpectCleanMountFailure({mnt2, "--store", file}, mnt2);
  // The file is untouched.
  EXPECT_EQ(CheckFile(file, MakeData(3, 10)), "");
}

TEST_F(CliTest, CapacityIsNotASize) {
  const std::string mnt2 = MakeDir("mnt2");
  const std::string store = MakeDir("store2");
  ExpectCleanMountFailure({mnt2, "--store", store, "--capacity", "banana"}, mnt2);
}

TEST_F(CliTest, BadRequestSizingIsRefused) {
  const std::string mnt2 = MakeDir("mnt2");
  const std::string store = MakeDir("store2");
  ExpectCleanMountFailure({mnt2, "--store", store, "--max-request", "3K"}, mnt2);
  ExpectCleanMountFailure({mnt2, "--store", store, "--max-request", "2M"}, mnt2);
  ExpectCleanMountFailure({mnt2, "--store", store, "--max-request", "lots"}, mnt2);
  ExpectCleanMountFailure({mnt2, "--store", store, "--max-background", "0"}, mnt2);
}

TEST_F(CliTest, SecondMountWithItsOwnStoreAndCapacity) {
  // A second mount (own daemon, own store, explicit capacity) works
  // alongside the first one.
  const std::string mnt2 = MakeDir("mnt2");
  const std::string store = MakeDir("store2");
  CommandResult r = RunCommand({kvfs_binary(), "mount", mnt2, "--store", store, "--capacity", "64M"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_TRUE(IsKvfsMounted(mnt2));
  EXPECT_EQ(WriteFile(mnt2 + "/x", MakeData(4, 100)), "");
  EXPECT_EQ(CheckFile(mnt2 + "/x", MakeData(4, 100)), "");
  EXPECT_EQ(StatErrno(P("x")), ENOENT) << "the two mounts must not share keys";
  CommandResult u = RunCommand({kvfs_binary(), "umount", mnt2});
  EXPECT_EQ(u.exit_code, 0) << u.Describe();
  if (IsKvfsMounted(mnt2)) RunCommand({"/bin/umount", "-l", mnt2});
  EXPECT_FALSE(IsKvfsMounted(mnt2));
}

TEST_F(CliTest, UmountOfSomethingElseFails) {
  const std::string plain = MakeDir("plain");
  CommandResult r = RunCommand({kvfs_binary(), "umount", plain});
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_FALSE(r.err.empty()) << r.Describe();
  EXPECT_TRUE(IsKvfsMounted(mnt())) << "umount of another path took down the fixture's mount";
}

}  // namespace
}  // namespace kvfs::mounted_test
